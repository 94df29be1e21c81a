package netserver

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"echoloop/eventloop/session"
	"echoloop/handlers"
)

// conn is one connection and its goroutine. The session, the read buffer and
// out belong to that goroutine; writes to the socket, from it or from an
// AsyncConn, are serialised by wmu.
type conn struct {
	session.Session
	srv *Server
	nc  net.Conn

	buf        []byte // read buffer; buf[start:end] is unconsumed input
	start, end int
	out        []byte // replies of one read, encoded

	wmu         sync.Mutex
	closed      atomic.Bool // the socket is closed; AsyncConn refuses
	stopReq     atomic.Bool // Shutdown asked the goroutine to finish
	closeReq    atomic.Bool // AsyncConn.Close asked the goroutine to finish
	interrupted atomic.Bool // a read deadline was set to wake the reader
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{srv: s, nc: nc}
	c.Init(&s.opts.Config, &s.counters, nc.RemoteAddr(), asyncConn{c})
	return c
}

// interrupt wakes the goroutine from a blocking read so it can see a stop or
// close request. Safe from any goroutine.
func (c *conn) interrupt() {
	c.stopReq.Store(true)
	c.wake()
}

func (c *conn) wake() {
	c.interrupted.Store(true)
	_ = c.nc.SetReadDeadline(time.Now())
}

// serve runs the connection: read, decode and answer every complete frame,
// write the replies in one write, until the peer or the server ends it.
func (c *conn) serve() {
	defer c.srv.forget(c)
	s := c.srv
	c.out = c.Open(c.out[:0], s.opts.MaxConns)
	if c.Closing() == session.ConnLimit {
		s.rejectLog.Warn().Stringer("remote", c.nc.RemoteAddr()).Int("max_conns", s.opts.MaxConns).
			Msg("connection refused: at the connection limit")
		c.finish(nil)
		return
	}
	if err := c.write(); err != nil {
		c.finish(err)
		return
	}
	c.buf = make([]byte, s.opts.ReadBufferSize)
	var ioErr error
	for c.Closing() == session.Open {
		c.makeRoom()
		n, err := c.nc.Read(c.buf[c.end:])
		if n > 0 {
			s.counters.Read(n)
			c.end += n
			if c.end-c.start >= c.Need() {
				var used int
				c.out, used = c.Serve(c.buf[c.start:c.end], c.out[:0])
				c.start += used
				if werr := c.write(); werr != nil {
					ioErr = werr
					break
				}
			}
		}
		if err != nil {
			ioErr = c.readFailed(err)
			break
		}
	}
	c.finish(ioErr)
}

// readFailed records why a read ended: a stop or close request that woke the
// reader, or a real I/O error returned as is.
func (c *conn) readFailed(err error) error {
	if c.interrupted.Load() && errors.Is(err, os.ErrDeadlineExceeded) {
		switch {
		case c.closeReq.Load():
			c.CloseFor(session.HandlerClosed, nil)
		default:
			c.CloseFor(session.ServerStopping, nil)
		}
		return nil
	}
	return err
}

// makeRoom makes sure the buffer has free space and room for what the
// partial frame needs: it moves unconsumed bytes to the front, grows the
// buffer when a frame is larger than it, and gives a grown buffer back once
// it is empty again.
func (c *conn) makeRoom() {
	initial := c.srv.opts.ReadBufferSize
	if c.start == c.end {
		c.start, c.end = 0, 0
		if len(c.buf) > initial && len(c.buf) > 64<<10 {
			c.buf = make([]byte, initial)
		}
	}
	need := max(c.Need(), 1)
	if c.end < len(c.buf) && c.start+need <= len(c.buf) {
		return
	}
	pending := c.end - c.start
	if need <= len(c.buf) && pending < len(c.buf) {
		copy(c.buf, c.buf[c.start:c.end])
	} else {
		// The codec caps need (header plus max payload for length,
		// max+1 for line), so growth is bounded by the max frame size.
		grown := make([]byte, max(need, 2*len(c.buf)))
		copy(grown, c.buf[c.start:c.end])
		c.buf = grown
	}
	c.start, c.end = 0, pending
}

// write sends the replies collected in out with one write.
func (c *conn) write() error {
	if len(c.out) == 0 {
		return nil
	}
	c.wmu.Lock()
	n, err := c.nc.Write(c.out)
	c.wmu.Unlock()
	c.CountWritten(n)
	return err
}

// finish closes the socket and settles the session's close reason.
func (c *conn) finish(ioErr error) {
	c.wmu.Lock()
	c.closed.Store(true)
	_ = c.nc.Close()
	c.wmu.Unlock()
	c.Closed(ioErr, &c.srv.log)
}

// asyncConn is the handlers.AsyncConn of a conn.
type asyncConn struct{ c *conn }

var _ handlers.AsyncConn = asyncConn{}

func (a asyncConn) ID() uint64 { return a.c.ID() }

// Send writes the frame at once, under the connection's write lock: a peer
// that does not read blocks the sender, which is how this model applies
// back-pressure.
func (a asyncConn) Send(payload []byte) error {
	buf, err := a.c.Codec().Append(nil, payload)
	if err != nil {
		return err
	}
	a.c.wmu.Lock()
	defer a.c.wmu.Unlock()
	if a.c.closed.Load() {
		return handlers.ErrClosed
	}
	if _, err := a.c.nc.Write(buf); err != nil {
		return handlers.ErrClosed
	}
	a.c.CountSent(len(buf))
	return nil
}

// Close asks the connection's goroutine to close; what Send wrote is already
// on the socket.
func (a asyncConn) Close() error {
	if a.c.closed.Load() {
		return handlers.ErrClosed
	}
	a.c.closeReq.Store(true)
	a.c.wake()
	return nil
}
