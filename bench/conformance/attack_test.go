package conformance

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"echoloop/bench/model"
	"echoloop/bench/servertest"
	"echoloop/eventloop/frame"
	"echoloop/eventloop/session"
	"echoloop/handlers"
)

// The attack tests each reproduce one way a hostile or careless client can
// hurt a server, against both models: a frame trickled a byte at a time, a
// peer that never reads, replies lost to a reset on close, partial frames
// that add up to more memory than the server may hold, and random valid
// streams cut at random points.

var long = flag.Bool("conformance.long", false, "run TestAttackProperty for 60s per model and framing instead of about 2s")

// TestAttackTrickle sends a line that never ends, one byte every 100ms: the
// idle timeout never fires, but the frame timeout does, and closes it as a
// slow frame, while a normal client on the same server is answered.
func TestAttackTrickle(t *testing.T) {
	eachModel(t, func(t *testing.T, m string) {
		srv, logs := startLogged(t, m, session.Config{FrameTimeout: 300 * time.Millisecond, IdleTimeout: time.Second})
		normal := servertest.NewClient(servertest.Dial(t, srv.Addr()), frame.Line{})
		roundTrip(t, normal, []byte("before"))

		slow := servertest.Dial(t, srv.Addr())
		closed := make(chan error, 1)
		go func() { closed <- servertest.WaitClosed(slow) }()
		const most = 100 // 10s of trickling: the bound on the wait
		trickled := 0
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
	trickle:
		for {
			select {
			case err := <-closed:
				if !errors.Is(err, io.EOF) && !isReset(err) {
					t.Fatalf("trickling client: %v, want the server to close it", err)
				}
				break trickle
			case <-tick.C:
			}
			if trickled == most {
				t.Fatalf("the server kept a line trickled a byte every 100ms open for %d bytes (frame timeout 300ms); closes %v",
					trickled, srv.Stats().Closes)
			}
			_ = slow.SetWriteDeadline(time.Now().Add(servertest.IOTimeout))
			if _, err := slow.Write([]byte{'t'}); err == nil {
				trickled++
			}
			// A failed write means the server closed; the read reports how.
			roundTrip(t, normal, fmt.Appendf(nil, "normal %d", trickled))
		}
		roundTrip(t, normal, []byte("after"))
		servertest.Until(t, 10*time.Second, "counted as a slow frame", func() (bool, string) {
			c := srv.Stats().Closes
			return c[session.SlowFrame] == 1, fmt.Sprintf("closes %v", c)
		})
		if c := srv.Stats().Closes; len(c) != 1 {
			t.Errorf("closes %v, want one slow frame and nothing else", c)
		}
		if !logs.Contains(`"reason":"slow frame"`) {
			t.Errorf("no slow frame close logged:\n%s", logs)
		}
		t.Logf("closed after %d trickled bytes", trickled)
	})
}

// TestAttackWriteTimeout sends about 3.5 MB of small frames and never reads
// a reply: less than the 4 MiB pending cap, so only the write timeout can
// close it, as a slow consumer. Replies also wait in the server socket's
// send queue (in flight, and up to session.UnsentLimit unsent; without that
// cap Linux took in all of them), which a server that watches only its own
// buffers never sees stall.
func TestAttackWriteTimeout(t *testing.T) {
	eachModel(t, func(t *testing.T, m string) {
		srv, _ := startLogged(t, m, session.Config{WriteTimeout: 500 * time.Millisecond})
		conn := servertest.Dial(t, srv.Addr())
		_ = conn.SetReadBuffer(16 << 10) // a small window: the replies pile up on the server
		var stream []byte
		for i := 0; len(stream) < 3_500_000; i++ {
			stream = fmt.Appendf(stream, "%08d small frame from a peer that never reads its replies\n", i)
		}
		wrote := make(chan error, 1)
		go func() {
			_ = conn.SetWriteDeadline(time.Now().Add(servertest.IOTimeout))
			_, err := conn.Write(stream)
			wrote <- err
		}()
		servertest.Until(t, 20*time.Second, "closed as a slow consumer", func() (bool, string) {
			st := srv.Stats()
			return st.Closes[session.SlowConsumer] == 1,
				fmt.Sprintf("read %d of %d bytes, queued %d reply bytes, closes %v", st.BytesIn, len(stream), st.BytesOut, st.Closes)
		})
		closedWithin(t, conn, 10*time.Second)
		if err := <-wrote; err != nil && !isReset(err) {
			t.Errorf("write: %v", err)
		}
	})
}

