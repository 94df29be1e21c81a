package eventloop

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"echoloop/eventloop/session"
	"echoloop/handlers"
)

// handOffTimeout bounds how long a handed-off socket may take to accept its
// last replies when no WriteTimeout is set.
const handOffTimeout = 30 * time.Second

// handOffs tracks sockets whose last replies are still being written after
// gnet closed the connection, so Shutdown can wait for them or cut them off,
// and the connections among them whose handler still owes replies, so their
// AsyncConns can reach them.
type handOffs struct {
	mu    sync.Mutex
	conns map[*handOff]struct{}
	owed  map[*conn]*owed
}

type handOff struct {
	fd   int      // duplicate of the socket, until nc takes it over
	nc   net.Conn // set once the writing goroutine runs
	done bool     // cut off by Shutdown; guarded by handOffs.mu
	owed *owed    // nil unless the handler owes replies
}

// owed is a half-closed connection whose handler still owes it replies
// (handlers.Finisher). gnet has closed it; its session and its AsyncConn
// live on. Frames sent through the AsyncConn reach the loop's mailbox as
// before, and the flush passes them here (owed.add), in the order sent, for
// the hand-off's goroutine to write. The handler's Close, also passed
// through the loop so that it comes after those frames, ends it; so do the
// limits a connection has (see writeOwed). The session stays the loop's:
// input kept while the handler had the connection paused is served there on
// its Resume, and the hand-off's goroutine has the loop finish the session
// (Closed) once the writing is over.
type owed struct {
	c       *conn
	remote  net.Addr // the address Closed reports; the loop's record of it is gone
	ioErr   error    // what gnet closed c with: the peer's EOF
	partial int      // bytes of an incomplete frame the peer left
	kept    []byte   // input not served yet: the handler had paused c; loop only

	mu      sync.Mutex
	queued  []byte // encoded frames sent and not yet written
	frames  int    // how many frames queued holds
	closing bool   // the handler's Close has arrived
	slow    bool   // queued would have passed MaxPending
	ended   bool   // the writer has finished: frames now are dropped
	wake    chan struct{}

	finished atomic.Bool // the session is finished; see endOwed
}

// closedConn is the handlers.Conn a handler sees in CloseConn for a
// connection that closed after a hand-off, with the address it had.
type closedConn struct {
	*conn
	remote net.Addr
}

func (c closedConn) RemoteAddr() net.Addr { return c.remote }

// owe registers c, which gnet is closing because its peer half-closed, as
// owed replies by its handler. It must run before c.closed is set, so that
// a Send in between still goes through.
func (s *Server) owe(c *conn, remote net.Addr, ioErr error) *owed {
	o := &owed{c: c, remote: remote, ioErr: ioErr, wake: make(chan struct{}, 1)}
	s.handOffs.mu.Lock()
	if s.handOffs.owed == nil {
		s.handOffs.owed = make(map[*conn]*owed)
	}
	s.handOffs.owed[c] = o
	s.handOffs.mu.Unlock()
	return o
}

// owedTo returns c's owed state while the handler may still send to it.
func (s *Server) owedTo(c *conn) *owed {
	s.handOffs.mu.Lock()
	defer s.handOffs.mu.Unlock()
	return s.handOffs.owed[c]
}

