// Package model builds a server of either concurrency model behind one
// interface, so the command, the conformance tests and the bench treat the
// event loop and the goroutine-per-connection server exactly alike.
package model

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/panjf2000/gnet/v2"

	"echoloop/bench/netserver"
	"echoloop/eventloop"
	"echoloop/eventloop/frame"
	"echoloop/eventloop/plain"
	"echoloop/eventloop/session"
)

// Model names.
const (
	EventLoop = "eventloop" // gnet, a fixed number of event loops
	Goroutine = "goroutine" // net.Listener, one goroutine per connection

	// Reference is gnet's minimal echo loop (package eventloop/plain): no
	// framing, handler, counters or limits, only Addr and Loops apply. It is
	// the bench's floor, not a conforming server, so Names omits it.
	Reference = "gnet-plain"
)

// Names lists the models that implement echoloop's behaviour.
func Names() []string { return []string{EventLoop, Goroutine} }

// ErrUnknown means Options.Model names no model.
var ErrUnknown = errors.New("model: unknown model")

// ErrNotForModel means an option was set that the chosen model has no use for.
var ErrNotForModel = errors.New("model: option does not apply to this model")

// Server is what both models offer.
type Server interface {
	// ListenAndServe listens and serves until Shutdown, then returns
	// ErrServerClosed (test with IsServerClosed).
	ListenAndServe() error
	// Ready is closed once the server listens or has failed to start.
	Ready() <-chan struct{}
	// Addr is the listening address once Ready, nil if listening failed.
	Addr() net.Addr
	// Shutdown stops the server; see each model's documentation.
	Shutdown(ctx context.Context) error
	// Stats is a snapshot of the server's counters.
	Stats() session.Stats
	// Config is the shared configuration in effect, defaults filled in.
	Config() session.Config
}

// Options selects and configures a model.
type Options struct {
	// Model is EventLoop or Goroutine; empty means EventLoop.
	Model string

	// Config is shared by both models.
	session.Config

	// Loops is the number of event loops (EventLoop only; zero means 1). The
	// goroutine model's parallelism is GOMAXPROCS.
	Loops int

	// ReadBufferCap is gnet's per-loop read buffer (EventLoop, Reference) or
	// each connection's initial read buffer (Goroutine); zero means the
	// model's default (64 KiB and 4 KiB).
	ReadBufferCap int

	// LockOSThread and EdgeTriggered are gnet tuning levers (EventLoop,
	// Reference); see eventloop.Options.
	LockOSThread, EdgeTriggered bool
}

// New returns an unstarted server of the chosen model.
func New(opts Options) (Server, error) {
	switch opts.Model {
	case "", EventLoop:
		s, err := eventloop.New(eventloop.Options{
			Config: opts.Config, Loops: opts.Loops, ReadBufferCap: opts.ReadBufferCap,
			LockOSThread: opts.LockOSThread, EdgeTriggered: opts.EdgeTriggered,
		})
		if err != nil {
			return nil, err
		}
		return eventLoop{s}, nil
	case Goroutine:
		if opts.Loops > 1 {
			return nil, fmt.Errorf("%w: loops is for the eventloop model; the goroutine model uses GOMAXPROCS threads", ErrNotForModel)
		}
		if opts.LockOSThread || opts.EdgeTriggered {
			return nil, fmt.Errorf("%w: lock-os-thread and edge-triggered are gnet levers", ErrNotForModel)
		}
		s, err := netserver.New(netserver.Options{Config: opts.Config, ReadBufferSize: opts.ReadBufferCap})
		if err != nil {
			return nil, err
		}
		return goroutine{s}, nil
	case Reference:
		if err := opts.Config.Prepare(); err != nil { // the fd limit, mostly
			return nil, err
		}
		s, err := plain.New(opts.Addr, opts.Loops, opts.Logger, gnet.WithReadBufferCap(opts.ReadBufferCap),
			gnet.WithLockOSThread(opts.LockOSThread), gnet.WithEdgeTriggeredIO(opts.EdgeTriggered))
		if err != nil {
			return nil, err
		}
		cfg := opts.Config
		cfg.Codec = frame.Raw{} // it echoes bytes, whatever their framing
		return reference{s, cfg}, nil
	}
	return nil, fmt.Errorf("%w %q (known: %s, and the bench's reference %s)", ErrUnknown, opts.Model, strings.Join(Names(), ", "), Reference)
}

// IsServerClosed reports whether err is a model's ErrServerClosed.
func IsServerClosed(err error) bool {
	return errors.Is(err, eventloop.ErrServerClosed) || errors.Is(err, netserver.ErrServerClosed) ||
		errors.Is(err, plain.ErrServerClosed)
}

type eventLoop struct{ *eventloop.Server }

func (s eventLoop) Config() session.Config { return s.Options().Config }

type goroutine struct{ *netserver.Server }

func (s goroutine) Config() session.Config { return s.Options().Config }

// reference has no counters: Stats is always zero.
type reference struct {
	*plain.Server
	cfg session.Config
}

func (s reference) Config() session.Config { return s.cfg }
func (reference) Stats() session.Stats     { return session.Stats{} }
