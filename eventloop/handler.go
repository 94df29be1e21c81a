package eventloop

import (
	"errors"
	"time"

	"github.com/panjf2000/gnet/v2"

	"echoloop/eventloop/internal/listenaddr"
	"echoloop/eventloop/session"
)

var errEngineStopped = errors.New("eventloop: engine stopped")

// handler receives gnet's callbacks. It is a type of its own so that
// OnTraffic and friends do not become methods of the exported Server.
type handler struct {
	gnet.BuiltinEventEngine
	srv    *Server
	booted bool // set by OnBoot, read by ListenAndServe after Run returns
}

// OnBoot runs once the listener is bound, before the loops start.
func (h *handler) OnBoot(eng gnet.Engine) gnet.Action {
	s := h.srv
	addr, err := listenaddr.Of(eng)
	if err != nil {
		s.log.Error().Err(err).Msg("cannot read the listening address")
		return gnet.Shutdown
	}
	s.eng, s.addr = eng, addr
	h.booted = true
	close(s.ready)
	if s.stopping.Load() {
		return gnet.Shutdown
	}
	return gnet.None
}

// OnOpen runs on the connection's loop when gnet has accepted it.
func (h *handler) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	s := h.srv
	c := &conn{gc: gc, loop: s.loopFor(gc.EventLoop()), slot: noSlot}
	c.Init(&s.shared)
	gc.SetContext(c)
	if s.stopping.Load() {
		c.CloseFor(session.ServerStopping, nil)
		return nil, gnet.Close
	}
	l := c.loop
	c.Open(c, &l.out)
	if c.Closing() == session.ConnLimit {
		s.rejectLog.Warn().Stringer("remote", gc.RemoteAddr()).Int("max_conns", s.opts.MaxConns).
			Msg("connection refused: at the connection limit")
		return nil, gnet.Close
	}
	l.add(c)
	c.write(l.out)
	l.reset()
	return nil, h.action(c)
}

// OnTraffic runs on the connection's loop after gnet read from its socket,
// and after a Wake.
func (h *handler) OnTraffic(gc gnet.Conn) gnet.Action {
	c := gc.Context().(*conn)
	s := h.srv
	prev := int(c.buffered)
	buffered := gc.InboundBuffered()
	if read := buffered - prev; read > 0 {
		s.counters.Read(read)
		c.lastActive = int32(c.loop.now)
	}
	// At most a frame or MaxPending, plus one read: Config.Prepare keeps
	// both within 1 GiB, so it fits.
	c.buffered = int32(buffered)
	if c.Closing() != session.Open {
		return gnet.Close
	}
	if c.paused != nil {
		if gc.OutboundBuffered() > s.opts.MaxPending/2 {
			// The peer is still not reading its replies. gnet cannot stop
			// reading, so bound what piles up on this side too.
			if buffered > s.opts.MaxPending {
				c.CloseFor(session.SlowConsumer, nil)
				return gnet.Close
			}
			return gnet.None
		}
		c.loop.unpause(c)
	}
	// A partial frame left by earlier reads sits in gnet's ring buffer, and
	// Peek(-1) would copy all that is buffered into one slice: 64 KiB per
	// read. When the codec knows how many bytes it needs (a length header, a
	// fixed size), Peek just those first, until the partial frame is served
	// and the ring is empty; the rest of the read is then served in place.
	ring := prev // bytes still in gnet's ring buffer
	l := c.loop
	for c.Closing() == session.Open && int(c.buffered) >= c.Need() {
		// Too little for the partial frame ends the loop: skip Peek, which
		// copies gnet's ring buffer every time it is called.
		n := -1
		if need := c.Need(); ring > 0 && need > ring && need < int(c.buffered) {
			n = need
		}
		in, err := gc.Peek(n)
		if err != nil {
			c.CloseFor(session.IOError, err)
			break
		}
		used := c.Serve(c, in, &l.out)
		if used > 0 {
			// in dies here; l.out holds copies. Never Discard(0): to gnet
			// that means discard everything, partial frame included.
			_, _ = gc.Discard(used)
			c.buffered -= int32(used)
			ring = max(ring-used, 0)
		}
		if n < 0 {
			break // served all there was
		}
		if used == 0 && c.Need() <= n {
			ring = 0 // the codec's need was not exact: take everything next
		}
	}
	c.write(l.out)
	l.reset()
	if c.closed.Load() {
		return gnet.None // the write failed and gnet has closed c
	}
	if pending := gc.OutboundBuffered(); pending > s.opts.MaxPending && c.Closing() == session.Open {
		c.loop.pause(c, pending)
	}
	return h.action(c)
}

// action closes the connection once its session is closing; OnClose sees
// that any unsent replies reach the peer.
func (h *handler) action(c *conn) gnet.Action {
	if c.Closing() != session.Open {
		return gnet.Close
	}
	return gnet.None
}

// OnClose runs on the connection's loop once it is closed, for whatever
// reason, before gnet closes the socket.
func (h *handler) OnClose(gc gnet.Conn, err error) gnet.Action {
	c, ok := gc.Context().(*conn)
	if !ok {
		return gnet.None
	}
	s := h.srv
	c.closed.Store(true)
	if c.loop != nil {
		c.loop.remove(c)
	}
	if err == nil && c.Closing() == session.Open {
		// gnet closes with no error only for a Close action, which always
		// follows a recorded reason, or when the engine stops.
		c.CloseFor(session.ServerStopping, errEngineStopped)
	}
	if c.Closing() == session.Open && session.ReasonFor(err) == session.PeerClosed && c.buffered > 0 {
		// The peer half-closed with frames still buffered (left unserved
		// while the connection was paused, or read together with the EOF):
		// answer them now.
		if in, perr := gc.Peek(-1); perr == nil {
			l := c.loop
			if used := c.Serve(c, in, &l.out); used > 0 {
				_, _ = gc.Discard(used)
			}
			c.write(l.out)
			l.reset()
		}
	}
	if gc.OutboundBuffered() > 0 && flushOnClose(c, err) {
		// gnet makes one non-blocking attempt to write pending replies and
		// then closes; a peer that has half-closed and is still reading
		// would lose the rest. Hand them to a goroutine that writes them
		// out on a duplicate of the socket.
		if pending, ok := pendingOutput(gc); ok {
			s.handOff(c, pending)
		} else {
			s.handOffOnce.Do(func() {
				s.log.Warn().Msg("gnet's outbound buffer is out of reach: replies pending when a peer half-closes may be lost")
			})
		}
	}
	c.Closed(c, gc.RemoteAddr(), err, gc.InboundBuffered())
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
// loop to sweep itself. It ticks faster while connections are paused or the
// server drains, so those are noticed promptly.
func (h *handler) OnTick() (time.Duration, gnet.Action) {
	s := h.srv
	s.sweepNow()
	if s.paused.Load() > 0 || s.draining.Load() {
		return min(s.tick, fastTick), gnet.None
	}
	return s.tick, gnet.None
}
