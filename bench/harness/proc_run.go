package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"echoloop/bench/results"
	"echoloop/bench/textbook"
)

// child is a process the harness started: a server or a load generator,
// pinned with taskset, in a process group of its own so that a Ctrl-C at
// the terminal reaches only the harness, which then stops it.
type child struct {
	cmd    *exec.Cmd
	lines  chan map[string]any // its JSON log lines (stderr)
	tail   *tailBuffer         // its last stderr lines, for error messages
	exited chan struct{}
	err    error // Wait's error, once exited is closed
}

// startChild runs bin pinned to cpus. stdout may be nil.
func startChild(bin, cpus string, env []string, stdout io.Writer, args ...string) (*child, error) {
	cmd := exec.Command("taskset", append([]string{"-c", cpus, bin}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = stdout
	cmd.SysProcAttr = childAttr()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, lines: make(chan map[string]any, 64), tail: &tailBuffer{}, exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			c.tail.add(sc.Text())
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) == nil {
				select {
				case c.lines <- rec:
				default: // nobody waits for this line
				}
			}
		}
		c.err = cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// await waits for a log line with message msg and returns it.
func (c *child) await(ctx context.Context, msg string, timeout time.Duration) (map[string]any, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case rec := <-c.lines:
			if rec["message"] == msg {
				return rec, nil
			}
		case <-c.exited:
			return nil, fmt.Errorf("exited before logging %q: %v: %s", msg, c.err, c.tail)
		case <-t.C:
			return nil, fmt.Errorf("no %q within %v: %s", msg, timeout, c.tail)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// stop asks the process to stop with SIGTERM, and kills its group if it has
// not exited within grace.
func (c *child) stop(grace time.Duration) {
	select {
	case <-c.exited:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(grace):
		_ = syscall.Kill(-c.pid(), syscall.SIGKILL)
		<-c.exited
	}
}

// tailBuffer keeps the last lines a child wrote to stderr.
type tailBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (t *tailBuffer) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == 5 {
		t.lines = t.lines[1:]
	}
	t.lines = append(t.lines, line)
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, " | ")
}

// Server is a server process started by StartServer.
type Server struct {
	*child
	Addr       string // host:port it listens on
	Metrics    string // its /metrics URL; empty without -metrics and for the textbook servers
	GOMAXPROCS int    // as it logged at start; 0 for the textbook servers
}

// StartServer runs bin with args, pinned with taskset to cpus, in a process
// group of its own, with env added to this process's environment, and waits
// until it logs its "listening" line as JSON on stderr (echoloop with
// -log-format json logs it, and so do the textbook servers). Stop it with
// Stop.
func StartServer(ctx context.Context, bin, cpus string, env []string, args ...string) (*Server, error) {
	c, err := startChild(bin, cpus, env, nil, args...)
	if err != nil {
		return nil, err
	}
	rec, err := c.await(ctx, "listening", 15*time.Second)
	if err != nil {
		c.stop(time.Second)
		return nil, err
	}
	addr, _ := rec["addr"].(string)
	metrics, _ := rec["metrics"].(string)
	procs, _ := rec["gomaxprocs"].(float64)
	return &Server{child: c, Addr: addr, Metrics: metrics, GOMAXPROCS: int(procs)}, nil
}

// PID is the server's process id.
func (s *Server) PID() int { return s.pid() }

// Stop sends SIGTERM, kills the process group if the server has not exited
// within grace, and returns how it exited: nil for a clean stop (status 0).
func (s *Server) Stop(grace time.Duration) error {
	s.stop(grace)
	if s.err != nil {
		return fmt.Errorf("%w: %s", s.err, s.tail)
	}
	return nil
}

// Scrape reads the server's metrics: each sample's value by its series as
// written, name and labels, such as "go_goroutines" or
// `echoloop_closes_total{model="eventloop",reason="idle"}`.
func (s *Server) Scrape() (map[string]float64, error) {
	if s.Metrics == "" {
		return nil, errors.New("harness: the server serves no metrics")
	}
	client := http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get(s.Metrics)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("harness: %s: %s", s.Metrics, resp.Status)
	}
	samples := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		// A label value may hold spaces; the value is the last field
		// (the exposition has no timestamps).
		i := strings.LastIndexByte(line, ' ')
		if strings.HasPrefix(line, "#") || i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			samples[line[:i]] = v
		}
	}
	return samples, sc.Err()
}

// startServer runs spec's server pinned to the server CPUs and waits until
// it listens: echoloop for the Go models, the interpreter with the script
// for the textbook ones. Both log the same "listening" line.
func (h *harness) startServer(ctx context.Context, spec results.Server) (*Server, error) {
	bin, args, env := h.serverCommand(spec)
	s, err := StartServer(ctx, bin, h.opts.ServerCPUs, env, args...)
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", spec.Name, err)
	}
	return s, nil
}

// serverCommand is the program, arguments and extra environment that run
// spec.
func (h *harness) serverCommand(spec results.Server) (bin string, args, env []string) {
	if script, ok := textbook.Script(h.opts.Root, spec.Model); ok {
		return h.python.Path, append([]string{script, "127.0.0.1:0"}, spec.Args...), nil
	}
	args = []string{"-model", spec.Model, "-addr", "127.0.0.1:0", "-metrics", "127.0.0.1:0",
		"-log-format", "json", "-log-level", "info"}
	if spec.Model != "gnet-plain" { // the reference echoes bytes, whatever their framing
		args = append(args, "-framing", framing)
	}
	if spec.Model != "goroutine" {
		args = append(args, "-loops", strconv.Itoa(max(spec.Loops, 1)))
	}
	args = append(args, spec.Args...)
	if spec.GOMAXPROCS > 0 {
		env = append(env, "GOMAXPROCS="+strconv.Itoa(spec.GOMAXPROCS))
	}
	if spec.Build != "" {
		return h.bins.baseline, args, env
	}
	return h.bins.echoloop, args, env
}

// goroutines is the server's go_goroutines gauge; -1 if it cannot be
// scraped, or if the server has no metrics.
func (s *Server) goroutines() int {
	samples, err := s.Scrape()
	if v, ok := samples["go_goroutines"]; err == nil && ok {
		return int(v)
	}
	return -1
}

// ErrInterrupted marks a run cut short by its context.
var ErrInterrupted = errors.New("harness: interrupted")
