package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"echoloop/bench/load"
	"echoloop/bench/load/faultserver"
	"echoloop/bench/model"
	"echoloop/bench/servertest"
	"echoloop/eventloop/frame"
	"echoloop/eventloop/session"
	"echoloop/handlers"
)

// TestMain lets the test binary stand in for the echoload command, so exit
// statuses are checked on the real main in a child process.
func TestMain(m *testing.M) {
	if os.Getenv("ECHOLOAD_RUN_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// runCmd runs the command in-process and returns its exit status and output.
func runCmd(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func start(t *testing.T, m, spec string, h handlers.Handler) string {
	t.Helper()
	codec, err := frame.Parse(spec, 0)
	if err != nil {
		t.Fatal(err)
	}
	return servertest.Start(t, model.Options{Model: m, Config: session.Config{Codec: codec, Handler: h}}).Addr().String()
}

func TestBadFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-framing", "json"}, `-framing: frame: unknown framing "json" (known: line, length, fixed:N, raw)`},
		{[]string{"-framing", "fixed:8"}, "framing fixed:8 is under 10 bytes"},
		{[]string{"-framing", "fixed:16", "-size", "64"}, "-size 64 disagrees with the framing fixed:16"},
		{[]string{"-size", "4"}, "-size 4 is under 10 bytes"},
		{[]string{"-size", "lots"}, `invalid size "lots"`},
		{[]string{"-conns", "0"}, "-conns 0: need at least 1"},
		{[]string{"-pipeline", "0"}, "-pipeline 0: need at least 1"},
		{[]string{"-rate", "-5"}, "-rate -5 is negative"},
		{[]string{"-client", "threads"}, `-client "threads" (known: epoll, goroutine)`},
		{[]string{"-client", "goroutine", "-loops", "2"}, "-loops applies to -client epoll"},
		{[]string{"-hold", "5s"}, "-hold and -gate are for -idle"},
		{[]string{"-gate", "1m"}, "-hold and -gate are for -idle"},
		{[]string{"-idle", "-gate", "-1s"}, "must not be negative"},
		{[]string{"-idle", "-rate", "100"}, "-rate does not apply to -idle"},
		{[]string{"-i", "-conns", "5"}, "-conns does not apply to -i (interactive)"},
		{[]string{"-show-reads"}, "-show-reads is for -i (interactive)"},
		{[]string{"-idle", "-show-reads"}, "-show-reads is for -i (interactive)"},
		{[]string{"-i", "-show-reads=often"}, `invalid boolean value "often" for -show-reads`},
		{[]string{"-sources", "3", "-addr", "10.1.2.3:7"}, "need a 127.x.x.x server address"},
		{[]string{"-first-source", "127.0.0.5"}, "-first-source needs -sources"},
		{[]string{"-first-source", "here", "-sources", "2"}, `invalid value "here" for flag -first-source`},
		{[]string{"-first-source", "10.0.0.1", "-sources", "2"}, "-first-source 10.0.0.1: want a 127.x.x.x address"},
		{[]string{"-addr", "nowhere"}, `-addr "nowhere": want host:port`},
		{[]string{"-timeout", "0s"}, "-timeout and -dial-timeout must be positive"},
		{[]string{"-log-level", "loud"}, `invalid log level "loud"`},
		{[]string{"-nope"}, "flag provided but not defined: -nope"},
		{[]string{"extra"}, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, stdout, stderr := runCmd(t, "", tt.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			if !strings.Contains(stderr, tt.want) || !strings.HasPrefix(stderr, "echoload: ") || strings.Count(stderr, "\n") != 1 {
				t.Errorf("stderr %q, want one line containing %q", stderr, tt.want)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
		})
	}
}

func TestFDLimitRefused(t *testing.T) {
	code, _, stderr := runCmd(t, "", "-conns", "1000000", "-addr", "127.0.0.1:1")
	if code != exitFail || !strings.Contains(stderr, "not enough file descriptors") || !strings.Contains(stderr, "ulimit -n") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

func TestHelp(t *testing.T) {
	code, _, stderr := runCmd(t, "", "-h")
	if code != exitOK {
		t.Fatalf("-h exit %d", code)
	}
	for _, f := range []string{"-addr", "-framing", "-conns", "-size", "-pipeline", "-duration", "-requests", "-rate", "-ramp",
		"-sources", "-json", "-warmup", "-idle", "-hold", "-i", "-show-reads", "-client", "-timeout"} {
		if !strings.Contains(stderr, "\n  "+f+" ") && !strings.Contains(stderr, "\n  "+f+"\n") && !strings.Contains(stderr, "\n  "+f+"\t") {
			t.Errorf("usage does not list %s", f)
		}
	}
}

// TestLoadEachModelAndFraming runs the command against both server models
// in every framing and reads its JSON summary.
func TestLoadEachModelAndFraming(t *testing.T) {
	for _, m := range model.Names() {
		for _, spec := range []string{"line", "length", "fixed:24", "raw"} {
			t.Run(m+"/"+spec, func(t *testing.T) {
				t.Parallel()
				addr := start(t, m, spec, nil)
				code, stdout, stderr := runCmd(t, "", "-addr", addr, "-framing", spec, "-conns", "5", "-pipeline", "3",
					"-requests", "1000", "-warmup", "50ms", "-json")
				if code != exitOK {
					t.Fatalf("exit %d: %s %s", code, stdout, stderr)
				}
				var sum load.Summary
				if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
					t.Fatalf("stdout is not a JSON summary: %v: %q", err, stdout)
				}
				if !sum.OK || sum.Framing != spec || sum.FramesVerified != 1000 || sum.ConnsEstablished != 5 || sum.Schema != load.SchemaVersion {
					t.Errorf("summary %+v", sum)
				}
			})
		}
	}
}

// TestJSONSchema pins the field names the bench harness reads.
func TestJSONSchema(t *testing.T) {
	addr := start(t, model.EventLoop, "line", nil)
	code, stdout, _ := runCmd(t, "", "-addr", addr, "-conns", "2", "-rate", "500", "-duration", "200ms", "-json")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"schema", "mode", "client", "framing", "size", "pipeline", "conns_asked", "conns_established",
		"conns_held", "open_loop", "rate_offered", "warmup_s", "elapsed_s", "frames_sent", "frames_verified", "bytes_sent",
		"bytes_received", "frames_per_s", "mb_per_s", "latency", "mismatches", "mismatch_samples", "errors", "errors_total",
		"conns_drained", "frames_unanswered", "cpu", "fd_limit", "ok", "drained"} {
		if _, ok := got[k]; !ok {
			t.Errorf("JSON summary lacks %q", k)
		}
	}
	lat, _ := got["latency"].(map[string]any)
	for _, k := range []string{"count", "p50_us", "p90_us", "p99_us", "p999_us", "max_us", "mean_us", "min_us"} {
		if _, ok := lat[k]; !ok {
			t.Errorf("latency lacks %q", k)
		}
	}
	cpu, _ := got["cpu"].(map[string]any)
	for _, k := range []string{"user_s", "system_s", "utilization", "cores", "gomaxprocs"} {
		if _, ok := cpu[k]; !ok {
			t.Errorf("cpu lacks %q", k)
		}
	}
	if got["open_loop"] != true || got["rate_offered"].(float64) != 500 {
		t.Errorf("open loop fields: %v %v", got["open_loop"], got["rate_offered"])
	}
}

func TestTextSummary(t *testing.T) {
	addr := start(t, model.Goroutine, "length", nil)
	code, stdout, stderr := runCmd(t, "", "-addr", addr, "-framing", "length", "-conns", "3", "-duration", "200ms")
	if code != exitOK {
		t.Fatalf("exit %d: %s %s", code, stdout, stderr)
	}
	for _, want := range []string{"3 established of 3 asked, 3 held", "frames/s", "p99.9", "mismatches   0", "result       ok"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}
	if stderr != "" {
		t.Errorf("stderr %q: not a terminal, so no progress line", stderr)
	}
}

// TestBrokenServersExitNonZero runs the real command, as a child process,
// against a server that drops a byte and one that swaps two replies.
func TestBrokenServersExitNonZero(t *testing.T) {
	tests := []struct {
		name  string
		fault faultserver.Fault
		want  string
	}{
		{"drops a byte", faultserver.DropByte{Offset: 1000}, "bytes dropped"},
		{"swaps two replies", faultserver.SwapReplies{At: 3}, "out of order"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			addr := faultserver.Start(t, frame.Line{}, tt.fault)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-addr", addr.String(), "-conns", "2", "-pipeline", "2", "-requests", "500", "-timeout", "2s")
			cmd.Env = append(os.Environ(), "ECHOLOAD_RUN_MAIN=1")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if code := cmd.ProcessState.ExitCode(); code != exitFail {
				t.Fatalf("exit %d (%v), want %d; stdout:\n%s\nstderr:\n%s", code, err, exitFail, &stdout, &stderr)
			}
			for _, want := range []string{"mismatches   2", tt.want, "result       FAILED"} {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("summary lacks %q:\n%s", want, &stdout)
				}
			}
		})
	}
}

