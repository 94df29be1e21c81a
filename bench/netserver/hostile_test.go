package netserver_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"echoloop/bench/model"
	"echoloop/bench/servertest"
	"echoloop/eventloop/frame"
	"echoloop/eventloop/session"
)

func start(t *testing.T, cfg session.Config) model.Server {
	t.Helper()
	return servertest.Start(t, model.Options{Model: model.Goroutine, Config: cfg})
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe"))
}

// A 4-byte header that announces 1 MiB costs the buffer the connection
// already had; as the body arrives the buffer at most doubles what arrived
// (past the fixed first tiers), and reaches the frame's size only with it.
// What the server holds is read from its memory total, which counts buffer
// capacities.
func TestBufferFollowsArrivedBytes(t *testing.T) {
	srv := start(t, session.Config{Codec: frame.Length{}})
	conn := servertest.Dial(t, srv.Addr())
	base := srv.Stats().BytesIn
	sent := 0
	send := func(b []byte) {
		t.Helper()
		if _, err := conn.Write(b); err != nil {
			t.Fatal(err)
		}
		sent += len(b)
	}
	held := func(most int64) {
		t.Helper()
		servertest.Until(t, servertest.IOTimeout, fmt.Sprintf("holding the %d bytes arrived, in at most %d", sent, most), func() (bool, string) {
			st := srv.Stats()
			return st.BytesIn-base == int64(sent) && st.MemoryHeld >= int64(sent) && st.MemoryHeld <= most,
				fmt.Sprintf("read %d of %d bytes, holding %d", st.BytesIn-base, sent, st.MemoryHeld)
		})
	}
	send(binary.BigEndian.AppendUint32(nil, 1<<20))
	held(initialBuffer)
	body := bytes.Repeat([]byte("b"), 1<<20)
	for _, upTo := range []int{200 << 10, 600 << 10} {
		send(body[sent-4 : upTo])
		held(int64(2*sent) + 64<<10) // twice what arrived, and the lent burst buffer at most
	}
	send(body[sent-4:])
	got, err := servertest.ReadFull(conn, 4+len(body))
	if err != nil || !bytes.Equal(got[4:], body) {
		t.Fatalf("echo of the 1 MiB frame: %v", err)
	}
}

// initialBuffer is what a connection holds before any burst: its
// initial read buffer.
const initialBuffer = 4 << 10

// A frame trickled a byte at a time keeps resetting the idle timeout, but
// not the frame timeout: the connection is closed as a slow frame, no
// earlier than the frame timeout after its first byte, while another
// connection whose frames each complete in time stays open.
func TestFrameTimeout(t *testing.T) {
	const frameTimeout = time.Second
	srv := start(t, session.Config{FrameTimeout: frameTimeout, IdleTimeout: 2 * time.Second})
	steady := servertest.NewClient(servertest.Dial(t, srv.Addr()), frame.Line{})
	slow := servertest.Dial(t, srv.Addr())
	closed := make(chan error, 1)
	go func() { closed <- servertest.WaitClosed(slow) }()

	first := time.Now()
	if _, err := slow.Write([]byte{'t'}); err != nil {
		t.Fatal(err)
	}
	tick := time.NewTicker(frameTimeout / 5)
	defer tick.Stop()
	for trickled := 1; ; trickled++ {
		select {
		case err := <-closed:
			if !errors.Is(err, io.EOF) && !isReset(err) {
				t.Fatalf("trickling client: %v", err)
			}
			if waited := time.Since(first); waited < frameTimeout {
				t.Errorf("closed %v after the frame's first byte, before the %v frame timeout", waited, frameTimeout)
			}
			servertest.Until(t, servertest.IOTimeout, "counted as a slow frame", func() (bool, string) {
				c := srv.Stats().Closes
				return c[session.SlowFrame] == 1 && len(c) == 1, fmt.Sprintf("closes %v", c)
			})
			return
		case <-tick.C:
		}
		if trickled == 50 {
			t.Fatalf("a line trickled for %d ticks is still open; closes %v", trickled, srv.Stats().Closes)
		}
		_, _ = slow.Write([]byte{'t'}) // a failed write means closed: the read says how
		// The steady client's frame comes in two writes a tick apart: it
		// completes well within the frame timeout, every time.
		if _, err := steady.Conn.Write([]byte("ha")); err != nil {
			t.Fatal(err)
		}
		<-tick.C
		if _, err := steady.Conn.Write([]byte("lf\n")); err != nil {
			t.Fatal(err)
		}
		if got, err := steady.Recv(); err != nil || string(got) != "half" {
			t.Fatalf("steady client: %q, %v", got, err)
		}
	}
}

