package eventloop

import (
	"cmp"
	"context"
	"math/bits"
	"slices"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"echoloop/eventloop/session"
)

// connExt is what a connection needs while it holds something for its peer
// beyond a callback: a partial frame (or input left unserved while paused),
// replies the socket has not taken yet, or a lingering close. A connection
// gets one when it starts holding and gives it back when it holds nothing,
// so an idle connection costs only its conn. Every connection with an ext is
// in its loop's busy list, which the sweep walks each tick: the work per
// tick follows the busy connections, not all of them.
type connExt struct {
	// in holds input gnet has handed over but the session has not consumed:
	// the start of a partial frame, followed while c is paused by whatever
	// arrives meanwhile. It starts empty and grows with what arrives (never
	// with what a length header announces); it is the loop's, and its
	// backing array is given back to inBufs when it empties.
	in []byte

	frameStart int64 // server clock (ns) when the partial frame in `in` began; 0 if none
	held       int64 // bytes this conn last added to the memory counter
	acked      int64 // reply bytes the peer had acknowledged at the last check
	unsent     int   // bytes in the kernel's send queue at the last check
	progress   int64 // server clock when the peer last took replies (or began to wait)
	idx        int   // index in loopState.busy

	pending   int   // gnet's pending output at the last check
	header    bool  // awaiting a PROXY header, collected in `in`; see proxy.go
	paused    bool  // output waits: frames are not served until it drains (see loopState.pauseAbove)
	readOff   bool  // the loop has stopped reading c (see readSwitch)
	evicted   bool  // closed for the memory budget: its pending output is dropped
	lingering bool  // closing gracefully: see loopState.linger
	finishing bool  // drained by a shutdown; the handler closes it (see loopState.drain)
	shut      bool  // lingering and the write side is shut down
	lingerBy  int64 // server clock when a lingering close ends at the latest
	discard   int   // input a lingering close may still discard
}

// extend returns c's ext, making one and putting c in the busy list if it
// has none.
func (l *loopState) extend(c *conn) *connExt {
	if c.ext == nil {
		now := l.srv.clock()
		var e *connExt
		if n := len(l.spareExts); n > 0 {
			e, l.spareExts = l.spareExts[n-1], l.spareExts[:n-1]
		} else {
			e = new(connExt)
		}
		*e = connExt{idx: len(l.busy), progress: now}
		c.ext = e
		l.busy = append(l.busy, c)
	}
	return c.ext
}

// release gives back c's ext when c no longer holds anything, or at once
// when force is set (c has closed).
func (l *loopState) release(c *conn, force bool) {
	e := c.ext
	if e == nil {
		return
	}
	if !force && (len(e.in) > 0 || e.header || e.paused || e.readOff || e.lingering || e.finishing || e.unsent > 0 || c.gc.OutboundBuffered() > 0) {
		return
	}
	if !force {
		l.noteWrite(c) // its replies may still wait in the kernel
	}
	l.account(c, 0)
	putBuf(e.in)
	if e.paused {
		l.srv.fast.Add(-1)
	}
	if e.lingering {
		l.srv.fast.Add(-1)
	}
	last := len(l.busy) - 1
	moved := l.busy[last]
	l.busy[e.idx], moved.ext.idx = moved, e.idx
	l.busy[last] = nil
	l.busy = l.busy[:last]
	c.ext = nil
	if len(l.spareExts) < maxSpareExts {
		e.in = nil
		l.spareExts = append(l.spareExts, e)
	}
}

// maxSpareExts is how many released exts a loop keeps for reuse, so that
// frames straddling reads do not allocate one each.
const maxSpareExts = 256

// held is what c holds for its peer, as the server holds it: the capacity
// of its input buffer, and its pending output as gnet keeps it: in a ring
// of up to outRing bytes (a power of two), then in pooled blocks the size of
// each write, which for the loop's batched replies are close to their bytes.
func held(c *conn) int64 {
	var n int64
	if c.ext != nil {
		n = int64(cap(c.ext.in))
	}
	switch p := c.gc.OutboundBuffered(); {
	case p > outRing:
		n += int64(p)
	case p > 0:
		n += int64(1) << bits.Len(uint(p-1))
	}
	return n
}

// outRing is the most gnet keeps of a connection's pending output in its
// ring (gnet.WithWriteBufferCap's default) before it chains blocks.
const outRing = 64 << 10

// account records that c now holds n bytes, and reports whether the server
// as a whole holds more than its memory budget.
func (l *loopState) account(c *conn, n int64) bool {
	e := c.ext
	if e == nil {
		return false
	}
	total := l.srv.counters.AddMemory(n - e.held)
	e.held = n
	budget := l.srv.opts.MemoryBudget()
	return budget > 0 && total > budget
}

