package scale

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"echoloop/bench/load"
)

// limits20k are this project's machine's limits.
var limits20k = Limits{FDHard: 20000, ServerMaxConns: 19744, GeneratorMaxConns: 19936, PortLow: 32768, PortHigh: 60999,
	PortsPerSource: 28232, MinServers: 6, MinGenerators: 6, MinSources: 4}

func TestFits(t *testing.T) {
	demo := Options{}.withDefaults()
	tests := []struct {
		name string
		opts Options
		want string // "" fits
	}{
		{"the demonstration", demo, ""},
		{"five servers", with(demo, func(o *Options) { o.Servers = 5 }), "20000 each, and one server holds at most 19744 (fd limit 20000 less 256 kept in reserve): use 6 servers or more"},
		{"five generators", with(demo, func(o *Options) { o.Generators = 5 }), "20000 each, and one generator holds at most 19936 (fd limit 20000 less 64): use 6 generators or more"},
		{"one of each", Options{Conns: 19000, Servers: 1, Generators: 1, Sources: 1, Models: []string{"eventloop"}}, ""},
		{"more generators than connections", Options{Conns: 2, Servers: 1, Generators: 3, Sources: 1}, "at most one per connection"},
		{"no servers", with(demo, func(o *Options) { o.Servers = -1 }), "must be positive"},
		{"sources run out", with(demo, func(o *Options) { o.Sources = 42 }), "run past 127.0.0.250"},
		{"unknown model", with(demo, func(o *Options) { o.Models = []string{"threads"} }), `model "threads"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.fits(limits20k)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tt.want != "" && (!errors.Is(err, ErrPlan) || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("got %v, want ErrPlan containing %q", err, tt.want)
			}
		})
	}
	few := limits20k
	few.PortsPerSource = 1000
	if err := (Options{Conns: 3000, Servers: 1, Generators: 1, Sources: 2}).fits(few); err == nil ||
		!strings.Contains(err.Error(), "use 3 sources or more") {
		t.Errorf("too few local ports: %v", err)
	}
}

func with(o Options, f func(*Options)) Options {
	f(&o)
	return o
}

func TestReadLimits(t *testing.T) {
	l, err := readLimits(Options{Conns: 100_000})
	if err != nil {
		t.Skipf("no Linux /proc here: %v", err)
	}
	if l.FDHard == 0 || l.ServerMaxConns != int(l.FDHard)-256 || l.GeneratorMaxConns != int(l.FDHard)-load.FDReserve ||
		l.PortsPerSource != l.PortHigh-l.PortLow+1 || l.MinServers < 1 || l.MinSources < 1 {
		t.Errorf("limits %+v", l)
	}
}

func TestNum(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 100000: "100,000", 1234567: "1,234,567", -1: "-1", -20000: "-20,000"} {
		if got := num(n); got != want {
			t.Errorf("num(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestTail(t *testing.T) {
	var tl tail
	for i := range 7 {
		fmt.Fprintf(&tl, "line %d\n", i)
	}
	fmt.Fprint(&tl, "no end yet")
	if got, want := tl.String(), "line 2 | line 3 | line 4 | line 5 | line 6"; got != want {
		t.Errorf("tail %q, want %q", got, want)
	}
}

func TestScrapeGauge(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "# HELP echoloop_connections_open x\necho_other 5\necholoop_connections_open{model=\"eventloop\"} 16650\n")
	}))
	defer srv.Close()
	if got := scrapeGauge(srv.URL, "echoloop_connections_open"); got != 16650 {
		t.Errorf("scraped %d, want 16650", got)
	}
	if got := scrapeGauge(srv.URL, "echoloop_missing"); got != -1 {
		t.Errorf("a missing gauge scraped as %d, want -1", got)
	}
	servers := []Server{{Metrics: srv.URL}, {Metrics: srv.URL}}
	if sum := scrapeOpen(servers); sum != 33300 || servers[1].ConnsOpen != 16650 {
		t.Errorf("sum %d, servers %+v", sum, servers)
	}
	servers = append(servers, Server{Metrics: "http://127.0.0.1:1/metrics"})
	if sum := scrapeOpen(servers); sum != -1 || servers[2].ConnsOpen != -1 {
		t.Errorf("a failed scrape: sum %d, servers %+v", sum, servers)
	}
}

func TestSampleSelf(t *testing.T) {
	s, err := sampleProc(os.Getpid())
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	if !s.taken() || s.Threads < 1 || s.CPUS < 0 {
		t.Errorf("sample of self %+v", s)
	}
	m, err := sampleMachine()
	if err != nil || m.BusyS <= 0 || m.MemAvailable <= 0 || m.FilesOpen <= 0 {
		t.Errorf("machine %+v, %v", m, err)
	}
}

// TestRunRefusesBeforeStarting checks that a plan over the limits is
// refused before anything is built or started.
func TestRunRefusesBeforeStarting(t *testing.T) {
	res, err := Run(context.Background(), Options{Root: t.TempDir(), Conns: 1_000_000, Servers: 1})
	if !errors.Is(err, ErrPlan) || res != nil {
		t.Errorf("Run: %v, %v; want ErrPlan and no result", res, err)
	}
}

// TestSmallRun runs the whole demonstration at a small scale for both
// models: real server and generator processes, gates, /proc and /metrics,
// and every process stopped at the end.
func TestSmallRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	if _, err := readLimits(Options{Conns: 1}); err != nil {
		t.Skipf("no Linux /proc here: %v", err)
	}
	root, _ := filepath.Abs("../..")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var progress strings.Builder
	res, err := Run(ctx, Options{Root: root, Conns: 50, Servers: 2, Generators: 2, Sources: 1,
		Hold: 100 * time.Millisecond, Ramp: 5000, Progress: &progress})
	if err != nil {
		t.Fatalf("run: %v\n%s", err, progress.String())
	}
	t.Log("\n" + progress.String())
	if len(res.Models) != 2 || res.Models[0].Model != "eventloop" || res.Models[1].Model != "goroutine" {
		t.Fatalf("models %+v", res.Models)
	}
	for _, m := range res.Models {
		tt := m.Totals
		if !m.OK || m.Failed != "" || tt.ConnsAsked != 50 || tt.ConnsHeld != 50 || tt.ConnsAtHold != 50 || tt.Failures != 0 {
			t.Errorf("%s: ok %v, failed %q, totals %+v", m.Model, m.OK, m.Failed, tt)
		}
		// Each server counts its own; the kernel spread the 50 between them.
		if tt.ServerConnsOpen != 50 {
			t.Errorf("%s: the servers counted %d open, want 50", m.Model, tt.ServerConnsOpen)
		}
		if tt.ServerRSSBaseline <= 0 || tt.ServerRSSEnd <= 0 || tt.ServerCPUHoldS < 0 || m.HoldS <= 0 {
			t.Errorf("%s: implausible totals %+v, hold %v s", m.Model, tt, m.HoldS)
		}
		for i, s := range m.Servers {
			if !s.Baseline.taken() || !s.HoldStart.taken() || !s.HoldEnd.taken() || !s.Final.taken() || s.ExitCode != 0 {
				t.Errorf("%s server %d: %+v", m.Model, i+1, s)
			}
			if !gone(s.PID) {
				t.Errorf("%s server %d (pid %d) still runs", m.Model, i+1, s.PID)
			}
		}
		sources := map[string]bool{}
		for i, g := range m.Generators {
			if g.Summary == nil || !g.Summary.OK || g.Summary.ConnsHeld != g.Conns || g.ExitCode != 0 || g.Summary.HoldS <= 0 {
				t.Errorf("%s generator %d: %+v, summary %+v", m.Model, i+1, g, g.Summary)
			}
			if g.Summary != nil {
				sources[g.Summary.FirstSource] = true
			}
			if !gone(g.PID) {
				t.Errorf("%s generator %d (pid %d) still runs", m.Model, i+1, g.PID)
			}
		}
		if !sources["127.0.0.1"] || !sources["127.0.0.2"] {
			t.Errorf("%s: generators' first sources %v, want 127.0.0.1 and 127.0.0.2", m.Model, sources)
		}
	}
	if res.Limits.FDHard == 0 || res.Env.Cores == 0 || res.Plan.Conns != 50 || len(res.Plan.ServerArgs) == 0 {
		t.Errorf("result header: limits %+v, env %+v, plan %+v", res.Limits, res.Env, res.Plan)
	}
	var md strings.Builder
	if err := res.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# 50 idle connections, eventloop and goroutine", "| eventloop | 50 / 50 | 0 |", "| goroutine | 50 / 50 | 0 |", "## Limits"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}
}

// gone reports whether no process has pid (the driver reaped it).
func gone(pid int) bool { return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) }

// TestMarkdownFailed checks that a failed model says so, with its reason
// and its errors by kind.
func TestMarkdownFailed(t *testing.T) {
	res := &Result{Plan: Plan{Conns: 100, Servers: 1, Generators: 1, SourcesPerGenerator: 1}, Limits: limits20k,
		Models: []Model{{Model: "goroutine", Failed: "connecting: generator 1 exited", Totals: Totals{
			ConnsAsked: 100, ConnsHeld: 85, Failures: 15, Errors: map[string]uint64{"timeout": 15}}}}}
	var b strings.Builder
	if err := res.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| goroutine | 85 / 100 **FAILED** | 15 |", "goroutine stopped early: connecting: generator 1 exited",
		"goroutine failed connections by kind: timeout 15"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, b.String())
		}
	}
}

// TestInterrupted cancels a run during its hour-long hold: Run returns at
// once with ErrInterrupted, the model is marked failed, and every process
// it started is gone.
func TestInterrupted(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	if _, err := readLimits(Options{Conns: 1}); err != nil {
		t.Skipf("no Linux /proc here: %v", err)
	}
	root, _ := filepath.Abs("../..")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	progress := &cancelOn{text: "; holding", cancel: cancel}
	res, err := Run(ctx, Options{Root: root, Models: []string{"eventloop"}, Conns: 20, Servers: 1, Generators: 1, Sources: 1,
		Hold: time.Hour, Progress: progress})
	if !errors.Is(err, ErrInterrupted) || res == nil || len(res.Models) != 1 {
		t.Fatalf("Run: %v, %+v; want ErrInterrupted and the model begun\n%s", err, res, &progress.b)
	}
	m := res.Models[0]
	if m.OK || !strings.Contains(m.Failed, "interrupted") || m.Totals.ConnsAtHold != 20 {
		t.Errorf("ok %v, failed %q, totals %+v", m.OK, m.Failed, m.Totals)
	}
	for _, pid := range []int{m.Servers[0].PID, m.Generators[0].PID} {
		if !gone(pid) {
			t.Errorf("pid %d still runs", pid)
		}
	}
}

// cancelOn is a progress writer that cancels the run when a line with text
// goes by.
type cancelOn struct {
	text   string
	cancel func()
	b      strings.Builder
}

func (c *cancelOn) Write(p []byte) (int, error) {
	if strings.Contains(string(p), c.text) {
		c.cancel()
	}
	return c.b.Write(p)
}
