package main

import (
	"bufio"
	"context"
	"encoding/json"
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
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"echoloop/bench/load"
	"echoloop/bench/model"
	"echoloop/bench/servertest"
	"echoloop/eventloop/frame"
)

// The scale-out tests: several processes on one port (-reuseport), the
// health endpoints and the drain delay, and (haproxy_test.go) a real load
// balancer in front.

// proc is the echoloop command in a child process that keeps every JSON log
// line, for tests that look back at per-connection lines as well as wait
// for the next one. Unlike child it never drops a line.
type proc struct {
	cmd *exec.Cmd

	mu    sync.Mutex
	recs  []map[string]any
	grew  chan struct{} // closed and replaced at each new line, and when the log ends
	ended bool          // the log has ended: the process has exited

	exited chan struct{} // closed once the process has exited
	err    error         // its exit status, once exited is closed
}

// startProc runs the command with args at -log-level debug (a later
// -log-level wins) and kills it, if it is still running, when the test
// ends.
func startProc(t *testing.T, args ...string) *proc {
	t.Helper()
	p := &proc{
		cmd:    exec.Command(os.Args[0], append([]string{"-log-format", "json", "-log-level", "debug"}, args...)...),
		grew:   make(chan struct{}),
		exited: make(chan struct{}),
	}
	p.cmd.Env = append(os.Environ(), "ECHOLOOP_RUN_MAIN=1")
	out, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout, p.cmd.Stderr = w, w // as 2>&1: gnet's own logger writes to stdout
	err = p.cmd.Start()
	w.Close()
	if err != nil {
		out.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill() // no-op once it has exited
		<-p.exited
	})
	go func() {
		defer out.Close()
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) != nil {
				rec = map[string]any{"message": "(not json)", "text": sc.Text()}
			}
			p.mu.Lock()
			p.recs = append(p.recs, rec)
			close(p.grew)
			p.grew = make(chan struct{})
			p.mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, out)
		p.err = p.cmd.Wait()
		p.mu.Lock()
		p.ended = true
		close(p.grew)
		p.mu.Unlock()
		close(p.exited)
	}()
	return p
}

// await waits up to 30s for cond to hold over the log lines so far; what
// names the wait in the failure.
func (p *proc) await(t *testing.T, what string, cond func(recs []map[string]any) bool) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		p.mu.Lock()
		ok, grew, ended := cond(p.recs), p.grew, p.ended
		p.mu.Unlock()
		switch {
		case ok:
			return
		case ended:
			t.Fatalf("the process exited (%v) before %s; its warnings and errors: %v", p.err, what, p.trouble())
		}
		select {
		case <-grew:
		case <-timeout:
			t.Fatalf("not %s within 30s; warnings and errors: %v", what, p.trouble())
		}
	}
}

// waitLog waits for the first log line with message msg and returns it.
func (p *proc) waitLog(t *testing.T, msg string) map[string]any {
	t.Helper()
	var found map[string]any
	p.await(t, fmt.Sprintf("logged %q", msg), func(recs []map[string]any) bool {
		for _, rec := range recs {
			if rec["message"] == msg {
				found = rec
				return true
			}
		}
		return false
	})
	return found
}

// lines returns the log lines so far whose message is msg.
func (p *proc) lines(msg string) []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []map[string]any
	for _, rec := range p.recs {
		if rec["message"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// trouble returns the warnings and errors logged so far, each once with a
// count.
func (p *proc) trouble() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := map[string]int{}
	var order []string
	for _, rec := range p.recs {
		if lv := rec["level"]; lv == "warn" || lv == "error" || lv == "fatal" || rec["message"] == "(not json)" {
			key := fmt.Sprint(rec["level"], " ", rec["message"], " ", rec["error"], rec["text"])
			if n[key] == 0 {
				order = append(order, key)
			}
			n[key]++
		}
	}
	out := make([]string, len(order))
	for i, k := range order {
		out[i] = fmt.Sprintf("%s x%d", k, n[k])
	}
	return out
}

func (p *proc) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// waitExit waits up to 30s for the process to exit and checks it exited 0
// having logged no error.
func (p *proc) waitExit(t *testing.T) {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("still running 30s after it was asked to stop; warnings and errors: %v", p.trouble())
	}
	if p.err != nil {
		t.Fatalf("exit: %v, want status 0; warnings and errors: %v", p.err, p.trouble())
	}
	for _, line := range p.trouble() {
		if strings.HasPrefix(line, "error") || strings.HasPrefix(line, "fatal") {
			t.Errorf("logged: %s", line)
		}
	}
}

