package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"echoloop/bench/model"
)

// The attack tests run the command in a child process, so that file
// descriptor exhaustion hits the server and not the test, and check that it
// survives: it keeps running, serves a new client byte for byte afterwards,
// and stops cleanly on SIGTERM.

// echoLines returns about n bytes of newline-terminated lines of random
// printable text, none longer than the default 64 KiB line cap.
func echoLines(r *rand.Rand, n int) []byte {
	b := make([]byte, 0, n)
	for len(b) < n {
		k := min(1+r.IntN(4096), n-len(b)-1)
		for range k {
			b = append(b, byte(' '+r.IntN(95)))
		}
		b = append(b, '\n')
	}
	return b
}

// halfCloseEcho is the classic client: it writes all of payload, shuts down
// its sending side, and reads the echo until EOF (reading while it writes, so
// neither side's buffers can fill up and stall the other).
func halfCloseEcho(addr string, payload []byte) error {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	wrote := make(chan error, 1)
	go func() {
		if _, err := conn.Write(payload); err != nil {
			wrote <- err
			return
		}
		wrote <- conn.(*net.TCPConn).CloseWrite()
	}()
	got, rerr := io.ReadAll(conn)
	if err := <-wrote; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if rerr != nil {
		return fmt.Errorf("read after %d of %d bytes: %w", len(got), len(payload), rerr)
	}
	if !bytes.Equal(got, payload) {
		return fmt.Errorf("echo of %d bytes differs from the %d sent", len(got), len(payload))
	}
	return nil
}

// sockaddr resolves a "127.0.0.1:port" address for connectReset.
func sockaddr(t *testing.T, addr string) *syscall.SockaddrInet4 {
	t.Helper()
	ta, err := net.ResolveTCPAddr("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	sa := &syscall.SockaddrInet4{Port: ta.Port}
	copy(sa.Addr[:], ta.IP.To4())
	return sa
}

// connectReset connects to sa and at once closes with SO_LINGER 0, which
// sends a RST. It uses plain system calls, not package net, so that the
// churn comes as fast as the kernel allows rather than as fast as the
// race-instrumented test process can go (about ten times faster here);
// the connect gives up after 10s. sa is written to: one per goroutine.
func connectReset(sa *syscall.SockaddrInet4) error {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer syscall.Close(fd)
	tv := syscall.Timeval{Sec: 10}
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_SNDTIMEO, &tv); err != nil {
		return fmt.Errorf("setsockopt SO_SNDTIMEO: %w", err)
	}
	// A signal (the Go runtime's preemption) can interrupt a blocking
	// connect, which then goes on in the background; calling it again
	// reports its progress.
	deadline := time.Now().Add(10 * time.Second)
	for again := false; ; again = true {
		err := syscall.Connect(fd, sa)
		if err == nil || again && err == syscall.EISCONN {
			break
		}
		if (err != syscall.EINTR && err != syscall.EALREADY) || time.Now().After(deadline) {
			return fmt.Errorf("connect: %w", err)
		}
	}
	if err := syscall.SetsockoptLinger(fd, syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1, Linger: 0}); err != nil {
		return fmt.Errorf("setsockopt SO_LINGER: %w", err)
	}
	return nil
}

// checkAlive fails the test if the child has exited.
func (c *child) checkAlive(t *testing.T, when string) {
	t.Helper()
	select {
	case err := <-c.exited:
		c.exited <- err
		t.Fatalf("the server exited %s: %v; last log lines: %v", when, err, c.tail())
	default:
	}
}

// tail returns the warnings and errors among the log lines buffered now,
// each error in full, each warning once with a count.
func (c *child) tail() []string {
	var out []string
	warned := map[string]int{}
	defer func() {
		for msg, n := range warned {
			out = append(out, fmt.Sprintf("warn %q x%d", msg, n))
		}
	}()
	for {
		select {
		case rec, ok := <-c.lines:
			if !ok {
				return out
			}
			switch rec["level"] {
			case "warn":
				warned[fmt.Sprint(rec["message"])]++
			case "error", "fatal":
				out = append(out, fmt.Sprint(rec))
			}
		default:
			return out
		}
	}
}