// TestAttackLingeringClose pipelines 20,000 small lines and then one over
// the cap, and reads nothing until it has written everything: every reply to
// the small lines must arrive, and then an orderly EOF. A server that closes
// with the peer's input unread sends a reset, and the reset makes the
// client's kernel drop the replies it has not read yet.
func TestAttackLingeringClose(t *testing.T) {
	const maxLine, lines = 1024, 20000
	runs := 100
	if testing.Short() {
		runs = 20
	}
	var replies []byte
	for i := range lines {
		replies = fmt.Appendf(replies, "%05d\n", i)
	}
	// The long line is 32 KiB: the server finds it too long after 1 KiB,
	// while the rest may still be on its way (and within what a lingering
	// close discards, 64 KiB by default).
	stream := append(bytes.Clone(replies), bytes.Repeat([]byte("L"), 32<<10)...)
	stream = append(stream, '\n')
	eachModel(t, func(t *testing.T, m string) {
		srv, _ := startLogged(t, m, session.Config{Codec: frame.Line{Max: maxLine}})
		t.Run("pipeline then too long", func(t *testing.T) {
			for run := range runs {
				conn := servertest.Dial(t, srv.Addr())
				// Room for the whole stream in this socket, so the write
				// completes without the server reading.
				_ = conn.SetWriteBuffer(len(stream) * 2)
				wrote := make(chan error, 1)
				go func() {
					_ = conn.SetWriteDeadline(time.Now().Add(servertest.IOTimeout))
					_, err := conn.Write(stream)
					wrote <- err
				}()
				werr := <-wrote // nothing is read until everything is written
				got, err := io.ReadAll(readerWithDeadline(conn))
				if err != nil {
					t.Fatalf("run %d: %v after %d of %d reply bytes (write: %v); want every reply, then EOF",
						run, err, len(got), len(replies), werr)
				}
				if !bytes.Equal(got, replies) {
					t.Fatalf("run %d: got %d reply bytes, want %d, the replies to the %d lines before the long one",
						run, len(got), len(replies), lines)
				}
				if werr != nil && !isReset(werr) {
					t.Fatalf("run %d: write: %v", run, werr)
				}
				conn.Close()
			}
		})
		t.Run("one line of max+1", func(t *testing.T) {
			for run := range 10 {
				conn := servertest.Dial(t, srv.Addr())
				if _, err := conn.Write(bytes.Repeat([]byte("x"), maxLine+1)); err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(readerWithDeadline(conn))
				if err != nil || len(got) != 0 {
					t.Fatalf("run %d: read %q, %v; want an orderly EOF", run, got, err)
				}
				conn.Close()
			}
		})
		if t.Failed() {
			return
		}
		servertest.Until(t, 10*time.Second, "every close counted", func() (bool, string) {
			c := srv.Stats().Closes
			return c[session.FrameTooLarge] == int64(runs+10), fmt.Sprintf("closes %v", c)
		})
	})
}

// TestAttackMemory opens many connections that each hold a large partial
// frame and never finish it, more in all than the server's memory budget:
// the server stays up, stays within its budget by closing some of them with
// reason "memory limit", counts what it holds for the rest, and keeps
// serving a normal client byte for byte throughout.
func TestAttackMemory(t *testing.T) {
	// 2,000 partial lines of 60 KiB are 117 MiB: under a budget of 256 MiB
	// they would all fit, so the line case has a budget of its own.
	lineBudget, lengthBudget := int64(96<<20), int64(256<<20)
	lineConns, lengthConns := 2000, 500
	if testing.Short() {
		lineBudget, lengthBudget, lineConns, lengthConns = 16<<20, 16<<20, 400, 40
	}
	lengthHold := binary.BigEndian.AppendUint32(nil, 1<<20)                // announces 1 MiB, the cap...
	lengthHold = append(lengthHold, bytes.Repeat([]byte("b"), 900<<10)...) // ...and sends 900 KiB of it
	cases := []struct {
		name   string
		codec  frame.Codec
		budget int64
		conns  int
		hold   []byte // what each attacker sends: the start of a frame it never finishes
	}{
		{"line", frame.Line{Max: 64 << 10}, lineBudget, lineConns, bytes.Repeat([]byte("a"), 60<<10)},
		{"length", frame.Length{Max: 1 << 20}, lengthBudget, lengthConns, lengthHold},
	}
	// One at a time, not in parallel: the test measures the heap, and the
	// servers really hold their budgets.
	for _, m := range model.Names() {
		t.Run(m, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					memoryAttack(t, m, tc.codec, tc.conns, tc.hold, tc.budget)
				})
			}
		})
	}
}