// stop sends SIGTERM, checks a clean exit and returns the "stopped" line.
func (p *proc) stop(t *testing.T) map[string]any {
	t.Helper()
	p.signal(t, syscall.SIGTERM)
	p.waitExit(t)
	return p.waitLog(t, "stopped")
}

// stopDelayed stops a process started with a long -drain-delay: SIGTERM,
// then once the delay has begun another, which cuts it short; it checks a
// clean exit and returns the "stopped" line.
func (p *proc) stopDelayed(t *testing.T) map[string]any {
	t.Helper()
	p.signal(t, syscall.SIGTERM)
	p.waitLog(t, "shutting down: not ready, still serving until the drain")
	return p.stop(t)
}

// httpGet returns the status and body of a GET of url.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

// metricsBase is the http://host:port of a process's -metrics server, read
// from its "listening" line.
func metricsBase(t *testing.T, start map[string]any) string {
	t.Helper()
	u, ok := start["metrics"].(string)
	if !ok {
		t.Fatalf("the start-up line has no metrics address: %v", start)
	}
	return strings.TrimSuffix(u, "/metrics")
}

// metric reads one unlabelled-by-variable echoloop counter or gauge (such as
// echoloop_connections_total) from base's /metrics.
func metric(t *testing.T, base, name string) int64 {
	t.Helper()
	code, body := httpGet(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: status %d", code)
	}
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, name+"{"); ok {
			_, v, _ := strings.Cut(rest, "} ")
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("/metrics: %q: %v", line, err)
			}
			return int64(f)
		}
	}
	t.Fatalf("/metrics has no %s:\n%s", name, body)
	return 0
}

// dialLine connects to a line-framed echo server; unlike dialLines it
// returns the error, for callers that count failures.
func dialLine(addr string) (*lineConn, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	return &lineConn{Conn: conn, r: bufio.NewReader(conn)}, nil
}

// echo sends msg as a line and checks the reply is the same line.
func (c *lineConn) echo(msg string) error {
	if _, err := c.Write([]byte(msg + "\n")); err != nil {
		return err
	}
	reply, err := c.r.ReadString('\n')
	if err != nil {
		return err
	}
	if reply != msg+"\n" {
		return fmt.Errorf("echo of %q came back as %q", msg, reply)
	}
	return nil
}

