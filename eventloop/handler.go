package eventloop

import (
	"bytes"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"

	"echoloop/eventloop/proxyproto"
	"echoloop/eventloop/session"
)

var errEngineStopped = errors.New("eventloop: engine stopped")

// handler receives gnet's callbacks. It is a type of its own so that
// OnTraffic and friends do not become methods of the exported Server.
type handler struct {
	gnet.BuiltinEventEngine
	srv      *Server
	booted   bool      // set by start, read by ListenAndServe after Run returns
	starting sync.Once // start, on the first OnTick

	ln           net.Listener // the listener the acceptor accepts from
	removeSocket func()       // removes gnet's own listener from the filesystem
}

// OnBoot runs once gnet's engine is set up, before the loops start.
func (h *handler) OnBoot(eng gnet.Engine) gnet.Action {
	s := h.srv
	h.removeSocket()
	s.eng = eng
	if s.stopping.Load() {
		return gnet.Shutdown
	}
	return gnet.None
}

// start starts the acceptor and declares the server ready. It runs from the
// first OnTick: gnet starts the ticker once the loops are running, and
// Engine.Register must not run before that.
func (h *handler) start() {
	s := h.srv
	s.addr = h.ln.Addr()
	s.acceptor = s.startAcceptor(h.ln, s.eng)
	h.booted = true
	close(s.ready)
}

// OnOpen runs on the connection's loop once the acceptor has handed it
// over (see accept.go).
func (h *handler) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	s := h.srv
	c := &conn{gc: gc, loop: s.loopFor(gc.EventLoop()), slot: noSlot}
	c.Init(&s.shared)
	gc.SetContext(c)
	if s.stopping.Load() {
		// Accepted just before the drain closed the listener, and
		// reaching its loop after: closed at once, with nothing unread, so
		// the peer sees an orderly EOF.
		s.counters.Accepted()
		c.CloseFor(session.ServerStopping, nil)
		return nil, gnet.Close
	}
	l := c.loop
	if s.opts.Proxy.Mode != proxyproto.Off {
		if !l.openProxied(c) {
			return nil, gnet.Close
		}
		return nil, gnet.None
	}
	c.Open(c, &l.out)
	if c.Refused(&s.rejectLog, c.RemoteAddr()) {
		return nil, gnet.Close
	}
	l.add(c)
	c.write(l.out)
	l.reset()
	if c.closed.Load() {
		return nil, gnet.None // the write failed and gnet has closed c
	}
	if l.settle(c, c) {
		return nil, gnet.Close
	}
	return nil, h.action(c)
}

// OnTraffic runs on the connection's loop after gnet read from its socket,
// and after a Wake. It consumes everything gnet hands it: complete frames
// are served in place, in gnet's read buffer; a partial frame at the end is
// copied into the connection's own input buffer (connExt.in), which the
// next read completes. gnet's own inbound buffer therefore stays empty, so
// Next never copies, and every byte is copied at most twice (into the input
// buffer, and once to its front), whatever the framing and however frames
// straddle reads.
func (h *handler) OnTraffic(gc gnet.Conn) gnet.Action {
	c := gc.Context().(*conn)
	s := h.srv
	l := c.loop
	// in is gnet's read buffer, valid until this call returns: l.out
	// takes copies of the replies, connExt.in of the rest.
	in, err := gc.Next(-1)
	if err != nil {
		c.CloseFor(session.IOError, err)
		return gnet.Close
	}
	if len(in) > 0 {
		s.counters.Read(len(in))
		l.touch(c)
	}
	action, served := h.traffic(c, in)
	if !served {
		return action
	}
	c.write(l.out)
	l.reset()
	if c.closed.Load() {
		return gnet.None // the write failed and gnet has closed c
	}
	if l.mail.bytes.Load() >= mailFlushAt && l.flushMail(c) {
		return gnet.Close // a big fan-out is written now; c was too slow or evicted
	}
	pending := gc.OutboundBuffered()
	switch {
	case c.Closing() != session.Open:
	case pending > l.pauseAbove:
		l.pause(c)
	case c.Paused():
		l.stopReading(c) // the handler paused it: see Session.Pause
	}
	// settle has nothing to do for a connection that holds nothing.
	if (c.ext != nil || pending > 0) && l.settle(c, c) {
		return gnet.Close // evicted by its own read
	}
	return h.action(c)
}

// traffic handles the bytes of one OnTraffic: it serves them, keeps them
// (paused), or discards them (lingering). served says whether replies may
// be waiting in the loop's buffer to be written.
func (h *handler) traffic(c *conn, in []byte) (action gnet.Action, served bool) {
	l := c.loop
	e := c.ext
	switch {
	case e != nil && e.lingering:
		e.discard -= len(in)
		l.shutWrite(c)
		if e.discard < 0 {
			return gnet.Close, false
		}
		return gnet.None, false
	case c.Closing() != session.Open:
		return gnet.Close, false
	case e != nil && e.header:
		return l.header(c, in)
	case c.Paused():
		return h.keep(c, in), false // until the handler resumes it
	case e != nil && e.paused:
		if c.gc.OutboundBuffered() > l.resumeAt {
			return h.keep(c, in), false // the peer is still not reading its replies
		}
		l.unpause(c)
	}
	l.serve(c, in)
	return gnet.None, true
}

