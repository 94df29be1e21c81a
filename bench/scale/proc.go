package scale

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/procfs"
)

// child is a process the driver started: a server or a generator. It runs
// in a process group of its own, so that a Ctrl-C at the terminal reaches
// only the driver, which then stops it, by its PID and nothing wider.
type child struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser // generators: opens their gates
	lines  chan []byte    // generators: their stdout, a line at a time
	tail   *tail          // the last lines of stderr, for error messages
	exited chan struct{}
	err    error // Wait's, once exited is closed
}

// startChild runs bin with args. withIO gives the child a stdin pipe and
// hands its stdout to lines; otherwise both are /dev/null.
func startChild(name, bin string, withIO bool, args ...string) (*child, error) {
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c := &child{name: name, cmd: cmd, tail: &tail{}, exited: make(chan struct{})}
	cmd.Stderr = c.tail
	var stdout io.ReadCloser
	if withIO {
		var err error
		if c.stdin, err = cmd.StdinPipe(); err != nil {
			return nil, err
		}
		if stdout, err = cmd.StdoutPipe(); err != nil {
			return nil, err
		}
		c.lines = make(chan []byte, 16) // room for all a generator writes (two gate lines and its summary), so it never blocks
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("scale: start %s: %w", name, err)
	}
	go func() {
		if stdout != nil {
			sc := bufio.NewScanner(stdout)
			sc.Buffer(make([]byte, 64<<10), 4<<20)
			for sc.Scan() {
				c.lines <- bytes.Clone(sc.Bytes())
			}
			close(c.lines)
		}
		c.err = cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// line waits for the child's next stdout line.
func (c *child) line(deadline <-chan time.Time, cancelled <-chan struct{}) ([]byte, error) {
	select {
	case l, ok := <-c.lines:
		if !ok {
			<-c.exited
			return nil, fmt.Errorf("%s exited (%v): %s", c.name, c.err, c.tail)
		}
		return l, nil
	case <-deadline:
		return nil, fmt.Errorf("%s: timed out: %s", c.name, c.tail)
	case <-cancelled:
		return nil, ErrInterrupted
	}
}

// stop asks the child to stop with SIGTERM and kills it if it has not
// exited within grace. It returns the exit status (-1 if killed by a
// signal).
func (c *child) stop(grace time.Duration) int {
	select {
	case <-c.exited:
	default:
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		t := time.NewTimer(grace)
		select {
		case <-c.exited:
		case <-t.C:
			_ = c.cmd.Process.Kill()
			<-c.exited
		}
		t.Stop()
	}
	return c.cmd.ProcessState.ExitCode()
}

// tail keeps the last few lines a child wrote to stderr.
type tail struct {
	mu    sync.Mutex
	lines []string
	part  []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.part = append(t.part, p...)
	for {
		i := bytes.IndexByte(t.part, '\n')
		if i < 0 {
			break
		}
		if len(t.lines) == 5 {
			t.lines = t.lines[1:]
		}
		t.lines = append(t.lines, string(t.part[:i]))
		t.part = t.part[i+1:]
	}
	if len(t.part) > 4<<10 { // a line without end: keep its start
		t.part = t.part[:4<<10]
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == 0 {
		return "(nothing on stderr)"
	}
	return strings.Join(t.lines, " | ")
}

// Sample is what /proc says of one process at one moment.
type Sample struct {
	RSS     int64   `json:"rss_bytes"` // resident set, as ps and the Prometheus process collector see it
	CPUS    float64 `json:"cpu_s"`     // user + system time since the process started, all threads
	Threads int     `json:"threads"`
}

// taken tells a Sample read from a live process (whose RSS is never 0) from
// one never taken.
func (s Sample) taken() bool { return s.RSS > 0 }

func sampleProc(pid int) (Sample, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return Sample{}, err
	}
	st, err := p.Stat()
	if err != nil {
		return Sample{}, err
	}
	return Sample{RSS: int64(st.ResidentMemory()), CPUS: st.CPUTime(), Threads: st.NumThreads}, nil
}

// Machine is what /proc says of the whole machine at one moment: how busy
// it was (other workers share these cores) and the kernel's sockets.
type Machine struct {
	BusyS        float64 `json:"busy_s"`        // non-idle CPU time of all CPUs since boot
	Load1        float64 `json:"load1"`         // 1-minute load average
	TCPInUse     int     `json:"tcp_inuse"`     // TCP sockets in use (both ends of every loopback connection)
	TCPTimeWait  int     `json:"tcp_timewait"`  // sockets in TIME_WAIT
	TCPMemBytes  int64   `json:"tcp_mem_bytes"` // kernel memory of TCP buffers (pages × page size)
	MemAvailable int64   `json:"mem_available"` // bytes
	SocketsUsed  int     `json:"sockets_used"`  // every socket of every family
	FilesOpen    int     `json:"files_open"`    // file handles allocated, system-wide
	at           time.Time
}

func sampleMachine() (Machine, error) {
	m := Machine{at: time.Now()}
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return m, err
	}
	st, err := fs.Stat()
	if err != nil {
		return m, err
	}
	c := st.CPUTotal
	m.BusyS = c.User + c.Nice + c.System + c.IRQ + c.SoftIRQ + c.Steal
	if la, err := fs.LoadAvg(); err == nil {
		m.Load1 = la.Load1
	}
	if ss, err := fs.NetSockstat(); err == nil {
		if ss.Used != nil {
			m.SocketsUsed = *ss.Used
		}
		for _, p := range ss.Protocols {
			if p.Protocol != "TCP" {
				continue
			}
			m.TCPInUse = p.InUse
			if p.TW != nil {
				m.TCPTimeWait = *p.TW
			}
			if p.Mem != nil {
				m.TCPMemBytes = int64(*p.Mem) * int64(os.Getpagesize())
			}
		}
	}
	if mi, err := fs.Meminfo(); err == nil && mi.MemAvailableBytes != nil {
		m.MemAvailable = int64(*mi.MemAvailableBytes)
	}
	if b, err := os.ReadFile("/proc/sys/fs/file-nr"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			m.FilesOpen, _ = strconv.Atoi(f[0])
		}
	}
	return m, nil
}