// echoOnce connects to addr, makes one round trip and closes: a new
// connection attempt, as a client behind a load balancer makes them.
func echoOnce(addr, msg string) error {
	c, err := dialLine(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.echo(msg)
}

// TestReusePortShare runs two processes with -reuseport on one port and
// 2,000 verified connections against it: the kernel spreads them, and each
// process serves at least a quarter. Then, with 200 connections held open
// and new ones coming all the while, one process gets SIGTERM: every frame
// its connections had sent is answered before they close (EOF), the other
// process's connections go on, and once the first has exited every new
// connection succeeds. How many attempts failed while the port changed hands
// is logged: Linux resets the handshakes queued on a closing SO_REUSEPORT
// listener unless net.ipv4.tcp_migrate_req is 1 (README, "Running it for
// real").
func TestReusePortShare(t *testing.T) {
	const conns, held, batch, dialers, enoughNew = 2000, 200, 20, 8, 200
	defer func() {
		if kids := servertest.Children(); len(kids) > 0 {
			t.Errorf("processes left running: %v", kids)
		}
	}()
	for _, m := range model.Names() {
		t.Run(m, func(t *testing.T) {
			a := startProc(t, "-model", m, "-addr", "127.0.0.1:0", "-reuseport", "-metrics", "127.0.0.1:0", "-log-level", "info")
			startA := a.waitLog(t, "listening")
			addr := startA["addr"].(string)
			b := startProc(t, "-model", m, "-addr", addr, "-reuseport", "-metrics", "127.0.0.1:0", "-log-level", "info")
			startB := b.waitLog(t, "listening")
			if startB["addr"] != addr {
				t.Fatalf("second process listens on %v, want %s", startB["addr"], addr)
			}
			metA, metB := metricsBase(t, startA), metricsBase(t, startB)

			sum, err := load.Run(context.Background(), load.Options{
				Addr: addr, Codec: frame.Line{}, Conns: conns, Requests: 10 * conns, Sources: 4,
			})
			if err != nil {
				t.Fatal(err)
			}
			if !sum.OK || sum.FramesVerified != 10*conns {
				t.Fatalf("load: ok %v, %d of %d frames verified, %d mismatches, errors %v",
					sum.OK, sum.FramesVerified, 10*conns, sum.Mismatches, sum.Errors)
			}
			totalA, totalB := metric(t, metA, "echoloop_connections_total"), metric(t, metB, "echoloop_connections_total")
			t.Logf("%d connections: %d served by the first process, %d by the second", conns, totalA, totalB)
			if totalA+totalB != conns || totalA < conns/4 || totalB < conns/4 {
				t.Errorf("shares %d and %d of %d connections: want all served, at least a quarter each", totalA, totalB, conns)
			}

			// Hold connections on both processes; wait until the servers
			// have counted the load's connections closed, so that what is
			// open is exactly what is held.
			hold := make([]*lineConn, held)
			for i := range hold {
				c, err := dialLine(addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if err := c.echo(fmt.Sprintf("held %d", i)); err != nil {
					t.Fatal(err)
				}
				hold[i] = c
			}
			var openA int64
			deadline := time.Now().Add(30 * time.Second)
			for {
				openA = metric(t, metA, "echoloop_connections_open")
				openB := metric(t, metB, "echoloop_connections_open")
				if openA+openB == held {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d + %d connections open, want the %d held", openA, openB, held)
				}
				time.Sleep(5 * time.Millisecond) // the servers count closes as they see them
			}

			// New connections all the while, from before the signal until
			// well after the first process has gone.
			const (
				serving = iota
				handover
				after
			)
			var phase atomic.Int32
			var mu sync.Mutex
			var okIn, failedIn [3]int
			var examples []string
			kinds := map[string]int{}
			var wg sync.WaitGroup
			stop := make(chan struct{})
			// enoughNew successes among the attempts begun serving, or after.
			enough := [3]chan struct{}{serving: make(chan struct{}), after: make(chan struct{})}
			var once [3]sync.Once
			for g := range dialers {
				wg.Go(func() {
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						began := phase.Load()
						err := echoOnce(addr, fmt.Sprintf("attempt %d.%d", g, i))
						mu.Lock()
						if err == nil {
							okIn[began]++
						} else {
							if began == serving && phase.Load() != serving {
								began = handover // in flight at the signal
							}
							failedIn[began]++
							kinds[handoverKind(err)]++
							if len(examples) < 5 {
								examples = append(examples, err.Error())
							}
						}
						n := okIn[began]
						mu.Unlock()
						if n >= enoughNew && began != handover {
							once[began].Do(func() { close(enough[began]) })
						}
					}
				})
			}
			waitEnough := func(phase int, what string) {
				select {
				case <-enough[phase]:
				case <-time.After(30 * time.Second):
					t.Fatalf("fewer than %d new connections %s within 30s", enoughNew, what)
				}
			}
			waitEnough(serving, "before the signal")

			// The frames a connection sent before the signal are answered.
			for i, c := range hold {
				_ = c.SetDeadline(time.Now().Add(60 * time.Second))
				var msgs strings.Builder
				for k := range batch {
					fmt.Fprintf(&msgs, "held %d frame %d\n", i, k)
				}
				if _, err := c.Write([]byte(msgs.String())); err != nil {
					t.Fatal(err)
				}
			}
			phase.Store(handover)
			a.signal(t, syscall.SIGTERM)
			// Each held connection reads its replies; then the stopped
			// process's see EOF (and close, which ends its lingering close),
			// and the other's wait until that is over.
			var replied, held2 sync.WaitGroup
			replied.Add(held)
			drained := make(chan int, held)
			for i, c := range hold {
				held2.Go(func() {
					ok := true
					for k := range batch {
						want := fmt.Sprintf("held %d frame %d\n", i, k)
						if got, err := c.r.ReadString('\n'); err != nil || got != want {
							t.Errorf("held connection %d: reply %d = %q, %v; want %q", i, k, got, err, want)
							ok = false
							break
						}
					}
					replied.Done()
					if !ok {
						return
					}
					_, err := c.r.ReadByte()
					var ne net.Error
					switch {
					case errors.Is(err, io.EOF):
						c.Close()
						drained <- i
					case errors.As(err, &ne) && ne.Timeout(): // the remaining process's, after the handover
						_ = c.SetDeadline(time.Now().Add(30 * time.Second))
						if err := c.echo(fmt.Sprintf("held %d after", i)); err != nil {
							t.Errorf("held connection %d on the remaining process: %v", i, err)
						}
					default:
						t.Errorf("held connection %d after its replies: %v, want EOF or more service", i, err)
					}
				})
			}
			timeout := time.After(30 * time.Second)
			for range openA {
				select {
				case <-drained:
				case <-timeout:
					t.Fatalf("%d of the %d connections on the stopped process drained within 30s", len(drained), openA)
				}
			}
			a.waitExit(t)
			phase.Store(after)
			replied.Wait()
			for _, c := range hold {
				_ = c.SetReadDeadline(time.Now()) // ends the wait for EOF on the remaining process's
			}
			held2.Wait()
			if n := len(drained); n > 0 {
				t.Errorf("%d more held connections drained than the %d the stopped process held", n, openA)
			}
			waitEnough(after, "after the first process exited")
			close(stop)
			wg.Wait()

			for _, c := range hold {
				c.Close()
			}
			stoppedB := b.stop(t)
			stoppedA := a.waitLog(t, "stopped")

			// Every attempt that reached accept(2) is in a process's
			// conns_total; the others were refused or reset by the kernel.
			mu.Lock()
			defer mu.Unlock()
			attempts := 0
			for ph := range okIn {
				attempts += okIn[ph] + failedIn[ph]
			}
			accepted := int(stoppedA["conns_total"].(float64)+stoppedB["conns_total"].(float64)) - conns - held
			queued := attempts - accepted
			t.Logf("new connections: %d before the signal; while the port changed hands %d succeeded and %d failed %v "+
				"(%d never accepted: reset in the closing listener's queue; %d accepted, then closed by the drain); "+
				"%d after the first process exited (%d failed); the stopped process held %d of the %d held connections",
				okIn[serving]+failedIn[serving], okIn[handover], failedIn[handover], kinds, queued, failedIn[handover]-queued,
				okIn[after]+failedIn[after], failedIn[after], openA, held)
			if failedIn[serving] > 0 || failedIn[after] > 0 {
				t.Errorf("%d new connections failed before the signal and %d after the first process exited, want none: %q",
					failedIn[serving], failedIn[after], examples)
			}
			if queued < 0 || queued > failedIn[handover] {
				t.Errorf("%d attempts, %d accepted by the two processes, %d failed: counts disagree", attempts, accepted, failedIn[handover])
			}
		})
	}
}

// handoverKind names why a new connection failed while the port changed
// hands: "reset" (a handshake queued on the closing listener, or a
// connection the stopping process accepted and closed with its frame
// unread), "closed" (accepted by the stopping process and closed by its
// drain before the frame came), or the error.
func handoverKind(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, io.EOF):
		return "closed"
	}
	return err.Error()
}

