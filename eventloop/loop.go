package eventloop

import (
	"context"
	"net"

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

	now     int64    // the loop's clock, in ticks of srv.tick, as of the last sweep or open; see clockNow
	wheel   *wheel   // idle-timeout wheel; nil when there is no idle timeout
	conns   connList // every conn, when there is no wheel
	busy    []*conn  // conns with an ext (see busy.go), checked every sweep
	touched []*conn  // conns read from since the last sweep, which stamps them; see touch

	spareExts []*connExt  // released exts, for reuse
	written   []*conn     // conns written to since the last sweep, with a write timeout
	watched   []sendWatch // idle conns whose replies wait in the kernel; see watchWrites
	tcpInfo   tcpInfo     // scratch for sendQueue

	// A connection whose output waits is paused (its frames are not
	// served) once gnet holds more than pauseAbove bytes of it, and resumed
	// once that is down to resumeAt. With the read switch, the loop stops
	// reading it as well, and both are 0: the first reply the socket
	// refuses pauses it, as a blocked write stops a goroutine. Without it
	// the loop must go on reading, and they are MaxPending and half that.
	reads      readSwitch
	canStop    bool // reads works on this loop
	pauseAbove int
	resumeAt   int

	proxied map[*conn]net.Addr // client addresses from PROXY headers; nil when the protocol is off

	// copied counts the bytes copied into connections' input buffers: what
	// a partial frame costs beyond reading it. Tests check that it stays
	// linear in the bytes received.
	copied int64

	sweepTask gnet.Runnable // sweep as a Runnable, made once

	// The mailbox of frames sent through AsyncConns, and what flushMail
	// reuses from one flush to the next; see mail.go.
	mail        mailbox
	flushTask   gnet.Runnable
	spareFrames []byte
	spareSends  []mail
	next        []int32
	fans        []fanout
	fanIndex    map[*conn]int

	trace *loopTrace // the read being traced; nil unless tracing (see trace.go)
}

