package model_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"echoloop/bench/model"
	"echoloop/bench/servertest"
	"echoloop/eventloop/frame"
	"echoloop/eventloop/session"
)

// The attack benchmarks put numbers on what a hostile or careless client
// costs the server and the clients beside it, for both models: a frame
// straddling hundreds of reads, a client streaming large frames beside a
// small one, hundreds of clients that never read, and the memory those hold.
// Every echoed byte is checked, every run is bounded by a count and by
// attackLimit, and latencies are exact quantiles of every sample. Clients
// and server share this process and its CPUs, except in the proc=pinned
// runs of the benchmarks that time clients beside an attack (see
// forEachProc), and SlowReadersBeside's slow readers, which run in a child
// process of their own (see startFlooders).

// attackLimit bounds the wall time of one run of an attack benchmark; a run
// that reaches it stops early and says so in its log.
const attackLimit = 45 * time.Second

// straddleWrite is the size of each write of a straddling client.
const straddleWrite = 4 << 10

// BenchmarkStraddle echoes 1 MiB frames, written in 4 KiB writes so each
// straddles hundreds of reads, one frame at a time. A server that rescans a
// partial frame from its start on every read pays for it here, line framing
// most (it searches for '\n'; length framing knows the size from the
// header). Each op is one length frame (Length{Max: 1 MiB}) and one line
// frame (Line{Max: 1 MiB}) to two servers of the model, in alternating
// order, so that load from elsewhere on the machine falls on both alike. It
// reports the median wall time per payload byte of each (length-ns/B,
// line-ns/B) and the median of line's over length's in the same op
// (x-length; the target is at most 1.5):
//
//	go test -run '^$' -bench Straddle -benchtime 20x ./bench/model
func BenchmarkStraddle(b *testing.B) {
	for _, m := range model.Names() {
		b.Run("model="+m, func(b *testing.B) { benchStraddle(b, m) })
	}
}

// straddler echoes one frame at a time, written in straddleWrite pieces.
type straddler struct {
	srv        model.Server
	conn       net.Conn
	req, reply []byte
}

func newStraddler(b *testing.B, m string, codec frame.Codec, size int) *straddler {
	srv := servertest.Start(b, model.Options{Model: m, Config: session.Config{Codec: codec, Logger: nopLogger}})
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = 'a' + byte(i%26) // no '\n'
	}
	req, err := codec.Append(nil, payload)
	if err != nil {
		b.Fatal(err)
	}
	c := servertest.Dial(b, srv.Addr())
	_ = c.SetDeadline(time.Now().Add(attackLimit))
	return &straddler{srv: srv, conn: c, req: req, reply: make([]byte, len(req))}
}

// echo sends the frame, reads its echo back and checks it, and returns how
// long that took.
func (s *straddler) echo(b *testing.B) time.Duration {
	t0 := time.Now()
	for off := 0; off < len(s.req); off += straddleWrite {
		if _, err := s.conn.Write(s.req[off:min(off+straddleWrite, len(s.req))]); err != nil {
			b.Fatalf("write: %v", err)
		}
	}
	if _, err := io.ReadFull(s.conn, s.reply); err != nil {
		b.Fatalf("read the echo: %v", err)
	}
	d := time.Since(t0)
	if !bytes.Equal(s.reply, s.req) {
		b.Fatal("echo differs from the frame sent")
	}
	return d
}

func benchStraddle(b *testing.B, m string) {
	const size = 1 << 20
	length := newStraddler(b, m, frame.Length{Max: size}, size)
	line := newStraddler(b, m, frame.Line{Max: size}, size)
	var lengthNS, lineNS, ratio []float64
	b.SetBytes(2 * size)
	for b.Loop() {
		var dl, dn time.Duration
		if len(ratio)%2 == 0 {
			dl, dn = length.echo(b), line.echo(b)
		} else {
			dn, dl = line.echo(b), length.echo(b)
		}
		lengthNS = append(lengthNS, float64(dl.Nanoseconds())/size)
		lineNS = append(lineNS, float64(dn.Nanoseconds())/size)
		ratio = append(ratio, float64(dn)/float64(dl))
	}
	b.ReportMetric(median(lengthNS), "length-ns/B")
	b.ReportMetric(median(lineNS), "line-ns/B")
	b.ReportMetric(median(ratio), "x-length")
	for _, s := range []*straddler{length, line} {
		if st := s.srv.Stats(); st.FramesOut != int64(b.N) {
			b.Fatalf("%s server answered %d frames, want %d", s.srv.Config().Codec, st.FramesOut, b.N)
		}
	}
}

