// Package harness runs echobench's comparison matrix: every server
// configuration as its own process, built from this repository (or, for
// the textbook pair, a Python script of bench/textbook), pinned to the
// server CPUs with taskset, loaded by echoload pinned to the other CPUs,
// with the server's CPU time, memory, threads and context switches read
// from /proc over exactly the generator's measured window. Every reply is
// verified by the generator; a mismatch anywhere fails the run.
//
// Each cell gets a fresh server process, so no cell inherits another's
// memory or warm caches. Repetitions are the outer loop and servers the
// inner one, so repetition k of two servers ran within seconds of each other
// and their ratio is a same-run ratio.
package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"echoloop/bench/results"
	"echoloop/bench/textbook"
)

// ErrMismatch means the generator saw replies that were not what was sent.
var ErrMismatch = errors.New("harness: replies did not match what was sent")

// Options configures a run.
type Options struct {
	Profile    Profile
	Root       string // the repository to build from; must hold go.mod
	ServerCPUs string // taskset CPU list for servers, e.g. "0"
	LoadCPUs   string // taskset CPU list for the generator, e.g. "1"
	Label      string
	Command    string   // the command line, recorded for reproduction
	Progress   Progress // told of each step and cell; nil: nobody is

	// Baseline is a git revision of Root to measure beside the tree: its
	// echoloop is built too, and runs as "eventloop-1@<Baseline>" next to
	// eventloop-1, so a change's cost is measured in one run, the two
	// interleaved like any two servers. Empty means none.
	Baseline string
}

type harness struct {
	opts                   Options
	bins                   binaries
	python                 textbook.Python // runs the textbook servers, if the run has any
	serverCores, loadCores int
	progress               Progress
	gomaxprocs             map[string]int // by server name, as the servers logged it
	baseTCPMem             int64          // kernel TCP pages in use when the run began
	unsettled              int            // cells started before the kernel settled
}

type binaries struct{ echoloop, echoload, baseline string }