// TestReusePortKernelRule checks that SO_REUSEPORT is all or nothing: the
// kernel lets a socket bind a busy port only if every socket on it, the
// first included, asked for SO_REUSEPORT (and belongs to the same user).
// A second server exits 1 with "already in use" whether it lacks
// -reuseport, or has it while the first does not.
func TestReusePortKernelRule(t *testing.T) {
	for _, m := range model.Names() {
		for _, tc := range []struct{ first, second bool }{{false, false}, {false, true}, {true, false}} {
			t.Run(fmt.Sprintf("%s/first=%v,second=%v", m, tc.first, tc.second), func(t *testing.T) {
				first := startProc(t, "-model", m, "-addr", "127.0.0.1:0", "-reuseport="+strconv.FormatBool(tc.first))
				addr := first.waitLog(t, "listening")["addr"].(string)

				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // ends the run if it did start
				defer cancel()
				var stderr strings.Builder
				code := run(ctx, []string{"-model", m, "-addr", addr, "-reuseport=" + strconv.FormatBool(tc.second)}, &stderr)
				if code != exitFail {
					t.Errorf("second server: exit %d, want %d", code, exitFail)
				}
				want := fmt.Sprintf("echoloop: address %s is already in use", addr)
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("second server: stderr %q, want %q", stderr.String(), want)
				}
				if err := echoOnce(addr, "first still serves"); err != nil {
					t.Errorf("the first server after the second failed: %v", err)
				}
				first.stop(t)
			})
		}
	}
}