func TestIdleMode(t *testing.T) {
	for _, m := range model.Names() {
		t.Run(m, func(t *testing.T) {
			t.Parallel()
			addr := start(t, m, "line", nil)
			code, stdout, stderr := runCmd(t, "", "-addr", addr, "-idle", "-conns", "300", "-ramp", "10000", "-hold", "100ms", "-json")
			if code != exitOK {
				t.Fatalf("exit %d: %s %s", code, stdout, stderr)
			}
			var sum load.Summary
			if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
				t.Fatal(err)
			}
			if sum.Mode != "idle" || sum.ConnsHeld != 300 || sum.ConnsEstablished != 300 {
				t.Errorf("idle summary %+v", sum)
			}
		})
	}
}

// TestIdleGates drives -gate as a driver would: it reads each gate line,
// checks the server has seen one frame per connection and no more (the
// generator waits at the gate), then opens the gate with a line on stdin.
func TestIdleGates(t *testing.T) {
	const conns = 50
	srv := servertest.Start(t, model.Options{Model: model.EventLoop, Config: session.Config{Codec: frame.Line{}}})
	stdinR, stdinW := io.Pipe()
	stdoutR, stdoutW := io.Pipe()
	defer stdinW.Close()
	var stderr bytes.Buffer
	code := make(chan int, 1)
	go func() {
		defer stdoutW.Close()
		code <- run(context.Background(), []string{"-addr", srv.Addr().String(), "-idle", "-conns", strconv.Itoa(conns),
			"-hold", "10ms", "-gate", "1m", "-json"}, stdinR, stdoutW, &stderr)
	}()
	out := bufio.NewScanner(stdoutR)
	for _, want := range []string{"holding", "verifying"} {
		if !out.Scan() {
			t.Fatalf("no gate line %q: %v; stderr: %s", want, out.Err(), &stderr)
		}
		var g gateLine
		if err := json.Unmarshal(out.Bytes(), &g); err != nil || g.Gate != want || g.Open != conns || g.Asked != conns {
			t.Fatalf("gate line %s (%v), want gate %q with %d open", out.Bytes(), err, want, conns)
		}
		if in := srv.Stats().FramesIn; in != conns {
			t.Errorf("at gate %q the server has seen %d frames, want %d", want, in, conns)
		}
		if _, err := io.WriteString(stdinW, "go\n"); err != nil {
			t.Fatal(err)
		}
	}
	if !out.Scan() {
		t.Fatalf("no summary: %v; stderr: %s", out.Err(), &stderr)
	}
	var sum load.Summary
	if err := json.Unmarshal(out.Bytes(), &sum); err != nil || !sum.OK || sum.ConnsHeld != conns {
		t.Errorf("summary %s (%v)", out.Bytes(), err)
	}
	_, _ = io.Copy(io.Discard, stdoutR)
	if c := <-code; c != exitOK {
		t.Errorf("exit %d; stderr: %s", c, &stderr)
	}
	if in := srv.Stats().FramesIn; in != 2*conns {
		t.Errorf("the server saw %d frames, want %d", in, 2*conns)
	}
}

