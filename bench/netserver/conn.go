package netserver

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"echoloop/eventloop/proxyproto"
	"echoloop/eventloop/session"
	"echoloop/handlers"
)

// conn is one connection and its goroutine. The session, the read buffer,
// out and frameStart belong to that goroutine; writes to the socket, from it
// or from the outbox's writer, are serialised by wmu. Other goroutines reach
// a conn only through its atomic fields, its outbox and the socket's
// deadlines: Shutdown (stopReq, forced), AsyncConn.Close (closeReq), a
// stalled or overflowing outbox (stalled), AsyncConn.Resume (resumeReq) and
// an eviction pass (memState); each sets its flag and then a deadline in the
// past (Shutdown's forced close closes the socket) and pokes wake, and the
// goroutine checks the flags after arming its own deadlines, or before
// waiting on wake, so a wake-up is never lost.
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

	// frameStart is when the first byte of the partial frame buffered now
	// arrived; zero when none is buffered or there is no frame timeout.
	frameStart time.Time
	// readDeadline is the deadline read last armed, so an unchanged one is
	// not set again; idleBy is its idle part.
	readDeadline, idleBy time.Time

	// The output watch; see output.go. written is added to under wmu.
	written   atomic.Int64    // reply bytes written into the socket
	ackedSeen int64           // of those, the peer acknowledged this many at the last look
	watchFrom time.Time       // when the watch (re)started; zero when off
	watching  atomic.Bool     // watchFrom is set, for kickWatch
	raw       syscall.RawConn // for asking the kernel; set at the first look

	// Memory accounting; see memory.go.
	held      atomic.Int64 // added to the server's total by this goroutine
	sendHeld  atomic.Int64 // what the outbox holds (async.go)
	evictHeld atomic.Int64 // what an eviction pass counted in Server.evicting
	memState  atomic.Int32 // memActive, memEvicted or memReleased

	// Frames sent through the AsyncConn, and the handler's pause; see
	// async.go.
	box       outbox
	writers   sync.WaitGroup // the outbox's writer goroutine, while it runs
	resumeReq atomic.Bool    // AsyncConn.Resume arrived, not yet taken up
	wake      chan struct{}  // pokes a goroutine waiting out a pause

	wmu      sync.Mutex
	closed   atomic.Bool // the session is closed; AsyncConn refuses
	stopReq  atomic.Bool // Shutdown asked the goroutine to drain and finish
	closeReq atomic.Bool // AsyncConn.Close asked the goroutine to finish
	stalled  atomic.Bool // the outbox passed MaxPending, or its write made no progress for the write timeout
	forced   atomic.Bool // Shutdown's deadline passed; the socket was closed under it

	// proxied is the client's address from the PROXY header, nil without
	// one: RemoteAddr reports it instead of the socket's peer. Stored once,
	// before the session opens; an eviction pass may read it meanwhile.
	proxied atomic.Pointer[net.Addr]

	trace *connTrace // the reads' trace; nil until the first when tracing (see trace.go)
}

// errWoken means a read or write was cut short on purpose: by a stop or
// close request, or by an eviction.
var errWoken = errors.New("netserver: woken")

var _ handlers.Conn = (*conn)(nil)

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{srv: s, nc: nc, wake: make(chan struct{}, 1)}
	c.Init(&s.shared)
	return c
}

// RemoteAddr implements handlers.Conn: the client's address from the PROXY
// header if there was one, else the socket's peer. Safe from any goroutine.
func (c *conn) RemoteAddr() net.Addr {
	if a := c.proxied.Load(); a != nil {
		return *a
	}
	return c.nc.RemoteAddr()
}

// Async implements handlers.Conn.
func (c *conn) Async() handlers.AsyncConn { return asyncConn{c} }

// interrupt asks the goroutine to drain and finish, waking it from a
// blocking read. Safe from any goroutine.
func (c *conn) interrupt() {
	c.stopReq.Store(true)
	_ = c.nc.SetReadDeadline(time.Now())
	c.poke()
}

