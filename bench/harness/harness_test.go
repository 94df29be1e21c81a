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
	"echoloop/bench/textbook"

	"echoloop/bench/servertest"
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

// TestFDNote checks that the note on the fd limit speaks of the cells the
// profile ran, not of the largest any profile could.
func TestFDNote(t *testing.T) {
	quick, full := Profiles(2)["quick"], Profiles(2)["full"]
	tests := []struct {
		name  string
		limit uint64
		p     Profile
		want  string
	}{
		{"quick", 20000, quick, "the fd limit is 20000 per process, room for 19000 connections with a thousand descriptors to spare; the largest cells of this profile use 200"},
		{"full", 20000, full, "the largest cells of this profile use 19000, as many as the limit allows"},
		{"full, low limit", 4096, full, "room for 3000 connections with a thousand descriptors to spare; the largest cells of this profile use 3000, as many as the limit allows; cells that asked for more ran with 3000"},
	}
	for _, tt := range tests {
		most := maxConns(tt.limit)
		got := fdNote(tt.limit, most, tt.p, tt.p.resolve(most))
		if !strings.Contains(got, tt.want) {
			t.Errorf("%s: %q, want it to contain %q", tt.name, got, tt.want)
		}
		if tt.name == "quick" && strings.Contains(got, "as many") {
			t.Errorf("quick: %q speaks of the limit's maximum", got)
		}
	}
}

func TestDropTextbook(t *testing.T) {
	p, note := dropTextbook(Profiles(2)["quick"], textbook.ErrNoPython)
	if got := strings.Join(names(p.Servers), ","); got != "eventloop-1,goroutine-1,gnet-plain-1" {
		t.Errorf("servers left: %s", got)
	}
	for _, want := range []string{"python-select, python-threads", "left out", "no python3"} {
		if !strings.Contains(note, want) {
			t.Errorf("note %q lacks %q", note, want)
		}
	}
	if len(Profiles(2)["quick"].Servers) != 5 {
		t.Error("dropTextbook changed the profile it was given")
	}
}

func names(ss []results.Server) []string {
	var ns []string
	for _, s := range ss {
		ns = append(ns, s.Name)
	}
	return ns
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
// real generator, /proc sampling, pinning, and the textbook servers when
// there is a python3. It is the CI smoke test of the harness; the report
// has its own tests.
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
		Servers: append([]results.Server{
			{Name: "eventloop-1", Model: "eventloop", Loops: 1},
			{Name: "goroutine-1", Model: "goroutine", GOMAXPROCS: 1},
		}, textbookServers...),
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
	servers := len(run.Servers)
	if _, err := textbook.FindPython(ctx); err == nil {
		if servers != 4 || run.Env.PythonVersion == "" {
			t.Errorf("%d servers, Python %q: the textbook servers did not run", servers, run.Env.PythonVersion)
		}
	} else if servers != 2 || !strings.Contains(strings.Join(run.Notes, " "), "left out") {
		t.Errorf("without python3: %d servers, notes %q", servers, run.Notes)
	}
	if len(run.Cells) != 2*servers || len(run.Idle) != servers {
		t.Fatalf("%d load cells and %d idle cells, want %d and %d", len(run.Cells), len(run.Idle), 2*servers, servers)
	}
	for _, c := range run.Cells {
		if c.Failed != "" {
			t.Errorf("%s %s: failed: %s", c.Server, c.Kind, c.Failed)
			continue
		}
		// CPU figures may be 0: /proc counts whole 10ms ticks, and a server
		// sharing its core with a busy machine can use less than one in a
		// 400ms cell. TestSampleProcSelf checks the sampling itself.
		// The textbook servers report no goroutines.
		python := strings.HasPrefix(c.Server, "python-")
		if c.FramesPerS <= 0 || c.ServerCPU < 0 || c.CPUPerFrameUS < 0 || c.RSS <= 0 || c.Threads <= 0 ||
			(c.Goroutines <= 0) != python || c.Mismatches != 0 || c.Bottleneck == "" || c.ConnsEstablished != 20 ||
			c.VolCtxSwPerS < 0 || c.InvolCtxSwPerS < 0 {
			t.Errorf("implausible cell %+v", c)
		}
		if c.Kind == results.Open && (c.RateOffered <= 0 || c.RateFraction != 0.5) {
			t.Errorf("open-loop cell without its rate: %+v", c)
		}
	}
	for _, c := range run.Idle {
		// The thread per client holds a thread for each connection.
		if c.Failed != "" || c.Open != 100 || c.Held != 100 || c.HeldRSS <= 0 || c.BaselineRSS <= 0 || c.Server == "python-threads" && c.Threads <= 100 {
			t.Errorf("implausible idle cell %+v", c)
		}
	}
	if run.Env.Cores == 0 || run.Env.Kernel == "" || run.Env.FDLimit == 0 || run.Env.Commit == "" {
		t.Errorf("environment incomplete: %+v", run.Env)
	}
}

// TestInterruptedCell stops a cell as it starts: whichever step notices
// the stop, the cell says it was interrupted ("load generator: context
// canceled" told the reader nothing of the sort), and no process is left.
func TestInterruptedCell(t *testing.T) {
	if _, err := exec.LookPath("taskset"); err != nil {
		t.Skip("no taskset on this machine")
	}
	py, err := textbook.FindPython(context.Background())
	if err != nil {
		t.Skip(err) // a textbook server needs nothing built
	}
	root, _ := filepath.Abs("../..")
	h := &harness{opts: Options{Root: root, ServerCPUs: "0", LoadCPUs: "0"}, python: py, gomaxprocs: map[string]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cell := h.runLoad(ctx, textbookServers[0], results.Cell{Server: textbookServers[0].Name, Kind: results.Closed, Conns: 1})
	if cell.Failed != results.Interrupted {
		t.Errorf("load cell failed with %q, want %q", cell.Failed, results.Interrupted)
	}
	idle := h.runIdle(ctx, textbookServers[0], 1, 1)
	if idle.Failed != results.Interrupted {
		t.Errorf("idle cell failed with %q, want %q", idle.Failed, results.Interrupted)
	}
	if kids := servertest.Children(); len(kids) > 0 {
		t.Errorf("processes left running: %v", kids)
	}
}

// TestBuildAt builds echoloop as it is at HEAD from an export of the
// revision, and refuses a revision that does not exist, naming it.
func TestBuildAt(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	root, _ := filepath.Abs("../..")
	if err := exec.Command("git", "-C", root, "rev-parse", "--verify", "HEAD").Run(); err != nil {
		t.Skip("not a git checkout")
	}
	dir := t.TempDir()
	bin, err := buildAt(context.Background(), root, "HEAD", dir)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-h").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Usage: echoloop") {
		t.Errorf("the baseline binary's -h: %v\n%s", err, out)
	}
	if _, err := buildAt(context.Background(), root, "no-such-revision", dir); err == nil || !strings.Contains(err.Error(), "no-such-revision") {
		t.Errorf("a bad revision: %v, want an error naming it", err)
	}
}
