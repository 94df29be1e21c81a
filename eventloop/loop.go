package eventloop

import (
	"context"
	"time"

	"github.com/panjf2000/gnet/v2"

	"echoloop/eventloop/session"
)

// loopState is what one event loop keeps beside gnet's own state. It is
// used only on that loop's goroutine, so it needs no lock.
type loopState struct {
	srv *Server
	el  gnet.EventLoop

	// out collects the encoded replies of one OnTraffic call. gnet's Write
	// either writes it at once or copies it into the connection's outbound
	// buffer, so it is free again when Write returns and one buffer per loop
	// serves every connection.
	out []byte

	now    int64    // the loop's clock, in ticks of srv.tick, set by sweep
	wheel  *wheel   // idle-timeout wheel; nil when there is no idle timeout
	conns  connList // every conn, when there is no wheel
	paused []*conn  // conns over MaxPending, checked every sweep

	sweepTask gnet.Runnable // sweep as a Runnable, made once
}

func newLoopState(s *Server, el gnet.EventLoop) *loopState {
	l := &loopState{srv: s, el: el, now: s.ticks()}
	if s.opts.IdleTimeout > 0 {
		l.wheel = newWheel(int64(s.opts.IdleTimeout/s.tick)+1, l.now)
	}
	l.sweepTask = gnet.RunnableFunc(func(context.Context) error {
		l.sweep()
		return nil
	})
	return l
}

// maxKeptOut is the reply buffer a loop keeps between calls; a larger one,
// grown by a burst of big replies, is dropped so it does not stay pinned.
const maxKeptOut = 1 << 20

// reset empties the reply buffer for the next call, dropping it if a burst
// grew it past maxKeptOut.
func (l *loopState) reset() {
	if cap(l.out) > maxKeptOut {
		l.out = nil
	}
	l.out = l.out[:0]
}

// add starts tracking a new connection.
func (l *loopState) add(c *conn) {
	c.lastActive = int32(l.now)
	if l.wheel != nil {
		l.wheel.add(c, l.now)
	} else {
		l.conns.push(c, loopList)
	}
}

// remove stops tracking a closed connection.
func (l *loopState) remove(c *conn) {
	switch {
	case c.slot == loopList:
		l.conns.remove(c)
	case c.slot >= 0:
		l.wheel.remove(c)
	}
	if c.paused != nil {
		l.unpause(c)
	}
}

// each calls fn for every open connection on the loop.
func (l *loopState) each(fn func(c *conn)) {
	if l.wheel != nil {
		l.wheel.each(fn)
	} else {
		each(&l.conns, fn)
	}
}

// pause stops serving c's frames until its pending output drains.
func (l *loopState) pause(c *conn, pending int) {
	c.paused = &pauseState{lastPending: pending, lastProgress: l.srv.clock()}
	l.paused = append(l.paused, c)
	l.srv.paused.Add(1)
}

func (l *loopState) unpause(c *conn) {
	c.paused = nil
	for i, p := range l.paused {
		if p == c {
			last := len(l.paused) - 1
			l.paused[i], l.paused[last] = l.paused[last], nil
			l.paused = l.paused[:last]
			break
		}
	}
	l.srv.paused.Add(-1)
}

// closeFor closes c on this loop for r.
func (l *loopState) closeFor(c *conn, r session.Reason) {
	c.CloseFor(r, nil)
	_ = l.el.Close(c.gc)
}

// sweep runs on the loop every tick (gnet's ticker goroutine asks for it
// with Execute): it closes idle connections, resumes or closes paused ones,
// and drains connections while the server shuts down.
func (l *loopState) sweep() {
	s := l.srv
	l.now = s.ticks()
	if l.wheel != nil {
		l.wheel.advance(l.now, func(c *conn) { l.closeFor(c, session.Idle) })
	}
	if len(l.paused) > 0 {
		l.checkPaused()
	}
	if s.draining.Load() {
		l.drain(s.forcing.Load())
	}
}

// checkPaused resumes each paused connection whose pending output has fallen
// to half the cap, and closes one whose output has not shrunk for the write
// timeout.
func (l *loopState) checkPaused() {
	s := l.srv
	now := s.clock()
	for i := len(l.paused) - 1; i >= 0; i-- {
		c := l.paused[i]
		pending := c.gc.OutboundBuffered()
		switch {
		case pending <= s.opts.MaxPending/2:
			l.unpause(c)
			_ = c.gc.Wake(nil) // serve what was left buffered
		case pending < c.paused.lastPending:
			c.paused.lastPending, c.paused.lastProgress = pending, now
		case s.opts.WriteTimeout > 0 && time.Duration(now-c.paused.lastProgress) >= s.opts.WriteTimeout:
			l.closeFor(c, session.SlowConsumer)
		}
	}
}

// drain closes, with reason ServerStopping, every connection that has
// nothing more to answer or send: its replies are written, no unread bytes
// wait in the kernel, and what is buffered is at most a partial frame.
// When force is set the shutdown deadline has passed and every connection
// is closed as it is.
func (l *loopState) drain(force bool) {
	l.each(func(c *conn) {
		if !force && !l.drained(c) {
			return
		}
		l.closeFor(c, session.ServerStopping)
	})
}

func (l *loopState) drained(c *conn) bool {
	if c.paused != nil || c.gc.OutboundBuffered() > 0 {
		return false
	}
	if c.buffered > 0 && int(c.buffered) >= c.Need() {
		return false // a complete frame is waiting to be served
	}
	unread, err := session.UnreadBytes(c.gc.Fd())
	return err != nil || unread == 0
}
