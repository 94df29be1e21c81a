package harness

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
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

// TestChildDiesWithParent: a server child outlives no benchmark. A helper
// process starts a child the way StartServer does (a long sleep standing in
// for the server) and exits without stopping it, as a benchmark killed
// before its cleanups would; the child must end too.
func TestChildDiesWithParent(t *testing.T) {
	if _, err := exec.LookPath("taskset"); err != nil {
		t.Skip("needs taskset")
	}
	helper := exec.Command(os.Args[0], "-test.run=^TestChildDiesWithParentHelper$")
	helper.Env = append(os.Environ(), "HARNESS_ORPHAN_HELPER=1")
	out, err := helper.Output()
	if err != nil {
		t.Fatalf("helper: %v: %s", err, out)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(string(out)), "PASS")))
	if err != nil {
		t.Fatalf("helper printed %q, want the child's pid", out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("the child (pid %d) outlived the process that started it", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestChildDiesWithParentHelper is the helper of TestChildDiesWithParent:
// it prints its child's pid and exits at once.
func TestChildDiesWithParentHelper(t *testing.T) {
	if os.Getenv("HARNESS_ORPHAN_HELPER") != "1" {
		t.Skip("the helper of TestChildDiesWithParent")
	}
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	c, err := startChild(sleep, "0", nil, nil, "60")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println(c.pid())
	os.Exit(0)
}

// alive says whether pid is a live process (not gone, not a zombie).
func alive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z")
}