// stopChild sends SIGTERM and checks that the server stops cleanly, having
// logged no error; it returns how often each warning was logged (of the log
// lines nobody had read yet).
func stopChild(t *testing.T, c *child) (warnings map[string]int) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var bad []string
	warnings = map[string]int{}
	for rec := range c.lines {
		switch rec["level"] {
		case "warn":
			warnings[fmt.Sprint(rec["message"])]++
		case "error", "fatal":
			bad = append(bad, fmt.Sprint(rec))
		}
	}
	if err := <-c.exited; err != nil {
		t.Errorf("exit: %v, want status 0 after SIGTERM; errors logged: %v", err, bad)
	} else if len(bad) > 0 {
		t.Errorf("errors logged: %v", bad)
	}
	return warnings
}

// refusedWarning is the warning logged (rate-limited) for a connection
// refused at the connection limit.
const refusedWarning = "connection refused: at the connection limit"

// TestAttackChurn runs six clients that connect and at once reset (SO_LINGER
// 0) in a loop, beside three that echo 256 KiB with a half-close, never more
// than nine client sockets at a time, for 10s (3s with -short), under the
// default fd limit: the server keeps serving every echo byte for byte and
// afterwards serves a new client. gnet's acceptor used to hand accepted
// sockets to the loop through an unbounded queue, so churn could run the
// process out of descriptors and stop the engine.
func TestAttackChurn(t *testing.T) {
	const churners, echoers, churnMost, echoMost = 6, 3, 200_000, 10_000
	dur := 10 * time.Second
	if testing.Short() {
		dur = 3 * time.Second
	}
	for _, m := range model.Names() {
		t.Run(m, func(t *testing.T) {
			t.Parallel()
			c := startChild(t, nil, "-model", m, "-addr", "127.0.0.1:0", "-log-level", "info")
			addr := waitLog(t, c.lines, "listening")["addr"].(string)
			payload := echoLines(rand.New(rand.NewPCG(1, 2)), 256<<10)
			sa := sockaddr(t, addr)

			deadline := time.Now().Add(dur)
			var resets, echoes atomic.Int64
			var errMu sync.Mutex
			var firstErr error
			setErr := func(err error) {
				errMu.Lock()
				defer errMu.Unlock()
				if firstErr == nil {
					firstErr = err
				}
			}
			stopped := func() bool {
				errMu.Lock()
				defer errMu.Unlock()
				return firstErr != nil || time.Now().After(deadline)
			}

			var wg sync.WaitGroup
			for range churners {
				wg.Go(func() {
					sa := *sa // Connect writes into it: one each
					for i := 0; i < churnMost && !stopped(); i++ {
						if err := connectReset(&sa); err != nil {
							setErr(fmt.Errorf("churn connect after %d resets: %w", resets.Load(), err))
							return
						}
						resets.Add(1)
					}
				})
			}
			for range echoers {
				wg.Go(func() {
					for i := 0; i < echoMost && !stopped(); i++ {
						if err := halfCloseEcho(addr, payload); err != nil {
							setErr(fmt.Errorf("echo %d during the churn: %w", echoes.Load(), err))
							return
						}
						echoes.Add(1)
					}
				})
			}
			wg.Wait()
			t.Logf("%d connect+reset cycles, %d echoes of 256 KiB", resets.Load(), echoes.Load())
			if firstErr != nil {
				c.checkAlive(t, "during the churn")
				t.Fatalf("%v; the server's warnings and errors: %v", firstErr, c.tail())
			}
			c.checkAlive(t, "after the churn")
			if err := halfCloseEcho(addr, payload); err != nil {
				t.Fatalf("a new client after the churn: %v", err)
			}
			// Nine sockets at most, and a cap near 20,000: a refusal means
			// the server lost count of sockets it had not closed yet.
			if n := stopChild(t, c)[refusedWarning]; n > 0 {
				t.Errorf("%d connections refused at the connection limit, with never more than %d client sockets open",
					n, churners+echoers)
			}
		})
	}
}