// lingerStream is 20,000 small lines, then one line over the cap of 1 KiB
// that is long enough (32 KiB) to be still arriving when the server finds
// it too long; replies is what the server must answer before it closes.
func lingerStream() (stream, replies []byte) {
	for i := range 20000 {
		replies = fmt.Appendf(replies, "%05d\n", i)
	}
	stream = append(bytes.Clone(replies), bytes.Repeat([]byte("L"), 32<<10)...)
	return append(stream, '\n'), replies
}

// A client pipelines 20,000 lines and one over the cap, and reads nothing
// until it has written everything: it must get every reply and then an
// orderly EOF. Closing with the rest of the long line unread would send a
// reset, and the reset makes the client's kernel drop the replies it has
// not read yet; the lingering close avoids that.
func TestLingeringCloseDeliversReplies(t *testing.T) {
	const runs = 20
	stream, replies := lingerStream()
	srv := start(t, session.Config{Codec: frame.Line{Max: 1024}})
	for run := range runs {
		conn := servertest.Dial(t, srv.Addr())
		_ = conn.SetReadBuffer(4 << 20) // room for every reply: the server never waits on us
		_ = conn.SetWriteDeadline(time.Now().Add(servertest.IOTimeout))
		_, werr := conn.Write(stream)
		got, err := io.ReadAll(io.LimitReader(readerWithDeadline(conn), int64(len(replies))+1))
		if err != nil {
			t.Fatalf("run %d: %v after %d of %d reply bytes (write: %v); want every reply, then EOF",
				run, err, len(got), len(replies), werr)
		}
		if !bytes.Equal(got, replies) {
			t.Fatalf("run %d: got %d reply bytes, want %d", run, len(got), len(replies))
		}
		if werr != nil {
			t.Fatalf("run %d: write: %v", run, werr)
		}
		conn.Close()
	}
	servertest.Until(t, servertest.IOTimeout, "every close counted as frame too large", func() (bool, string) {
		st := srv.Stats()
		return st.Closes[session.FrameTooLarge] == runs && len(st.Closes) == 1 && st.ConnsOpen == 0,
			fmt.Sprintf("closes %v, %d open", st.Closes, st.ConnsOpen)
	})
}

func readerWithDeadline(conn net.Conn) io.Reader {
	_ = conn.SetReadDeadline(time.Now().Add(servertest.IOTimeout))
	return conn
}

