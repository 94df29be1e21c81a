package harness

import (
	"context"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"echoloop/bench/results"
)

func TestCountCPUs(t *testing.T) {
	tests := []struct {
		in   string
		want int
		bad  bool
	}{{"0", 1, false}, {"1-3", 3, false}, {"0,2", 2, false}, {"0-1,3", 3, false}, {"", 0, true}, {"3-1", 0, true}, {"x", 0, true}}
	for _, tt := range tests {
		got, err := countCPUs(tt.in)
		if (err != nil) != tt.bad || got != tt.want {
			t.Errorf("countCPUs(%q) = %d, %v", tt.in, got, err)
		}
	}
}

func TestBottleneck(t *testing.T) {
	tests := []struct {
		server, gen float64
		want        string
	}{{0.97, 0.4, "server"}, {0.5, 0.95, "load generator"}, {0.99, 0.99, "both"}, {0.3, 0.3, "neither"}}
	for _, tt := range tests {
		if got := bottleneck(tt.server, 1, tt.gen, 1); got != tt.want {
			t.Errorf("bottleneck(%v, %v) = %q, want %q", tt.server, tt.gen, got, tt.want)
		}
	}
}

func TestMaxConns(t *testing.T) {
	for _, tt := range []struct {
		limit uint64
		want  int
	}{{20000, 19000}, {1024, 1000}, {65536, 64000}} {
		if got := maxConns(tt.limit); got != tt.want {
			t.Errorf("maxConns(%d) = %d, want %d", tt.limit, got, tt.want)
		}
	}
}

func TestProfilesResolve(t *testing.T) {
	p := Profiles(2)["full"].resolve(19000)
	last := p.Closed[4]
	if last.Conns != 19000 || p.Idle[len(p.Idle)-1] != 19000 {
		t.Errorf("MaxConns not resolved: %+v %v", last, p.Idle)
	}
	if _, err := Profiles(2)["full"].Filter("eventloop-1,nope"); err == nil || !strings.Contains(err.Error(), "eventloop-2") {
		t.Errorf("Filter with an unknown name: %v", err)
	}
}

// TestTinyRun runs a tiny matrix end to end: real server processes, the
// real generator, /proc sampling, pinning. It is the CI smoke test of the
// harness; the report has its own tests.
func TestTinyRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		t.Skip("no taskset on this machine")
	}
	if runtime.NumCPU() < 2 {
		t.Skip("needs two CPUs to pin the server and the generator apart")
	}
	root, _ := filepath.Abs("../..")
	p := Profile{
		Name: "tiny",
		Servers: []results.Server{
			{Name: "eventloop-1", Model: "eventloop", Loops: 1},
			{Name: "goroutine-1", Model: "goroutine", GOMAXPROCS: 1},
		},
		Closed: []Shape{{20, 64, 1}},
		Open:   Shape{20, 64, 1}, Rates: []float64{0.5},
		Idle: []int{100}, Reps: 1,
		Warmup: 100 * time.Millisecond, Duration: 400 * time.Millisecond, Settle: 100 * time.Millisecond,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var progress strings.Builder
	run, err := Run(ctx, Options{Profile: p, Root: root, ServerCPUs: "0", LoadCPUs: "1", Label: "tiny", Progress: Lines(&progress)})
	if err != nil {
		t.Fatalf("run: %v\n%s", err, progress.String())
	}
	t.Log("\n" + progress.String())
	if len(run.Cells) != 4 || len(run.Idle) != 2 {
		t.Fatalf("%d load cells and %d idle cells, want 4 and 2", len(run.Cells), len(run.Idle))
	}
	for _, c := range run.Cells {
		if c.Failed != "" {
			t.Errorf("%s %s: failed: %s", c.Server, c.Kind, c.Failed)
			continue
		}
		// CPU figures may be 0: /proc counts whole 10ms ticks, and a server
		// sharing its core with a busy machine can use less than one in a
		// 400ms cell. TestSampleProcSelf checks the sampling itself.
		if c.FramesPerS <= 0 || c.ServerCPU < 0 || c.CPUPerFrameUS < 0 || c.RSS <= 0 || c.Threads <= 0 ||
			c.Goroutines <= 0 || c.Mismatches != 0 || c.Bottleneck == "" || c.ConnsEstablished != 20 {
			t.Errorf("implausible cell %+v", c)
		}
		if c.Kind == results.Open && (c.RateOffered <= 0 || c.RateFraction != 0.5) {
			t.Errorf("open-loop cell without its rate: %+v", c)
		}
	}
	for _, c := range run.Idle {
		if c.Failed != "" || c.Held != 100 || c.HeldRSS <= 0 || c.BaselineRSS <= 0 {
			t.Errorf("implausible idle cell %+v", c)
		}
	}
	if run.Env.Cores == 0 || run.Env.Kernel == "" || run.Env.FDLimit == 0 || run.Env.Commit == "" {
		t.Errorf("environment incomplete: %+v", run.Env)
	}
}