// add queues frames for the hand-off's goroutine to write. Called on the
// loop by a mailbox flush.
func (o *owed) add(p []byte, frames int, maxPending int) {
	if len(p) == 0 {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ended || o.slow {
		return
	}
	if len(o.queued)+len(p) > maxPending {
		o.slow = true
	} else {
		o.queued = append(o.queued, p...)
		o.frames += frames
		o.c.loop.srv.counters.AddMemory(int64(len(p)))
	}
	o.poke()
}

// close records the handler's Close. Called on the loop, after a flush.
func (o *owed) close() {
	o.mu.Lock()
	o.closing = true
	o.mu.Unlock()
	o.poke()
}

func (o *owed) poke() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// resumeOwed serves, on c's loop, the input kept when the peer half-closed
// while the handler had c paused, up to the handler's next Pause; once all
// of it is served, the handler is told of the half-close.
func (l *loopState) resumeOwed(c *conn) {
	o := l.srv.owedTo(c)
	if o == nil || o.kept == nil {
		return
	}
	c.Resume()
	if c.Paused() {
		return
	}
	used := c.Serve(c, o.kept, &l.out)
	o.keep(o.kept[used:])
	o.partial = len(o.kept)
	o.add(l.out, 0, l.srv.opts.MaxPending) // counted as served by Serve
	l.reset()
	if c.Paused() {
		return // the handler paused again: the rest waits for its Resume
	}
	o.keep(nil)
	l.srv.finisher.Finish(asyncConn{c})
}

// keep sets the input kept unserved, counted in the memory total. Loop only.
func (o *owed) keep(in []byte) {
	o.c.loop.srv.counters.AddMemory(int64(len(in) - len(o.kept)))
	o.kept = in
}

// finishOwed has c's loop end o (endOwed): the session is the loop's. When
// the loops have stopped, or stop before they run it, it ends o here.
func (s *Server) finishOwed(o *owed, r session.Reason, cause error) {
	ran := make(chan struct{})
	err := o.c.loop.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		s.endOwed(o, r, cause)
		close(ran)
		return nil
	}))
	if err == nil {
		select {
		case <-ran:
			return
		case <-s.done: // ListenAndServe has returned: the loops are gone
		}
	}
	s.endOwed(o, r, cause)
}

// endOwed stops taking frames, gives back what was never written, and
// finishes the session: the close is counted and logged, and the handler
// told, with reason r if it is not Open (else the peer's half-close).
func (s *Server) endOwed(o *owed, r session.Reason, cause error) {
	if !o.finished.CompareAndSwap(false, true) {
		return // ended already, by the loop or after it
	}
	s.handOffs.mu.Lock()
	delete(s.handOffs.owed, o.c)
	s.handOffs.mu.Unlock()
	o.mu.Lock()
	o.ended = true
	dropped := len(o.queued)
	o.queued = nil
	o.mu.Unlock()
	s.counters.AddMemory(-int64(dropped))
	o.keep(nil)
	if r != session.Open {
		o.c.CloseFor(r, cause)
	}
	o.c.Closed(closedConn{o.c, o.remote}, o.remote, o.ioErr, o.partial)
}

// handOff arranges for c's unsent replies, data (a copy of gnet's outbound
// buffer, may be empty), to be written after gnet has closed its
// descriptor, and then those the handler owes, if o is not nil: it
// duplicates the socket now, and once gnet's own last write attempt is over
// (a task queued behind this close) works out how much of data that attempt
// wrote and gives the rest to a goroutine. The socket counts as an open
// connection until then, since it holds a descriptor. It reports whether
// the hand-off could be made.
func (s *Server) handOff(c *conn, data []byte, o *owed) bool {
	before, err := bytesWritten(c.gc.Fd())
	if err != nil {
		return false
	}
	fd, err := c.gc.Dup()
	if err != nil {
		return false
	}
	h := &handOff{fd: fd, owed: o}
	s.handOffs.mu.Lock()
	if s.handOffs.conns == nil {
		s.handOffs.conns = make(map[*handOff]struct{})
	}
	s.handOffs.conns[h] = struct{}{}
	s.handOffs.mu.Unlock()
	s.counters.Hold()
	err = c.loop.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		after, err := bytesWritten(fd)
		if err == nil {
			written := int(min(max(after-before, 0), int64(len(data))))
			data = data[written:]
		}
		s.handOffWG.Go(func() { s.finishHandOff(h, data) })
		return nil
	}))
	if err != nil {
		s.handOffWG.Go(func() { s.finishHandOff(h, nil) })
	}
	return true
}