func memoryAttack(t *testing.T, m string, codec frame.Codec, conns int, hold []byte, budget int64) {
	srv, _ := startLogged(t, m, session.Config{Codec: codec, MaxMemory: budget, FrameTimeout: -1})
	var before runtime.MemStats
	runtime.GC()
	runtime.GC() // twice: buffers pooled by an earlier server go in the second
	runtime.ReadMemStats(&before)

	// The normal client round-trips random frames until the attack is over.
	normal := servertest.NewClient(servertest.Dial(t, srv.Addr()), codec)
	stop := make(chan struct{})
	normalDone := make(chan error, 1)
	var served atomic.Int64
	go func() {
		r := rand.New(rand.NewPCG(1, 2))
		for i := 0; i < 1_000_000; i++ {
			select {
			case <-stop:
				normalDone <- nil
				return
			default:
			}
			p := randomPayload(r, codec, 1000)
			if err := normal.Send(p); err != nil {
				normalDone <- fmt.Errorf("send %d: %w", i, err)
				return
			}
			got, err := normal.Recv()
			if err != nil {
				normalDone <- fmt.Errorf("reply %d: %w", i, err)
				return
			}
			if !bytes.Equal(got, p) {
				normalDone <- fmt.Errorf("reply %d differs from its %d-byte frame", i, len(p))
				return
			}
			served.Add(1)
		}
		normalDone <- nil
	}()
	stopNormal := sync.OnceValue(func() error { close(stop); return <-normalDone })
	defer stopNormal()

	// The attackers: a few dialers, each connection left open with its
	// partial frame; the client side buffers nothing (one shared slice).
	var mu sync.Mutex
	var attackers []net.Conn
	defer func() {
		for _, c := range attackers {
			c.Close()
		}
	}()
	began := time.Now()
	var cut, dialErr atomic.Int64
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for next.Add(1) <= int64(conns) {
				c, err := net.DialTimeout("tcp", srv.Addr().String(), servertest.IOTimeout)
				if err != nil {
					dialErr.Add(1)
					continue
				}
				mu.Lock()
				attackers = append(attackers, c)
				mu.Unlock()
				_ = c.SetWriteDeadline(time.Now().Add(servertest.IOTimeout))
				if _, err := c.Write(hold); err != nil {
					cut.Add(1) // closed by the server while it was still sending
				}
			}
		})
	}
	wg.Wait()
	if n := dialErr.Load(); n > 0 {
		t.Fatalf("%d of %d attacker dials failed", n, conns)
	}
	sent := time.Since(began)

	// Once everything sent is taken in (or its connection closed), the
	// server holds at most its budget, and at least the partial frames of
	// the connections it kept. (Waiting for that is waiting for the server
	// to settle: the normal client keeps its input moving.)
	var survivors int64
	servertest.Until(t, 20*time.Second, "settled within its budget, counting what it holds", func() (bool, string) {
		st := srv.Stats()
		var closes int64
		for _, n := range st.Closes {
			closes += n
		}
		survivors = int64(conns) - closes
		state := fmt.Sprintf("holding %d MiB for %d connections (budget %d MiB), closes %v",
			st.MemoryHeld>>20, survivors, budget>>20, st.Closes)
		return st.MemoryHeld <= budget && st.MemoryHeld >= survivors*int64(len(hold)), state
	})
	settled := time.Since(began) - sent
	st := srv.Stats()
	// What the server counts is what it holds: its heap grew by no more
	// than the budget, give or take what each connection costs besides
	// its buffers.
	var after runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapInuse) - int64(before.HeapInuse)
	if slack := int64(16<<20 + conns*(16<<10)); grew > budget+slack {
		t.Errorf("heap grew by %d MiB, over the %d MiB budget and %d MiB for the connections themselves (the server counts %d MiB)",
			grew>>20, budget>>20, slack>>20, st.MemoryHeld>>20)
	}
	mustEvict := int64(conns)*int64(len(hold)) > budget
	switch {
	case mustEvict && st.Closes[session.MemoryLimit] == 0:
		t.Errorf("%d partial frames of %d KiB, over the %d MiB budget, and no close for the memory limit: closes %v",
			conns, len(hold)>>10, budget>>20, st.Closes)
	case survivors < 1:
		t.Errorf("every attacker closed, where closing some would do: closes %v", st.Closes)
	}
	for r, n := range st.Closes {
		if r != session.MemoryLimit {
			t.Errorf("%d closes for %q: attackers may only be closed for the memory limit", n, r)
		}
	}
	if err := stopNormal(); err != nil {
		t.Fatalf("normal client during the attack: %v", err)
	}
	roundTrip(t, normal, []byte("after the attack"))
	t.Logf("%d attackers sent %d KiB each: %d closed for the memory limit (%d while sending), %d kept, holding %d MiB of a %d MiB budget (heap grew %d MiB); %d normal round trips; sent in %v, settled %v later",
		conns, len(hold)>>10, st.Closes[session.MemoryLimit], cut.Load(), survivors, st.MemoryHeld>>20, budget>>20, grew>>20, served.Load(),
		sent.Round(time.Millisecond), settled.Round(time.Millisecond))

	// Once the attackers leave, so does the memory held for them.
	for _, c := range attackers {
		c.Close()
	}
	attackers = nil
	servertest.Until(t, 20*time.Second, "memory given back", func() (bool, string) {
		st := srv.Stats()
		return st.ConnsOpen == 1 && st.MemoryHeld <= 1<<20,
			fmt.Sprintf("%d connections open, holding %d KiB", st.ConnsOpen, st.MemoryHeld>>10)
	})
	roundTrip(t, normal, []byte("and once they left"))
}

