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
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
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

// server is a running server process.
type server struct {
	*child
	addr, metrics string // metrics is empty for the textbook servers
	gomaxprocs    int    // as it logged at start; 0 for the textbook servers
}

// startServer runs spec's server pinned to the server CPUs and waits until
// it listens: echoloop for the Go models, the interpreter with the script
// for the textbook ones. Both log the same "listening" line.
func (h *harness) startServer(ctx context.Context, spec results.Server) (*server, error) {
	bin, args, env := h.serverCommand(spec)
	c, err := startChild(bin, h.opts.ServerCPUs, env, nil, args...)
	if err != nil {
		return nil, err
	}
	rec, err := c.await(ctx, "listening", 15*time.Second)
	if err != nil {
		c.stop(time.Second)
		return nil, fmt.Errorf("server %s: %w", spec.Name, err)
	}
	addr, _ := rec["addr"].(string)
	metrics, _ := rec["metrics"].(string)
	procs, _ := rec["gomaxprocs"].(float64)
	return &server{child: c, addr: addr, metrics: metrics, gomaxprocs: int(procs)}, nil
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

// goroutines scrapes the server's go_goroutines gauge; -1 if it cannot,
// or if the server has no metrics.
func (s *server) goroutines() int {
	if s.metrics == "" {
		return -1
	}
	client := http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get(s.metrics)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			if n, err := strconv.ParseFloat(v, 64); err == nil {
				return int(n)
			}
		}
	}
	return -1
}

// ErrInterrupted marks a run cut short by its context.
var ErrInterrupted = errors.New("harness: interrupted")
