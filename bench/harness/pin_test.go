package harness

import (
	"io"
	"net/http"
	"net/http/httptest"
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

func TestScrape(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, `# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 12
echoloop_closes_total{model="eventloop",reason="slow consumer"} 200
echoloop_memory_held_bytes{model="eventloop"} 1.048576e+06
`)
	}))
	defer ts.Close()
	s := &Server{Metrics: ts.URL + "/metrics"}
	got, err := s.Scrape()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"go_goroutines": 12,
		`echoloop_closes_total{model="eventloop",reason="slow consumer"}`: 200,
		`echoloop_memory_held_bytes{model="eventloop"}`:                   1 << 20,
	}
	if len(got) != len(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if s.goroutines() != 12 {
		t.Errorf("goroutines() = %d, want 12", s.goroutines())
	}
	if (&Server{}).goroutines() != -1 {
		t.Error("goroutines() of a server without metrics is not -1")
	}
}

func TestRunQueueWait(t *testing.T) {
	if _, err := os.Stat("/proc/self/schedstat"); err != nil {
		t.Skip("no schedstat in /proc")
	}
	if w, err := RunQueueWait(os.Getpid()); err != nil || w < 0 {
		t.Errorf("RunQueueWait(this process) = %v, %v", w, err)
	}
	if _, err := RunQueueWait(-1); err == nil {
		t.Error("RunQueueWait(-1) did not fail")
	}
}
