package harness

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
)

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

func TestTCPCounters(t *testing.T) {
	if _, err := os.Stat("/proc/net/netstat"); err != nil {
		t.Skip("no /proc/net/netstat")
	}
	c, err := TCPCounters()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"TCPMemoryPressuresChrono", "TCPTimeouts"} {
		if _, ok := c[name]; !ok {
			t.Errorf("no %s in %v", name, c)
		}
	}
}