// settle updates what c holds after its input or output changed: it makes
// or gives back c's ext, updates the memory counter, and evicts the biggest
// holders on this loop when the server is over its budget. cur is the
// connection whose callback is running (or nil): it is not closed under
// gnet's feet but marked, and settle reports whether it was evicted.
func (l *loopState) settle(c, cur *conn) (evicted bool) {
	if c.ext == nil {
		if c.gc.OutboundBuffered() == 0 {
			return false
		}
		l.extend(c)
	}
	if l.account(c, held(c)) {
		evicted = l.evict(cur)
	}
	l.release(c, false)
	return evicted
}

// evict closes the connections that hold the most, with reason
// MemoryLimit, until the server is a tenth under its memory budget (redis's
// maxmemory-clients: the biggest clients pay; the margin keeps one eviction
// from following another at every read). With one loop it does so at once,
// among this loop's connections: all of them. With several it starts a
// round across the loops (evictAcross) and returns; the loops close their
// share within a few turns. cur, the connection whose callback is running,
// is marked rather than closed; evict reports whether it was.
func (l *loopState) evict(cur *conn) (evictedCur bool) {
	s := l.srv
	if s.opts.Loops > 1 {
		s.evictAcross()
		return false
	}
	return l.evictFrom(0, cur)
}

// evictFrom closes this loop's connections holding at least least bytes,
// the biggest first, while the server is over a tenth under its budget. It
// sorts the busy list by size: O(busy log busy), only when over budget.
// cur is as for evict.
func (l *loopState) evictFrom(least int64, cur *conn) (evictedCur bool) {
	s := l.srv
	budget := s.opts.MemoryBudget()
	target := budget - budget/10
	over := s.counters.Memory() - target
	if over <= 0 {
		return false
	}
	for _, c := range l.biggest(over) {
		if over <= 0 || c.ext == nil || c.ext.held < least {
			break
		}
		over -= c.ext.held
		s.rejectLog.Warn().Uint64("conn", c.ID()).Stringer("remote", c.RemoteAddr()).
			Int64("held", c.ext.held).Int64("max_memory", budget).
			Msg("connection closed: over the memory budget")
		c.CloseFor(session.MemoryLimit, nil) // no-op for one already closing
		c.ext.evicted = true                 // so a lingering one hands off nothing
		if c == cur {
			evictedCur = true
			continue
		}
		_ = l.el.Close(c.gc)
	}
	return evictedCur
}

// biggest returns this loop's connections that hold memory, the biggest
// first, as many as it takes to add up to want bytes (or all of them).
func (l *loopState) biggest(want int64) []*conn {
	cs := make([]*conn, 0, len(l.busy))
	for _, c := range l.busy {
		if c.ext.held > 0 {
			cs = append(cs, c)
		}
	}
	slices.SortFunc(cs, func(a, b *conn) int { return cmp.Compare(b.ext.held, a.ext.held) })
	for i, c := range cs {
		if want -= c.ext.held; want <= 0 {
			return cs[:i+1]
		}
	}
	return cs
}

// evictAcross runs one eviction round over every loop, so that with several
// loops it is still the server's biggest holders that go, wherever they
// are, not the biggest on whichever loop noticed: each loop lists its
// biggest holders, enough to cover the excess; the round finds the size
// from which the server's biggest holders cover it; and each loop closes
// its holders of at least that size, biggest first, while the server is
// still over. It runs on a goroutine of its own, since a loop must not wait
// for another, and one round runs at a time.
func (s *Server) evictAcross() {
	if !s.evicting.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer s.evicting.Store(false)
		budget := s.opts.MemoryBudget()
		over := s.counters.Memory() - (budget - budget/10)
		if over <= 0 {
			return
		}
		var mu sync.Mutex
		var sizes []int64
		if !s.onEveryLoop(func(l *loopState) {
			cs := l.biggest(over)
			mu.Lock()
			defer mu.Unlock()
			for _, c := range cs {
				sizes = append(sizes, c.ext.held)
			}
		}) {
			return
		}
		slices.SortFunc(sizes, func(a, b int64) int { return cmp.Compare(b, a) })
		least, sum := int64(0), int64(0)
		for _, n := range sizes {
			least, sum = n, sum+n
			if sum >= over {
				break
			}
		}
		s.onEveryLoop(func(l *loopState) { l.evictFrom(least, nil) })
	}()
}

// onEveryLoop runs fn on every loop and waits until each has, or the server
// has stopped; it reports whether all ran.
func (s *Server) onEveryLoop(fn func(l *loopState)) bool {
	loops := s.loopStates()
	ran := make(chan struct{}, len(loops))
	queued := 0
	for _, l := range loops {
		err := l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			fn(l)
			ran <- struct{}{}
			return nil
		}))
		if err == nil {
			queued++
		}
	}
	for range queued {
		select {
		case <-ran:
		case <-s.done:
			return false
		}
	}
	return queued == len(loops)
}