// BenchmarkBystander measures the round trips of a bystander connection
// sending small lines, one in flight, alone (stream=0) and beside a client
// that streams 60 KiB lines (line Max 64 KiB), each in two writes of 30 KiB,
// as fast as the server echoes them, with at most 4 lines unanswered
// (stream=1). It reports the bystander's worst and p99 round trip in ms, the
// streamer's echoed MiB/s to show it was busy, and, to tell a run disturbed
// by other work on the machine, the CPU use and wait of the processes
// (reportProcs) and TCP's memory pressure and timeouts (reportTCP). The
// target: worst-ms at stream=1 within 2 ms of worst-ms at stream=0 of the
// same model and proc. proc=in runs the server in this process, proc=pinned
// as an echoloop process on CPU 0 with the clients on CPU 1 (see
// forEachProc). Each op is one bystander round trip:
//
//	go test -run '^$' -bench Bystander -benchtime 5000x ./bench/model
//	go test -run '^$' -bench 'Bystander/proc=pinned' -benchtime 5000x ./bench/model
func BenchmarkBystander(b *testing.B) {
	forEachProc(b, func(b *testing.B, start startFunc) {
		for _, stream := range []int{0, 1} {
			for _, m := range model.Names() {
				b.Run(fmt.Sprintf("stream=%d/model=%s", stream, m), func(b *testing.B) { benchBystander(b, start, m, stream > 0) })
			}
		}
	})
}

func benchBystander(b *testing.B, start startFunc, m string, stream bool) {
	const (
		lineSize = 60 << 10
		window   = 4 // lines the streamer has written and not yet read back
	)
	codec := frame.Line{Max: 64 << 10}
	srv := start(b, m, session.Config{Codec: codec})
	reportTCP(b)
	deadline := time.Now().Add(attackLimit)

	stop := make(chan struct{})
	var streamWG sync.WaitGroup
	// Stop the streamer on the way out, a Fatal's included.
	defer func() { close(stop); streamWG.Wait() }()
	var streamed atomic.Int64 // payload bytes echoed to the streamer and checked
	if stream {
		sc := servertest.Dial(b, srv.Addr())
		_ = sc.SetDeadline(deadline.Add(5 * time.Second))
		payload := bytes.Repeat([]byte("0123456789abcdef"), lineSize/16)
		line, _ := codec.Append(nil, payload)
		half := len(line) / 2
		// The writer takes a slot in inflight before each line, the reader
		// gives one back before it reads a line: at most window lines are
		// ever unanswered, so the streamer never needs the server to buffer
		// for it, yet the server always has a line to echo.
		inflight := make(chan struct{}, window-1)
		streamWG.Go(func() {
			defer close(inflight)
			for {
				select {
				case <-stop:
					return
				case inflight <- struct{}{}:
				}
				if _, err := sc.Write(line[:half]); err != nil {
					b.Errorf("streamer write: %v", err)
					return
				}
				if _, err := sc.Write(line[half:]); err != nil {
					b.Errorf("streamer write: %v", err)
					return
				}
			}
		})
		streamWG.Go(func() {
			echo := make([]byte, len(line))
			for range inflight {
				if _, err := io.ReadFull(sc, echo); err != nil {
					b.Errorf("streamer read: %v", err)
					sc.Close() // unblocks the writer
					return
				}
				if !bytes.Equal(echo, line) {
					b.Error("streamer: echo differs from the line sent")
					sc.Close()
					return
				}
				streamed.Add(lineSize)
			}
		})
		servertest.Eventually(b, "the streamer's first echo", func() bool { return streamed.Load() > 0 })
	}

	by := servertest.Dial(b, srv.Addr())
	_ = by.SetDeadline(deadline.Add(5 * time.Second))
	req, _ := codec.Append(nil, []byte("bystander: a small line"))
	reply := make([]byte, len(req))
	lat := make([]time.Duration, 0, b.N)
	streamed0 := streamed.Load()
	b.ResetTimer()
	for range b.N {
		if time.Now().After(deadline) {
			b.Logf("stopped at the time limit after %d of %d round trips", len(lat), b.N)
			break
		}
		t0 := time.Now()
		if _, err := by.Write(req); err != nil {
			b.Fatalf("bystander write: %v", err)
		}
		if _, err := io.ReadFull(by, reply); err != nil {
			b.Fatalf("bystander read: %v", err)
		}
		lat = append(lat, time.Since(t0))
		if !bytes.Equal(reply, req) {
			b.Fatal("bystander: echo differs from the line sent")
		}
	}
	b.StopTimer()
	elapsed := b.Elapsed()
	echoed := streamed.Load() - streamed0

	slices.Sort(lat)
	b.ReportMetric(millis(quantile(lat, 1)), "worst-ms")
	b.ReportMetric(millis(quantile(lat, 0.99)), "p99-ms")
	if stream {
		b.ReportMetric(float64(echoed)/(1<<20)/elapsed.Seconds(), "stream-MiB/s")
	}
}

