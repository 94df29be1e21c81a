package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"echoloop/bench/model"
	"echoloop/bench/servertest"
	"echoloop/eventloop/frame"
	"echoloop/eventloop/session"
	"echoloop/handlers"
)

// closedWithin reads conn until the server closes it, failing the test if
// that takes longer than limit.
func closedWithin(t *testing.T, conn net.Conn, limit time.Duration) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(limit))
	_, err := io.Copy(io.Discard, conn)
	if err != nil && !isReset(err) {
		t.Fatalf("connection not closed by the server within %v: %v", limit, err)
	}
}

// TestIdleTimeout checks that a silent connection is closed with reason
// "idle", never before the timeout, while one that keeps talking stays.
func TestIdleTimeout(t *testing.T) {
	const idle = 300 * time.Millisecond
	eachModel(t, func(t *testing.T, m string) {
		srv, logs := startLogged(t, m, session.Config{IdleTimeout: idle})
		quiet := servertest.NewClient(servertest.Dial(t, srv.Addr()), frame.Line{})
		busy := servertest.NewClient(servertest.Dial(t, srv.Addr()), frame.Line{})
		// The server's last byte from quiet arrives after this instant:
		// the close may come no earlier than idle after it. (The moment the
		// reply arrives is no bound: the client may be scheduled late.)
		lastByte := time.Now()
		roundTrip(t, quiet, []byte("hello"))

		stop := make(chan struct{})
		busyDone := make(chan error, 1)
		go func() {
			for {
				select {
				case <-stop:
					busyDone <- nil
					return
				case <-time.After(idle / 6):
				}
				if err := busy.Send([]byte("still here")); err != nil {
					busyDone <- err
					return
				}
				if _, err := busy.Recv(); err != nil {
					busyDone <- err
					return
				}
			}
		}()

		closedWithin(t, quiet.Conn, 10*time.Second)
		if waited := time.Since(lastByte); waited < idle {
			t.Errorf("closed after %v of silence, before the %v idle timeout", waited, idle)
		}
		close(stop)
		if err := <-busyDone; err != nil {
			t.Fatalf("the busy client was disturbed: %v", err)
		}
		roundTrip(t, busy, []byte("and now"))
		servertest.Eventually(t, "the idle close to be counted", func() bool {
			return srv.Stats().Closes[session.Idle] == 1
		})
		if !logs.Contains(`"reason":"idle"`) {
			t.Errorf("no idle close logged:\n%s", logs)
		}
	})
}

