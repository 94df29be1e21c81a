package conformance

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"echoloop/bench/model"
	"echoloop/bench/servertest"
	"echoloop/eventloop/frame"
	"echoloop/eventloop/session"
	"echoloop/handlers"
)

// chatPayload is frame seq of client from: its sender and sequence number,
// then filler bytes that both depend on, so a frame delivered to the wrong
// place, out of order, or changed on the way cannot pass for another.
func chatPayload(from, seq, size int) []byte {
	p := binary.BigEndian.AppendUint32(nil, uint32(from))
	p = binary.BigEndian.AppendUint32(p, uint32(seq))
	for i := range size {
		p = append(p, byte(from*31+seq*7+i))
	}
	return p
}

// checkChat parses a broadcast frame, checks it byte for byte against what
// its sender sent, and returns the sender and sequence number.
func checkChat(p []byte, size int) (from, seq int, err error) {
	if len(p) < 8 {
		return 0, 0, fmt.Errorf("frame of %d bytes, too short", len(p))
	}
	from, seq = int(binary.BigEndian.Uint32(p)), int(binary.BigEndian.Uint32(p[4:]))
	if !bytes.Equal(p, chatPayload(from, seq, size)) {
		return from, seq, fmt.Errorf("frame %d of client %d arrived changed", seq, from)
	}
	return from, seq, nil
}