// serve runs the connection: read the PROXY header first if the protocol is
// on (proxy.go), then read, decode and answer every complete frame,
// write the replies in one write, until the peer or the server ends it; then
// close, gracefully when the reason asks for it.
func (c *conn) serve() {
	defer c.srv.forget(c)
	s := c.srv
	if s.opts.Proxy.Mode != proxyproto.Off && !c.readProxyHeader() {
		return
	}
	c.Open(c, &c.out)
	if c.Refused(&s.rejectLog, c.RemoteAddr()) {
		c.closeNow(nil)
		return
	}
	if err := c.write(); err != nil {
		c.closeGracefully(c.writeFailed(err))
		return
	}
	if c.buf == nil {
		c.buf = make([]byte, s.opts.ReadBufferSize)
	}
	c.account()
	var ioErr error
	if c.end > c.start {
		// Frames that came in the same read as the PROXY header.
		if werr := c.serveBuffered(); werr != nil {
			ioErr = c.writeFailed(werr)
		}
	}
	for c.Closing() == session.Open && ioErr == nil {
		if c.Paused() && c.waitResume() {
			// Serve what waited; the next turn waits again if the handler
			// paused once more.
			if werr := c.serveBuffered(); werr != nil {
				ioErr = c.writeFailed(werr)
				break
			}
			continue
		}
		// Not paused, or woken out of a pause: the read notices why.
		n, err := c.read()
		if n > 0 {
			if werr := c.serveBuffered(); werr != nil {
				ioErr = c.writeFailed(werr)
				break
			}
		}
		if err != nil {
			if c.resumeAfter(err) {
				continue
			}
			if c.Tracing() && errors.Is(err, io.EOF) {
				c.traceEOF()
			}
			if s.finisher != nil && errors.Is(err, io.EOF) {
				ioErr = c.awaitOwed(err)
				break
			}
			ioErr = c.readFailed(err)
			break
		}
	}
	if c.stopReq.Load() && c.Closing() == session.Open && ioErr == nil {
		ioErr = c.drain()
		if s.finisher != nil && ioErr == nil && c.Closing() == session.Open {
			ioErr = c.awaitOwed(nil) // the replies to what was drained
		}
		c.CloseFor(session.ServerStopping, nil)
	}
	c.closeGracefully(ioErr)
}

