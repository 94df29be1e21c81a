package conformance

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net"
	"os"
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

// TestSoak runs every framing on both models for about a minute with mixed
// clients at once: connection churn (some ending in a reset), pipelined
// talkers, slow readers, idle ones and garbage senders. Every reply to a
// well-formed client must verify, and afterwards the process must hold no
// more descriptors or goroutines than before. ECHOLOOP_SOAK sets another
// duration; -short skips it.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak: skipped with -short")
	}
	dur := time.Minute
	if d, err := time.ParseDuration(os.Getenv("ECHOLOOP_SOAK")); err == nil {
		dur = d
	}
	fds0, gs0, _ := resources()
	var verified, mismatches atomic.Int64
	// One subtest whose cleanups stop the servers before the leak check.
	// The soaks run side by side in goroutines (-parallel would run only
	// GOMAXPROCS of them at a time).
	t.Run("all", func(t *testing.T) {
		var wg sync.WaitGroup
		for _, m := range model.Names() {
			for _, fr := range framings {
				srv := servertest.Start(t, model.Options{Model: m, Config: session.Config{
					Codec: mustParse(t, fr.spec), Handler: handlers.Echo{}, Logger: zerolog.Nop(),
					IdleTimeout: time.Second, MaxPending: 256 << 10, WriteTimeout: time.Second,
				}})
				wg.Go(func() { soak(t, srv, m, fr.spec, fr.gen, dur, &verified, &mismatches) })
			}
		}
		wg.Wait()
	})
	t.Logf("%d replies verified, %d mismatches", verified.Load(), mismatches.Load())
	if mismatches.Load() != 0 {
		t.Fatalf("%d mismatches", mismatches.Load())
	}
	var fds, gs int
	servertest.Eventually(t, "descriptors and goroutines to return to baseline", func() bool {
		fds, gs, _ = resources()
		return fds <= fds0+2 && gs <= gs0+5
	})
	t.Logf("fds %d→%d, goroutines %d→%d", fds0, fds, gs0, gs)
}

// soak drives srv with every kind of client until dur has passed. It runs on
// its own goroutine, so it reports with t.Errorf only.
func soak(t *testing.T, srv model.Server, m, spec string, gen func(*rand.Rand, int, int) []byte, dur time.Duration, verified, mismatches *atomic.Int64) {
	codec := srv.Config().Codec
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	var wg sync.WaitGroup
	worker := func(id int, fn func(r *rand.Rand, id int)) {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(id), uint64(len(spec))))
			for ctx.Err() == nil {
				fn(r, id)
			}
		})
	}
	addr := srv.Addr().String()
	check := func(got, want []byte) {
		if bytes.Equal(got, want) {
			verified.Add(1)
		} else {
			mismatches.Add(1)
			t.Errorf("%s %s: reply %q, want %q", m, spec, got, want)
		}
	}

	// Talkers: long-lived, pipelining bursts of up to 32 frames.
	for id := range 4 {
		worker(id, func(r *rand.Rand, id int) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				return
			}
			defer conn.Close()
			talk(ctx, conn, codec, gen, r, id, 32, check)
		})
	}
	// Churn: a few frames per connection; one in five ends with a reset.
	for id := 10; id < 14; id++ {
		worker(id, func(r *rand.Rand, id int) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				return
			}
			talk(ctx, conn, codec, gen, r, id, 1+r.IntN(4), check)
			if r.IntN(5) == 0 {
				_ = conn.(*net.TCPConn).SetLinger(0)
			}
			conn.Close()
		})
	}
	// Slow readers: write until the server closes them.
	worker(20, func(r *rand.Rand, id int) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		defer conn.Close()
		var chunk []byte
		for len(chunk) < 32<<10 {
			chunk, _ = codec.Append(chunk, gen(r, id, 0))
		}
		_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		for ctx.Err() == nil {
			if _, err := conn.Write(chunk); err != nil {
				return
			}
		}
	})
	// Idle clients: connect and say nothing until the server closes them.
	worker(30, func(r *rand.Rand, id int) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		defer conn.Close()
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.Copy(io.Discard, conn)
	})
	// Garbage: random bytes, then close.
	worker(40, func(r *rand.Rand, id int) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		defer conn.Close()
		junk := make([]byte, 1+r.IntN(2048))
		for i := range junk {
			junk[i] = byte(r.IntN(256))
		}
		_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
		_, _ = conn.Write(junk)
		_ = conn.(*net.TCPConn).CloseWrite()
		_, _ = io.Copy(io.Discard, conn)
	})
	wg.Wait()
	st := srv.Stats()
	t.Logf("%s %s: %d connections, %d frames in, closes %v", m, spec, st.ConnsTotal, st.FramesIn, st.Closes)
	if st.Closes[session.Idle] == 0 || st.Closes[session.PeerClosed] == 0 {
		t.Errorf("the soak did not exercise idle and normal closes: %v", st.Closes)
	}
}

// talk pipelines bursts of up to burst frames until ctx ends or rounds run
// out, checking each reply; raw framing checks the echoed bytes.
func talk(ctx context.Context, conn net.Conn, codec frame.Codec, gen func(*rand.Rand, int, int) []byte, r *rand.Rand, id, burst int, check func(got, want []byte)) {
	_, raw := codec.(frame.Raw)
	cl := servertest.NewClient(conn, codec)
	for seq := 0; ctx.Err() == nil && seq < 1000; {
		n := 1 + r.IntN(burst)
		payloads := make([][]byte, n)
		for i := range payloads {
			payloads[i] = gen(r, id, seq+i)
		}
		seq += n
		if err := cl.Send(payloads...); err != nil {
			return
		}
		if raw {
			want := bytes.Join(payloads, nil)
			got, err := servertest.ReadFull(conn, len(want))
			if err != nil {
				return
			}
			check(got, want)
			continue
		}
		for _, want := range payloads {
			got, err := cl.Recv()
			if err != nil {
				return // closed under us (idle, shutdown): not a mismatch
			}
			check(got, want)
		}
		if burst == 1 {
			return
		}
	}
}
