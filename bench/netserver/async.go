package netserver

import (
	"errors"
	"os"
	"sync"
	"time"

	"echoloop/eventloop/session"
	"echoloop/handlers"
)

// Frames sent to a connection through its AsyncConn go to the connection's
// outbox, and a writer goroutine writes them. Send appends the encoded frame
// under the outbox's lock and returns; it never touches the socket, so a
// goroutine writing to many connections (a broadcast, a worker) is never held
// up by one whose peer does not read, and no lock but the socket's own write
// lock (wmu, which every write to the socket takes) is held while a socket
// write blocks. The writer is started by the Send that finds the outbox idle
// and exits once it is empty; it takes everything queued at once, so the
// frames queued while its previous write was in progress go out in one
// write.
//
// A peer that does not read is cut by the same policy as for replies: an
// outbox that would pass MaxPending (queued plus being written) closes the
// connection as SlowConsumer, and so does a write that makes no progress for
// the write timeout. Either way the connection's goroutine is woken to close
// it, and the writer is stopped. What the outbox holds counts toward the
// memory budget, and toward the connection's share when an eviction pass
// ranks the biggest holders.

// outbox holds a connection's frames sent and not yet written.
type outbox struct {
	mu      sync.Mutex
	queued  []byte // encoded frames waiting, in the order sent
	frames  int    // how many frames queued holds
	writing []byte // the batch the writer is writing now
	running bool   // a writer goroutine runs
	broken  bool   // a write failed: later frames are dropped
	held    int64  // the buffers' capacity, as counted in the memory total
}

// Send implements handlers.AsyncConn: it queues the frame in the outbox,
// starting a writer if none runs.
func (a asyncConn) Send(payload []byte) error {
	c := a.c
	b := &c.box
	b.mu.Lock()
	if c.closed.Load() || b.broken {
		b.mu.Unlock()
		return handlers.ErrClosed
	}
	n := len(b.queued)
	queued, err := c.Codec().Append(b.queued, payload)
	if err != nil {
		b.mu.Unlock()
		return err
	}
	if len(queued)+len(b.writing) > c.srv.opts.MaxPending {
		// Too slow: nothing more is queued, and what is goes (a running
		// writer drops it; otherwise it goes now).
		b.queued, b.broken = queued[:n], true
		if !b.running {
			b.queued, b.frames = nil, 0
		}
		delta := b.recount()
		b.mu.Unlock()
		c.addHeld(delta)
		c.cut()
		return handlers.ErrClosed
	}
	b.queued = queued
	b.frames++
	start := !b.running
	if start {
		b.running = true
		// The connection is not closed (checked under mu, which record
		// takes too), so its goroutine has not reached writers.Wait.
		c.writers.Add(1)
	}
	delta := b.recount()
	b.mu.Unlock()
	c.addHeld(delta)
	if start {
		go c.writeOutbox()
	}
	return nil
}

// writeOutbox is the writer: it writes what is queued, batch after batch,
// until the outbox is empty or a write fails.
func (c *conn) writeOutbox() {
	defer c.writers.Done()
	b := &c.box
	var spare []byte
	for {
		b.mu.Lock()
		if len(b.queued) == 0 || b.broken {
			// Done: give the buffers back, so an idle outbox holds nothing.
			b.running = false
			b.queued, b.frames, b.writing = nil, 0, nil
			delta := b.recount()
			b.mu.Unlock()
			c.addHeld(delta)
			return
		}
		p, frames := b.queued, b.frames
		b.queued, b.frames, b.writing = spare[:0], 0, p
		b.mu.Unlock()

		c.wmu.Lock()
		err := c.writeAll(p)
		c.wmu.Unlock()

		b.mu.Lock()
		b.writing, spare = nil, p
		if err != nil {
			b.broken = true
		}
		delta := b.recount()
		b.mu.Unlock()
		c.addHeld(delta)
		if err != nil {
			c.outboxFailed(err)
			continue // the top of the loop finishes
		}
		c.CountAsyncFrames(frames)
		c.kickWatch()
	}
}

// recount brings held up to date with the buffers' capacity and returns the
// change. Called with mu held.
func (b *outbox) recount() int64 {
	held := int64(cap(b.queued) + cap(b.writing))
	delta := held - b.held
	b.held = held
	return delta
}