// stash appends in to c's input buffer, growing it geometrically from what
// has arrived.
func (l *loopState) stash(c *conn, in []byte) {
	e := l.extend(c)
	if len(e.in) == 0 && len(in) > 0 {
		e.frameStart = l.srv.clock() // a frame begins with these bytes
	}
	var copied int
	e.in, copied = appendBuf(e.in, in)
	l.copied += int64(copied)
}

// consume drops the first n bytes of c's input buffer, moving a leftover
// partial frame to the front (each byte moves at most once: a leftover
// follows a frame completed in the same call, so it arrived in that call).
func (l *loopState) consume(c *conn, n int) {
	e := c.ext
	if n <= 0 {
		return
	}
	rest := copy(e.in, e.in[n:])
	l.copied += int64(rest)
	if rest == 0 {
		putBuf(e.in)
		e.in = nil
		return
	}
	e.in = e.in[:rest]
}

// pause stops serving c's frames, and reading c where the loop can, until
// its pending output drains to l.resumeAt; input arriving meanwhile is kept
// in c's input buffer, up to MaxPending.
func (l *loopState) pause(c *conn) {
	e := l.extend(c)
	if !e.paused {
		e.paused = true
		l.srv.fast.Add(1)
	}
	l.stopReading(c)
}

func (l *loopState) unpause(c *conn) {
	if e := c.ext; e != nil && e.paused {
		e.paused = false
		l.srv.fast.Add(-1)
		if !c.Paused() {
			l.startReading(c)
		}
	}
}

// stopReading has the loop stop reading c, where it can (see readSwitch).
// It asks the poller even when c.ext.readOff is set: gnet may have turned
// reading back on since.
func (l *loopState) stopReading(c *conn) {
	if !l.canStop {
		return
	}
	e := l.extend(c)
	if err := l.reads.set(c.gc.Fd(), false, c.gc.OutboundBuffered() > 0); err == nil {
		e.readOff = true
	}
}

// startReading has the loop read c again after stopReading.
func (l *loopState) startReading(c *conn) {
	e := c.ext
	if e == nil || !e.readOff {
		return
	}
	e.readOff = false
	if err := l.reads.set(c.gc.Fd(), true, c.gc.OutboundBuffered() > 0); err != nil {
		// Not closed here: this may run inside c's own callback.
		// The Wake's OnTraffic closes it.
		c.CloseFor(session.IOError, err)
		_ = c.gc.Wake(nil)
	}
}

// linger closes c gracefully (nginx's lingering close): its queued replies
// are written, its sending side is shut down once they are, and what the
// peer still sends is read and discarded, for at most LingerTime and
// LingerBytes, so that closing does not reset the connection while the
// peer still has replies to read. The peer's EOF, or either bound, ends it.
// It reports whether c must close at once instead (no lingering configured).
func (l *loopState) linger(c *conn) (closeNow bool) {
	opts := &l.srv.opts
	if c.closed.Load() {
		return false // gnet has closed it already
	}
	if opts.LingerTime < 0 {
		return true
	}
	e := l.extend(c)
	if e.lingering {
		return false
	}
	l.unpause(c)
	l.startReading(c) // to discard what the peer still sends
	putBuf(e.in)
	e.in = nil
	e.lingering = true
	e.lingerBy = l.srv.clock() + int64(opts.LingerTime)
	e.discard = opts.LingerBytes
	l.srv.fast.Add(1)
	l.shutWrite(c)
	return false
}

// shutWrite shuts down c's sending side once its replies are all written.
func (l *loopState) shutWrite(c *conn) {
	e := c.ext
	if e.shut || c.gc.OutboundBuffered() > 0 {
		return
	}
	e.shut = true
	_ = unix.Shutdown(c.gc.Fd(), unix.SHUT_WR)
}