// Run builds the binaries, measures the profile's matrix and returns the
// record. If ctx ends, the cells measured so far are returned with a note
// and ErrInterrupted. A run with any mismatch returns ErrMismatch as well as
// its record.
func Run(ctx context.Context, opts Options) (*results.Run, error) {
	h := &harness{opts: opts, progress: opts.Progress, gomaxprocs: map[string]int{}}
	if h.progress == nil {
		h.progress = Lines(io.Discard)
	}
	var err error
	if h.serverCores, err = countCPUs(opts.ServerCPUs); err != nil {
		return nil, fmt.Errorf("harness: server CPUs: %w", err)
	}
	if h.loadCores, err = countCPUs(opts.LoadCPUs); err != nil {
		return nil, fmt.Errorf("harness: load CPUs: %w", err)
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		return nil, fmt.Errorf("harness: taskset (util-linux) is needed to pin processes: %w", err)
	}
	dir, err := os.MkdirTemp("", "echobench-bin-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	h.progress.Note("building echoloop and echoload from " + opts.Root)
	if h.bins, err = build(ctx, opts.Root, dir); err != nil {
		return nil, err
	}

	run := &results.Run{
		Schema: results.Schema, Label: opts.Label, Profile: opts.Profile.Name, Command: opts.Command,
		Started: time.Now().UTC(), Env: environment(opts),
	}
	asked := opts.Profile
	if slices.ContainsFunc(asked.Servers, isTextbook) {
		if h.python, err = textbook.FindPython(ctx); err != nil {
			var note string
			asked, note = dropTextbook(asked, err)
			run.Notes = append(run.Notes, note)
			h.progress.Note(note)
		} else {
			run.Env.PythonVersion = h.python.Version
		}
	}
	if opts.Baseline != "" {
		h.progress.Note("building echoloop from " + opts.Baseline)
		if h.bins.baseline, err = buildAt(ctx, opts.Root, opts.Baseline, dir); err != nil {
			return nil, err
		}
		asked.Servers = append(slices.Clone(asked.Servers), results.Server{
			Name: "eventloop-1@" + opts.Baseline, Model: "eventloop", Loops: 1, Build: opts.Baseline,
		})
	}
	if len(asked.Servers) == 0 {
		return nil, fmt.Errorf("harness: no server left to run: %s", strings.Join(run.Notes, "; "))
	}
	most := maxConns(run.Env.FDLimit)
	p := asked.resolve(most)
	run.Notes = append(run.Notes, fdNote(run.Env.FDLimit, most, asked, p))
	run.Servers = p.Servers
	if st, err := readTCPState(); err == nil {
		h.baseTCPMem = st.mem
	}
	h.progress.Start(p.cells())

	err = h.measure(ctx, p, run)
	run.Finished = time.Now().UTC()
	run.Notes = append(run.Notes, "before each cell the harness waits for the kernel to finish with the previous cell's sockets (no orphans, TCP memory back to its level at the start), and each repetition starts with a different server, so no server always follows a heavy cell")
	if h.unsettled > 0 {
		run.Notes = append(run.Notes, fmt.Sprintf("%d cells started after %v without the kernel settling", h.unsettled, settleLimit))
	}
	for i, s := range run.Servers {
		if s.GOMAXPROCS == 0 {
			run.Servers[i].GOMAXPROCS = h.gomaxprocs[s.Name] // what the default came to
		}
	}
	if err != nil {
		run.Notes = append(run.Notes, "interrupted: the figures cover the cells measured before it")
		return run, err
	}
	var bad uint64
	for _, c := range run.Cells {
		bad += c.Mismatches
	}
	if bad > 0 {
		return run, fmt.Errorf("%w: %d mismatches", ErrMismatch, bad)
	}
	return run, nil
}

func (h *harness) measure(ctx context.Context, p Profile, run *results.Run) error {
	for rep := 1; rep <= p.Reps; rep++ {
		capacity := map[string]float64{} // frames/s of the open-loop shape, this rep
		// Rotate the order each repetition: whichever server runs first
		// after a shape change meets the kernel in another state.
		order := slices.Concat(p.Servers[(rep-1)%len(p.Servers):], p.Servers[:(rep-1)%len(p.Servers)])
		for _, shape := range p.Closed {
			for _, spec := range order {
				if err := h.ready(ctx); err != nil {
					return err
				}
				cell := h.runLoad(ctx, spec, results.Cell{Server: spec.Name, Kind: results.Closed,
					Conns: shape.Conns, Size: shape.Size, Pipeline: shape.Pipeline, Rep: rep, Goroutines: -1})
				run.Cells = append(run.Cells, cell)
				if shape == p.Open && cell.Failed == "" {
					capacity[spec.Name] = cell.FramesPerS
				}
				h.report(cell.Server, "closed "+shape.String(), rep, cell.Failed, cellLine(cell))
			}
		}
		for _, frac := range p.Rates {
			for _, spec := range order {
				if err := h.ready(ctx); err != nil {
					return err
				}
				cell := results.Cell{Server: spec.Name, Kind: results.Open, Conns: p.Open.Conns, Size: p.Open.Size,
					Pipeline: p.Open.Pipeline, RateFraction: frac, Rep: rep, Goroutines: -1}
				if c, ok := capacity[spec.Name]; ok && c > 0 {
					cell.RateOffered = frac * c
					cell = h.runLoad(ctx, spec, cell)
				} else {
					cell.Failed = "no closed-loop capacity measured for " + p.Open.String()
				}
				run.Cells = append(run.Cells, cell)
				h.report(cell.Server, fmt.Sprintf("open %.0f%% of capacity", 100*frac), rep, cell.Failed, cellLine(cell))
			}
		}
		for _, conns := range p.Idle {
			for _, spec := range order {
				if err := h.ready(ctx); err != nil {
					return err
				}
				cell := h.runIdle(ctx, spec, conns, rep)
				run.Idle = append(run.Idle, cell)
				h.report(cell.Server, "idle conns="+strconv.Itoa(conns), rep, cell.Failed,
					fmt.Sprintf("%d open, %d through the last round trip, %.0f bytes/conn", cell.Open, cell.Held, cell.BytesPerConn))
			}
		}
	}
	return nil
}

// ready waits for the kernel to settle before a cell, and says whether the
// run may go on.
func (h *harness) ready(ctx context.Context) error {
	if ctx.Err() != nil {
		return ErrInterrupted
	}
	if _, ok := h.settle(ctx); !ok {
		if ctx.Err() != nil {
			return ErrInterrupted
		}
		h.unsettled++
	}
	return nil
}

func (h *harness) report(server, what string, rep int, failed, line string) {
	if failed != "" {
		line = "FAILED: " + failed
	}
	h.progress.Cell(fmt.Sprintf("rep %d %-14s %-40s %s", rep, server, what, line))
}

func cellLine(c results.Cell) string {
	s := fmt.Sprintf("%.1fk frames/s, p99 %.0f µs, server %.2f cores %.1f µs/frame, generator %.2f cores",
		c.FramesPerS/1000, c.Latency.P99, c.ServerCPU, c.CPUPerFrameUS, c.LoadCPU)
	if c.Mismatches > 0 {
		s += fmt.Sprintf(", %d MISMATCHES", c.Mismatches)
	}
	return s
}

// fdNote says what the descriptor limit allowed one process and what the
// profile, asked before the limit was applied and resolved after, used of
// it.
func fdNote(limit uint64, most int, asked, resolved Profile) string {
	note := fmt.Sprintf("the fd limit is %d per process, room for %d connections with a thousand descriptors to spare; the largest cells of this profile use %d", limit, most, resolved.largest())
	counts := asked.counts()
	if slices.Contains(counts, MaxConns) {
		note += ", as many as the limit allows"
	}
	if slices.ContainsFunc(counts, func(c int) bool { return c > most }) {
		note += fmt.Sprintf("; cells that asked for more ran with %d", most)
	}
	return note
}

func isTextbook(s results.Server) bool { return textbook.IsModel(s.Model) }

// dropTextbook takes the textbook servers out of p, for why, and returns
// the note that says so.
func dropTextbook(p Profile, why error) (Profile, string) {
	var dropped []string
	p.Servers = slices.DeleteFunc(slices.Clone(p.Servers), func(s results.Server) bool {
		if isTextbook(s) {
			dropped = append(dropped, s.Name)
			return true
		}
		return false
	})
	return p, fmt.Sprintf("the textbook servers (%s) were left out of this run: %v", strings.Join(dropped, ", "), why)
}

// maxConns is the "maximum" cell for a descriptor limit: what one process
// can hold with a thousand descriptors to spare, in thousands.
func maxConns(fdLimit uint64) int {
	return max(int(fdLimit)-1000, 1000) / 1000 * 1000
}

// build compiles the server and the generator into dir.
func build(ctx context.Context, root, dir string) (binaries, error) {
	b := binaries{echoloop: filepath.Join(dir, "echoloop"), echoload: filepath.Join(dir, "echoload")}
	for bin, pkg := range map[string]string{b.echoloop: "./cmd/echoloop", b.echoload: "./cmd/echoload"} {
		if err := GoBuild(ctx, root, pkg, bin); err != nil {
			return b, err
		}
	}
	return b, nil
}

// GoBuild compiles the command pkg, as go build names it from the folder
// dir, into the file bin.
func GoBuild(ctx context.Context, dir, pkg, bin string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("harness: go build %s: %v\n%s", pkg, err, out)
	}
	return nil
}

