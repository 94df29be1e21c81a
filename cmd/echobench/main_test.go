package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"echoloop/bench/results"

	"echoloop/bench/servertest"
)

func TestBadFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-profile", "huge"}, `-profile "huge": want one of full, levers, quick`},
		{[]string{"-servers", "nope"}, `-servers: profile quick has no server "nope" (it has eventloop-1, goroutine-1, gnet-plain-1, python-select, python-threads)`},
		{[]string{"-reps", "-1"}, "-reps -1 is negative"},
		{[]string{"-server-cpus", "1", "-load-cpus", "1"}, "must name different CPUs"},
		{[]string{"-bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"now"}, `unexpected argument "now"`},
	}
	for _, tt := range tests {
		var stderr bytes.Buffer
		code := run(context.Background(), tt.args, io.Discard, &stderr)
		if code != exitUsage || !strings.Contains(stderr.String(), tt.want) || strings.Count(stderr.String(), "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line with %q", tt.args, code, stderr.String(), tt.want)
		}
	}
}

// TestQuickProfile runs the quick profile on two servers into a temporary
// folder and checks the folder: raw.json, REPORT.md and charts; then
// rewrites the report with a reading.
func TestQuickProfile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	if _, err := exec.LookPath("taskset"); err != nil || runtime.NumCPU() < 2 {
		t.Skip("needs taskset and two CPUs")
	}
	dir := t.TempDir()
	var stderr bytes.Buffer
	code := run(context.Background(), []string{"-profile", "quick", "-servers", "eventloop-1,goroutine-1", "-out", dir}, io.Discard, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d:\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "[7/8, ") || !strings.Contains(stderr.String(), "[8/8, took ") {
		t.Errorf("progress does not count the cells with the time left:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), filepath.Join(dir, "REPORT.md")) {
		t.Errorf("the last line does not name the report:\n%s", stderr.String())
	}
	res, err := results.Load(filepath.Join(dir, "raw.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Cells) != 6 || len(res.Idle) != 2 || res.Profile != "quick" || !strings.Contains(res.Command, "-profile quick") {
		t.Errorf("raw.json: %d cells, %d idle, profile %q, command %q", len(res.Cells), len(res.Idle), res.Profile, res.Command)
	}
	for _, s := range res.Servers {
		if s.GOMAXPROCS == 0 {
			t.Errorf("server %s: effective GOMAXPROCS not recorded", s.Name)
		}
	}
	rep, err := os.ReadFile(filepath.Join(dir, "REPORT.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"eventloop-1", "goroutine-1", "Targets", "No reading was written"} {
		if !bytes.Contains(rep, []byte(want)) {
			t.Errorf("REPORT.md lacks %q", want)
		}
	}
	charts, _ := filepath.Glob(filepath.Join(dir, "charts", "*.svg"))
	if len(charts) < 3 {
		t.Errorf("%d charts written: %v", len(charts), charts)
	}

	if err := os.WriteFile(filepath.Join(dir, readingFile), []byte("The loop held up.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stderr.Reset()
	var headline bytes.Buffer
	if code := run(context.Background(), []string{"-report", dir}, &headline, &stderr); code != exitOK {
		t.Fatalf("-report: exit %d: %s", code, stderr.String())
	}
	rep, _ = os.ReadFile(filepath.Join(dir, "REPORT.md"))
	if !bytes.Contains(rep, []byte("The loop held up.")) {
		t.Error("the rewritten report lacks the reading")
	}
	// The headline is what the README quotes: a table with both servers,
	// and chart links under the results folder.
	for _, want := range []string{"eventloop-1", "goroutine-1", "| connections", filepath.ToSlash(dir) + "/charts/"} {
		if !strings.Contains(headline.String(), want) {
			t.Errorf("-report headline lacks %q:\n%s", want, headline.String())
		}
	}
}

// cancelOnFirstCell cancels a run once its first cell is reported, the way
// a Ctrl-C would land in the middle of a run.
type cancelOnFirstCell struct {
	cancel context.CancelFunc
	buf    bytes.Buffer
}

func (w *cancelOnFirstCell) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("[1/")) {
		w.cancel()
	}
	return w.buf.Write(p)
}

// TestInterrupt stops a run after its first cell: what was measured is
// written with a note, the exit status is 1, and no child process is left.
func TestInterrupt(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	if _, err := exec.LookPath("taskset"); err != nil || runtime.NumCPU() < 2 {
		t.Skip("needs taskset and two CPUs")
	}
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &cancelOnFirstCell{cancel: cancel}
	code := run(ctx, []string{"-profile", "quick", "-out", dir}, io.Discard, w)
	if code != exitFail || !strings.Contains(w.buf.String(), "interrupted") {
		t.Fatalf("exit %d, want 1 and a word on the interruption:\n%s", code, w.buf.String())
	}
	res, err := results.Load(filepath.Join(dir, "raw.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Cells) == 0 || len(res.Cells) >= 6 || !strings.Contains(strings.Join(res.Notes, " "), "interrupted") {
		t.Errorf("raw.json after an interruption: %d cells, notes %q", len(res.Cells), res.Notes)
	}
	if kids := servertest.Children(); len(kids) > 0 {
		t.Errorf("child processes left running: %v", kids)
	}
}