// BenchmarkSlowReadersBeside runs 200 slow readers (clients that write
// length frames as fast as they can and never read a reply) beside 20
// normal clients doing round trips of 64-byte frames, one in flight each.
// MaxPending is 256 KiB and WriteTimeout 1s, so the server closes each slow
// reader within a second or two of its stalling; slow readers are not
// replaced. The normal clients go on until every slow reader is gone and
// they have made at least b.N round trips in all, so the run covers the
// whole attack whatever b.N is (and ns/op is the wall time over the round
// trips made). The slow readers run in a child process of their own (see
// startFlooders), on the clients' CPU under proc=pinned. It reports the
// normal clients' median, p99.9 and max round
// trip in ms (targets for the last two: 20 and 100), the slow readers the
// server closed as slow consumers (slow-closed, of 200), the seconds from
// their first dial to the last one's end (attack-s), the bytes the server
// read per slow reader (read-KiB/slow: what one costs it), and, as Bystander
// does, the processes' CPU use and wait and TCP's memory pressure and
// timeouts. proc=in runs the server in this process, proc=pinned as an
// echoloop process on CPU 0 with the clients on CPU 1 (see forEachProc):
//
//	go test -run '^$' -bench SlowReadersBeside -benchtime 20x ./bench/model
//	go test -run '^$' -bench 'SlowReadersBeside/proc=pinned' -benchtime 20x ./bench/model
func BenchmarkSlowReadersBeside(b *testing.B) {
	forEachProc(b, func(b *testing.B, start startFunc) {
		for _, m := range model.Names() {
			b.Run("model="+m, func(b *testing.B) { benchSlowReadersBeside(b, start, m) })
		}
	})
}

