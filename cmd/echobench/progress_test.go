package main

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// TestProgressNotTerminal: on a stderr that is not a terminal (a file
// here), progress is plain lines, each cell's counted and with the time
// left.
func TestProgressNotTerminal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, stop := newProgress(f)
	p.Note("building echoloop and echoload")
	p.Start(3)
	p.Cell("rep 1 eventloop-1 closed")
	p.Cell("rep 1 goroutine-1 closed")
	p.Cell("rep 1 eventloop-1 idle")
	stop()
	out, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	dur := `[0-9][0-9hmsµn.]*`
	want := regexp.MustCompile(`^building echoloop and echoload\n` +
		`\[1/3, ` + dur + ` left\] rep 1 eventloop-1 closed\n` +
		`\[2/3, ` + dur + ` left\] rep 1 goroutine-1 closed\n` +
		`\[3/3, took ` + dur + `\] rep 1 eventloop-1 idle\n$`)
	if !want.Match(out) {
		t.Errorf("progress on a file:\n%s\nwant lines matching %s", out, want)
	}
}