// finishHandOff writes data to the handed-off socket, blocking up to the
// write timeout, then what the handler owes, and closes it.
func (s *Server) finishHandOff(h *handOff, data []byte) {
	defer s.counters.Release()
	r, cause := session.Open, error(nil)
	f := os.NewFile(uintptr(h.fd), "handoff")
	nc, err := net.FileConn(f) // its own duplicate, on Go's poller
	f.Close()
	s.handOffs.mu.Lock()
	cut := h.done
	h.nc = nc
	s.handOffs.mu.Unlock()
	switch {
	case err != nil:
		r, cause = session.IOError, err
	case cut:
		r = session.ServerStopping
	default:
		if err := s.writeHandedOff(nc, data); err != nil {
			s.log.Debug().Err(err).Int("unsent", len(data)).Msg("replies after close not delivered")
			r, cause = s.handOffFailed(h, err)
		} else if h.owed != nil {
			r, cause = s.writeOwed(h, nc)
		}
	}
	s.handOffs.mu.Lock()
	delete(s.handOffs.conns, h)
	s.handOffs.mu.Unlock()
	if nc != nil {
		if r.Abandons() || r == session.ServerStopping {
			session.ResetOnClose(nc) // given up on, or cut off by Shutdown's deadline
		}
		nc.Close()
	}
	if h.owed != nil {
		s.finishOwed(h.owed, r, cause)
	}
}

// writeHandedOff writes p, allowing the write timeout for it.
func (s *Server) writeHandedOff(nc net.Conn, p []byte) error {
	if len(p) == 0 {
		return nil
	}
	timeout := s.opts.WriteTimeout
	if timeout <= 0 {
		timeout = handOffTimeout
	}
	_ = nc.SetWriteDeadline(time.Now().Add(timeout))
	_, err := nc.Write(p)
	return err
}

// handOffFailed says why a hand-off's write failed: Shutdown cut it off,
// the peer did not read for the write timeout, or the socket failed.
func (s *Server) handOffFailed(h *handOff, err error) (session.Reason, error) {
	s.handOffs.mu.Lock()
	cut := h.done
	s.handOffs.mu.Unlock()
	switch {
	case cut:
		return session.ServerStopping, nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return session.SlowConsumer, err
	}
	return session.ReasonFor(err), err
}

// writeOwed writes the frames the handler sends until it closes, or until
// a limit ends it: more than MaxPending queued, or a write that does not
// finish within the write timeout (slow consumer); nothing sent for the
// idle timeout (idle); Shutdown cutting the hand-off off (server
// stopping). It returns the reason, Open for the handler's Close.
func (s *Server) writeOwed(h *handOff, nc net.Conn) (session.Reason, error) {
	o := h.owed
	var idle <-chan time.Time
	var timer *time.Timer
	if d := s.opts.IdleTimeout; d > 0 {
		timer = time.NewTimer(d)
		defer timer.Stop()
		idle = timer.C
	}
	var spare []byte
	for {
		s.handOffs.mu.Lock()
		cut := h.done
		s.handOffs.mu.Unlock()
		o.mu.Lock()
		p, frames, closing, slow := o.queued, o.frames, o.closing, o.slow
		if len(p) > 0 {
			// Frames sent during the write go to the buffer written
			// last time, never to the one being written.
			o.queued, o.frames, spare = spare[:0], 0, nil
		}
		o.mu.Unlock()
		switch {
		case cut:
			return session.ServerStopping, nil
		case slow:
			return session.SlowConsumer, nil
		case len(p) > 0:
			err := s.writeHandedOff(nc, p)
			s.counters.AddMemory(-int64(len(p)))
			if err != nil {
				return s.handOffFailed(h, err)
			}
			o.c.CountWritten(len(p))
			o.c.CountAsyncFrames(frames)
			spare = p
			if timer != nil {
				timer.Reset(s.opts.IdleTimeout)
			}
			continue
		case closing:
			return session.Open, nil
		}
		select {
		case <-o.wake:
		case <-idle:
			return session.Idle, nil
		}
	}
}

// cutHandOffs closes every handed-off socket at once: the shutdown deadline
// has passed.
func (s *Server) cutHandOffs() {
	s.handOffs.mu.Lock()
	defer s.handOffs.mu.Unlock()
	for h := range s.handOffs.conns {
		h.done = true
		if h.nc != nil {
			session.ResetOnClose(h.nc)
			h.nc.Close()
		}
		if h.owed != nil {
			h.owed.poke()
		}
	}
}

var _ handlers.Conn = closedConn{}
