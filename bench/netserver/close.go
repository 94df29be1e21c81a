package netserver

import (
	"errors"
	"os"
	"time"

	"echoloop/eventloop/session"
)

// closeNow ends a connection at once: the close is recorded, the socket
// closed, and the buffers and their memory given back. It ends the
// connections never served (refused at the connection limit, accepted while
// the server stopped), and served ones whose close does not linger (see
// closeGracefully).
func (c *conn) closeNow(ioErr error) {
	c.record(ioErr)
	if c.Closing().Abandons() || c.cutOff() {
		session.ResetOnClose(c.nc)
	}
	_ = c.nc.Close()
	c.writers.Wait() // its write fails at once on the closed socket
	c.dropBuffers()
	c.releaseMemory()
}

// closeGracefully ends a served connection once its queued replies are
// written. The close is recorded first (counted, logged, and the handler
// told), so all of that happens before the peer can see the close. If the
// reason promises the peer its earlier replies (Reason.Lingers) and nothing
// forbids it (see lingers), the socket is closed the way nginx's lingering
// close does it: see linger. Otherwise it is closed at once.
//
// A lingering socket still holds a descriptor: it is counted as open
// (Counters.Hold) until it is closed, though its session has ended. Its
// buffers are given back before it lingers, and it discards input into one
// small buffer of its own.
func (c *conn) closeGracefully(ioErr error) {
	if !c.lingers(ioErr) {
		c.closeNow(ioErr)
		return
	}
	c.srv.counters.Hold() // before the session stops counting it: never under-count descriptors
	c.record(ioErr)
	c.writers.Wait() // the frames sent before the close go out first
	c.linger()
	_ = c.nc.Close()
	c.srv.counters.Release()
	c.dropBuffers()
	c.releaseMemory()
}

// record settles the session's close reason, counts and logs it, and makes
// AsyncConn refuse from now on (what it queued before is still written, on a
// graceful close).
func (c *conn) record(ioErr error) {
	c.box.mu.Lock()
	c.closed.Store(true)
	c.box.mu.Unlock()
	c.Closed(c, c.RemoteAddr(), ioErr, c.end-c.start)
}

// lingers says whether the close should linger: the reason promises the
// earlier replies, they were all written (no I/O error), LingerTime is not
// negative, and Shutdown has not cut the connection off (its deadline has
// not passed).
func (c *conn) lingers(ioErr error) bool {
	if ioErr != nil || c.srv.opts.LingerTime < 0 || !c.Closing().Lingers() {
		return false
	}
	return !c.cutOff()
}

// cutOff says whether Shutdown has cut c off: its deadline has passed, so
// what c still owes its peer is abandoned. Shutdown's forced close resets
// such connections too, but c's own deadline may close it first.
func (c *conn) cutOff() bool {
	return c.forced.Load() || c.stopReq.Load() && c.drainExpired()
}

// lingerBufferSize is the buffer a lingering connection discards input
// into when its own is too large to keep: one read of it is cheap, and
// LingerBytes bounds the total anyway.
const lingerBufferSize = 4 << 10

// lingerBuffer gives back every buffer but a small one of the connection's
// own, which it returns as the read buffer for discarding input (it stays
// c.buf, valid until dropBuffers); the memory total follows.
func (c *conn) lingerBuffer() []byte {
	own := c.buf
	if c.lentIn != nil {
		own = c.ownIn
	}
	c.dropBuffers()
	if cap(own) == 0 || cap(own) > maxOwnBuffer {
		own = make([]byte, lingerBufferSize)
	}
	c.buf = own[:cap(own)]
	c.account()
	return c.buf
}

// linger is the graceful half of a close. Closing a socket whose receive
// queue holds unread input sends a reset instead of a FIN, and a reset makes
// the peer's kernel throw away what it has received and the peer has not
// read yet: the very replies the close promised (a client that pipelines
// frames and reads afterwards loses them). So linger shuts down the sending
// side (the peer reads every reply, then EOF), and reads and discards
// what the peer still sends, until the peer closes its side, LingerBytes
// have been read or LingerTime has passed; the caller then closes. While
// Shutdown drains, its deadline bounds the wait too. A wake-up meant for a
// serving connection (Shutdown's interrupt) does not end it; an eviction or
// Shutdown's forced close does.
func (c *conn) linger() {
	cw, ok := c.nc.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	until := time.Now().Add(c.srv.opts.LingerTime)
	buf := c.lingerBuffer()
	for left := c.srv.opts.LingerBytes; left > 0; {
		deadline := c.lingerDeadline(until)
		_ = c.nc.SetReadDeadline(deadline)
		if c.evicted() || !time.Now().Before(deadline) {
			return
		}
		n, err := c.nc.Read(buf[:min(len(buf), left)])
		c.srv.counters.Read(n)
		left -= n
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return // the peer closed or reset, or Shutdown forced the close
		}
	}
}

// lingerDeadline is until, or Shutdown's deadline if the server is
// draining and that comes first.
func (c *conn) lingerDeadline(until time.Time) time.Time {
	if c.stopReq.Load() {
		if d := c.srv.drainDeadline(); !d.IsZero() && d.Before(until) {
			return d
		}
	}
	return until
}