// randomPayload returns a payload codec can carry, of up to most bytes.
func randomPayload(r *rand.Rand, codec frame.Codec, most int) []byte {
	n := r.IntN(most + 1)
	switch c := codec.(type) {
	case frame.Fixed:
		n = c.MaxPayload()
	case frame.Raw:
		n = max(n, 1) // a raw "frame" of nothing is no write at all
	}
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(r.IntN(256))
		if _, line := codec.(frame.Line); line && p[i] == '\n' {
			p[i] = '\r'
		}
	}
	return p
}

// TestAttackProperty sends random valid frames, from empty up to each
// framing's cap, cut into writes at random points with random short pauses:
// the echo is byte-identical. About 2s per model and framing; 60s with
// -conformance.long. The seed is logged for a replay.
func TestAttackProperty(t *testing.T) {
	per := 2 * time.Second
	if *long {
		per = 60 * time.Second
	}
	eachModel(t, func(t *testing.T, m string) {
		for _, spec := range []string{"line", "length", "fixed:16", "raw"} {
			t.Run(spec, func(t *testing.T) {
				codec := mustParse(t, spec)
				srv := start(t, m, codec, handlers.Echo{})
				seed := uint64(time.Now().UnixNano())
				t.Logf("seed %d", seed)
				r := rand.New(rand.NewPCG(seed, 0x5eed))
				deadline := time.Now().Add(per)
				rounds, frames, bytesSent := 0, 0, 0
				for ; rounds < 100_000 && time.Now().Before(deadline); rounds++ {
					n, b := propertyRound(t, srv.Addr(), codec, r, fmt.Sprintf("seed %d round %d", seed, rounds))
					frames += n
					bytesSent += b
				}
				t.Logf("%d rounds, %d frames, %d KiB echoed", rounds, frames, bytesSent>>10)
			})
		}
	})
}

