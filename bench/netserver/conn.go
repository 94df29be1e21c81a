package netserver

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
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
	smallReads int    // reads in a row that used under an eighth of the buffer
	filled     bool   // the last read filled all the free space
	out        []byte // replies of one read, encoded

	// While a burst lasts, buf and out are buffers lent from burstBuffers,
	// and the connection's own are kept here; see makeRoom and settle.
	lentIn, lentOut *[]byte
	ownIn, ownOut   []byte

	wmu      sync.Mutex
	closed   atomic.Bool // the socket is closed; AsyncConn refuses
	stopReq  atomic.Bool // Shutdown asked the goroutine to drain and finish
	closeReq atomic.Bool // AsyncConn.Close asked the goroutine to finish
	forced   atomic.Bool // Shutdown's deadline passed; the socket was closed under it
}

// errWoken means a read was cut short on purpose by a stop or close request.
var errWoken = errors.New("netserver: woken")

var _ handlers.Conn = (*conn)(nil)

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{srv: s, nc: nc}
	c.Init(&s.shared)
	return c
}

// RemoteAddr implements handlers.Conn.
func (c *conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// Async implements handlers.Conn.
func (c *conn) Async() handlers.AsyncConn { return asyncConn{c} }

// interrupt asks the goroutine to drain and finish, waking it from a
// blocking read. Safe from any goroutine.
func (c *conn) interrupt() {
	c.stopReq.Store(true)
	_ = c.nc.SetReadDeadline(time.Now())
}

// serve runs the connection: read, decode and answer every complete frame,
// write the replies in one write, until the peer or the server ends it.
func (c *conn) serve() {
	defer c.srv.forget(c)
	s := c.srv
	c.Open(c, &c.out)
	if c.Closing() == session.ConnLimit {
		s.rejectLog.Warn().Stringer("remote", c.nc.RemoteAddr()).Int("max_conns", s.opts.MaxConns).
			Msg("connection refused: at the connection limit")
		c.finish(nil)
		return
	}
	if err := c.write(); err != nil {
		c.finish(c.writeFailed(err))
		return
	}
	c.buf = make([]byte, s.opts.ReadBufferSize)
	var ioErr error
	for c.Closing() == session.Open {
		n, err := c.read()
		if n > 0 {
			if werr := c.serveBuffered(); werr != nil {
				ioErr = c.writeFailed(werr)
				break
			}
		}
		if err != nil {
			ioErr = c.readFailed(err)
			break
		}
	}
	if c.stopReq.Load() && c.Closing() == session.Open && ioErr == nil {
		ioErr = c.drain()
		c.CloseFor(session.ServerStopping, nil)
	}
	c.finish(ioErr)
}

// read reads once into the buffer, with the idle deadline armed.
func (c *conn) read() (int, error) {
	c.makeRoom()
	if idle := c.srv.opts.IdleTimeout; idle > 0 {
		_ = c.nc.SetReadDeadline(time.Now().Add(idle))
	}
	// Checked after arming: a wake-up deadline set before ours was
	// overwritten, but its request is visible here.
	if c.stopReq.Load() || c.closeReq.Load() {
		return 0, errWoken
	}
	free := len(c.buf) - c.end
	n, err := c.nc.Read(c.buf[c.end:])
	c.filled = n == free
	if n < len(c.buf)/8 {
		c.smallReads++
	} else {
		c.smallReads = 0
	}
	if n > 0 {
		c.srv.counters.Read(n)
		c.end += n
	}
	return n, err
}

// serveBuffered answers every complete frame buffered, if there is one,
// and gives lent buffers back once a burst is over.
func (c *conn) serveBuffered() error {
	defer c.settle()
	if c.end-c.start < c.Need() {
		return nil
	}
	c.out = c.out[:0]
	if c.lentIn != nil && c.lentOut == nil {
		// A burst's replies are as large as its reads: collect them in a
		// lent buffer too.
		c.lentOut = burstBuffers.Get().(*[]byte)
		c.ownOut, c.out = c.out, (*c.lentOut)[:0]
	}
	c.start += c.Serve(c, c.buf[c.start:c.end], &c.out)
	return c.write()
}

// readFailed records why a read ended: a stop or close request, the idle
// timeout, or an I/O error that it returns for the session to classify.
func (c *conn) readFailed(err error) error {
	timedOut := errors.Is(err, os.ErrDeadlineExceeded)
	switch {
	case c.forced.Load():
		c.CloseFor(session.ServerStopping, nil)
	case c.closeReq.Load() && (timedOut || errors.Is(err, errWoken)):
		c.CloseFor(session.HandlerClosed, nil)
	case c.stopReq.Load() && timedOut && c.drainExpired():
		c.srv.cut.Store(true) // the drain's read ran into the deadline
		c.CloseFor(session.ServerStopping, nil)
	case c.stopReq.Load() && (timedOut || errors.Is(err, errWoken)):
		return nil // serve drains
	case timedOut:
		c.CloseFor(session.Idle, nil)
	default:
		return err
	}
	return nil
}

// writeFailed records why a write failed: the write timeout (a slow
// consumer), a forced shutdown, or an I/O error returned as is.
func (c *conn) writeFailed(err error) error {
	timedOut := errors.Is(err, os.ErrDeadlineExceeded)
	switch {
	case c.forced.Load():
		c.CloseFor(session.ServerStopping, nil)
	case timedOut && c.stopReq.Load() && c.drainExpired():
		c.srv.cut.Store(true)
		c.CloseFor(session.ServerStopping, nil)
	case timedOut:
		c.CloseFor(session.SlowConsumer, err)
	default:
		return err
	}
	return nil
}

// drain answers what the peer sent before the shutdown: it reads while the
// kernel holds unread bytes, serving and writing as usual, until none are
// left or the shutdown deadline passes.
func (c *conn) drain() error {
	_ = c.nc.SetReadDeadline(c.srv.drainDeadline())
	for {
		if unread, err := unreadBytes(c.nc); err != nil || unread == 0 {
			return nil
		}
		c.makeRoom()
		n, err := c.nc.Read(c.buf[c.end:])
		if n > 0 {
			c.srv.counters.Read(n)
			c.end += n
			if werr := c.serveBuffered(); werr != nil {
				return c.writeFailed(werr)
			}
		}
		if err != nil {
			return c.readFailed(err)
		}
		if c.Closing() != session.Open {
			return nil
		}
	}
}

// drainExpired says whether the shutdown deadline has passed.
func (c *conn) drainExpired() bool {
	d := c.srv.drainDeadline()
	return !d.IsZero() && !time.Now().Before(d)
}

func unreadBytes(nc net.Conn) (int, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return 0, errors.ErrUnsupported
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var ierr error
	if err := rc.Control(func(fd uintptr) { n, ierr = session.UnreadBytes(int(fd)) }); err != nil {
		return 0, err
	}
	return n, ierr
}

// Read buffers adapt to the traffic in two tiers. A connection's own buffer
// starts at ReadBufferSize and doubles on every read that fills it, up to
// maxOwnBuffer, which it keeps until it has been quiet for shrinkAfter reads.
// A read that fills even that starts a burst: the connection borrows a
// burstSize buffer (gnet's read size, so both models read as much per system
// call) from burstBuffers for its reads and another for its replies, and
// gives both back as soon as a read leaves the buffer part empty, which
// means the socket is drained. Memory then follows the connections moving
// data at this moment, not every connection that ever did: 10,000
// connections each keeping 64 KiB to read and 64 KiB of replies would hold
// 1.25 GiB, and the garbage collector would scan it.
const (
	maxOwnBuffer = 8 << 10
	burstSize    = 64 << 10
)

// burstBuffers holds *[]byte of burstSize bytes.
var burstBuffers = sync.Pool{New: func() any {
	b := make([]byte, burstSize)
	return &b
}}

// shrinkAfter is how many small reads in a row give a grown buffer back: one
// small read is often just the tail of a frame.
const shrinkAfter = 16

// makeRoom prepares the buffer for the next read: it grows or shrinks the
// connection's own buffer, or starts a burst (see maxOwnBuffer). A frame
// larger than the buffer gets a buffer of its own, as large as the frame
// needs. Unconsumed bytes are moved to the front.
func (c *conn) makeRoom() {
	initial := c.srv.opts.ReadBufferSize
	size := len(c.buf)
	switch {
	case c.lentIn != nil:
	case c.filled && size >= maxOwnBuffer && size < burstSize:
		size = burstSize
	case c.filled && size < maxOwnBuffer:
		size = min(2*size, maxOwnBuffer)
	case c.start == c.end && size > initial && c.smallReads >= shrinkAfter:
		size = initial
	}
	if c.start == c.end {
		c.start, c.end = 0, 0
	}
	need := max(c.Need(), 1)
	pending := c.end - c.start
	switch {
	case size == burstSize && c.lentIn == nil && need <= burstSize:
		c.lentIn = burstBuffers.Get().(*[]byte)
		c.ownIn = c.buf
		c.buf = *c.lentIn
		copy(c.buf, c.ownIn[c.start:c.end])
	case need > size:
		// the codec caps need, so this is bounded by the max frame
		resized := make([]byte, need)
		copy(resized, c.buf[c.start:c.end])
		c.giveBackIn()
		c.buf = resized
	case size != len(c.buf):
		resized := make([]byte, size)
		copy(resized, c.buf[c.start:c.end])
		c.buf = resized
	case c.end < len(c.buf) && c.start+need <= len(c.buf):
		return // room enough where it is
	default:
		copy(c.buf, c.buf[c.start:c.end])
	}
	c.start, c.end = 0, pending
	c.filled = false
	if size != len(c.buf) || c.smallReads >= shrinkAfter {
		c.smallReads = 0
	}
}

// settle ends a burst once a read has left the lent buffer part empty and
// what is unconsumed fits the connection's own buffer, and gives back the
// replies' buffer once they are written.
func (c *conn) settle() {
	if c.lentOut != nil {
		burstBuffers.Put(c.lentOut)
		c.lentOut, c.out, c.ownOut = nil, c.ownOut[:0], nil
	}
	keep := maxOwnBuffer
	if len(c.buf) > burstSize {
		// A frame-sized read buffer, kept while such frames keep coming:
		// keep room for their replies too, so they do not allocate each time.
		keep = 2 * len(c.buf)
	}
	if cap(c.out) > keep {
		c.out = nil // grown by a batch larger than this connection keeps
	}
	if c.lentIn != nil && !c.filled && c.end-c.start <= len(c.ownIn) {
		n := copy(c.ownIn, c.buf[c.start:c.end])
		c.buf, c.start, c.end = c.ownIn, 0, n
		c.giveBackIn()
	}
}

// giveBackIn returns the lent read buffer, if any, to the pool; the caller
// has copied out what it needs.
func (c *conn) giveBackIn() {
	if c.lentIn != nil {
		burstBuffers.Put(c.lentIn)
		c.lentIn, c.ownIn = nil, nil
	}
}

// write sends the replies collected in out with one write. A peer that does
// not read makes it block, which stops this goroutine reading: the model's
// back-pressure. The write timeout bounds the wait.
func (c *conn) write() error {
	if len(c.out) == 0 {
		return nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.armWrite()
	n, err := c.nc.Write(c.out)
	c.CountWritten(n)
	return err
}

// armWrite sets the write deadline: the write timeout, or while draining the
// shutdown deadline if that comes first. Called with wmu held.
func (c *conn) armWrite() {
	var deadline time.Time
	if wt := c.srv.opts.WriteTimeout; wt > 0 {
		deadline = time.Now().Add(wt)
	}
	if c.stopReq.Load() {
		if d := c.srv.drainDeadline(); !d.IsZero() && (deadline.IsZero() || d.Before(deadline)) {
			deadline = d
		}
	}
	if !deadline.IsZero() {
		_ = c.nc.SetWriteDeadline(deadline)
	}
}

// finish settles the session's close reason (counted and logged before the
// peer can see the close) and closes the socket.
func (c *conn) finish(ioErr error) {
	c.wmu.Lock()
	c.closed.Store(true)
	c.wmu.Unlock()
	c.Closed(c, c.nc.RemoteAddr(), ioErr, c.end-c.start)
	_ = c.nc.Close()
	c.settle()
	c.giveBackIn()
}

// asyncConn is the handlers.AsyncConn of a conn.
type asyncConn struct{ c *conn }

var _ handlers.AsyncConn = asyncConn{}

func (a asyncConn) ID() uint64 { return a.c.ID() }

// Send writes the frame at once, under the connection's write lock: a peer
// that does not read blocks the sender (up to the write timeout), which is
// how this model applies back-pressure.
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
	a.c.armWrite()
	n, err := a.c.nc.Write(buf)
	a.c.CountWritten(n)
	if err != nil {
		return handlers.ErrClosed
	}
	a.c.CountAsyncFrame()
	return nil
}

// Close asks the connection's goroutine to close; what Send wrote is already
// on the socket.
func (a asyncConn) Close() error {
	if a.c.closed.Load() {
		return handlers.ErrClosed
	}
	a.c.closeReq.Store(true)
	_ = a.c.nc.SetReadDeadline(time.Now())
	return nil
}
