// Package eventloop is echoloop's select-style server: one goroutine waits on
// every socket at once with epoll (kqueue on BSD) through gnet, and reacts to
// whichever is ready. It is the only package that imports gnet.
//
// For each readable connection gnet reads what the socket holds and calls
// OnTraffic on the connection's event loop:
//
//	buf := Next(everything read)
//	decode every complete frame in buf, hand each to the handler, collect the replies
//	copy a partial frame at the end into the connection's own buffer, for the next read
//	one Write of all the replies
//
// Callbacks for one connection (OnOpen, OnTraffic..., OnClose) run in order
// on the loop that owns it and never concurrently. With Loops > 1 different
// connections' callbacks run in parallel on different loops. The server
// accepts on a goroutine of its own and hands each new socket to a loop
// (see accept.go).
package eventloop

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/rs/zerolog"

	"echoloop/eventloop/internal/gnetlog"
	"echoloop/eventloop/session"
	"echoloop/handlers"
)

var (
	// ErrServerClosed is returned by ListenAndServe after Shutdown.
	ErrServerClosed = errors.New("eventloop: server closed")

	// ErrStarted means ListenAndServe was called twice.
	ErrStarted = errors.New("eventloop: server already started")
)

// Server is a gnet event-loop server. Its methods are safe for concurrent
// use.
type Server struct {
	opts      Options
	log       zerolog.Logger
	rejectLog zerolog.Logger
	counters  session.Counters
	shared    session.Shared // what every connection's session refers to

	started  atomic.Bool
	stopping atomic.Bool       // refuse new connections
	draining atomic.Bool       // sweeps close connections that are done
	forcing  atomic.Bool       // sweeps close every connection
	reclaim  session.Reclaimer // gives memory back after bursts; see OnTick
	fast     atomic.Int32      // connections paused or lingering: sweep at fastTick
	evicting atomic.Bool       // an eviction round across the loops runs; see evictAcross
	ready    chan struct{}     // closed once the listener is bound, or on failure
	done     chan struct{}     // closed when ListenAndServe returns

	start time.Time     // the loops' clock starts here
	tick  time.Duration // the sweep interval: idle-timeout resolution

	// Set before ready is closed, read-only afterwards.
	eng      gnet.Engine
	addr     net.Addr
	acceptor *acceptor

	loopsMu sync.Mutex
	loops   map[gnet.EventLoop]*loopState

	finisher handlers.Finisher // the handler, if it may owe replies after the last frame

	handOffs    handOffs
	handOffWG   sync.WaitGroup
	handOffOnce sync.Once // the warning that hand-offs cannot work
}

// fastTick is the sweep interval while connections are paused or the server
// drains.
const fastTick = 10 * time.Millisecond

// sweepInterval is the tick for an idle timeout: 1/32 of it, from 10ms to 1s.
func sweepInterval(idle time.Duration) time.Duration {
	if idle <= 0 || idle == 1<<63-1 {
		return time.Second
	}
	return min(max(idle/32, fastTick), time.Second)
}

// positive is d, or the largest duration when d is not positive (off).
func positive(d time.Duration) time.Duration {
	if d <= 0 {
		return 1<<63 - 1
	}
	return d
}

// ticks is the loops' clock in sweep intervals.
func (s *Server) ticks() int64 { return int64(time.Since(s.start) / s.tick) }

// clock is the loops' clock in nanoseconds.
func (s *Server) clock() int64 { return int64(time.Since(s.start)) }

// New checks opts, fills in their defaults and raises the file descriptor
// limit; it does not listen yet.
func New(opts Options) (*Server, error) {
	if opts.Loops < 0 {
		return nil, fmt.Errorf("eventloop: %d loops is negative", opts.Loops)
	}
	if opts.Loops == 0 {
		opts.Loops = 1
	}
	if err := opts.Config.Prepare(); err != nil {
		return nil, err
	}
	log := opts.Logger.With().Str("component", "eventloop").Logger()
	s := &Server{
		opts:      opts,
		log:       log,
		rejectLog: session.RejectLogger(log),
		ready:     make(chan struct{}),
		done:      make(chan struct{}),
		start:     time.Now(),
		tick:      sweepInterval(min(positive(opts.IdleTimeout), positive(opts.FrameTimeout), positive(opts.WriteTimeout))),
		loops:     make(map[gnet.EventLoop]*loopState),
	}
	s.shared = session.Shared{Config: &s.opts.Config, Counters: &s.counters, Log: &s.log}
	s.finisher, _ = s.opts.Handler.(handlers.Finisher)
	return s, nil
}

// Options returns the options in effect, defaults filled in.
func (s *Server) Options() Options { return s.opts }

