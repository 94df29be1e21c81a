package harness

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
)

// TestPinProcess pins a child with threads of its own to one CPU and back.
func TestPinProcess(t *testing.T) {
	if _, err := exec.LookPath("taskset"); err != nil || runtime.NumCPU() < 2 {
		t.Skip("needs taskset and two CPUs")
	}
	// A child that waits on its stdin: the test binary itself, a Go
	// program with several threads.
	child := exec.Command(os.Args[0], "-test.run=^TestPinProcessHelper$")
	child.Env = append(os.Environ(), "HARNESS_PIN_HELPER=1")
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		_ = child.Wait()
	}()
	pid := child.Process.Pid
	was, err := PinProcess(pid, "1")
	if err != nil {
		t.Fatal(err)
	}
	tasks := filepath.Join("/proc", strconv.Itoa(pid), "task")
	if !pinned(tasks, "1") {
		t.Errorf("a thread of the child may run elsewhere than CPU 1")
	}
	if _, err := PinProcess(pid, was); err != nil {
		t.Fatal(err)
	}
	if got, _ := allowedCPUs(filepath.Join("/proc", strconv.Itoa(pid), "status")); got != was || !pinned(tasks, was) {
		t.Errorf("pinned back to %q, want %q on every thread", got, was)
	}
}

// TestPinProcessHelper is the child of TestPinProcess.
func TestPinProcessHelper(t *testing.T) {
	if os.Getenv("HARNESS_PIN_HELPER") != "1" {
		t.Skip("the child of TestPinProcess")
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
}
