package netserver

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"echoloop/eventloop/proxyproto"
	"echoloop/eventloop/session"
)

// The PROXY protocol stage runs on the connection's goroutine before its
// session opens: the socket's peer must be trusted, and the header is read
// into the connection's read buffer, as many reads as it takes, until
// proxyproto.Parse has all of it. What arrived after the header stays in
// the buffer, unconsumed, and is served as the first frames once the
// session opens; the handler and the logs see the header's
// address from then on. Until then the connection is not counted as served
// (Open has not run), but it counts against MaxConns (Counters.TryOpen).

// errHeaderTimeout is the cause of a BadProxyHeader close when the header
// did not complete in time.
var errHeaderTimeout = errors.New("netserver: PROXY header not complete within the header timeout")

// readProxyHeader checks that the peer may send a PROXY header and reads it,
// then makes its source the connection's RemoteAddr. It reports whether the
// connection goes on; if not, the connection has been refused and closed.
func (c *conn) readProxyHeader() bool {
	s := c.srv
	peer := c.nc.RemoteAddr()
	if !s.opts.Proxy.Trust.Contains(peer) {
		s.rejectLog.Warn().Stringer("remote", peer).
			Msg("connection refused: not trusted to send a PROXY header")
		c.refuse(session.ProxyUntrusted, nil)
		return false
	}
	// The connection counts against MaxConns while its header is awaited,
	// as on the event loop; Open counts it again from its real address.
	if !s.counters.TryOpen(s.opts.MaxConns) {
		c.CloseFor(session.ConnLimit, nil)
		c.Refused(&s.rejectLog, peer)
		c.refuse(session.ConnLimit, nil)
		return false
	}
	h, err := c.awaitHeader(peer)
	s.counters.Release()
	if err == nil {
		src := h.Source // not &h.Source: that would keep the whole Header
		c.proxied.Store(&src)
		return true
	}
	r, cause := c.headerFailed(err)
	if r == session.BadProxyHeader {
		s.rejectLog.Warn().Stringer("remote", peer).AnErr("cause", cause).
			Msg("connection refused: bad PROXY header")
	}
	c.start, c.end = 0, 0 // header bytes, not a partial frame
	c.refuse(r, cause)
	return false
}

// awaitHeader reads until the buffer holds a whole PROXY header, for at most
// the header timeout, and returns it with the buffer's start moved past it.
// It stops early on an eviction or on Shutdown, like read.
func (c *conn) awaitHeader(peer net.Addr) (proxyproto.Header, error) {
	s := c.srv
	c.buf = make([]byte, s.opts.ReadBufferSize)
	c.account()
	c.readDeadline = time.Now().Add(proxyproto.Timeout(s.opts.FrameTimeout))
	_ = c.nc.SetReadDeadline(c.readDeadline) // armRead replaces it once serving
	var readErr error
	for {
		h, n, err := proxyproto.Parse(s.opts.Proxy.Mode, c.buf[c.start:c.end], peer)
		switch {
		case err == nil:
			c.start += n
			return h, nil
		case !errors.Is(err, proxyproto.ErrIncomplete):
			return h, err
		case readErr != nil:
			return h, readErr
		case c.woken(): // checked after arming the deadline, as in read
			return h, errWoken
		}
		c.makeRoom()
		var m int
		m, readErr = c.nc.Read(c.buf[c.end:])
		if m > 0 {
			s.counters.Read(m)
			c.end += m
		}
	}
}

// headerFailed tells why awaitHeader failed, and what caused it: Shutdown
// or an eviction cut the wait short; the header was bad, or still
// incomplete when the time was up or the peer closed (a peer that closes
// having sent nothing, such as a TCP health check, simply closed); or an
// I/O error.
func (c *conn) headerFailed(err error) (session.Reason, error) {
	switch {
	case c.forced.Load(), c.stopReq.Load():
		return session.ServerStopping, nil
	case c.evicted():
		return session.MemoryLimit, nil
	case errors.Is(err, proxyproto.ErrBadHeader):
		return session.BadProxyHeader, err
	case errors.Is(err, os.ErrDeadlineExceeded):
		return session.BadProxyHeader, fmt.Errorf("%w (%v)", errHeaderTimeout, proxyproto.Timeout(c.srv.opts.FrameTimeout))
	case errors.Is(err, io.EOF) && c.end > c.start:
		return session.BadProxyHeader, fmt.Errorf("%w: %w", proxyproto.ErrIncomplete, io.ErrUnexpectedEOF)
	}
	return session.ReasonFor(err), err
}

// refuse closes a connection whose session never opened, for r caused by
// err, counting it as accepted and closed.
func (c *conn) refuse(r session.Reason, err error) {
	c.srv.counters.Accepted()
	c.CloseFor(r, err)
	c.closeNow(nil)
}