// A lingering close ends without the peer's help: a peer that neither
// closes nor stops sending is let go after LingerTime, or after LingerBytes
// of its input, whichever comes first.
func TestLingerIsBounded(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   session.Config
		flood bool
	}{
		{"silent peer, short linger time", session.Config{Codec: frame.Line{Max: 16}, LingerTime: 100 * time.Millisecond}, false},
		{"flooding peer, few linger bytes", session.Config{Codec: frame.Line{Max: 16}, LingerTime: time.Hour, LingerBytes: 64 << 10}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := start(t, tc.cfg)
			conn := servertest.Dial(t, srv.Addr())
			if _, err := conn.Write([]byte("ok\n" + strings.Repeat("x", 17))); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(readerWithDeadline(conn))
			if err != nil || string(got) != "ok\n" {
				t.Fatalf("read %q, %v; want the reply, then EOF", got, err)
			}
			flooded := make(chan struct{})
			if tc.flood {
				go func() {
					defer close(flooded)
					junk := bytes.Repeat([]byte("y"), 16<<10)
					_ = conn.SetWriteDeadline(time.Now().Add(servertest.IOTimeout))
					for {
						if _, err := conn.Write(junk); err != nil {
							return // the server closed
						}
					}
				}()
			}
			// conn stays open: only the server's bounds can end the linger.
			servertest.Until(t, servertest.IOTimeout, "the lingering socket closed", func() (bool, string) {
				st := srv.Stats()
				return st.ConnsOpen == 0 && st.Closes[session.FrameTooLarge] == 1,
					fmt.Sprintf("%d open, closes %v", st.ConnsOpen, st.Closes)
			})
			if tc.flood {
				<-flooded
			}
		})
	}
}

// 100 connections each send a header announcing 1 MiB and 900 KiB of its
// body, 90 MiB in all against a 64 MiB budget. The server closes some as
// memory limit, holds no more than its budget for the rest (and at least
// their partial frames), closes nobody for another reason, and serves a
// normal client byte for byte throughout; once the attackers leave, what
// it held for them is given back.
func TestMemoryBudgetEvictsLargest(t *testing.T) {
	const attackers, budget = 100, 64 << 20
	hold := binary.BigEndian.AppendUint32(nil, 1<<20)
	hold = append(hold, bytes.Repeat([]byte("b"), 900<<10)...)
	// The attackers' frames never complete: no frame timeout, or a slow
	// machine would see them closed for it before the test is done.
	srv := start(t, session.Config{Codec: frame.Length{}, MaxMemory: budget, FrameTimeout: -1})

	normal := servertest.NewClient(servertest.Dial(t, srv.Addr()), frame.Length{})
	stop := make(chan struct{})
	normalDone := make(chan error, 1)
	var served atomic.Int64
	go func() { normalDone <- roundTripsUntil(normal, stop, &served) }()

	var wg sync.WaitGroup
	conns := make([]net.Conn, attackers)
	for i := range conns {
		conns[i] = servertest.Dial(t, srv.Addr())
		wg.Go(func() {
			_ = conns[i].SetWriteDeadline(time.Now().Add(servertest.IOTimeout))
			_, _ = conns[i].Write(hold) // fails for those closed while sending
		})
	}
	wg.Wait()
	// Every survivor ends up holding one buffer of exactly 1 MiB (more than
	// 512 KiB of its frame arrived, and buffers double up to the frame's
	// size), and reading the rest of its 900 KiB changes nothing: from then
	// on what the server holds is final.
	servertest.Until(t, servertest.IOTimeout, "settled within budget", func() (bool, string) {
		st := srv.Stats()
		survivors := attackers - st.Closes[session.MemoryLimit]
		return st.ConnsTotal == attackers+1 && st.ConnsOpen == survivors+1 &&
				st.MemoryHeld <= budget && st.MemoryHeld >= survivors<<20,
			fmt.Sprintf("%d accepted, %d open, holding %d KiB for %d attackers, closes %v",
				st.ConnsTotal, st.ConnsOpen, st.MemoryHeld>>10, survivors, st.Closes)
	})
	st := srv.Stats()
	if st.Closes[session.MemoryLimit] == 0 || st.Closes[session.MemoryLimit] == attackers {
		t.Errorf("%d of %d attackers closed for the memory limit; want some, not all", st.Closes[session.MemoryLimit], attackers)
	}
	if len(st.Closes) != 1 {
		t.Errorf("closes %v: only memory-limit closes expected", st.Closes)
	}
	close(stop)
	if err := <-normalDone; err != nil {
		t.Fatalf("normal client during the attack: %v", err)
	}
	t.Logf("%d attackers closed for the memory limit; %d KiB held of a %d KiB budget; %d normal round trips",
		st.Closes[session.MemoryLimit], st.MemoryHeld>>10, budget>>10, served.Load())

	for _, c := range conns {
		c.Close()
	}
	servertest.Until(t, servertest.IOTimeout, "the attackers' memory given back", func() (bool, string) {
		st := srv.Stats()
		return st.ConnsOpen == 1 && st.MemoryHeld <= 64<<10,
			fmt.Sprintf("%d open, holding %d KiB", st.ConnsOpen, st.MemoryHeld>>10)
	})
	if err := normal.Send([]byte("after")); err != nil {
		t.Fatal(err)
	}
	if got, err := normal.Recv(); err != nil || string(got) != "after" {
		t.Fatalf("after the attack: %q, %v", got, err)
	}
}