// ListenAndServe listens on the configured address and serves until Shutdown,
// then returns ErrServerClosed. A failure to listen is returned at once,
// wrapping the system error (errors.Is(err, syscall.EADDRINUSE) tells a busy
// port).
func (s *Server) ListenAndServe() error {
	if !s.started.CompareAndSwap(false, true) {
		return ErrStarted
	}
	defer close(s.done)
	if s.stopping.Load() {
		close(s.ready)
		return ErrServerClosed
	}
	ln, err := s.opts.Listen()
	if err != nil {
		close(s.ready)
		return fmt.Errorf("eventloop: listen on %s: %w", s.opts.Addr, err)
	}
	sock, removeSocket, err := engineSocket()
	if err != nil {
		ln.Close()
		close(s.ready)
		return fmt.Errorf("eventloop: %w", err)
	}
	defer removeSocket()
	h := &handler{srv: s, ln: ln, removeSocket: removeSocket}
	defer gnetlog.Attach(s.opts.Logger)()
	// Connections come from the acceptor (see accept.go), accepted by
	// package net, which sets TCP_NODELAY and keep-alive on each as it
	// does for the goroutine model.
	err = gnet.Run(h.eventHandler(), "unix://"+sock,
		gnet.WithNumEventLoop(s.opts.Loops),
		gnet.WithLoadBalancing(gnet.LeastConnections),
		gnet.WithReadBufferCap(s.opts.ReadBufferCap),
		gnet.WithLockOSThread(s.opts.LockOSThread),
		gnet.WithEdgeTriggeredIO(s.opts.EdgeTriggered),
		gnet.WithTicker(true),
		gnet.WithLogger(gnetlog.Logger{}),
	)
	if s.acceptor != nil {
		s.acceptor.engineStopped()
		s.acceptor.stop()
	} else {
		ln.Close()
	}
	if !h.booted {
		close(s.ready)
	}
	if err != nil {
		return fmt.Errorf("eventloop: listen on %s: %w", s.opts.Addr, err)
	}
	return ErrServerClosed
}

// Ready is closed once the server listens (Addr is then valid) or has failed
// to start.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr is the address the server listens on, nil before Ready or after a
// failed start.
func (s *Server) Addr() net.Addr {
	select {
	case <-s.ready:
		return s.addr
	default:
		return nil
	}
}

// Stats returns a snapshot of the server's counters.
func (s *Server) Stats() session.Stats { return s.counters.Snapshot() }

// Shutdown drains the server and stops it. It closes the listener at once,
// so new connections are refused (connections that had reached the listen
// backlog are reset, unless net.ipv4.tcp_migrate_req hands them to another
// server sharing the port), then closes each connection, with reason
// ServerStopping, as soon as it is done: every frame it
// had fully sent is answered, the replies are written, and no more bytes
// wait unread in the kernel. A partial frame is dropped. When ctx ends
// first, the connections still busy are closed as they are and Shutdown
// returns ctx.Err(); the server is stopped either way.
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
	if s.addr == nil {
		<-s.done
		return nil
	}
	// Stop accepting first: new connections are refused by the kernel (or,
	// with ReusePort, go to the other servers on the address) rather than
	// accepted only to be closed.
	s.acceptor.stop()
	s.draining.Store(true)
	var err error
	wait := time.NewTicker(fastTick)
	defer wait.Stop()
	for s.counters.Open() > 0 && err == nil {
		s.sweepNow() // do not wait for the ticker's next turn
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-s.done:
			s.handOffWG.Wait()
			return nil
		case <-wait.C:
		}
	}
	if err != nil {
		s.forcing.Store(true)
		s.cutHandOffs()
		s.sweepNow()
	}
	// Engine.Stop polls for the end every 500ms; with a context that is
	// already done it only starts the stop, and done tells when it is over.
	stopNow, cancel := context.WithCancel(context.Background())
	cancel()
	_ = s.eng.Stop(stopNow)
	<-s.done
	s.handOffWG.Wait()
	return err
}

// sweepNow asks every loop to sweep.
func (s *Server) sweepNow() {
	for _, l := range s.loopStates() {
		_ = l.el.Execute(context.Background(), l.sweepTask)
	}
}

// loopStates returns the loops that have had connections.
func (s *Server) loopStates() []*loopState {
	s.loopsMu.Lock()
	defer s.loopsMu.Unlock()
	ls := make([]*loopState, 0, len(s.loops))
	for _, l := range s.loops {
		ls = append(ls, l)
	}
	return ls
}

// loopFor returns the state of gc's event loop, creating it on first use.
func (s *Server) loopFor(el gnet.EventLoop) *loopState {
	s.loopsMu.Lock()
	defer s.loopsMu.Unlock()
	l := s.loops[el]
	if l == nil {
		l = newLoopState(s, el)
		s.loops[el] = l
	}
	return l
}