// TestAttackBurst opens twice the connection cap at once, under fd limits of
// 200 and 1,024, holds them until each is served or refused, and closes
// them: the server serves exactly its cap, refuses the rest by closing them,
// stays up, and then serves a new client byte for byte. gnet's acceptor used
// to accept the whole burst before the loop could refuse any of it, and
// stopped the engine at EMFILE.
func TestAttackBurst(t *testing.T) {
	for _, m := range model.Names() {
		for _, nofile := range []int{200, 1024} {
			t.Run(fmt.Sprintf("%s/nofile=%d", m, nofile), func(t *testing.T) {
				t.Parallel()
				c := startChild(t, []string{"ECHOLOOP_TEST_NOFILE=" + strconv.Itoa(nofile)},
					"-model", m, "-addr", "127.0.0.1:0", "-log-level", "info")
				start := waitLog(t, c.lines, "listening")
				addr := start["addr"].(string)
				maxConns := int(start["max_conns"].(float64))
				if fd := start["fd_limit"].(float64); int(fd) != nofile || maxConns >= nofile {
					t.Fatalf("fd limit %v, max conns %d: want %d and a cap below it", fd, maxConns, nofile)
				}
				n := 2 * maxConns

				// Open all at once: the server is stopped (SIGSTOP) while they
				// connect, so all of them wait in its listen backlog and it
				// finds them as one burst when it continues, as it would after
				// a pause of its own (a stall, a descheduled process).
				if err := c.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
					t.Fatal(err)
				}
				resumed := false
				resume := func() {
					if !resumed {
						resumed = true
						if err := c.cmd.Process.Signal(syscall.SIGCONT); err != nil {
							t.Errorf("SIGCONT: %v", err)
						}
					}
				}
				defer resume()
				conns := make([]net.Conn, n)
				dialErrs := make([]error, n)
				defer func() {
					for _, conn := range conns {
						if conn != nil {
							conn.Close()
						}
					}
				}()
				var wg sync.WaitGroup
				for i := range n {
					wg.Go(func() { conns[i], dialErrs[i] = net.DialTimeout("tcp", addr, 10*time.Second) })
				}
				wg.Wait()
				resume()
				for i, err := range dialErrs {
					if err != nil {
						c.checkAlive(t, "during the burst")
						t.Fatalf("dial %d of %d: %v; the server's warnings and errors: %v", i, n, err, c.tail())
					}
				}

				// Each is served (an exact echo) or refused (closed by the
				// server); none may hang.
				const (
					served = iota + 1
					refused
					hung
				)
				outcome := make([]int, n)
				for i, conn := range conns {
					wg.Go(func() {
						_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
						msg := fmt.Appendf(nil, "burst %d\n", i)
						if _, err := conn.Write(msg); err != nil {
							outcome[i] = refused
							return
						}
						reply, err := bufio.NewReader(conn).ReadBytes('\n')
						var ne net.Error
						switch {
						case err == nil && bytes.Equal(reply, msg):
							outcome[i] = served
						case errors.As(err, &ne) && ne.Timeout():
							outcome[i] = hung
						case err != nil:
							outcome[i] = refused
						default:
							t.Errorf("connection %d got %q, want %q", i, reply, msg)
						}
					})
				}
				wg.Wait()
				count := map[int]int{}
				for _, o := range outcome {
					count[o]++
				}
				t.Logf("cap %d under a limit of %d: of %d connections %d served, %d refused, %d neither",
					maxConns, nofile, n, count[served], count[refused], count[hung])
				c.checkAlive(t, "during the burst")
				if count[hung] > 0 {
					t.Fatalf("%d connections were neither served nor refused within 20s; the server's warnings and errors: %v",
						count[hung], c.tail())
				}
				if count[served] != maxConns || count[refused] != n-maxConns {
					t.Errorf("served %d and refused %d of %d, want %d served and the rest refused",
						count[served], count[refused], n, maxConns)
				}

				for i, conn := range conns {
					conn.Close()
					conns[i] = nil
				}
				// Serves again once the connections have gone: slots free
				// as the server sees the closes.
				payload := echoLines(rand.New(rand.NewPCG(3, 4)), 64<<10)
				deadline := time.Now().Add(20 * time.Second)
				for {
					err := halfCloseEcho(addr, payload)
					if err == nil {
						break
					}
					c.checkAlive(t, "after the burst")
					if time.Now().After(deadline) {
						t.Fatalf("not serving 20s after the burst: %v", err)
					}
					time.Sleep(10 * time.Millisecond)
				}
				stopChild(t, c)
			})
		}
	}
}