// roundTripsUntil round-trips random frames on cl until stop is closed,
// checking every byte of every reply.
func roundTripsUntil(cl *servertest.Client, stop <-chan struct{}, served *atomic.Int64) error {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; ; i++ {
		select {
		case <-stop:
			return nil
		default:
		}
		p := make([]byte, r.IntN(2000))
		for k := range p {
			p[k] = byte(r.Uint32())
		}
		if err := cl.Send(p); err != nil {
			return fmt.Errorf("send %d: %w", i, err)
		}
		got, err := cl.Recv()
		if err != nil {
			return fmt.Errorf("reply %d: %w", i, err)
		}
		if !bytes.Equal(got, p) {
			return fmt.Errorf("reply %d differs from its %d-byte frame", i, len(p))
		}
		served.Add(1)
	}
}

// WriteTimeout covers replies the kernel holds too: a peer that never reads
// is closed as a slow consumer even though every write the server made went
// into its socket's send buffer at once, while a peer that reads slowly but
// steadily, taking far longer than the write timeout for all its replies,
// is served to the end.
func TestWriteTimeoutWatchesKernelQueue(t *testing.T) {
	srv := start(t, session.Config{WriteTimeout: time.Second})
	lines := func(n int) []byte {
		var b []byte
		for i := 0; len(b) < n; i++ {
			b = fmt.Appendf(b, "%08d a reply the peer has to read\n", i)
		}
		return b
	}
	stuck := servertest.Dial(t, srv.Addr())
	_ = stuck.SetReadBuffer(16 << 10)
	stuckSent := make(chan error, 1)
	go func() {
		_ = stuck.SetWriteDeadline(time.Now().Add(servertest.IOTimeout))
		_, err := stuck.Write(lines(1 << 20)) // fits the server's kernel buffers
		stuckSent <- err
	}()

	steady := servertest.Dial(t, srv.Addr())
	stream := lines(2 << 20)
	steadySent := make(chan error, 1)
	go func() {
		_ = steady.SetWriteDeadline(time.Now().Add(servertest.IOTimeout))
		_, err := steady.Write(stream)
		steadySent <- err
	}()
	got := make([]byte, 0, len(stream))
	buf := make([]byte, 8<<10)
	_ = steady.SetReadDeadline(time.Now().Add(servertest.IOTimeout))
	for len(got) < len(stream) {
		n, err := steady.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			t.Fatalf("steady reader after %d of %d bytes: %v; closes %v", len(got), len(stream), err, srv.Stats().Closes)
		}
		time.Sleep(10 * time.Millisecond) // pacing: about 800 KB/s at most
	}
	if !bytes.Equal(got, stream) {
		t.Fatal("the steady reader's echo differs")
	}
	if err := <-steadySent; err != nil {
		t.Fatal(err)
	}
	servertest.Until(t, servertest.IOTimeout, "the stuck peer closed as a slow consumer", func() (bool, string) {
		c := srv.Stats().Closes
		return c[session.SlowConsumer] == 1 && len(c) == 1, fmt.Sprintf("closes %v", c)
	})
	if err := <-stuckSent; err != nil && !isReset(err) {
		t.Errorf("stuck peer's write: %v", err)
	}
}
