package cli

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  string
	}{
		{"65536", 65536, ""},
		{"64KiB", 64 << 10, ""},
		{"64K", 64 << 10, ""},
		{"64k", 64 << 10, ""},
		{"1MiB", 1 << 20, ""},
		{"2m", 2 << 20, ""},
		{"1GiB", 1 << 30, ""},
		{"512B", 512, ""},
		{"0", 0, ""},
		{"-1", 0, "invalid size"},
		{"1.5MiB", 0, "invalid size"},
		{"MiB", 0, "invalid size"},
		{"99999999999GiB", 0, "too large"},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseSize(%q) err = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestFormatSizeRoundTrips(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0", 1: "1", 1000: "1000", 1024: "1KiB", 65536: "64KiB", 4 << 20: "4MiB",
		1 << 30: "1GiB", 1536: "1536", 3 << 30: "3GiB",
	} {
		got := FormatSize(n)
		if got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", n, got, want)
		}
		if back, err := ParseSize(got); err != nil || back != n {
			t.Errorf("ParseSize(FormatSize(%d)) = %d, %v", n, back, err)
		}
	}
}

func TestNewLogger(t *testing.T) {
	var buf bytes.Buffer
	log, err := NewLogger(&buf, "warn", "")
	if err != nil {
		t.Fatal(err)
	}
	log.Info().Msg("hidden")
	log.Warn().Msg("shown")
	if out := buf.String(); strings.Contains(out, "hidden") || !strings.Contains(out, `"message":"shown"`) {
		t.Errorf("a buffer is not a terminal, so JSON at warn and above; got %q", out)
	}
	for _, level := range []string{"", "trace", "fatal", "panic", "disabled", "loud"} {
		_, err := NewLogger(&buf, level, "json")
		if err == nil || !strings.HasSuffix(err.Error(), "want one of "+LogLevels) {
			t.Errorf("level %q: err %v, want it refused with the one list of levels", level, err)
		}
	}
	for _, level := range strings.Split(LogLevels, ", ") {
		if _, err := NewLogger(&buf, level, "json"); err != nil {
			t.Errorf("level %q: %v", level, err)
		}
	}
}

func TestConsoleHasNoColourOffATerminal(t *testing.T) {
	var buf bytes.Buffer
	log, err := NewLogger(&buf, "info", "console")
	if err != nil {
		t.Fatal(err)
	}
	log.Info().Str("k", "v").Msg("hello")
	if out := buf.String(); strings.Contains(out, "\x1b[") || !strings.Contains(out, "hello") {
		t.Errorf("console log to a buffer: %q, want plain text", out)
	}
}

func TestModuleRoot(t *testing.T) {
	root, err := ModuleRoot("test")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := filepath.Abs("../../..")
	if root != want {
		t.Errorf("ModuleRoot = %q, want %q", root, want)
	}
	t.Chdir(t.TempDir())
	if _, err := ModuleRoot("test"); err == nil || !strings.Contains(err.Error(), "run test inside the echoloop repository") {
		t.Errorf("outside the repository: %v", err)
	}
}

func TestConsoleOrdersTraceFields(t *testing.T) {
	var buf bytes.Buffer
	log, err := NewLogger(&buf, "info", "console")
	if err != nil {
		t.Fatal(err)
	}
	log.Info().Str("component", "trace").Int("writes", 1).Int("out", 6).Int("carried", 0).Int("in", 3).
		Uint64("conn", 1).Msg("read")
	if out := buf.String(); !strings.Contains(out, "read conn=1 in=3 carried=0 out=6 writes=1 component=trace") {
		t.Errorf("console trace line %q: want its fields in the order of tracelog.Fields, others after", out)
	}
}