// TestBroadcast has 100 clients each send 100 frames, in bursts, to a chat
// server at once: every client receives exactly the other 99 × 100 frames,
// byte-exact, each sender's in the order sent.
func TestBroadcast(t *testing.T) {
	const clients, frames, size = 100, 100, 24
	eachModel(t, func(t *testing.T, m string) {
		room := handlers.NewBroadcast(false)
		codec := frame.Length{}
		srv := start(t, m, codec, room)
		cls := make([]*servertest.Client, clients)
		for i := range cls {
			cls[i] = servertest.NewClient(servertest.Dial(t, srv.Addr()), codec)
		}
		servertest.Eventually(t, "every client in the room", func() bool { return room.Peers() == clients })

		var wg sync.WaitGroup
		errs := make(chan error, 2*clients)
		for i, cl := range cls {
			wg.Go(func() { // sends, in bursts of up to 10 frames per write
				r := rand.New(rand.NewPCG(uint64(i), 11))
				for seq := 0; seq < frames; {
					burst := make([][]byte, min(frames-seq, 1+r.IntN(10)))
					for k := range burst {
						burst[k] = chatPayload(i, seq+k, size)
					}
					if err := cl.Send(burst...); err != nil {
						errs <- fmt.Errorf("client %d send: %w", i, err)
						return
					}
					seq += len(burst)
				}
			})
			wg.Go(func() { // receives, at the same time
				next := make([]int, clients)
				for range (clients - 1) * frames {
					p, err := cl.Recv()
					if err != nil {
						errs <- fmt.Errorf("client %d after %v: %w", i, next, err)
						return
					}
					from, seq, err := checkChat(p, size)
					switch {
					case err != nil:
						errs <- fmt.Errorf("client %d: %w", i, err)
						return
					case from == i:
						errs <- fmt.Errorf("client %d got its own frame %d", i, seq)
						return
					case from >= clients || seq != next[from]:
						errs <- fmt.Errorf("client %d got frame %d of client %d, want frame %d", i, seq, from, next[from])
						return
					}
					next[from]++
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		// Every client read exactly its share; none was sent twice.
		want := int64(clients * (clients - 1) * frames)
		servertest.Until(t, servertest.IOTimeout, "every delivery counted", func() (bool, string) {
			st := srv.Stats()
			return st.FramesOut == want, fmt.Sprintf("%d frames in, %d out, want %d in and %d out", st.FramesIn, st.FramesOut, clients*frames, want)
		})
		if st := srv.Stats(); st.FramesIn != clients*frames || st.Closes[session.SlowConsumer] != 0 {
			t.Errorf("frames in %d, closes %v: want %d in and no slow consumers", st.FramesIn, st.Closes, clients*frames)
		}
		for _, cl := range cls {
			cl.Conn.Close()
		}
		waitNothingHeld(t, srv)
	})
}

// waitNothingHeld waits until every connection is closed and the server
// counts no memory held for clients: frames queued for a receiver were all
// given back, written or dropped.
func waitNothingHeld(t *testing.T, srv model.Server) {
	t.Helper()
	servertest.Until(t, servertest.IOTimeout, "every connection closed, nothing held", func() (bool, string) {
		st := srv.Stats()
		return st.ConnsOpen == 0 && st.MemoryHeld == 0, fmt.Sprintf("%d open, %d bytes held", st.ConnsOpen, st.MemoryHeld)
	})
}

// TestBroadcastSlowReceiver puts a client that never reads in a chat room:
// the server closes it as a slow consumer (its replies make no progress for
// the write timeout, or pass max-pending), and every other client still
// receives everything.
func TestBroadcastSlowReceiver(t *testing.T) {
	const clients, frames, size = 8, 100, 1 << 10
	eachModel(t, func(t *testing.T, m string) {
		room := handlers.NewBroadcast(false)
		codec := frame.Length{}
		// MaxPending is above all a receiver is ever sent (7 × 100 × 1 KiB):
		// a reader that only lags behind, on a busy machine, must not pass
		// it; the one that never reads is cut by the write timeout.
		srv, logs := startLogged(t, m, session.Config{
			Codec: codec, Handler: room, MaxPending: 2 << 20, WriteTimeout: 3 * time.Second,
		})
		slow := dialSmallWindow(t, srv.Addr())
		cls := make([]*servertest.Client, clients)
		for i := range cls {
			cls[i] = servertest.NewClient(servertest.Dial(t, srv.Addr()), codec)
		}
		servertest.Eventually(t, "every client in the room", func() bool { return room.Peers() == clients+1 })

		var wg sync.WaitGroup
		errs := make(chan error, 2*clients)
		for i, cl := range cls {
			wg.Go(func() {
				for seq := range frames {
					if err := cl.Send(chatPayload(i, seq, size)); err != nil {
						errs <- fmt.Errorf("client %d send: %w", i, err)
						return
					}
				}
			})
			wg.Go(func() {
				next := make([]int, clients)
				for range (clients - 1) * frames {
					p, err := cl.Recv()
					if err == nil {
						var from, seq int
						if from, seq, err = checkChat(p, size); err == nil && seq != next[from] {
							err = fmt.Errorf("frame %d of client %d, want %d", seq, from, next[from])
						}
						next[from]++
					}
					if err != nil {
						errs <- fmt.Errorf("client %d: %w", i, err)
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		servertest.Until(t, servertest.IOTimeout, "the client that never reads to be closed", func() (bool, string) {
			st := srv.Stats()
			return st.Closes[session.SlowConsumer] == 1, fmt.Sprintf("closes %v", st.Closes)
		})
		if err := servertest.WaitClosed(slow); !errors.Is(err, io.EOF) && !isReset(err) {
			t.Errorf("the client that never reads: %v, want closed", err)
		}
		if !logs.Contains(`"reason":"slow consumer"`) {
			t.Error("no slow consumer close logged")
		}
		if st := srv.Stats(); st.ConnsOpen != clients {
			t.Errorf("%d connections open, want the %d that read", st.ConnsOpen, clients)
		}
		for _, cl := range cls {
			cl.Conn.Close()
		}
		waitNothingHeld(t, srv)
	})
}

// dialSmallWindow connects with a receive buffer of a few KiB, set before
// the handshake so the window stays small: a peer that never reads fills it
// at once.
func dialSmallWindow(t *testing.T, addr net.Addr) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: servertest.IOTimeout, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<10)
		})
		return errors.Join(err, serr)
	}}
	c, err := d.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestWorkOrder pipelines far more frames than the work handler's queue
// holds, from many clients at once: each client's replies come back in
// order and byte-exact (connections are paused while the queue is full, and
// resumed), and a ping is answered at once beside the work.
func TestWorkOrder(t *testing.T) {
	const clients, frames = 16, 60 // 960 frames against a queue of 2 × 16
	eachModel(t, func(t *testing.T, m string) {
		h, err := handlers.NewWork(handlers.WorkOptions{Work: 200 * time.Microsecond, Workers: 2, Ping: true})
		if err != nil {
			t.Fatal(err)
		}
		srv := start(t, m, frame.Line{}, h)
		gen := framings[0].gen // line: "client:seq:" and random bytes
		var wg sync.WaitGroup
		errs := make(chan error, clients)
		for c := range clients {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(c), 5))
				payloads := make([][]byte, frames)
				for i := range payloads {
					payloads[i] = gen(r, c, i)
				}
				errs <- pipeline(servertest.Dial(t, srv.Addr()), frame.Line{}, payloads, r)
			})
		}
		ping := servertest.NewClient(servertest.Dial(t, srv.Addr()), frame.Line{})
		for i := range 5 {
			roundTrip(t, ping, fmt.Appendf(nil, "ping %d", i))
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		// Both models count a write after it returns, which may be after
		// the client has read it.
		servertest.Until(t, servertest.IOTimeout, "every reply counted", func() (bool, string) {
			st := srv.Stats()
			return st.FramesOut == clients*frames+5, fmt.Sprintf("%d frames answered, want %d", st.FramesOut, clients*frames+5)
		})
	})
}

// TestWorkPausedFlood: a client pipelines 16 times max-pending of frames
// to a work handler whose queue is full most of the time, so the handler
// keeps its connection paused. The server stops reading it while paused,
// and TCP slows the client; nothing is dropped and nothing is closed: every
// frame is answered, in order. (The event loop used to keep reading a
// paused connection, keeping its input up to max-pending, and closed it as
// a slow consumer past that.) Max-pending also caps the replies queued for
// the client's writer on the goroutine model: 1 MiB leaves room for a
// burst of them on a busy machine.
func TestWorkPausedFlood(t *testing.T) {
	const (
		maxPending = 1 << 20
		size       = 4 << 10
		frames     = 16 * maxPending / size
	)
	eachModel(t, func(t *testing.T, m string) {
		h, err := handlers.NewWork(handlers.WorkOptions{Work: 20 * time.Microsecond, Workers: 1})
		if err != nil {
			t.Fatal(err)
		}
		srv := servertest.Start(t, model.Options{Model: m, Config: session.Config{
			Codec: frame.Length{}, Handler: h, MaxPending: maxPending,
		}})
		payloads := make([][]byte, frames)
		for i := range payloads {
			payloads[i] = fmt.Appendf(bytes.Repeat([]byte{'w'}, size), "%d", i)
		}
		if err := pipeline(servertest.Dial(t, srv.Addr()), frame.Length{}, payloads, nil); err != nil {
			t.Fatalf("%v (closes %v)", err, srv.Stats().Closes)
		}
	})
}

// TestBlockOrder: the block handler answers in order, byte-exact, on both
// models (on the event loop, one frame at a time for everyone).
func TestBlockOrder(t *testing.T) {
	const clients, frames = 4, 20
	eachModel(t, func(t *testing.T, m string) {
		h, err := handlers.NewBlock(100*time.Microsecond, false)
		if err != nil {
			t.Fatal(err)
		}
		srv := start(t, m, frame.Length{}, h)
		gen := framings[1].gen
		var wg sync.WaitGroup
		errs := make(chan error, clients)
		for c := range clients {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(c), 9))
				payloads := make([][]byte, frames)
				for i := range payloads {
					payloads[i] = gen(r, c, i)
				}
				errs <- pipeline(servertest.Dial(t, srv.Addr()), frame.Length{}, payloads, nil)
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	})
}