// TestAttackOtherFDHolder runs the process out of file descriptors by
// something the connection cap cannot see: the test lowers the server's
// soft fd limit (prlimit) to the descriptors it holds, as another part of
// the process, or a system-wide ENFILE, would leave it. A client then
// connects: accept(2) fails with EMFILE. The server must stay up, keep
// serving the connection it has, and serve the waiting client once
// descriptors are free again. gnet's accept stopped the engine on EMFILE,
// dropping every connection.
func TestAttackOtherFDHolder(t *testing.T) {
	for _, m := range model.Names() {
		t.Run(m, func(t *testing.T) {
			t.Parallel()
			c := startChild(t, nil, "-model", m, "-addr", "127.0.0.1:0", "-log-level", "info")
			addr := waitLog(t, c.lines, "listening")["addr"].(string)
			pid := c.cmd.Process.Pid

			held, err := net.DialTimeout("tcp", addr, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer held.Close()
			heldR := bufio.NewReader(held)
			roundTrip := func(msg string) error {
				_ = held.SetDeadline(time.Now().Add(20 * time.Second))
				if _, err := io.WriteString(held, msg); err != nil {
					return err
				}
				got, err := heldR.ReadString('\n')
				if err != nil {
					return err
				}
				if got != msg {
					return fmt.Errorf("echo %q, want %q", got, msg)
				}
				return nil
			}
			if err := roundTrip("before\n"); err != nil {
				t.Fatal(err)
			}

			var old syscall.Rlimit
			if err := prlimit(pid, nil, &old); err != nil {
				t.Fatal(err)
			}
			free, err := lowestFreeFD(pid)
			if err != nil {
				t.Fatal(err)
			}
			// The kernel hands out the lowest free descriptor and refuses
			// one at or above the soft limit: at this limit, no new one.
			low := syscall.Rlimit{Cur: uint64(free), Max: old.Max}
			if err := prlimit(pid, &low, nil); err != nil {
				t.Fatal(err)
			}
			restored := false
			restore := func() {
				if !restored {
					restored = true
					if err := prlimit(pid, &old, nil); err != nil {
						t.Errorf("restore the fd limit: %v", err)
					}
				}
			}
			defer restore()

			// The new client completes its handshake in the listen
			// backlog; the server's accept fails with EMFILE. The warning
			// says it has: wait for it rather than for a time.
			waiting, err := net.DialTimeout("tcp", addr, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer waiting.Close()
			waitLog(t, c.lines, "accept failed")
			c.checkAlive(t, "at EMFILE")
			if err := roundTrip("during\n"); err != nil {
				t.Fatalf("the connection held before EMFILE: %v; the server's warnings and errors: %v", err, c.tail())
			}

			restore()
			// The waiting client is served once descriptors are free, or
			// was refused (closed, no data) if the server accepted it in a
			// moment when a descriptor was free but the hand-off to a loop
			// could not get its second one; either way a new client is
			// served now.
			_ = waiting.SetDeadline(time.Now().Add(20 * time.Second))
			_, werr := io.WriteString(waiting, "after\n")
			got, rerr := bufio.NewReader(waiting).ReadString('\n')
			switch {
			case werr == nil && rerr == nil && got == "after\n":
			case got == "" && (errors.Is(rerr, io.EOF) || errors.Is(rerr, syscall.ECONNRESET) || werr != nil):
				t.Logf("the client that waited through EMFILE was refused (%v, %v)", werr, rerr)
			default:
				t.Fatalf("the client that waited through EMFILE got %q, %v, %v; want an echo or a refusal", got, werr, rerr)
			}
			if err := halfCloseEcho(addr, []byte("a new client\n")); err != nil {
				t.Fatalf("a new client after EMFILE: %v", err)
			}
			if err := roundTrip("after\n"); err != nil {
				t.Fatal(err)
			}
			held.Close()
			waiting.Close()
			stopChild(t, c)
		})
	}
}

// lowestFreeFD is the lowest descriptor number pid does not use.
func lowestFreeFD(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, err
	}
	used := map[int]bool{}
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			used[n] = true
		}
	}
	n := 0
	for used[n] {
		n++
	}
	return n, nil
}

// prlimit sets (new non-nil) or reads (old non-nil) pid's RLIMIT_NOFILE.
func prlimit(pid int, new, old *syscall.Rlimit) error {
	var n, o *unix.Rlimit
	if new != nil {
		n = &unix.Rlimit{Cur: new.Cur, Max: new.Max}
	}
	if old != nil {
		o = &unix.Rlimit{}
	}
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, n, o); err != nil {
		return fmt.Errorf("prlimit: %w", err)
	}
	if old != nil {
		*old = syscall.Rlimit{Cur: o.Cur, Max: o.Max}
	}
	return nil
}
