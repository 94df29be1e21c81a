package netserver

import (
	"errors"
	"os"
	"syscall"
	"time"

	"echoloop/eventloop/session"
)

// The output watch extends the write timeout to replies the kernel holds.
//
// A write(2) returns as soon as the kernel has taken the bytes into the
// socket's send queue (in flight, and up to session.UnsentLimit unsent): a
// peer that never reads can leave replies there while the connection's
// goroutine waits for more input, and no write ever blocks for writeAll's
// deadline to catch it. Those bytes are pending replies all the same, and
// their progress is the peer's acknowledgements. So, when WriteTimeout is
// set, bytes written and not yet seen acknowledged keep a watch on: the read
// deadline also covers watchFrom+WriteTimeout, and when it passes the
// goroutine asks the kernel how much is still unacknowledged (SIOCOUTQ). If
// the peer acknowledged more since the last look, the watch restarts from
// now; if everything is acknowledged, it stops; if nothing moved, the
// connection is closed as SlowConsumer. A peer that stops reading is thus
// closed between one and two write timeouts after its last acknowledgement,
// as a blocked write is.
//
// The hot path pays one atomic add per write and one atomic load per read:
// the kernel is asked only when the watch's deadline passes, at most once per
// write timeout.
//
// The outbox's writer (async.go) writes while the connection's goroutine may
// sit in a read armed before those bytes existed; when the watch is off it
// moves that read's deadline to now (kickWatch), so the goroutine re-arms it
// with the watch on.

// kickWatch has the connection's goroutine start the output watch for bytes
// another goroutine wrote. Safe from any goroutine; a kick that loses a race
// with armRead is not needed (armRead sees the bytes written).
func (c *conn) kickWatch() {
	if c.srv.opts.WriteTimeout > 0 && !c.watching.Load() && !c.stopReq.Load() {
		_ = c.nc.SetReadDeadline(time.Now())
	}
}

// watchOutput starts the output watch when bytes were written since the
// kernel last showed them all acknowledged. Called by armRead.
func (c *conn) watchOutput() {
	if c.srv.opts.WriteTimeout > 0 && c.watchFrom.IsZero() && c.written.Load() > c.ackedSeen {
		c.watchFrom = time.Now()
		c.watching.Store(true)
	}
}

// outputDue says whether the output watch's deadline has passed.
func (c *conn) outputDue(now time.Time) bool {
	return !c.watchFrom.IsZero() && !now.Before(c.watchFrom.Add(c.srv.opts.WriteTimeout))
}

// idleExpired says whether the idle deadline armed for the last read has
// passed.
func (c *conn) idleExpired(now time.Time) bool {
	return !c.idleBy.IsZero() && !now.Before(c.idleBy)
}

// resumeAfter says whether serve should read on after err: the read timed
// out for the output watch alone (no wake-up, the idle and frame deadlines
// still ahead), and the peer has acknowledged more replies since the last
// look, or all of them. It then clears the deadline that passed, for armRead
// to set the next.
func (c *conn) resumeAfter(err error) bool {
	if !errors.Is(err, os.ErrDeadlineExceeded) || c.woken() {
		return false
	}
	now := time.Now()
	if c.frameOverdue() || c.idleExpired(now) || (c.outputDue(now) && !c.outputMoved(now)) {
		return false
	}
	c.readDeadline = time.Time{}
	_ = c.nc.SetReadDeadline(c.readDeadline)
	return true
}

// outputMoved asks the kernel how much of what was written the peer has not
// acknowledged, and reports whether the peer acknowledged more since the
// last look (the watch restarts from now) or everything (the watch stops).
// Where the kernel cannot be asked, everything counts as acknowledged.
func (c *conn) outputMoved(now time.Time) bool {
	// No write may run between reading written and asking the kernel. A
	// write in progress has its own deadline (writeAll): restart the watch.
	if !c.wmu.TryLock() {
		c.watchFrom = now
		return true
	}
	defer c.wmu.Unlock()
	written := c.written.Load()
	unacked, err := c.unacked()
	if err != nil || unacked == 0 {
		c.ackedSeen, c.watchFrom = written, time.Time{}
		c.watching.Store(false)
		return true
	}
	if acked := written - int64(unacked); acked > c.ackedSeen {
		c.ackedSeen, c.watchFrom = acked, now
		return true
	}
	return false
}

// unacked returns the socket's unacknowledged bytes (see session.UnsentBytes).
func (c *conn) unacked() (int, error) {
	if c.raw == nil {
		sc, ok := c.nc.(syscall.Conn)
		if !ok {
			return 0, errors.ErrUnsupported
		}
		raw, err := sc.SyscallConn()
		if err != nil {
			return 0, err
		}
		c.raw = raw
	}
	var n int
	var qerr error
	if err := c.raw.Control(func(fd uintptr) { n, qerr = session.UnsentBytes(int(fd)) }); err != nil {
		return 0, err
	}
	return n, qerr
}