func benchSlowReadersBeside(b *testing.B, start startFunc, m string) {
	const (
		slowN, normalN = 200, 20
		maxPending     = 256 << 10
	)
	codec := frame.Length{}
	srv := start(b, m, session.Config{Codec: codec, MaxPending: maxPending, WriteTimeout: time.Second})
	reportTCP(b)
	deadline := time.Now().Add(attackLimit)
	normal := make([]net.Conn, normalN)
	for i := range normal {
		normal[i] = servertest.Dial(b, srv.Addr())
	}

	// The slow readers run in a child process: sharing this one's
	// scheduler, their 200 goroutines, always runnable while the event
	// loop reads them, kept the normal clients' goroutines waiting in the
	// run queue for up to 100 ms, the load generator's delay and not the
	// server's. Under proc=pinned the child inherits this process's CPU.
	flooders := startFlooders(b, srv.Addr(), slowN, 16<<10, deadline)
	t0 := time.Now()
	if err := flooders.send("go"); err != nil {
		b.Fatal(err)
	}
	servertest.Eventually(b, "every slow reader connected", func() bool { return flooders.dialed.Load() == slowN })

	req, _ := codec.Append(nil, bytes.Repeat([]byte("n"), 64))
	lat := make([][]time.Duration, normalN)
	var rtts atomic.Int64
	b.ResetTimer()
	var wg sync.WaitGroup
	for i, c := range normal {
		lat[i] = make([]time.Duration, 0, b.N/normalN+1)
		wg.Go(func() {
			reply := make([]byte, len(req))
			_ = c.SetDeadline(deadline.Add(5 * time.Second))
			for rtts.Load() < int64(b.N) || flooders.gone.Load() < slowN {
				if time.Now().After(deadline) {
					b.Errorf("normal client %d stopped at the time limit after %d round trips", i, len(lat[i]))
					return
				}
				t0 := time.Now()
				if _, err := c.Write(req); err != nil {
					b.Errorf("normal client write: %v", err)
					return
				}
				if _, err := io.ReadFull(c, reply); err != nil {
					b.Errorf("normal client read: %v", err)
					return
				}
				lat[i] = append(lat[i], time.Since(t0))
				rtts.Add(1)
				if !bytes.Equal(reply, req) {
					b.Error("normal client: echo differs from the frame sent")
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	st := srv.Stats()

	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) > 0 {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(len(all)), "ns/op")
	}
	b.ReportMetric(millis(quantile(all, 0.5)), "p50-ms")
	b.ReportMetric(millis(quantile(all, 0.999)), "p999-ms")
	b.ReportMetric(millis(quantile(all, 1)), "max-ms")
	b.ReportMetric(float64(st.Closes[session.SlowConsumer]), "slow-closed")
	b.ReportMetric(time.Duration(flooders.lastGone.Load()-t0.UnixNano()).Seconds(), "attack-s")
	b.ReportMetric(float64(st.BytesIn)/slowN/1024, "read-KiB/slow")
	if other := otherCloses(st, session.SlowConsumer); len(other) > 0 {
		b.Logf("closes other than slow consumer: %v", other)
	}
}

// BenchmarkSlowReaderMemory measures what the server holds for clients that
// send and never read: each op, 50 such clients connect to the server
// (MaxPending 1 MiB, WriteTimeout 1s) and write 64 KiB length frames until
// the server closes them (or their writes stall for 3s), while
// Stats().MemoryHeld is sampled every 500µs. It reports the peak of
// MemoryHeld over all ops, per client, in units of MaxPending
// (x-max-pending; the target is about 2 or less), and that peak in MiB:
//
//	go test -run '^$' -bench SlowReaderMemory -benchtime 3x ./bench/model
func BenchmarkSlowReaderMemory(b *testing.B) {
	for _, m := range model.Names() {
		b.Run("model="+m, func(b *testing.B) { benchSlowReaderMemory(b, m) })
	}
}

func benchSlowReaderMemory(b *testing.B, m string) {
	const (
		clients    = 50
		maxPending = 1 << 20
		stall      = 3 * time.Second
	)
	codec := frame.Length{}
	srv := servertest.Start(b, model.Options{Model: m, Config: session.Config{
		Codec: codec, MaxPending: maxPending, WriteTimeout: time.Second, Logger: nopLogger,
	}})
	deadline := time.Now().Add(attackLimit)
	flood := floodOf(codec, 64<<10, 16)
	var peak int64
	var stalled atomic.Int64
	for b.Loop() {
		if time.Now().After(deadline) {
			b.Logf("stopped at the time limit")
			break
		}
		done := make(chan struct{})
		var sampler sync.WaitGroup
		var episodePeak int64
		sampler.Go(func() {
			for {
				episodePeak = max(episodePeak, srv.Stats().MemoryHeld)
				select {
				case <-done:
					return
				case <-time.After(500 * time.Microsecond):
				}
			}
		})
		var wg sync.WaitGroup
		for range clients {
			wg.Go(func() {
				c, err := net.DialTimeout("tcp", srv.Addr().String(), servertest.IOTimeout)
				if err != nil {
					b.Errorf("dial: %v", err)
					return
				}
				defer c.Close()
				if !floodUntilStalled(c, flood, stall, deadline) {
					stalled.Add(1)
				}
			})
		}
		wg.Wait()
		close(done)
		sampler.Wait()
		peak = max(peak, episodePeak)
		b.StopTimer()
		servertest.Eventually(b, "the server to let go of every client", func() bool {
			st := srv.Stats()
			return st.ConnsOpen == 0 && st.MemoryHeld == 0
		})
		b.StartTimer()
	}
	b.ReportMetric(float64(peak)/clients/maxPending, "x-max-pending")
	b.ReportMetric(float64(peak)/(1<<20), "peak-MiB")
	if n := stalled.Load(); n > 0 {
		b.Logf("%d clients gave up after stalling %v without the server closing them", n, stall)
	}
	if other := otherCloses(srv.Stats(), session.SlowConsumer); len(other) > 0 {
		b.Logf("closes other than slow consumer: %v", other)
	}
}

// floodOf returns count frames of size bytes each, encoded back to back.
func floodOf(codec frame.Codec, size, count int) []byte {
	f, _ := codec.Append(nil, bytes.Repeat([]byte("s"), size))
	return bytes.Repeat(f, count)
}

// floodUntilClosed writes flood over and over on c, never reading, until the
// server closes c (it returns true), stop is closed or deadline passes. The
// small receive buffer makes the server's replies back up sooner. A write cut
// short by its 100ms deadline is resumed where it stopped, so the frames stay
// whole.
func floodUntilClosed(c net.Conn, flood []byte, stop <-chan struct{}, deadline time.Time) bool {
	_ = c.(*net.TCPConn).SetReadBuffer(16 << 10)
	for off := 0; time.Now().Before(deadline); {
		_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		n, err := c.Write(flood[off:])
		off = (off + n) % len(flood)
		if err == nil {
			continue
		}
		if ne, ok := errors.AsType[net.Error](err); !ok || !ne.Timeout() {
			return true
		}
		select {
		case <-stop:
			return false
		default:
		}
	}
	return false
}

// floodUntilStalled is floodUntilClosed that gives up (returning false) once
// no byte could be written for stall.
func floodUntilStalled(c net.Conn, flood []byte, stall time.Duration, deadline time.Time) bool {
	_ = c.(*net.TCPConn).SetReadBuffer(16 << 10)
	progress := time.Now()
	for off := 0; time.Now().Before(deadline); {
		_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		n, err := c.Write(flood[off:])
		off = (off + n) % len(flood)
		if n > 0 {
			progress = time.Now()
		}
		if err == nil {
			continue
		}
		if ne, ok := errors.AsType[net.Error](err); !ok || !ne.Timeout() {
			return true
		}
		if time.Since(progress) >= stall {
			return false
		}
	}
	return false
}

// otherCloses returns the close counts for reasons other than want and the
// normal ends of a connection (peer closed, reset, shutdown).
func otherCloses(st session.Stats, want session.Reason) map[session.Reason]int64 {
	other := map[session.Reason]int64{}
	for r, n := range st.Closes {
		switch r {
		case want, session.PeerClosed, session.Reset, session.ServerStopping:
		default:
			other[r] = n
		}
	}
	return other
}

// quantile is the nearest-rank q-quantile of sorted (q=1 is the maximum),
// zero if it is empty.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// median is the median of xs, which it sorts.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	if n := len(xs); n%2 == 0 {
		return (xs[n/2-1] + xs[n/2]) / 2
	}
	return xs[len(xs)/2]
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