// TestReadyzAndDrainDelay follows a drain with -drain-delay: /healthz and
// /readyz answer 200 while serving; right after SIGTERM /readyz answers 503
// "draining" while /healthz stays 200, a connection held from before is
// still served and new connections are still accepted; when the delay ends
// (cut short here by a second SIGTERM, so that the test does not depend on
// how long the checks take) the listener closes and new connections are
// refused while the process finishes its drain (held open by -linger: it
// waits for the clients' EOF); then it exits 0.
func TestReadyzAndDrainDelay(t *testing.T) {
	for _, m := range model.Names() {
		t.Run(m, func(t *testing.T) {
			t.Parallel()
			p := startProc(t, "-model", m, "-addr", "127.0.0.1:0", "-metrics", "127.0.0.1:0",
				"-drain-delay", "10m", "-linger", "10m", "-shutdown-timeout", "10m")
			start := p.waitLog(t, "listening")
			addr, met := start["addr"].(string), metricsBase(t, start)
			expect := func(path string, code int, body string) {
				t.Helper()
				if gotCode, gotBody := httpGet(t, met+path); gotCode != code || strings.TrimSpace(gotBody) != body {
					t.Errorf("%s: %d %q, want %d %q", path, gotCode, gotBody, code, body)
				}
			}
			expect("/healthz", http.StatusOK, "ok")
			expect("/readyz", http.StatusOK, "ready")

			held, err := dialLine(addr)
			if err != nil {
				t.Fatal(err)
			}
			defer held.Close()
			if err := held.echo("before"); err != nil {
				t.Fatal(err)
			}

			p.signal(t, syscall.SIGTERM)
			p.waitLog(t, "shutting down: not ready, still serving until the drain")
			expect("/readyz", http.StatusServiceUnavailable, "draining")
			expect("/healthz", http.StatusOK, "ok")
			if err := held.echo("during the delay"); err != nil {
				t.Errorf("a connection from before the signal, during the delay: %v", err)
			}
			late, err := dialLine(addr)
			if err != nil {
				t.Fatalf("a new connection during the delay: %v", err)
			}
			defer late.Close()
			if err := late.echo("new during the delay"); err != nil {
				t.Errorf("a new connection during the delay: %v", err)
			}
			if len(p.lines("shutting down: draining connections")) > 0 {
				t.Fatal("the drain began before the delay was over")
			}

			p.signal(t, syscall.SIGTERM) // cuts the delay short
			p.waitLog(t, "shutting down: draining connections")
			// The drain closes both connections (EOF) and lingers until
			// their clients close: meanwhile the process is up, and the
			// listener is closed.
			for _, c := range []*lineConn{held, late} {
				if _, err := c.r.ReadByte(); !errors.Is(err, io.EOF) {
					t.Errorf("a connection in the drain: %v, want EOF", err)
				}
			}
			var dialErr error
			deadline := time.Now().Add(30 * time.Second)
			for {
				conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
				if err != nil {
					dialErr = err
					break
				}
				conn.Close()
				if time.Now().After(deadline) {
					t.Fatal("the listener still accepts 30s into the drain")
				}
				time.Sleep(time.Millisecond) // Shutdown closes the listener just after the log line
			}
			if !errors.Is(dialErr, syscall.ECONNREFUSED) {
				t.Errorf("a new connection in the drain: %v, want connection refused", dialErr)
			}
			select {
			case <-p.exited:
				t.Fatalf("exited (%v) before its lingering connections closed", p.err)
			default:
			}
			expect("/healthz", http.StatusOK, "ok")
			expect("/readyz", http.StatusServiceUnavailable, "draining")

			held.Close()
			late.Close()
			p.waitExit(t)
			stopped := p.waitLog(t, "stopped")
			if closes, _ := stopped["closes"].(map[string]any); closes["shutdown"] != 2.0 {
				t.Errorf("closes %v, want the two connections closed for shutdown", stopped["closes"])
			}
		})
	}
}

// TestDrainDelayEnds checks that the drain delay ends by itself: a server
// with a short -drain-delay begins its drain after it without a second
// signal, and exits 0.
func TestDrainDelayEnds(t *testing.T) {
	for _, m := range model.Names() {
		t.Run(m, func(t *testing.T) {
			t.Parallel()
			p := startProc(t, "-model", m, "-addr", "127.0.0.1:0", "-drain-delay", "200ms")
			addr := p.waitLog(t, "listening")["addr"].(string)
			c, err := dialLine(addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.echo("before"); err != nil {
				t.Fatal(err)
			}
			p.signal(t, syscall.SIGTERM)
			if rec := p.waitLog(t, "shutting down: not ready, still serving until the drain"); rec["drain_delay"] != "200ms" {
				t.Errorf("drain_delay logged as %v, want 200ms", rec["drain_delay"])
			}
			p.waitLog(t, "shutting down: draining connections")
			if _, err := c.r.ReadByte(); !errors.Is(err, io.EOF) {
				t.Errorf("the held connection in the drain: %v, want EOF", err)
			}
			c.Close() // ends the server's lingering close
			p.waitExit(t)
		})
	}
}
