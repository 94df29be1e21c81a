package eventloop

import (
	"errors"

	"github.com/panjf2000/gnet/v2"

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
	addr, err := boundAddr(eng)
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
	c := &conn{gc: gc, loop: s.loopFor(gc.EventLoop())}
	c.Init(&s.opts.Config, &s.counters, gc.RemoteAddr(), asyncConn{c})
	gc.SetContext(c)
	if s.stopping.Load() {
		c.CloseFor(session.ServerStopping, nil)
		return nil, gnet.Close
	}
	out := c.Open(c.loop.out[:0], s.opts.MaxConns)
	if c.Closing() == session.ConnLimit {
		s.rejectLog.Warn().Stringer("remote", gc.RemoteAddr()).Int("max_conns", s.opts.MaxConns).
			Msg("connection refused: at the connection limit")
		return nil, gnet.Close
	}
	c.CountWritten(len(out))
	c.loop.keep(out)
	// gnet writes what OnOpen returns before it next runs this loop, so the
	// loop's buffer can be handed over as is.
	return out, h.action(c)
}

// OnTraffic runs on the connection's loop after gnet read from its socket.
func (h *handler) OnTraffic(gc gnet.Conn) gnet.Action {
	c := gc.Context().(*conn)
	buffered := gc.InboundBuffered()
	h.srv.counters.Read(buffered - c.buffered)
	c.buffered = buffered
	if c.Closing() != session.Open {
		return gnet.Close
	}
	if buffered < c.Need() {
		// Not enough for the partial frame yet: skip Peek, which copies
		// gnet's ring buffer every time it is called.
		return gnet.None
	}
	in, err := gc.Peek(-1)
	if err != nil {
		c.CloseFor(session.IOError, err)
		return gnet.Close
	}
	out, used := c.Serve(in, c.loop.out[:0])
	if used > 0 {
		// in dies here; out holds copies. Never Discard(0): to gnet that
		// means discard everything, partial frame included.
		_, _ = gc.Discard(used)
		c.buffered -= used
	}
	if len(out) > 0 {
		// On a write error gnet closes the connection itself and calls
		// OnClose with the error.
		if _, err := gc.Write(out); err == nil {
			c.CountWritten(len(out))
		}
	}
	c.loop.keep(out)
	return h.action(c)
}

// action closes the connection once its session is closing; gnet writes what
// is queued before it closes the socket.
func (h *handler) action(c *conn) gnet.Action {
	if c.Closing() != session.Open {
		return gnet.Close
	}
	return gnet.None
}

// OnClose runs on the connection's loop once it is closed, for whatever
// reason.
func (h *handler) OnClose(gc gnet.Conn, err error) gnet.Action {
	c, ok := gc.Context().(*conn)
	if !ok {
		return gnet.None
	}
	c.closed.Store(true)
	if err == nil && c.Closing() == session.Open {
		// gnet closes with no error only for a Close action, which always
		// follows a recorded reason, or when the engine stops.
		c.CloseFor(session.ServerStopping, errEngineStopped)
	}
	c.Closed(err, &h.srv.log)
	return gnet.None
}