// pipeline writes payloads' frames (in writes of 1 to 700 bytes when r is
// set, else in one write) while it reads the replies, and checks that they
// come back in order and byte-exact. Unlike exchange, it may run off the
// test's goroutine.
func pipeline(conn net.Conn, codec frame.Codec, payloads [][]byte, r *rand.Rand) error {
	var stream []byte
	for _, p := range payloads {
		var err error
		if stream, err = codec.Append(stream, p); err != nil {
			return err
		}
	}
	chunks := [][]byte{stream}
	if r != nil {
		chunks = chunkers[1].split(r, stream)
	}
	wrote := writeChunks(conn, chunks)
	cl := servertest.NewClient(conn, codec)
	for i, want := range payloads {
		got, err := cl.Recv()
		if err != nil {
			return fmt.Errorf("reply %d of %d: %w", i, len(payloads), err)
		}
		if !bytes.Equal(got, want) {
			return fmt.Errorf("reply %d = %q, want %q", i, got, want)
		}
	}
	return <-wrote
}

// TestSendThenClose sends frames from another goroutine and closes through
// the AsyncConn right after: every frame sent before the close arrives,
// in order, then EOF.
func TestSendThenClose(t *testing.T) {
	const frames = 2000
	eachModel(t, func(t *testing.T, m string) {
		h := handlers.HandlerFunc(func(c handlers.Conn, f []byte) {
			ac := c.Async()
			go func() {
				for i := range frames {
					if err := ac.Send(fmt.Appendf(nil, "%d", i)); err != nil {
						panic(err)
					}
				}
				if err := ac.Close(); err != nil {
					panic(err)
				}
			}()
		})
		srv := start(t, m, frame.Line{}, h)
		cl := servertest.NewClient(servertest.Dial(t, srv.Addr()), frame.Line{})
		if err := cl.Send([]byte("go")); err != nil {
			t.Fatal(err)
		}
		for i := range frames {
			if got := recv(t, cl); got != fmt.Sprint(i) {
				t.Fatalf("frame %d = %q", i, got)
			}
		}
		if _, err := cl.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("after the last frame: %v, want EOF", err)
		}
	})
}

