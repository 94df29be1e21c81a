package eventloop

import (
	"github.com/panjf2000/gnet/v2"

	"echoloop/eventloop/session"
)

// Tracing (Config.Tracer) sees each read as gnet makes it: gnet reads a
// readable socket once into its loop buffer and calls OnTraffic with those
// bytes, so one OnTraffic is one read. When a Tracer is set, gnet is given
// tracingHandler instead of handler: it notes the bytes gnet read before
// OnTraffic runs and reports the read after it returns, while the session
// records the frames Serve completes and conn.write the replies. When none
// is set the loop runs handler itself: nothing on the path of a read
// changes but a comparison per Serve and per write.

// loopTrace is a loop's record of the read being served. One per loop is
// enough: a loop serves one OnTraffic at a time.
type loopTrace struct {
	conn *conn // the connection whose OnTraffic is running; nil between calls
	read session.Read
}

// eventHandler is what gnet is to call: handler, wrapped for tracing when
// a Tracer is set.
func (h *handler) eventHandler() gnet.EventHandler {
	if h.srv.opts.Tracer == nil {
		return h
	}
	return tracingHandler{h}
}

// tracingHandler is handler with each OnTraffic traced.
type tracingHandler struct{ *handler }

// OnTraffic traces one read: the bytes gnet read, then what handler's
// OnTraffic made of them.
func (t tracingHandler) OnTraffic(gc gnet.Conn) gnet.Action {
	c := gc.Context().(*conn)
	l := c.loop
	if l.trace == nil {
		l.trace = new(loopTrace)
	}
	tr := l.trace
	tr.conn = c
	tr.read.In = gc.InboundBuffered() // gnet's inbound buffer is kept empty: this is the read
	action := t.handler.OnTraffic(gc)
	tr.conn = nil
	e := c.ext
	if e != nil && e.header {
		// Still awaiting its PROXY header: no stream yet, nothing to show.
		tr.read.Reset()
		return action
	}
	if e != nil {
		tr.read.Carried = len(e.in)
	}
	c.TraceRead(c, &tr.read)
	return action
}

// OnClose traces the read that found the peer's EOF (gnet closes on it
// without an OnTraffic), then closes.
func (t tracingHandler) OnClose(gc gnet.Conn, err error) gnet.Action {
	if c, ok := gc.Context().(*conn); ok && session.ReasonFor(err) == session.PeerClosed &&
		c.Closing() == session.Open && (c.ext == nil || !c.ext.header) {
		r := session.Read{EOF: true}
		if c.ext != nil {
			r.Carried = len(c.ext.in)
		}
		c.TraceRead(c, &r)
	}
	return t.handler.OnClose(gc, err)
}

// traceHeaderEnd makes the read being traced, which completed c's PROXY
// header, count only the stream after the header: the rest of c's input.
func (l *loopState) traceHeaderEnd(c *conn) {
	if tr := l.trace; tr != nil && tr.conn == c {
		tr.read.In = len(c.ext.in)
	}
}

// Recording implements session.Recorder: c's read being traced, or nil.
func (c *conn) Recording() *session.Read {
	if tr := c.loop.trace; tr != nil && tr.conn == c {
		return &tr.read
	}
	return nil
}

// traceWrite records a write of n reply bytes to c, when it answers the
// read being traced.
func (l *loopState) traceWrite(c *conn, n int) {
	if tr := l.trace; tr.conn == c {
		tr.read.Wrote(n)
	}
}