// freePorts finds n distinct free TCP ports on 127.0.0.1. They are free
// when it returns; a process that takes one before the server does makes
// that server fail to start, which the driver reports.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, n)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// readInts reads the whitespace-separated integers of a /proc/sys file.
func readInts(path string) ([]int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New(path + ": empty")
	}
	return out, nil
}

// awaitReady polls a server's /readyz until it answers 200, the server
// exits, or readyTimeout or ctx ends.
func awaitReady(ctx context.Context, s *child, url string) error {
	client := http.Client{Timeout: time.Second}
	deadline := time.Now().Add(readyTimeout)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.exited:
			return fmt.Errorf("%s exited before it was ready (%v): %s", s.name, s.err, s.tail)
		case <-ctx.Done():
			return ErrInterrupted
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within %v: %s", s.name, readyTimeout, s.tail)
		}
	}
}

// scrapeOpen reads echoloop_connections_open from every server into its
// ConnsOpen and returns the sum, or -1 if any scrape failed.
func scrapeOpen(servers []Server) int {
	sum := 0
	for i := range servers {
		n := scrapeGauge(servers[i].Metrics, "echoloop_connections_open")
		servers[i].ConnsOpen = n
		if n < 0 || sum < 0 {
			sum = -1
		} else {
			sum += n
		}
	}
	return sum
}

// scrapeGauge reads one unlabelled-or-labelled gauge from a Prometheus text
// page; -1 if it cannot.
func scrapeGauge(url, name string) int {
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			return int(v)
		}
	}
	return -1
}