// TestSlowReader runs one client that writes without ever reading beside
// normal clients: the slow one is closed as a slow consumer, the server's
// heap stays bounded, and the normal clients' replies keep flowing.
func TestSlowReader(t *testing.T) {
	const normal, rounds = 50, 200
	eachModel(t, func(t *testing.T, m string) {
		srv, _ := startLogged(t, m, session.Config{
			Codec: frame.Length{}, MaxPending: 256 << 10, WriteTimeout: 2 * time.Second,
		})
		var before runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)

		slow := servertest.Dial(t, srv.Addr())
		_ = slow.SetReadBuffer(16 << 10) // make its window fill early
		var flooded atomic.Int64
		floodDone := make(chan struct{})
		go func() {
			defer close(floodDone)
			chunk, _ := frame.Length{}.Append(nil, bytes.Repeat([]byte("s"), 60<<10))
			chunk = bytes.Repeat(chunk, 16) // ~1 MiB of frames per write
			deadline := time.Now().Add(20 * time.Second)
			_ = slow.SetWriteDeadline(deadline)
			for flooded.Load() < 512<<20 && time.Now().Before(deadline) {
				n, err := slow.Write(chunk)
				flooded.Add(int64(n))
				if err != nil {
					return
				}
			}
		}()

		var wg sync.WaitGroup
		errs := make(chan error, normal)
		for i := range normal {
			wg.Go(func() {
				cl := servertest.NewClient(servertest.Dial(t, srv.Addr()), frame.Length{})
				for k := range rounds {
					p := fmt.Appendf(nil, "%d/%d", i, k)
					if err := cl.Send(p); err != nil {
						errs <- err
						return
					}
					got, err := cl.Recv()
					if err != nil {
						errs <- err
						return
					}
					if !bytes.Equal(got, p) {
						errs <- fmt.Errorf("client %d got %q, want %q", i, got, p)
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("normal client: %v", err)
		}

		// Wait without reading: reading would make the client fast.
		servertest.Eventually(t, "the slow consumer to be closed", func() bool {
			return srv.Stats().Closes[session.SlowConsumer] == 1
		})
		<-floodDone
		closedWithin(t, slow, 10*time.Second)
		var after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&after)
		grew := int64(after.HeapInuse) - int64(before.HeapInuse)
		t.Logf("slow client wrote %d MiB before it was closed; heap grew %d KiB", flooded.Load()>>20, grew>>10)
		if grew > 32<<20 {
			t.Errorf("heap grew by %d MiB with a 256 KiB pending cap", grew>>20)
		}
	})
}

// TestGracefulDrain sends frames and shuts the server down right away: every
// frame sent before the shutdown is answered, then the connection closes.
func TestGracefulDrain(t *testing.T) {
	const frames = 2000
	eachModel(t, func(t *testing.T, m string) {
		srv := start(t, m, frame.Length{}, handlers.Echo{})
		cl := servertest.NewClient(servertest.Dial(t, srv.Addr()), frame.Length{})
		roundTrip(t, cl, []byte("warm"))
		payloads := make([][]byte, frames)
		for i := range payloads {
			payloads[i] = fmt.Appendf(nil, "frame %d", i)
		}
		if err := cl.Send(payloads...); err != nil {
			t.Fatal(err)
		}
		stopped := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			stopped <- srv.Shutdown(ctx)
		}()
		for i, want := range payloads {
			got, err := cl.Recv()
			if err != nil {
				t.Fatalf("reply %d of %d: %v", i, frames, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("reply %d = %q, want %q", i, got, want)
			}
		}
		if _, err := cl.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("after the last reply: %v, want EOF", err)
		}
		if err := <-stopped; err != nil {
			t.Fatalf("shutdown: %v", err)
		}
		if n := srv.Stats().Closes[session.ServerStopping]; n != 1 {
			t.Errorf("closes for shutdown = %d, want 1", n)
		}
	})
}

// TestShutdownDeadline keeps a connection busy past the shutdown deadline
// (it sends 8 MiB and reads none of its replies, so they can never all be
// flushed): it is closed with reason "shutdown" and Shutdown reports the
// deadline.
func TestShutdownDeadline(t *testing.T) {
	eachModel(t, func(t *testing.T, m string) {
		srv := start(t, m, frame.Length{}, handlers.Echo{})
		conn := servertest.Dial(t, srv.Addr())
		_ = conn.SetReadBuffer(16 << 10)
		go func() {
			chunk, _ := frame.Length{}.Append(nil, bytes.Repeat([]byte("b"), 64<<10))
			_ = conn.SetWriteDeadline(time.Now().Add(servertest.IOTimeout))
			for range 128 { // 8 MiB: more than the server can pass to the kernel
				if _, err := conn.Write(chunk); err != nil {
					return
				}
			}
		}()
		// Earlier, a shutdown could find the connection momentarily drained,
		// which is correct but not what this test is about. The goroutine
		// model stops reading once the kernel holds session.UnsentLimit
		// of its replies.
		waitStuck(t, srv, session.UnsentLimit)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown = %v, want the deadline", err)
		}
		closedWithin(t, conn, 10*time.Second)
		if n := srv.Stats().Closes[session.ServerStopping]; n != 1 {
			t.Errorf("closes for shutdown = %d, want 1 (closes: %v)", n, srv.Stats().Closes)
		}
	})
}

