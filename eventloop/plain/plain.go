// Package plain is the smallest useful gnet server: an echo loop that
// writes back whatever it reads, with no framing, handler, counters or
// limits. It is the bench's reference floor: no gnet server can echo for
// less CPU or memory per connection, so the gap between it and
// eventloop.Server is what echoloop's framing, dispatch and protections
// cost. It is not for production use: a peer that never reads makes its
// output grow without bound.
package plain

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"

	"github.com/panjf2000/gnet/v2"
	"github.com/rs/zerolog"

	"echoloop/eventloop/internal/gnetlog"
	"echoloop/eventloop/internal/listenaddr"
)

// ErrServerClosed is returned by ListenAndServe after Shutdown.
var ErrServerClosed = errors.New("plain: server closed")

// Server is gnet's minimal echo loop.
type Server struct {
	addr  string
	loops int
	log   zerolog.Logger
	opts  []gnet.Option
	ready chan struct{}
	done  chan struct{}

	stopping atomic.Bool
	eng      gnet.Engine // set before ready is closed
	bound    net.Addr
}

// New returns a server for addr (host:port) with loops event loops (0 means
// 1). gnet's own lines go to log (the zero Logger drops them), as
// component=gnet with its start-up chatter at debug level. opts are passed
// to gnet after the server's own, for tuning experiments.
func New(addr string, loops int, log zerolog.Logger, opts ...gnet.Option) (*Server, error) {
	if loops < 0 {
		return nil, fmt.Errorf("plain: %d loops is negative", loops)
	}
	return &Server{addr: addr, loops: max(loops, 1), log: log, opts: opts, ready: make(chan struct{}), done: make(chan struct{})}, nil
}

type echo struct {
	gnet.BuiltinEventEngine
	s      *Server
	booted bool
}

func (e *echo) OnBoot(eng gnet.Engine) gnet.Action {
	var err error
	if e.s.bound, err = listenaddr.Of(eng); err != nil {
		return gnet.Shutdown
	}
	e.s.eng, e.booted = eng, true
	close(e.s.ready)
	if e.s.stopping.Load() {
		return gnet.Shutdown
	}
	return gnet.None
}

// OnTraffic is the whole server: gnet's own echo example.
func (e *echo) OnTraffic(c gnet.Conn) gnet.Action {
	buf, _ := c.Next(-1)
	_, _ = c.Write(buf)
	return gnet.None
}

// ListenAndServe serves until Shutdown, then returns ErrServerClosed.
func (s *Server) ListenAndServe() error {
	defer close(s.done)
	e := &echo{s: s}
	defer gnetlog.Attach(s.log)()
	opts := append([]gnet.Option{gnet.WithNumEventLoop(s.loops), gnet.WithReuseAddr(true), gnet.WithLogger(gnetlog.Logger{})}, s.opts...)
	err := gnet.Run(e, "tcp://"+s.addr, opts...)
	if !e.booted {
		close(s.ready)
	}
	if err != nil {
		return fmt.Errorf("plain: listen on %s: %w", s.addr, err)
	}
	return ErrServerClosed
}

// Ready is closed once the server listens or has failed to start.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr is the listening address once Ready, nil if listening failed.
func (s *Server) Addr() net.Addr {
	select {
	case <-s.ready:
		return s.bound
	default:
		return nil
	}
}

// Loops is the number of event loops.
func (s *Server) Loops() int { return s.loops }

// Shutdown stops the engine; queued output gets gnet's one best-effort
// write. It waits for the loops to exit or ctx to end.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopping.Store(true)
	select {
	case <-s.ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	if s.bound != nil {
		now, cancel := context.WithCancel(context.Background())
		cancel()
		_ = s.eng.Stop(now) // only starts the stop; done says when it is over
	}
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