// TestWorkHalfClose is the classic client against the work handler: send
// every frame, shut down the write side, then read. Every reply the
// handler still owes when the EOF arrives is delivered, in order and
// byte-exact, and only then does the server close (EOF, reason "peer
// closed"). The cases cover replies owed with none written yet, more
// frames than the pool's queue holds (the connection is paused when the
// EOF arrives), and many such clients at once.
func TestWorkHalfClose(t *testing.T) {
	cases := []struct {
		name            string
		clients, frames int
	}{{"one frame", 1, 1}, {"pipelined", 1, 20}, {"paused", 1, 120}, {"many clients", 12, 40}} // the queue holds 2 × 16
	eachModel(t, func(t *testing.T, m string) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				h, err := handlers.NewWork(handlers.WorkOptions{Work: 2 * time.Millisecond, Workers: 2})
				if err != nil {
					t.Fatal(err)
				}
				srv := start(t, m, frame.Line{}, h)
				var wg sync.WaitGroup
				errs := make(chan error, tc.clients)
				for c := range tc.clients {
					conn := servertest.Dial(t, srv.Addr())
					wg.Go(func() { errs <- halfCloseExchange(conn, c, tc.frames) })
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					if err != nil {
						t.Fatal(err)
					}
				}
				servertest.Eventually(t, "the closes to be counted as peer closed", func() bool {
					st := srv.Stats()
					return st.Closes[session.PeerClosed] == int64(tc.clients) && st.FramesOut == int64(tc.clients*tc.frames)
				})
			})
		}
	})
}

// halfCloseExchange sends frames lines from client on conn, shuts down the
// write side, and then reads: it wants every line back in order, then EOF.
func halfCloseExchange(conn *net.TCPConn, client, frames int) error {
	var stream []byte
	for i := range frames {
		stream, _ = frame.Line{}.Append(stream, fmt.Appendf(nil, "client %d frame %d", client, i))
	}
	_ = conn.SetWriteDeadline(time.Now().Add(servertest.IOTimeout))
	if _, err := conn.Write(stream); err != nil {
		return fmt.Errorf("client %d write: %w", client, err)
	}
	if err := conn.CloseWrite(); err != nil {
		return err
	}
	got, err := io.ReadAll(readerWithDeadline(conn))
	if err != nil {
		return fmt.Errorf("client %d read after half-close: %w (got %d of %d bytes)", client, err, len(got), len(stream))
	}
	if !bytes.Equal(got, stream) {
		return fmt.Errorf("client %d got %d bytes (%q...), want the %d bytes of every reply in order", client, len(got), got[:min(len(got), 40)], len(stream))
	}
	return nil
}