// TestHalfClose shuts down the client's write side after some frames and a
// partial one: every complete frame is answered, the partial one is dropped
// and counted, and the server closes. The large case sends 6 MB before
// reading anything, through a small receive window: more than the server's
// socket takes for a peer that does not read (what is in flight and
// session.UnsentLimit), so the server still holds replies when it sees the
// EOF.
func TestHalfClose(t *testing.T) {
	cases := []struct {
		name   string
		frames int
		size   int
	}{{"small", 10, 20}, {"large backlog", 6000, 1000}}
	eachModel(t, func(t *testing.T, m string) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				srv := start(t, m, frame.Length{}, handlers.Echo{})
				conn := servertest.Dial(t, srv.Addr())
				_ = conn.SetReadBuffer(32 << 10)
				// Room for the whole stream on this side, so the goroutine
				// model's blocked writes cannot stall the client's.
				_ = conn.SetWriteBuffer(8 << 20)
				var stream []byte
				for i := range tc.frames {
					p := bytes.Repeat([]byte{byte('a' + i%26)}, tc.size)
					stream, _ = frame.Length{}.Append(stream, p)
				}
				want := len(stream)
				stream = append(stream, 0, 0, 0, 9, 'p', 'a', 'r') // a partial frame
				// The classic client: send everything, shut down the write
				// side, and only then read. The replies pile up on the
				// server meanwhile.
				_ = conn.SetWriteDeadline(time.Now().Add(servertest.IOTimeout))
				if _, err := conn.Write(stream); err != nil {
					t.Fatalf("write: %v", err)
				}
				if err := conn.CloseWrite(); err != nil {
					t.Fatal(err)
				}
				// Read nothing until the server has taken in all it will:
				// only then are replies sure to be waiting when it sees the
				// EOF (the event loop reads it all; the goroutine model
				// blocks writing once the kernel's buffers are full).
				waitStuck(t, srv, 1)
				got, err := io.ReadAll(readerWithDeadline(conn))
				if err != nil {
					t.Fatalf("read after half-close: %v (got %d of %d bytes)", err, len(got), want)
				}
				if !bytes.Equal(got, stream[:want]) {
					t.Fatalf("got %d bytes, want the %d bytes of the complete frames", len(got), want)
				}
				servertest.Eventually(t, "the partial frame to be counted", func() bool {
					st := srv.Stats()
					return st.PartialFrames == 1 && st.Closes[session.PeerClosed] == 1
				})
			})
		}
	})
}

func readerWithDeadline(conn net.Conn) io.Reader {
	_ = conn.SetReadDeadline(time.Now().Add(servertest.IOTimeout))
	return conn
}

// TestBadInput feeds every framing valid frames followed by random garbage,
// in random chunks, and resets some connections mid-frame. Every valid frame
// before the garbage is answered, the server keeps serving others, and its
// heap stays bounded.
func TestBadInput(t *testing.T) {
	const rounds = 25
	eachModel(t, func(t *testing.T, m string) {
		for _, fr := range framings {
			t.Run(fr.spec, func(t *testing.T) {
				codec := mustParse(t, fr.spec)
				srv := start(t, m, codec, handlers.Echo{})
				probe := servertest.NewClient(servertest.Dial(t, srv.Addr()), codec)
				var before runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				for round := range rounds {
					r := rand.New(rand.NewPCG(uint64(round), 99))
					badClient(t, srv.Addr(), codec, fr.gen, r, round%5 == 0)
					roundTrip(t, probe, fr.gen(r, 0, round))
				}
				var after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&after)
				if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > 16<<20 {
					t.Errorf("heap grew by %d MiB over %d bad clients", grew>>20, rounds)
				}
			})
		}
	})
}