// TestIdleGatesStdinClosed checks that the end of stdin opens the gates, so
// a generator whose driver is gone finishes by itself.
func TestIdleGatesStdinClosed(t *testing.T) {
	addr := start(t, model.EventLoop, "line", nil)
	code, stdout, stderr := runCmd(t, "", "-addr", addr, "-idle", "-conns", "5", "-hold", "10ms", "-gate", "1h", "-json")
	if code != exitOK {
		t.Fatalf("exit %d: %s %s", code, stdout, stderr)
	}
	if lines := strings.Split(strings.TrimSpace(stdout), "\n"); len(lines) != 3 || !strings.Contains(lines[0], `"gate":"holding"`) ||
		!strings.Contains(lines[1], `"gate":"verifying"`) || !strings.Contains(lines[2], `"conns_held":5`) {
		t.Errorf("stdout:\n%s", stdout)
	}
}

func TestRefusedHint(t *testing.T) {
	code, stdout, _ := runCmd(t, "", "-addr", "127.0.0.1:1", "-conns", "2", "-requests", "10")
	if code != exitFail || !strings.Contains(stdout, "0 established of 2 asked") || !strings.Contains(stdout, "hint: nothing accepted") {
		t.Errorf("exit %d, summary:\n%s", code, stdout)
	}
}