// owesForever never answers, and never closes after a half-close.
type owesForever struct{}

func (owesForever) ServeFrame(handlers.Conn, []byte) {}
func (owesForever) Finish(handlers.AsyncConn)        {}

// TestHalfCloseOwedIdle: a handler that owes replies after a half-close and
// never closes holds the connection no longer than the idle timeout.
func TestHalfCloseOwedIdle(t *testing.T) {
	eachModel(t, func(t *testing.T, m string) {
		srv := servertest.Start(t, model.Options{Model: m, Config: session.Config{
			Codec: frame.Line{}, Handler: owesForever{}, IdleTimeout: 200 * time.Millisecond,
		}})
		conn := servertest.Dial(t, srv.Addr())
		if _, err := conn.Write([]byte("owed\n")); err != nil {
			t.Fatal(err)
		}
		if err := conn.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(readerWithDeadline(conn))
		if err != nil || len(got) > 0 {
			t.Fatalf("read after half-close: %q, %v; want EOF at the idle timeout", got, err)
		}
		servertest.Eventually(t, "the close to be counted as idle", func() bool {
			return srv.Stats().Closes[session.Idle] == 1
		})
	})
}

// TestWorkShutdown: a shutdown waits for the replies the work handler
// still owes for frames sent before it, whether the client has half-closed
// or not: every reply arrives, then EOF. A shutdown whose deadline passes
// first cuts the connection off.
func TestWorkShutdown(t *testing.T) {
	cases := []struct {
		name       string
		halfClosed bool
		work       time.Duration
		timeout    time.Duration
		cut        bool
	}{
		{"half-closed", true, 50 * time.Millisecond, 10 * time.Second, false},
		{"open", false, 50 * time.Millisecond, 10 * time.Second, false},
		// The work outlasts the deadline twentyfold, and still ends (a
		// worker's sleep cannot be interrupted) seconds after the test.
		{"cut at the deadline", true, 2 * time.Second, 100 * time.Millisecond, true},
	}
	eachModel(t, func(t *testing.T, m string) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				h, err := handlers.NewWork(handlers.WorkOptions{Work: tc.work, Workers: 1})
				if err != nil {
					t.Fatal(err)
				}
				srv := start(t, m, frame.Line{}, h)
				conn := servertest.Dial(t, srv.Addr())
				mustWrite(t, conn, "one\ntwo\nthree\n")
				if tc.halfClosed {
					if err := conn.CloseWrite(); err != nil {
						t.Fatal(err)
					}
				}
				servertest.Eventually(t, "the frames to be served", func() bool { return srv.Stats().FramesIn == 3 })
				ctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
				defer cancel()
				stopped := make(chan error, 1)
				go func() { stopped <- srv.Shutdown(ctx) }()
				got, err := io.ReadAll(readerWithDeadline(conn))
				if tc.cut {
					if len(got) > 0 {
						t.Errorf("got %q before the cut, want nothing: the work outlasts the deadline", got)
					}
					if err := <-stopped; !errors.Is(err, context.DeadlineExceeded) {
						t.Errorf("Shutdown returned %v, want the deadline", err)
					}
					// Counted, though the loops stopped meanwhile.
					if st := srv.Stats(); st.Closes[session.ServerStopping] != 1 || st.ConnsOpen != 0 {
						t.Errorf("after the cut: closes %v, %d open; want one shutdown close, none open", st.Closes, st.ConnsOpen)
					}
					return
				}
				if err != nil || string(got) != "one\ntwo\nthree\n" {
					t.Fatalf("read %q, %v; want every reply, then EOF", got, err)
				}
				if err := <-stopped; err != nil {
					t.Errorf("Shutdown: %v", err)
				}
				// Peer closed if the server saw the half-close before the
				// drain told the handler, else shutdown.
				st := srv.Stats()
				if n := st.Closes[session.PeerClosed] + st.Closes[session.ServerStopping]; n != 1 {
					t.Errorf("closes %v, want one, as peer closed or shutdown", st.Closes)
				}
			})
		}
	})
}