// badClient sends valid frames then garbage, and checks the valid frames'
// replies. With reset it instead stops mid-frame with an RST.
func badClient(t *testing.T, addr net.Addr, codec frame.Codec, gen func(*rand.Rand, int, int) []byte, r *rand.Rand, reset bool) {
	t.Helper()
	conn := servertest.Dial(t, addr)
	var valid []byte
	n := r.IntN(20)
	for i := range n {
		valid, _ = codec.Append(valid, gen(r, 1, i))
	}
	garbage := make([]byte, 1+r.IntN(4096))
	for i := range garbage {
		garbage[i] = byte(r.IntN(256))
	}
	if reset {
		// Valid frames, then half a frame, then RST.
		enc, _ := codec.Append(nil, gen(r, 1, n))
		if _, err := conn.Write(append(valid, enc[:len(enc)/2]...)); err != nil {
			t.Fatal(err)
		}
		if _, err := servertest.ReadFull(conn, len(valid)); err != nil && len(valid) > 0 {
			t.Fatalf("replies before the reset: %v", err)
		}
		_ = conn.SetLinger(0)
		conn.Close()
		return
	}
	stream := append(valid, garbage...)
	var chunks [][]byte // cut here: r is not for the writer goroutine
	for len(stream) > 0 {
		k := min(len(stream), 1+r.IntN(300))
		chunks, stream = append(chunks, stream[:k]), stream[k:]
	}
	go func() {
		for _, chunk := range chunks {
			if _, err := conn.Write(chunk); err != nil {
				return // the server closed on the garbage
			}
		}
		_ = conn.CloseWrite()
	}()
	got, err := io.ReadAll(readerWithDeadline(conn))
	if err != nil && !isReset(err) {
		t.Fatalf("reading replies: %v", err)
	}
	if len(got) < len(valid) || !bytes.Equal(got[:len(valid)], valid) {
		t.Fatalf("the %d bytes of valid frames before the garbage were not all echoed (got %d bytes)", len(valid), len(got))
	}
}

// TestNoLeaks makes 10,000 connect/send/close cycles, then checks that file
// descriptors, goroutines and heap return to their baseline.
func TestNoLeaks(t *testing.T) {
	cycles := 10000
	if testing.Short() {
		cycles = 1000
	}
	for _, m := range model.Names() { // one at a time: the counts are process-wide
		t.Run(m, func(t *testing.T) {
			// A silent logger: the test log would keep 20,000 lines in memory.
			srv := servertest.Start(t, model.Options{Model: m, Config: session.Config{Logger: zerolog.Nop()}})
			buf := make([]byte, 64)
			cycle := func(i int) {
				// Not servertest.Dial: its cleanup would keep every conn alive.
				conn, err := net.Dial("tcp", srv.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				msg := fmt.Appendf(nil, "cycle %d\n", i)
				if _, err := conn.Write(msg); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(conn, buf[:len(msg)]); err != nil || !bytes.Equal(buf[:len(msg)], msg) {
					t.Fatalf("cycle %d: echo %q, %v", i, buf[:len(msg)], err)
				}
			}
			for i := range 100 { // warm up pools and buffers
				cycle(i)
			}
			servertest.Eventually(t, "warm-up connections to close", func() bool { return srv.Stats().ConnsOpen == 0 })
			fds0, gs0, heap0 := resources()
			for i := range cycles {
				cycle(i)
			}
			servertest.Eventually(t, "all connections to close", func() bool { return srv.Stats().ConnsOpen == 0 })
			var fds, gs int
			var heap uint64
			deadline := time.Now().Add(10 * time.Second)
			for {
				fds, gs, heap = resources()
				if fds <= fds0+2 && gs <= gs0+5 && heap <= heap0+2<<20 {
					break
				}
				if time.Now().After(deadline) {
					buf := make([]byte, 1<<20)
					t.Fatalf("after %d cycles: fds %d→%d, goroutines %d→%d, heap %d→%d KiB\n%s",
						cycles, fds0, fds, gs0, gs, heap0>>10, heap>>10, buf[:runtime.Stack(buf, true)])
				}
				time.Sleep(10 * time.Millisecond)
			}
			t.Logf("after %d cycles: fds %d→%d, goroutines %d→%d, heap %d→%d KiB", cycles, fds0, fds, gs0, gs, heap0>>10, heap>>10)
		})
	}
}

func resources() (fds, goroutines int, heap uint64) {
	entries, _ := os.ReadDir("/proc/self/fd")
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return len(entries), runtime.NumGoroutine(), ms.HeapInuse
}