func newLoopState(s *Server, el gnet.EventLoop) *loopState {
	l := &loopState{srv: s, el: el, now: s.ticks()}
	l.reads, l.canStop = findReadSwitch(el, s.opts.EdgeTriggered)
	if !l.canStop {
		l.pauseAbove, l.resumeAt = s.opts.MaxPending, s.opts.MaxPending/2
	}
	if s.opts.IdleTimeout > 0 {
		l.wheel = newWheel(int64(s.opts.IdleTimeout/s.tick)+1, l.now)
	}
	l.sweepTask = gnet.RunnableFunc(func(context.Context) error {
		l.sweep()
		return nil
	})
	l.flushTask = gnet.RunnableFunc(l.runFlush)
	l.fanIndex = make(map[*conn]int)
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

// clockNow reads the clock into l.now and returns it.
func (l *loopState) clockNow() int64 {
	l.now = l.srv.ticks()
	return l.now
}

// touch notes that c was read from. Reading the clock for every read would
// cost more than the rest of the loop's bookkeeping of a read together, so
// c is only listed, once until the next sweep, which stamps it with its own
// clock (stampTouched). The stamp is then never earlier than the read,
// however late the sweep runs, so no connection is closed as idle before
// its timeout; at most by the gap to the next sweep after it. While listed,
// c's lastActive is l.now+1, which no stamp has: stamps are at most l.now.
func (l *loopState) touch(c *conn) {
	if m := int32(l.now) + 1; c.lastActive != m {
		c.lastActive = m
		l.touched = append(l.touched, c)
	}
}

// stampTouched stamps the connections read from since the last sweep with
// l.now. A list that a burst left mostly unused is dropped, so that a quiet
// server does not keep a slot for every connection.
func (l *loopState) stampTouched() {
	now := int32(l.now)
	for i, c := range l.touched {
		c.lastActive = now
		l.touched[i] = nil
	}
	if cap(l.touched) > 1024 && len(l.touched) < cap(l.touched)/4 {
		l.touched = nil
	}
	l.touched = l.touched[:0]
}

// add starts tracking a new connection.
func (l *loopState) add(c *conn) {
	c.lastActive = int32(l.clockNow())
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
}

// serve hands the input of one OnTraffic (in, which dies when the call
// returns) to c's session and keeps what it does not consume: a partial
// frame is completed from c's input buffer first, then whole frames are
// served in place, and a partial frame at the end goes to the input buffer.
// When the codec knows how long the frame is (a length header), only the
// bytes the frame lacks are copied; otherwise the whole read is, and the
// session resumes its scan where it stopped. Replies are appended to l.out.
func (l *loopState) serve(c *conn, in []byte) {
	for c.ext != nil && len(c.ext.in) > 0 {
		e := c.ext
		take := len(in)
		if need := c.Need(); need > len(e.in)+1 {
			take = min(take, need-len(e.in))
		}
		l.stash(c, in[:take])
		in = in[take:]
		if len(e.in) < c.Need() {
			return // take was all of in
		}
		n := c.Serve(c, e.in, &l.out)
		l.consume(c, n)
		switch {
		case c.Closing() != session.Open:
			return
		case len(e.in) == 0:
			e.frameStart = 0
		case n > 0:
			e.frameStart = l.srv.clock() // a new frame began in this read
		}
		if len(in) == 0 {
			return
		}
	}
	if len(in) == 0 || c.Closing() != session.Open {
		return
	}
	if n := c.Serve(c, in, &l.out); n < len(in) && c.Closing() == session.Open {
		l.stash(c, in[n:]) // a partial frame: stash starts its clock
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

// closeFor closes c on this loop for r.
func (l *loopState) closeFor(c *conn, r session.Reason) {
	c.CloseFor(r, nil)
	_ = l.el.Close(c.gc)
}

// sweep runs on the loop every tick (gnet's ticker goroutine asks for it
// with Execute): it closes idle connections, checks the busy ones (paused,
// slow, lingering, mid-frame), and drains connections while the server
// shuts down.
func (l *loopState) sweep() {
	s := l.srv
	l.clockNow()
	l.stampTouched()
	if l.wheel != nil {
		l.wheel.advance(l.now, func(c *conn) { l.closeFor(c, session.Idle) })
	}
	if len(l.watched) > 0 {
		l.checkWatched(s.clock())
	}
	if len(l.written) > 0 {
		l.watchWrites(s.clock())
	}
	if len(l.busy) > 0 {
		l.checkBusy()
	}
	if s.draining.Load() {
		l.drain(s.forcing.Load())
	}
}

// drain closes, with reason ServerStopping, every connection that has
// nothing more to answer or send: its replies are written, no unread bytes
// wait in the kernel, and what is buffered is at most a partial frame; a
// handler that is a Finisher is told instead, and closes it itself. The
// close lingers, so input that arrives meanwhile cannot reset it. When
// force is set the shutdown deadline has passed and every connection is
// closed as it is.
func (l *loopState) drain(force bool) {
	l.each(func(c *conn) {
		switch {
		case force:
			l.closeFor(c, session.ServerStopping)
		case c.ext != nil && c.ext.finishing:
			// Told already: the handler closes it.
		case !l.drained(c):
		case l.srv.finisher != nil && (c.ext == nil || !c.ext.header):
			// (One still awaiting its PROXY header never opened: the
			// handler has nothing to finish, and it closes below.)
			// The handler may still owe replies to what was drained: it
			// closes c once they are sent (see asyncConn.Close).
			if e := l.extend(c); !e.finishing {
				e.finishing = true
				l.srv.finisher.Finish(asyncConn{c})
			}
		default:
			c.CloseFor(session.ServerStopping, nil)
			if l.linger(c) {
				_ = l.el.Close(c.gc)
			}
		}
	})
}

func (l *loopState) drained(c *conn) bool {
	if c.Paused() {
		return false // the handler has frames to answer first
	}
	if e := c.ext; e != nil {
		if e.header {
			return true // never opened: nothing to answer
		}
		if e.paused || e.lingering || len(e.in) > 0 && len(e.in) >= c.Need() {
			return false // paused, already closing, or a complete frame is waiting
		}
	}
	if c.gc.OutboundBuffered() > 0 {
		return false
	}
	unread, err := session.UnreadBytes(c.gc.Fd())
	return err != nil || unread == 0
}
