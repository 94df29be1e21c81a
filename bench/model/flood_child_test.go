package model_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"echoloop/bench/servertest"
	"echoloop/eventloop/frame"
)

// flooders are slow readers in a child process (this test binary again,
// with ECHOLOOP_FLOOD set; see floodConns): connections that write length
// frames as fast as they can and never read a reply, until the server
// closes them. The counters follow the child's report lines.
type flooders struct {
	stdin    io.WriteCloser
	dialed   atomic.Int64 // connections made
	gone     atomic.Int64 // connections ended, closed by the server or not
	lastGone atomic.Int64 // UnixNano of the last end
	open     atomic.Int64 // ended while still open: at the time limit
	failed   atomic.Value // string: the child's first error line
	done     chan struct{}
}

// startFlooders starts a child process that, on the command "go", opens n
// connections to addr and floods each with frames of size bytes until the
// server closes it or deadline passes. It is stopped when b ends; a child
// that could not dial, or left a connection open at the deadline, fails b.
func startFlooders(b *testing.B, addr net.Addr, n, size int, deadline time.Time) *flooders {
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), fmt.Sprintf("ECHOLOOP_FLOOD=%s %d %d %d", addr, n, size, deadline.UnixNano()))
	child.Stderr = os.Stderr
	stdin, err := child.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := child.Start(); err != nil {
		b.Fatal(err)
	}
	f := &flooders{stdin: stdin, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			word, rest, _ := strings.Cut(sc.Text(), " ")
			switch word {
			case "dialed":
				f.dialed.Add(1)
			case "gone":
				at, state, _ := strings.Cut(rest, " ")
				ns, _ := strconv.ParseInt(at, 10, 64)
				f.lastGone.Store(ns)
				if state == "open" {
					f.open.Add(1)
				}
				f.gone.Add(1)
			default:
				f.failed.CompareAndSwap(nil, sc.Text())
			}
		}
	}()
	b.Cleanup(func() {
		_ = stdin.Close() // stops the flooding
		<-f.done
		if err := child.Wait(); err != nil {
			b.Errorf("slow readers' process: %v", err)
		}
		if msg, ok := f.failed.Load().(string); ok {
			b.Errorf("slow readers' process: %s", msg)
		}
		if n := f.open.Load(); n > 0 {
			b.Errorf("%d slow readers were still open at the time limit", n)
		}
	})
	return f
}

// send writes one command line to the child.
func (f *flooders) send(cmd string) error {
	_, err := io.WriteString(f.stdin, cmd+"\n")
	return err
}

// floodConns is the child of startFlooders. spec is "addr n size
// deadline-unix-nanos". It waits for "go" on stdin, then dials n
// connections, printing "dialed" for each, and floods each (see
// floodUntilClosed) until the server closes it, printing "gone <unix-nanos>
// closed", or until the deadline or the end of stdin, printing "gone
// <unix-nanos> open"; a failed dial prints its error, then "gone
// <unix-nanos> failed". Other lines are errors.
func floodConns(spec string) int {
	var (
		addr          string
		n, size       int
		deadlineNanos int64
	)
	if _, err := fmt.Sscan(spec, &addr, &n, &size, &deadlineNanos); err != nil {
		fmt.Printf("bad ECHOLOOP_FLOOD %q: %v\n", spec, err)
		return 2
	}
	deadline := time.Unix(0, deadlineNanos)
	in := bufio.NewReader(os.Stdin)
	if line, _ := in.ReadString('\n'); line != "go\n" {
		return 0 // stopped before it started
	}
	stop := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, in)
		close(stop)
	}()
	var mu sync.Mutex // one report line at a time
	report := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Printf(format+"\n", args...)
	}
	flood := floodOf(frame.Length{}, size, 16)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			c, err := net.DialTimeout("tcp", addr, servertest.IOTimeout)
			if err != nil {
				report("dial: %v", err)
				report("gone %d failed", time.Now().UnixNano())
				return
			}
			defer c.Close()
			report("dialed")
			state := "open"
			if floodUntilClosed(c, flood, stop, deadline) {
				state = "closed"
			}
			report("gone %d %s", time.Now().UnixNano(), state)
		})
	}
	wg.Wait()
	return 0
}