// checkBusy is the sweep's pass over the busy connections: it resumes
// paused ones whose output has drained (to l.resumeAt), closes those whose
// output has made no progress for the write timeout, whose frame has taken
// longer than the frame timeout, or whose lingering close is over, and
// shuts down the sending side of lingering ones whose replies are out.
func (l *loopState) checkBusy() {
	s := l.srv
	now := s.clock()
	opts := &s.opts
	for i := len(l.busy) - 1; i >= 0; i-- {
		if i >= len(l.busy) {
			continue // closes below can shrink the list by more than one
		}
		c := l.busy[i]
		e := c.ext
		pending := c.gc.OutboundBuffered()
		if opts.WriteTimeout > 0 {
			l.checkSendQueue(c, now)
		}
		if e.readOff && e.paused {
			// Not idle: its peer's input waits for the loop, not the
			// other way round, until its replies are written; the write
			// timeout watches those. (One the handler paused stays under
			// the idle timeout: a handler that never resumes it must not
			// hold it for ever.)
			l.touch(c)
		}
		switch {
		case e.lingering:
			l.shutWrite(c)
			if now >= e.lingerBy {
				_ = l.el.Close(c.gc)
				continue
			}
		case e.paused && pending <= l.resumeAt:
			l.unpause(c)
			_ = c.gc.Wake(nil) // serve what was kept meanwhile
		case e.header:
			if l.headerTimedOut(c, now) {
				l.closeHeader(c)
				continue
			}
		case !e.paused && !c.Paused() && e.frameStart != 0 && opts.FrameTimeoutOn() &&
			time.Duration(now-e.frameStart) >= opts.FrameTimeout:
			l.closeFor(c, session.SlowFrame)
			continue
		}
		if (pending > 0 || e.unsent > 0) && opts.WriteTimeout > 0 && time.Duration(now-e.progress) >= opts.WriteTimeout {
			l.closeFor(c, session.SlowConsumer)
			continue
		}
		if c.ext != nil && l.account(c, held(c)) {
			_ = l.evict(nil)
		}
		if c.ext != nil {
			l.release(c, false)
		}
	}
}

// checkSendQueue notes whether the peer took any of c's replies since the
// last check. The replies the server wrote wait in two places: gnet's
// outbound buffer and, before that, the kernel's send queue (in flight, and
// up to session.UnsentLimit unsent); a peer that stops reading can leave
// all of them in the latter, so the write timeout watches what the peer
// acknowledges, not only what gnet holds.
func (l *loopState) checkSendQueue(c *conn, now int64) {
	e := c.ext
	pending := c.gc.OutboundBuffered()
	shrank := pending < e.pending
	e.pending = pending
	acked, unsent, err := sendQueue(c.gc.Fd(), &l.tcpInfo)
	if err != nil {
		// No kernel figures here: what gnet holds shrinking is progress.
		e.unsent = 0
		if shrank || pending == 0 {
			e.progress = now
		}
		return
	}
	if acked > e.acked || shrank || unsent == 0 && pending == 0 {
		e.progress = now
	}
	e.acked, e.unsent = acked, unsent
}

// sendWatch is a connection that is not busy but whose replies wait in the
// kernel's send queue: most are acknowledged by the next check, so watching
// costs a slot in the loop's list, not an ext per written connection.
type sendWatch struct {
	c        *conn
	acked    int64 // bytes the peer had acknowledged at the last check
	progress int64 // server clock when that last grew (or the watch began)
}

// noteWrite lists c, once until the next sweep, for the write-timeout
// watch: a connection written to, or one that stops being busy, may have
// replies waiting in the kernel. One comparison on the hot path.
func (l *loopState) noteWrite(c *conn) {
	if c.wrote == 0 && l.srv.opts.WriteTimeout > 0 {
		c.wrote = 1
		l.written = append(l.written, c)
	}
}

// watchWrites runs each sweep with a write timeout: it looks at the send
// queue of every connection listed by noteWrite (one ioctl each, and a
// getsockopt for those it finds holding some) and watches those whose
// replies still wait in the kernel.
func (l *loopState) watchWrites(now int64) {
	for i, c := range l.written {
		l.written[i] = nil
		if c.closed.Load() {
			continue
		}
		c.wrote = 0
		if c.ext != nil {
			continue // busy: checkBusy watches it
		}
		// Most peers have taken their replies by now: the send queue
		// alone tells, and only those still holding some cost a second
		// system call.
		if unsent, err := session.UnsentBytes(c.gc.Fd()); err != nil || unsent == 0 {
			continue
		}
		if acked, err := bytesAcked(c.gc.Fd(), &l.tcpInfo); err == nil {
			c.wrote = -1
			l.watched = append(l.watched, sendWatch{c: c, acked: acked, progress: now})
		}
	}
	l.written = l.written[:0]
}

// checkWatched closes, as SlowConsumer, each watched connection whose peer
// has acknowledged nothing for the write timeout, and stops watching those
// whose send queue has emptied or that became busy.
func (l *loopState) checkWatched(now int64) {
	keep := l.watched[:0]
	for _, w := range l.watched {
		c := w.c
		if c.closed.Load() {
			continue
		}
		acked, unsent, err := sendQueue(c.gc.Fd(), &l.tcpInfo)
		if c.ext != nil || err != nil || unsent == 0 {
			c.wrote = 0
			continue
		}
		if acked > w.acked {
			w.acked, w.progress = acked, now
		}
		if time.Duration(now-w.progress) >= l.srv.opts.WriteTimeout {
			c.wrote = 0
			l.closeFor(c, session.SlowConsumer)
			continue
		}
		keep = append(keep, w)
	}
	clear(l.watched[len(keep):])
	l.watched = keep
}
