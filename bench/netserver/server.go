// Package netserver is the goroutine-per-connection server that echoloop's
// event loop is measured against: net.Listener, one goroutine per
// connection, blocking reads into a per-connection buffer. It uses the very
// same session (framing, dispatch, close reasons, counters) and handlers as
// the event loop, so the two differ only in how they wait for sockets.
//
// It is written the way a careful Go programmer would write it, not as a
// strawman: one read buffer per connection that grows only as the bytes of a
// frame arrive, replies to all frames of one read collected and written with
// one write(2), and no allocation per frame.
//
// It holds up against hostile clients the way the event loop does, with
// the means of its model: read deadlines for the idle and frame timeouts; for
// the write timeout, a write deadline re-armed on every progress and a watch
// on the replies the kernel holds unacknowledged (output.go); a lingering
// close for the closes that promise earlier replies (close.go); and a memory
// budget over all connections that closes the ones holding the most
// (memory.go). Buffers follow what arrived (buffer.go).
package netserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"echoloop/eventloop/session"
	"echoloop/handlers"
)

var (
	// ErrServerClosed is returned by ListenAndServe after Shutdown.
	ErrServerClosed = errors.New("netserver: server closed")

	// ErrStarted means ListenAndServe was called twice.
	ErrStarted = errors.New("netserver: server already started")
)

// DefaultReadBufferSize is a connection's initial read buffer, as bufio's.
const DefaultReadBufferSize = 4 << 10

// Options configures a Server. The zero value is a valid configuration: a
// line-framed echo server on session.DefaultAddr.
type Options struct {
	// Config is what this server shares with the event loop.
	session.Config

	// ReadBufferSize is each connection's initial read buffer in bytes; it
	// grows as traffic or a frame's bytes fill it and returns to this size
	// when the connection goes quiet (see buffer.go). Zero means
	// DefaultReadBufferSize.
	ReadBufferSize int
}

// Server is a goroutine-per-connection server. Its methods are safe for
// concurrent use.
type Server struct {
	opts      Options
	log       zerolog.Logger
	rejectLog zerolog.Logger
	counters  session.Counters
	shared    session.Shared    // what every connection's session refers to
	finisher  handlers.Finisher // the handler, if it may owe replies after the last frame

	reclaim  session.Reclaimer // gives memory back after bursts
	started  atomic.Bool
	stopping atomic.Bool
	ready    chan struct{} // closed once listening, or on failure
	done     chan struct{} // closed when ListenAndServe returns

	mu    sync.Mutex
	ln    net.Listener       // set before ready is closed
	conns map[*conn]struct{} // live connections, for Shutdown
	wg    sync.WaitGroup     // connection goroutines

	drainBy atomic.Int64 // Shutdown's deadline in Unix ns, 0 for none
	cut     atomic.Bool  // a connection was closed busy at that deadline

	// frameLimit is the most bytes one frame can take buffered; see grown.
	frameLimit int

	// Memory budget; see memory.go.
	memLog   zerolog.Logger // eviction warnings, sampled like rejectLog
	evicting atomic.Int64   // bytes held by connections chosen for eviction, not yet closed
	evictMu  sync.Mutex     // one eviction pass at a time; guards victims
	victims  []victim       // an eviction pass's scratch list
}

