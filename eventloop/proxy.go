package eventloop

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/panjf2000/gnet/v2"

	"echoloop/eventloop/proxyproto"
	"echoloop/eventloop/session"
)

// The PROXY protocol stage (Config.Proxy) runs before framing, in
// OnTraffic, as nvelox does: a connection from a trusted balancer is opened
// with its ext marked header, and every byte that arrives goes into its
// input buffer until proxyproto.Parse finds a whole header there. Then the
// header's source becomes the connection's RemoteAddr, its session opens
// (MaxConns, MaxConnsPerIP and the handler's OpenConn see the client, not
// the balancer), and the bytes after the header are served as the first
// frames, byte for byte. Until then the connection counts against
// MaxConns, and the handler knows nothing of it.
//
// The stage costs nothing when the protocol is off: no field in conn (an
// idle connection's size does not change) and no branch on the hot path
// beyond the ext check OnTraffic makes anyway. The proxied addresses live in
// a per-loop map, allocated only when the protocol is on.

var errHeaderTimeout = errors.New("eventloop: PROXY header not complete within the header timeout")

// openProxied starts the header stage for a new connection, or refuses it:
// from an address not trusted to send a header, or at MaxConns. It reports
// whether the connection goes on.
func (l *loopState) openProxied(c *conn) bool {
	s := l.srv
	peer := c.gc.RemoteAddr()
	if !s.opts.Proxy.Trust.Contains(peer) {
		s.counters.Accepted()
		c.CloseFor(session.ProxyUntrusted, nil)
		s.rejectLog.Warn().Stringer("remote", peer).Msg("connection refused: not trusted to send a PROXY header")
		return false
	}
	if !s.counters.TryOpen(s.opts.MaxConns) {
		s.counters.Accepted()
		c.CloseFor(session.ConnLimit, nil)
		c.Refused(&s.rejectLog, peer)
		return false
	}
	if l.proxied == nil {
		l.proxied = make(map[*conn]net.Addr)
	}
	l.add(c)
	e := l.extend(c)
	e.header = true
	e.frameStart = s.clock() // the header's clock
	return true
}

// header takes the bytes of one OnTraffic while c awaits its PROXY header.
// served says whether frames after the header were served and replies may
// be waiting in the loop's buffer.
func (l *loopState) header(c *conn, in []byte) (action gnet.Action, served bool) {
	s := l.srv
	e := c.ext
	var copied int
	e.in, copied = appendBuf(e.in, in)
	l.copied += int64(copied)
	h, n, err := proxyproto.Parse(s.opts.Proxy.Mode, e.in, c.gc.RemoteAddr())
	switch {
	case errors.Is(err, proxyproto.ErrIncomplete):
		return gnet.None, false
	case err != nil:
		l.badHeader(c, err)
		return gnet.Close, false
	}
	e.header = false
	l.proxied[c] = h.Source
	s.counters.Release() // Open counts it again, from its real address
	c.Open(c, &l.out)
	if c.Refused(&s.rejectLog, c.RemoteAddr()) {
		return gnet.Close, false
	}
	l.consume(c, n)
	if l.trace != nil {
		l.traceHeaderEnd(c)
	}
	e.frameStart = 0
	if len(e.in) > 0 {
		e.frameStart = s.clock() // frames came with the header
		l.serve(c, nil)
	}
	return gnet.None, true
}

// headerTimedOut reports whether c has awaited its header too long.
func (l *loopState) headerTimedOut(c *conn, now int64) bool {
	return time.Duration(now-c.ext.frameStart) >= proxyproto.Timeout(l.srv.opts.FrameTimeout)
}

// badHeader marks c closing for a bad PROXY header, caused by err, and
// warns (rate-limited).
func (l *loopState) badHeader(c *conn, err error) {
	c.CloseFor(session.BadProxyHeader, err)
	l.srv.rejectLog.Warn().Stringer("remote", c.gc.RemoteAddr()).AnErr("cause", err).Msg("connection refused: bad PROXY header")
}

// closeHeader closes c for a header that did not complete in time.
func (l *loopState) closeHeader(c *conn) {
	l.badHeader(c, fmt.Errorf("%w (%v)", errHeaderTimeout, proxyproto.Timeout(l.srv.opts.FrameTimeout)))
	_ = l.el.Close(c.gc)
}

// closedInHeader settles the accounting of a connection that closes while
// still awaiting its header: it was never opened, and its bytes are no
// frame. A peer that closes having sent nothing (a TCP health check) simply
// closed; one that closes mid-header sent a bad one.
func (l *loopState) closedInHeader(c *conn, err error) {
	s := l.srv
	s.counters.Release()
	s.counters.Accepted()
	if c.Closing() == session.Open && len(c.ext.in) > 0 && session.ReasonFor(err) == session.PeerClosed {
		l.badHeader(c, fmt.Errorf("%w: the peer closed mid-header", proxyproto.ErrIncomplete))
	}
}

// remoteAddr is c's client address: the PROXY header's once read, else the
// socket's peer.
func (l *loopState) remoteAddr(c *conn) net.Addr {
	if l.proxied != nil {
		if a, ok := l.proxied[c]; ok {
			return a
		}
	}
	return c.gc.RemoteAddr()
}
