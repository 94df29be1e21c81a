package eventloop

import (
	"context"
	"net"
	"sync/atomic"

	"github.com/panjf2000/gnet/v2"

	"echoloop/eventloop/session"
	"echoloop/handlers"
)

// conn is the per-connection state kept in the gnet conn's context, and the
// handlers.Conn the handler sees. Apart from closed, every field is touched
// only on the connection's event loop. It is 112 bytes on 64-bit platforms:
// beside gnet's own per-connection state, it is what echoloop costs per
// idle connection, so fields are narrow and what only a busy connection
// needs is behind ext.
type conn struct {
	session.Session
	gc   gnet.Conn
	loop *loopState

	next, prev *conn // links in the wheel slot (or the loop's list) c is in
	slot       int32 // that slot's index; -1 when in no list
	lastActive int32 // loop tick of the last inbound byte

	closed atomic.Bool // set on the loop in OnClose, read by asyncConn
	wrote  int32       // 1 when listed for the write-timeout watch, -1 while watched, else 0; see noteWrite
	ext    *connExt    // set while c holds input or output: see busy.go
}

var _ handlers.Conn = (*conn)(nil)

// RemoteAddr implements handlers.Conn: the client's address, from the PROXY
// header when the protocol is on (see proxy.go).
func (c *conn) RemoteAddr() net.Addr { return c.loop.remoteAddr(c) }

// Async implements handlers.Conn. asyncConn is a single pointer, so this
// does not allocate.
func (c *conn) Async() handlers.AsyncConn { return asyncConn{c} }

// write hands out to gnet, which writes what the socket takes now and
// buffers the rest. When gnet fails the write it closes the connection
// itself, OnClose included, before Write returns.
func (c *conn) write(out []byte) {
	if len(out) == 0 {
		return
	}
	held := c.gc.OutboundBuffered()
	if _, err := c.gc.Write(out); err == nil {
		if e := c.ext; e != nil && e.readOff && held == 0 && c.gc.OutboundBuffered() > 0 {
			c.loop.stopReading(c) // gnet turned reading on as it began to buffer
		}
		c.CountWritten(len(out))
		c.loop.noteWrite(c)
		if c.loop.trace != nil {
			c.loop.traceWrite(c, len(out))
		}
	}
}

// asyncConn is the handlers.AsyncConn of a conn. It is a single pointer, so
// storing it in an interface does not allocate.
type asyncConn struct{ c *conn }

var _ handlers.AsyncConn = asyncConn{}

func (a asyncConn) ID() uint64 { return a.c.ID() }

// Send encodes payload into the loop's mailbox, on the calling goroutine;
// the loop writes it with the connection's other frames of the turn (see
// mail.go).
func (a asyncConn) Send(payload []byte) error {
	if !a.reachable() {
		return handlers.ErrClosed
	}
	return a.c.loop.post(a.c, payload)
}

// reachable says whether the connection still takes frames: it is open, or
// gnet has closed it after a half-close and the handler owes it replies
// (see owed).
func (a asyncConn) reachable() bool {
	return !a.c.closed.Load() || a.c.loop.srv.owedTo(a.c) != nil
}

// Close records the reason and closes on the loop, so the session is only
// ever touched there. Frames sent before it are written first. For a
// connection owed replies after a half-close, it ends the hand-off once
// they are written.
func (a asyncConn) Close() error {
	return a.onLoop(func() {
		l := a.c.loop
		l.flushMail(nil)
		if a.c.closed.Load() {
			if o := l.srv.owedTo(a.c); o != nil {
				o.close()
			}
			return // or the flush found it too slow, or over the memory budget
		}
		r := session.HandlerClosed
		if e := a.c.ext; e != nil && e.finishing {
			r = session.ServerStopping // the close a drain left to the handler
		}
		a.c.CloseFor(r, nil)
		if l.linger(a.c) {
			_ = a.c.gc.EventLoop().Close(a.c.gc)
		}
	})
}

// Resume ends the handler's pause on the loop, and has the loop serve the
// frames that waited.
func (a asyncConn) Resume() error {
	return a.onLoop(func() {
		c := a.c
		if c.closed.Load() {
			c.loop.resumeOwed(c)
			return
		}
		c.Resume()
		if e := c.ext; !c.Paused() && e != nil && !e.paused {
			c.loop.startReading(c)
			if len(e.in) > 0 {
				_ = c.gc.Wake(nil) // OnTraffic serves what was kept
			}
		}
	})
}

// onLoop runs fn on the connection's loop if the connection is still
// reachable by then.
func (a asyncConn) onLoop(fn func()) error {
	if !a.reachable() {
		return handlers.ErrClosed
	}
	err := a.c.loop.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		if a.reachable() {
			fn()
		}
		return nil
	}))
	if err != nil {
		return handlers.ErrClosed
	}
	return nil
}