// drainDeadline is when a draining connection must be done; zero for no
// deadline.
func (s *Server) drainDeadline() time.Time {
	if ns := s.drainBy.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// New checks opts, fills in their defaults and raises the file descriptor
// limit; it does not listen yet.
func New(opts Options) (*Server, error) {
	if opts.ReadBufferSize < 0 {
		return nil, fmt.Errorf("netserver: read buffer size %d is negative", opts.ReadBufferSize)
	}
	if opts.ReadBufferSize == 0 {
		opts.ReadBufferSize = DefaultReadBufferSize
	}
	if err := opts.Config.Prepare(); err != nil {
		return nil, err
	}
	log := opts.Logger.With().Str("component", "netserver").Logger()
	s := &Server{
		opts:      opts,
		log:       log,
		rejectLog: session.RejectLogger(log),
		memLog:    session.RejectLogger(log),
		ready:     make(chan struct{}),
		done:      make(chan struct{}),
		conns:     make(map[*conn]struct{}),
	}
	s.frameLimit = min(opts.Codec.MaxPayload(), session.MaxBuffer) + frameOverhead
	s.shared = session.Shared{Config: &s.opts.Config, Counters: &s.counters, Log: &s.log}
	s.finisher, _ = s.opts.Handler.(handlers.Finisher)
	return s, nil
}

// Options returns the options in effect, defaults filled in.
func (s *Server) Options() Options { return s.opts }

// Ready is closed once the server listens (Addr is then valid) or has failed
// to start.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr is the address the server listens on, nil before Ready or after a
// failed start.
func (s *Server) Addr() net.Addr {
	select {
	case <-s.ready:
		if s.ln != nil {
			return s.ln.Addr()
		}
	default:
	}
	return nil
}

// Stats returns a snapshot of the server's counters.
func (s *Server) Stats() session.Stats { return s.counters.Snapshot() }

// ListenAndServe listens on the configured address and serves until Shutdown,
// then returns ErrServerClosed. A failure to listen is returned at once,
// wrapping the system error (errors.Is(err, syscall.EADDRINUSE) tells a busy
// port).
func (s *Server) ListenAndServe() error {
	if !s.started.CompareAndSwap(false, true) {
		return ErrStarted
	}
	defer close(s.done)
	ln, err := s.opts.Listen()
	if err != nil {
		close(s.ready)
		return fmt.Errorf("netserver: listen on %s: %w", s.opts.Addr, err)
	}
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	close(s.ready)
	if s.stopping.Load() {
		ln.Close()
		return ErrServerClosed
	}
	stopReclaim := make(chan struct{})
	defer close(stopReclaim)
	go s.reclaimLoop(stopReclaim)
	err = s.acceptLoop(ln)
	s.wg.Wait()
	return err
}

// reclaimInterval is how often the server checks whether to give memory
// back to the OS (see session.Reclaimer).
const reclaimInterval = time.Second

// reclaimLoop gives memory back to the OS after bursts, until stop closes.
func (s *Server) reclaimLoop(stop <-chan struct{}) {
	t := time.NewTicker(reclaimInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			s.reclaim.Check(s.counters.Memory(), now)
		}
	}
}

// acceptLoop accepts until the listener is closed. Running out of file
// descriptors is not fatal: like net/http, it backs off and tries again.
func (s *Server) acceptLoop(ln net.Listener) error {
	var backoff session.AcceptBackoff
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.stopping.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && !errors.Is(err, net.ErrClosed) {
				s.counters.AcceptFailed()
				pause := backoff.Failed()
				s.rejectLog.Warn().Err(err).Stringer("retry_in", pause).Msg("accept failed")
				time.Sleep(pause)
				continue
			}
			return fmt.Errorf("netserver: accept: %w", err)
		}
		backoff.Succeeded()
		// Failing, it leaves the kernel's own bound: the send buffer.
		_ = session.LimitUnsent(nc)
		c := newConn(s, nc)
		s.mu.Lock()
		if s.stopping.Load() {
			s.mu.Unlock()
			s.counters.Accepted()
			c.CloseFor(session.ServerStopping, nil)
			c.closeNow(nil)
			continue
		}
		s.conns[c] = struct{}{}
		s.wg.Go(c.serve)
		s.mu.Unlock()
	}
}

// Shutdown drains the server and stops it, as the event loop's does: it
// closes the listener, then each connection answers what it had received
// (including bytes still unread in the kernel), writes its replies and
// closes with reason ServerStopping; a partial frame is dropped. The close
// lingers (see conn.linger) within ctx's deadline, so a connection whose
// peer neither sends nor closes keeps Shutdown waiting up to LingerTime.
// When ctx ends first, the connections still busy are closed as they are and
// Shutdown returns ctx.Err(); the server is stopped either way.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopping.Store(true)
	if !s.started.Load() {
		return nil
	}
	select {
	case <-s.done: // already stopped
		return nil
	default:
	}
	<-s.ready
	if d, ok := ctx.Deadline(); ok {
		s.drainBy.Store(d.UnixNano())
	}
	// Stop accepting first, as the event loop does: new connections are
	// refused by the kernel (or, with ReusePort, go to the other servers on
	// the address) rather than accepted only to be closed.
	s.mu.Lock()
	if s.ln != nil {
		s.ln.Close()
	}
	for c := range s.conns {
		c.interrupt()
	}
	s.mu.Unlock()
	// No connection goroutine starts once stopping is set (acceptLoop
	// checks it under mu), so waiting on wg now is safe.
	drained := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(drained)
	}()
	var err error
	select {
	case <-drained:
		if s.cut.Load() {
			// The deadline cut a connection off just before ctx said so.
			err = context.DeadlineExceeded
		}
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			c.forced.Store(true)
			session.ResetOnClose(c.nc) // its replies are abandoned
			_ = c.nc.Close()
			c.poke()
		}
		s.mu.Unlock()
		<-drained
		err = ctx.Err()
	}
	<-s.done
	return err
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}