// read reads once into the buffer, with the read deadline armed.
func (c *conn) read() (int, error) {
	c.makeRoom()
	c.armRead()
	// Checked after arming: a wake-up deadline set before ours was
	// overwritten, but its request is visible here.
	if c.woken() {
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

// woken says whether another goroutine asked this one to stop serving.
func (c *conn) woken() bool {
	return c.stopReq.Load() || c.closeReq.Load() || c.stalled.Load() || c.evicted() || c.forced.Load()
}

// armRead sets the read deadline to the earliest of the idle deadline (the
// idle timeout from now), the frame deadline (the frame timeout from
// frameStart) and the output watch's (the write timeout from watchFrom), or
// clears it when none applies. resumeAfter and readFailed tell which one
// passed.
func (c *conn) armRead() {
	o := &c.srv.opts
	c.idleBy = time.Time{}
	if o.IdleTimeout > 0 {
		c.idleBy = time.Now().Add(o.IdleTimeout)
	}
	c.watchOutput()
	d := earlier(c.idleBy, c.frameStart, o.FrameTimeout)
	d = earlier(d, c.watchFrom, o.WriteTimeout)
	if !d.Equal(c.readDeadline) {
		c.readDeadline = d
		_ = c.nc.SetReadDeadline(d)
	}
}

// earlier returns d or, if from is set, from+after when that comes first;
// a zero d is no deadline.
func earlier(d, from time.Time, after time.Duration) time.Time {
	if from.IsZero() {
		return d
	}
	if at := from.Add(after); d.IsZero() || at.Before(d) {
		return at
	}
	return d
}

// serveBuffered answers every complete frame buffered, if there is one,
// gives lent buffers back once a burst is over, and keeps the memory total
// current.
func (c *conn) serveBuffered() error {
	err := c.serveAndWrite()
	if c.Tracing() {
		c.traceRead()
	}
	c.settle()
	c.account()
	return err
}

// serveAndWrite serves the complete frames buffered and writes their
// replies. The reply buffer is counted in the memory total while the write
// holds it: a peer that does not read keeps it held.
func (c *conn) serveAndWrite() error {
	if c.end-c.start < c.Need() {
		c.noteFrame(0)
		return nil
	}
	c.out = c.out[:0]
	if c.lentIn != nil && c.lentOut == nil {
		// A burst's replies are as large as its reads: collect them in a
		// lent buffer too.
		c.lentOut = burstBuffers.Get().(*[]byte)
		c.ownOut, c.out = c.out, (*c.lentOut)[:0]
	}
	used := c.Serve(c, c.buf[c.start:c.end], &c.out)
	c.start += used
	c.noteFrame(used)
	c.account()
	return c.write()
}

// noteFrame keeps frameStart for the frame timeout, after a read and the
// Serve that used the first used bytes buffered. Nothing buffered: no frame
// has started. Something buffered and either a frame ended in this read or
// nothing was buffered before: the partial frame's first byte came with
// this read, now.
func (c *conn) noteFrame(used int) {
	switch {
	case c.start == c.end:
		c.frameStart = time.Time{}
	case !c.srv.opts.FrameTimeoutOn():
	case used > 0 || c.frameStart.IsZero():
		c.frameStart = time.Now()
	}
}

// frameOverdue says whether the partial frame buffered has outlived the
// frame timeout.
func (c *conn) frameOverdue() bool {
	return !c.frameStart.IsZero() && !time.Now().Before(c.frameStart.Add(c.srv.opts.FrameTimeout))
}

// readFailed records why a read ended: Shutdown's forced close, an
// eviction, a stop or close request, a stalled Send, one of the read's
// deadlines, or an I/O error that it returns for the session to classify.
func (c *conn) readFailed(err error) error {
	timedOut := errors.Is(err, os.ErrDeadlineExceeded)
	switch {
	case c.forced.Load():
		c.CloseFor(session.ServerStopping, nil)
	case c.evicted():
		c.CloseFor(session.MemoryLimit, nil)
	case c.closeReq.Load() && (timedOut || errors.Is(err, errWoken)):
		c.CloseFor(session.HandlerClosed, nil)
	case c.stopReq.Load() && timedOut && c.drainExpired():
		c.srv.cut.Store(true) // the drain's read ran into the deadline
		c.CloseFor(session.ServerStopping, nil)
	case c.stopReq.Load() && (timedOut || errors.Is(err, errWoken)):
		return nil // serve drains
	case c.stalled.Load():
		c.CloseFor(session.SlowConsumer, nil)
	case timedOut:
		c.CloseFor(c.expired(), nil)
	default:
		return err
	}
	return nil
}

// expired tells which of the read's deadlines passed (see armRead): the
// frame deadline (SlowFrame), the idle deadline (Idle), or else the output
// watch's, with no progress (SlowConsumer: resumeAfter carried on after
// the watch's deadline when there was progress).
func (c *conn) expired() session.Reason {
	now := time.Now()
	switch {
	case c.frameOverdue():
		return session.SlowFrame
	case !c.idleExpired(now) && c.outputDue(now):
		return session.SlowConsumer
	}
	return session.Idle
}

// writeFailed records why a write failed: a forced shutdown, an eviction,
// the write timeout (a slow consumer), or an I/O error returned as is.
func (c *conn) writeFailed(err error) error {
	timedOut := errors.Is(err, os.ErrDeadlineExceeded)
	switch {
	case c.forced.Load():
		c.CloseFor(session.ServerStopping, nil)
	case c.evicted():
		c.CloseFor(session.MemoryLimit, nil)
	case c.stalled.Load():
		c.CloseFor(session.SlowConsumer, nil)
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

// write sends the replies collected in out. A peer that does not read
// makes it block, which stops this goroutine reading: the model's
// back-pressure. The write timeout bounds each wait for progress (see
// writeAll).
func (c *conn) write() error {
	if len(c.out) == 0 {
		return nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.traceWrite(len(c.out))
	return c.writeAll(c.out)
}

// writeAll writes all of p. WriteTimeout bounds how long a reply may make
// no progress, not how long all of it may take: a peer that reads slowly
// but steadily is served however large the reply. Each write(2) wait is
// armed with the write timeout; when it passes after part of p went out, the
// deadline is armed afresh for the rest. A peer that stops reading is
// therefore closed as SlowConsumer between one and two write timeouts after
// its last progress. Shutdown's deadline, an eviction or Shutdown's forced
// close end the write at once. Called with wmu held.
func (c *conn) writeAll(p []byte) error {
	for {
		c.armWrite()
		if c.evicted() || c.stalled.Load() { // checked after arming, as in read
			return errWoken
		}
		n, err := c.nc.Write(p)
		c.written.Add(int64(n))
		c.CountWritten(n)
		p = p[n:]
		if err == nil || n == 0 || !errors.Is(err, os.ErrDeadlineExceeded) ||
			(c.stopReq.Load() && c.drainExpired()) {
			return err
		}
	}
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