// keep holds in, unserved, while c is paused, and stops reading c again.
// The input kept is bounded: past MaxPending, c is closed as SlowConsumer.
// Where the loop cannot stop reading, that bound is all there is. Where it
// can, each read kept is one the loop made before it stopped, or after gnet
// wrote out c's replies and turned reading back on (see readSwitch), so a
// read is kept whole as long as the input kept before it is within
// MaxPending (a single read of the loop's buffer may be more than a small
// MaxPending): c holds at most MaxPending plus one read per time its
// stalled replies were written out while it stayed paused.
func (h *handler) keep(c *conn, in []byte) gnet.Action {
	kept := 0
	if c.ext != nil {
		kept = len(c.ext.in)
	}
	over := kept+len(in) > h.srv.opts.MaxPending
	if c.loop.canStop {
		over = len(in) > 0 && kept > h.srv.opts.MaxPending
	}
	if over {
		c.CloseFor(session.SlowConsumer, nil)
		return gnet.Close
	}
	if len(in) > 0 {
		c.loop.stash(c, in)
	}
	c.loop.stopReading(c)
	if c.loop.settle(c, c) {
		return gnet.Close
	}
	return gnet.None
}

// action closes the connection once its session is closing: gracefully
// (see loopState.linger) when the reason promises the replies queued
// before it, at once otherwise.
func (h *handler) action(c *conn) gnet.Action {
	r := c.Closing()
	switch {
	case r == session.Open:
		return gnet.None
	case r.Lingers() && !c.loop.linger(c):
		return gnet.None
	}
	return gnet.Close
}

// OnClose runs on the connection's loop once it is closed, for whatever
// reason, before gnet closes the socket.
func (h *handler) OnClose(gc gnet.Conn, err error) gnet.Action {
	c, ok := gc.Context().(*conn)
	if !ok {
		return gnet.None
	}
	s := h.srv
	l := c.loop
	remote := c.RemoteAddr() // before the loop forgets c
	halfClosed := c.Closing() == session.Open && session.ReasonFor(err) == session.PeerClosed &&
		(c.ext == nil || !c.ext.header)
	var o *owed
	if halfClosed && s.finisher != nil {
		o = s.owe(c, remote, err) // before closed: a Send meanwhile must not be refused
	}
	c.closed.Store(true)
	if l != nil {
		l.remove(c)
	}
	if err == nil && c.Closing() == session.Open {
		// gnet closes with no error only for a Close action, which always
		// follows a recorded reason, or when the engine stops.
		c.CloseFor(session.ServerStopping, errEngineStopped)
	}
	if c.Closing().Abandons() || s.forcing.Load() {
		_ = gc.SetLinger(0) // gnet's close then resets: see Reason.Abandons
	}
	partial := 0
	if e := c.ext; e != nil && e.header {
		l.closedInHeader(c, err)
	} else if e != nil && !e.lingering {
		partial = len(e.in)
		switch {
		case o != nil && c.Paused() && partial > 0:
			// The handler has paused c: what was kept waits for its
			// Resume (see resumeOwed).
			o.keep(bytes.Clone(e.in))
		case halfClosed && partial >= c.Need():
			// The peer half-closed with complete frames kept unserved while
			// the connection was paused: answer them now.
			used := c.Serve(c, e.in, &l.out)
			partial -= used
			c.write(l.out)
			l.reset()
		}
	}
	if o != nil {
		o.partial = partial
		if o.kept == nil && (c.ext == nil || !c.ext.finishing) { // else told already, by the drain
			s.finisher.Finish(asyncConn{c})
		}
	}
	evicted := c.ext != nil && c.ext.evicted
	handed := false
	if (gc.OutboundBuffered() > 0 || o != nil) && !evicted && flushOnClose(c, err) {
		// gnet makes one non-blocking attempt to write pending replies and
		// then closes; a peer that has half-closed and is still reading
		// would lose the rest, and those the handler still owes. Hand them
		// to a goroutine that writes them out on a duplicate of the socket.
		var pending []byte
		ok := gc.OutboundBuffered() == 0
		if !ok {
			pending, ok = pendingOutput(gc)
		}
		if !ok {
			s.handOffOnce.Do(func() {
				s.log.Warn().Msg("gnet's outbound buffer is out of reach: replies pending when a peer half-closes may be lost")
			})
		}
		handed = ok && s.handOff(c, pending, o)
	}
	if l != nil {
		l.release(c, true)
	}
	switch {
	case o != nil && handed:
		// The hand-off's goroutine finishes the session.
	case o != nil:
		s.endOwed(o, session.Open, nil) // no socket left to write on
	default:
		c.Closed(c, remote, err, partial)
	}
	if l != nil && l.proxied != nil {
		delete(l.proxied, c)
	}
	return gnet.None
}

// flushOnClose says whether c's unsent replies should still be delivered:
// yes when the peer half-closed or the server closed for a protocol error
// or at the handler's request; no when the peer is gone, too slow, idle,
// or the server is stopping.
func flushOnClose(c *conn, err error) bool {
	r := c.Closing()
	if r == session.Open {
		r = session.ReasonFor(err)
	}
	switch r {
	case session.PeerClosed, session.FrameTooLarge, session.Malformed, session.BadReply, session.HandlerClosed:
		return true
	}
	return false
}

// OnTick runs on gnet's ticker goroutine, not on a loop: it only asks each
// loop to sweep itself. It ticks faster while connections are paused or
// lingering, or the server drains, so those are noticed promptly.
func (h *handler) OnTick() (time.Duration, gnet.Action) {
	s := h.srv
	h.starting.Do(h.start)
	s.sweepNow()
	s.reclaim.Check(s.counters.Memory(), time.Now())
	if s.fast.Load() > 0 || s.draining.Load() {
		return min(s.tick, fastTick), gnet.None
	}
	return s.tick, gnet.None
}