func TestInteractive(t *testing.T) {
	tests := []struct {
		spec, handler, in, want, notes string
	}{
		{"line", "echo", "hello\nwho's there?\n", "hello\nwho's there?\n", ""},
		{"length", "echo", "one\n\ntwo", "one\n\ntwo\n", ""},
		{"fixed:5", "echo", "hello\ntoo long\nworld\n", "hello\nworld\n", "line of 8 bytes cannot be sent as a fixed:5 frame"},
		{"length", "ack", "a\nb\n", "Message received!\nMessage received!\n", ""},
	}
	for _, m := range model.Names() {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/%s/%s", m, tt.spec, tt.handler), func(t *testing.T) {
				t.Parallel()
				h, err := handlers.New(tt.handler, handlers.Config{})
				if err != nil {
					t.Fatal(err)
				}
				addr := start(t, m, tt.spec, h)
				code, stdout, stderr := runCmd(t, tt.in, "-i", "-addr", addr, "-framing", tt.spec)
				if code != exitOK || stdout != tt.want {
					t.Errorf("exit %d, stdout %q, want %q (stderr %q)", code, stdout, tt.want, stderr)
				}
				if !strings.Contains(stderr, tt.notes) || (tt.notes == "" && stderr != "") {
					t.Errorf("stderr %q, want %q", stderr, tt.notes)
				}
			})
		}
	}
}

func TestInteractiveQuotesBinary(t *testing.T) {
	addr := start(t, model.EventLoop, "length", nil)
	code, stdout, _ := runCmd(t, "tab\there\nbell\a\n", "-i", "-addr", addr, "-framing", "length")
	if code != exitOK || stdout != "tab\there\n\"bell\\a\"\n" {
		t.Errorf("exit %d, stdout %q", code, stdout)
	}
}

// TestInteractiveWrongFraming speaks line framing to a length server, which
// reads "hell" as a 1.7 GB length and closes: the user is told.
func TestInteractiveWrongFraming(t *testing.T) {
	addr := start(t, model.EventLoop, "length", nil)
	code, stdout, stderr := runCmd(t, "hello\n", "-i", "-addr", addr, "-framing", "line")
	want := "1 frames sent, 0 replies received; the server closed the connection (does -framing match the server's?)"
	if code != exitFail || stdout != "" || !strings.Contains(stderr, want) {
		t.Errorf("exit %d, stdout %q, stderr %q; want exit %d and %q", code, stdout, stderr, exitFail, want)
	}
}

func TestInteractiveRefused(t *testing.T) {
	code, _, stderr := runCmd(t, "hi\n", "-i", "-addr", "127.0.0.1:1")
	if code != exitFail || !strings.HasPrefix(stderr, "echoload: ") || !strings.Contains(stderr, "refused") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	if strings.Contains(stderr, "-ramp") {
		t.Errorf("the hint for one interactive connection mentions -ramp: %q", stderr)
	}
}

// TestInteractiveShowReads sends the textbook's 17-byte "Greetings,
// server" to a fixed:16 server: one 16-byte frame is echoed, in one read,
// and the byte left over is dropped when the client's side closes.
func TestInteractiveShowReads(t *testing.T) {
	for _, m := range model.Names() {
		t.Run(m, func(t *testing.T) {
			t.Parallel()
			addr := start(t, m, "fixed:16", nil)
			code, stdout, stderr := runCmd(t, "Greetings, server\n", "-i", "-show-reads", "-addr", addr, "-framing", "raw")
			want := `[read 16 bytes: "Greetings, serve"]` + "\nGreetings, serve\n[read 0 bytes: end of stream]\n"
			if code != exitOK || stdout != want || stderr != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want 0, %q, nothing", code, stdout, stderr, want)
			}
		})
	}
}