// addHeld adds delta to what c's outbox holds and to the server's total.
func (c *conn) addHeld(delta int64) {
	if delta != 0 {
		c.sendHeld.Add(delta)
		c.srv.addMemory(delta)
	}
}

// outboxFailed has the connection closed after its writer's write failed:
// as a slow consumer when the write made no progress for the write timeout
// (the frame is cut: the stream cannot go on). Other failures (the peer
// reset, the socket closed, an eviction) are found by the connection's
// goroutine itself.
func (c *conn) outboxFailed(err error) {
	if errors.Is(err, os.ErrDeadlineExceeded) && !c.stopReq.Load() && !c.evicted() {
		c.cut()
	}
}

// cut closes the connection as SlowConsumer: it stops the writer (a write in
// progress ends at its deadline, which is set in the past) and wakes the
// connection's goroutine, which records the reason and closes.
func (c *conn) cut() {
	c.stalled.Store(true)
	now := time.Now()
	_ = c.nc.SetWriteDeadline(now)
	_ = c.nc.SetReadDeadline(now)
	c.poke()
}

// Close asks the connection's goroutine to close; frames sent before it are
// written first.
func (a asyncConn) Close() error {
	if a.c.closed.Load() {
		return handlers.ErrClosed
	}
	a.c.closeReq.Store(true)
	_ = a.c.nc.SetReadDeadline(time.Now())
	a.c.poke()
	return nil
}

// Resume implements handlers.AsyncConn: the connection's goroutine, waiting
// out the pause, serves what waited and reads on.
func (a asyncConn) Resume() error {
	if a.c.closed.Load() {
		return handlers.ErrClosed
	}
	a.c.resumeReq.Store(true)
	a.c.poke()
	return nil
}

// poke wakes the connection's goroutine if it waits out a pause. Safe from
// any goroutine; a poke while it does not wait is kept for the next wait,
// which checks its flags first anyway.
func (c *conn) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// waitResume waits while the handler has the connection paused, without
// reading (TCP flow control holds the peer back), until AsyncConn.Resume
// or a wake-up: Shutdown, a close request, a slow-consumer cut, an
// eviction. It reports whether the pause ended; after a wake-up the
// connection is still paused and the caller's read notices why.
func (c *conn) waitResume() bool {
	for !c.resumeReq.Swap(false) {
		if c.woken() {
			return false
		}
		<-c.wake
	}
	c.Resume()
	return !c.Paused()
}

// asyncConn is the handlers.AsyncConn of a conn.
type asyncConn struct{ c *conn }

var _ handlers.AsyncConn = asyncConn{}

func (a asyncConn) ID() uint64 { return a.c.ID() }

// awaitOwed runs once no more frames will come and every frame the peer
// sent is served (it half-closed, or Shutdown's drain is over), when the
// handler may still owe replies (handlers.Finisher): it tells the handler,
// waits for its Close, and then for the frames sent before it to be
// written. A slow-consumer cut, an eviction, Shutdown's forced close, or the
// idle timeout (no reply written for that long) end the wait early. It
// returns the error serve closes with: eof when the handler closed, nil
// when a reason was recorded.
func (c *conn) awaitOwed(eof error) error {
	c.srv.finisher.Finish(asyncConn{c})
	var idle <-chan time.Time
	var timer *time.Timer
	if d := c.srv.opts.IdleTimeout; d > 0 {
		timer = time.NewTimer(d)
		defer timer.Stop()
		idle = timer.C
	}
	written := c.written.Load()
	for {
		switch {
		case c.forced.Load():
			c.CloseFor(session.ServerStopping, nil)
			return nil
		case c.evicted():
			c.CloseFor(session.MemoryLimit, nil)
			return nil
		case c.stalled.Load():
			c.CloseFor(session.SlowConsumer, nil)
			return nil
		case c.closeReq.Load():
			c.writers.Wait()
			return eof
		}
		select {
		case <-c.wake: // Shutdown's interrupt alone goes on waiting
		case <-idle:
			if w := c.written.Load(); w != written {
				written = w
				timer.Reset(c.srv.opts.IdleTimeout)
				continue
			}
			c.CloseFor(session.Idle, nil)
			return nil
		}
	}
}