// buildAt compiles echoloop as it was at git revision rev of root, from an
// export of that revision, into dir.
func buildAt(ctx context.Context, root, rev, dir string) (string, error) {
	src, err := os.MkdirTemp("", "echobench-baseline-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(src)
	archive := exec.CommandContext(ctx, "git", "-C", root, "archive", "--format=tar", rev)
	untar := exec.CommandContext(ctx, "tar", "-x", "-C", src)
	if untar.Stdin, err = archive.StdoutPipe(); err != nil {
		return "", err
	}
	var aerr bytes.Buffer
	archive.Stderr = &aerr
	if err := archive.Start(); err != nil {
		return "", fmt.Errorf("harness: git archive %s: %w", rev, err)
	}
	if out, err := untar.CombinedOutput(); err != nil {
		_ = archive.Wait()
		return "", fmt.Errorf("harness: export %s: %v\n%s%s", rev, err, out, aerr.Bytes())
	}
	if err := archive.Wait(); err != nil {
		return "", fmt.Errorf("harness: git archive %s: %v\n%s", rev, err, aerr.Bytes())
	}
	bin := filepath.Join(dir, "echoloop-baseline")
	if err := GoBuild(ctx, src, "./cmd/echoloop", bin); err != nil {
		return "", fmt.Errorf("at %s: %w", rev, err)
	}
	return bin, nil
}

// environment describes this machine and tree.
func environment(opts Options) results.Env {
	env := results.Env{
		CPUModel: cpuModel(), Cores: runtime.NumCPU(), GoVersion: runtime.Version(),
		ServerCPUs: opts.ServerCPUs, LoadCPUs: opts.LoadCPUs,
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		env.Kernel = strings.TrimSpace(string(b))
	}
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil {
		env.FDLimit = rl.Max // the children raise their soft limit to it
	}
	if out, err := exec.Command("git", "-C", opts.Root, "rev-parse", "HEAD").Output(); err == nil {
		env.Commit = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("git", "-C", opts.Root, "status", "--porcelain").Output(); err == nil {
		env.Dirty = len(strings.TrimSpace(string(out))) > 0
	}
	return env
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// countCPUs counts the CPUs in a taskset list such as "0", "1-3" or "0,2".
func countCPUs(list string) (int, error) {
	n := 0
	for part := range strings.SplitSeq(list, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return 0, fmt.Errorf("bad CPU list %q", list)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return 0, fmt.Errorf("bad CPU list %q", list)
			}
		}
		n += b - a + 1
	}
	return n, nil
}
