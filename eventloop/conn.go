package eventloop

import (
	"context"
	"sync/atomic"

	"github.com/panjf2000/gnet/v2"

	"echoloop/eventloop/session"
	"echoloop/handlers"
)

// conn is the per-connection state kept in the gnet conn's context. Apart
// from closed, every field is touched only on the connection's event loop.
type conn struct {
	session.Session
	gc       gnet.Conn
	loop     *loopState
	buffered int         // inbound bytes left buffered by the last OnTraffic
	closed   atomic.Bool // set on the loop in OnClose, read by asyncConn
}

// loopState is what one event loop shares among its connections. It is used
// only on that loop's goroutine, so it needs no lock.
type loopState struct {
	// out collects the encoded replies of one OnTraffic call. gnet's Write
	// either writes it at once or copies it into the connection's outbound
	// buffer, so it is free again when Write returns and one buffer per loop
	// serves every connection.
	out []byte
}

// maxKeptOut is the reply buffer a loop keeps between calls; a larger one,
// grown by a burst of big replies, is dropped so it does not stay pinned.
const maxKeptOut = 1 << 20

func (l *loopState) keep(out []byte) {
	if cap(out) > maxKeptOut {
		out = nil
	}
	l.out = out[:0]
}

// asyncConn is the handlers.AsyncConn of a conn. It is a single pointer, so
// storing it in an interface does not allocate.
type asyncConn struct{ c *conn }

var _ handlers.AsyncConn = asyncConn{}

func (a asyncConn) ID() uint64 { return a.c.ID() }

// Send encodes payload on the calling goroutine and hands the bytes to the
// loop with gnet's AsyncWrite, which is safe from any goroutine.
func (a asyncConn) Send(payload []byte) error {
	if a.c.closed.Load() {
		return handlers.ErrClosed
	}
	buf, err := a.c.Codec().Append(nil, payload)
	if err != nil {
		return err
	}
	if err := a.c.gc.AsyncWrite(buf, nil); err != nil {
		return handlers.ErrClosed
	}
	a.c.CountSent(len(buf))
	return nil
}

// Close records the reason and closes on the loop, so the session is only
// ever touched there.
func (a asyncConn) Close() error {
	if a.c.closed.Load() {
		return handlers.ErrClosed
	}
	err := a.c.gc.EventLoop().Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		if !a.c.closed.Load() {
			a.c.CloseFor(session.HandlerClosed, nil)
			return a.c.gc.EventLoop().Close(a.c.gc)
		}
		return nil
	}))
	if err != nil {
		return handlers.ErrClosed
	}
	return nil
}