// propertySize picks a payload size in [0, cap], favouring the edges: empty,
// tiny, and at or next to the cap.
func propertySize(r *rand.Rand, cap int) int {
	switch p := r.IntN(100); {
	case p < 10:
		return 0
	case p < 45:
		return r.IntN(min(cap, 64) + 1)
	case p < 75:
		return r.IntN(min(cap, 4096) + 1)
	case p < 90:
		return r.IntN(cap + 1)
	default:
		return max(cap-r.IntN(3), 0)
	}
}

// propertyRound makes one connection, sends it random frames in random
// writes and checks the echo; it returns the frames and bytes sent.
func propertyRound(t *testing.T, addr net.Addr, codec frame.Codec, r *rand.Rand, label string) (int, int) {
	t.Helper()
	const budget = 2 << 20 // bytes per round, so large frames stay few
	limit := codec.MaxPayload()
	_, raw := codec.(frame.Raw)
	if raw {
		limit = 256 << 10
	}
	var payloads [][]byte
	var stream []byte
	for range 1 + r.IntN(40) {
		var p []byte
		switch c := codec.(type) {
		case frame.Fixed:
			p = randomPayload(r, c, 0)
		default:
			n := propertySize(r, limit)
			if raw {
				n = max(n, 1)
			}
			p = make([]byte, n)
			for i := range p {
				p[i] = byte(r.Uint32())
				if _, line := codec.(frame.Line); line && p[i] == '\n' {
					p[i] = 'n'
				}
			}
		}
		if len(stream) > 0 && len(stream)+len(p) > budget {
			break
		}
		var err error
		if stream, err = codec.Append(stream, p); err != nil {
			t.Fatalf("%s: encode a %d-byte frame: %v", label, len(p), err)
		}
		payloads = append(payloads, p)
	}
	// Cut the stream at random points; pause before some writes.
	type write struct {
		b     []byte
		pause time.Duration
	}
	var writes []write
	for rest := stream; len(rest) > 0; {
		var n int
		switch p := r.IntN(10); {
		case p < 3:
			n = 1 + r.IntN(8)
		case p < 7:
			n = 1 + r.IntN(2048)
		default:
			n = 1 + r.IntN(256<<10)
		}
		n = min(n, len(rest))
		var pause time.Duration
		if r.IntN(8) == 0 {
			pause = time.Duration(r.IntN(2000)) * time.Microsecond
		}
		writes = append(writes, write{rest[:n], pause})
		rest = rest[n:]
	}

	conn, err := net.DialTimeout("tcp", addr.String(), servertest.IOTimeout)
	if err != nil {
		t.Fatalf("%s: dial: %v", label, err)
	}
	defer conn.Close()
	wrote := make(chan error, 1)
	go func() {
		_ = conn.SetWriteDeadline(time.Now().Add(servertest.IOTimeout))
		for _, w := range writes {
			if w.pause > 0 {
				time.Sleep(w.pause)
			}
			if _, err := conn.Write(w.b); err != nil {
				wrote <- err
				return
			}
		}
		wrote <- nil
	}()
	if raw {
		got, err := servertest.ReadFull(conn, len(stream))
		if err != nil {
			t.Fatalf("%s: read the echo of %d bytes in %d writes: %v", label, len(stream), len(writes), err)
		}
		if i := firstDiff(got, stream); i >= 0 {
			t.Fatalf("%s: echo differs at byte %d of %d (%d writes)", label, i, len(stream), len(writes))
		}
	} else {
		cl := servertest.NewClient(conn, codec)
		for i, want := range payloads {
			got, err := cl.Recv()
			if err != nil {
				t.Fatalf("%s: reply %d of %d (%d bytes): %v", label, i, len(payloads), len(want), err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s: reply %d of %d is %d bytes, want %d, differing at byte %d",
					label, i, len(payloads), len(got), len(want), firstDiff(got, want))
			}
		}
	}
	if err := <-wrote; err != nil {
		t.Fatalf("%s: write: %v", label, err)
	}
	return len(payloads), len(stream)
}

// firstDiff returns the index of the first byte where a and b differ, or -1
// if they are equal.
func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}
