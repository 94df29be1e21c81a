// Package handlers holds what a server does with each frame: frame in,
// replies out. A handler knows nothing of gnet or of goroutines per
// connection, so the same handler runs unchanged on the event loop and on the
// goroutine-per-connection server, and is testable without a socket.
//
// Serving order, on either server model, for one connection:
//
//	OpenConn (if the handler is a ConnObserver)
//	ServeFrame, once per frame, in the order the frames arrived
//	CloseConn (if the handler is a ConnObserver)
//
// These calls are never concurrent for one connection, but calls for
// different connections may run at once on different goroutines (more than one
// event loop, or the goroutine model), so a handler's shared state needs its
// own locking. On a single event loop they all run on the loop goroutine, and
// a handler that blocks there stalls every connection: hand slow work to
// another goroutine and answer later through Conn.Async.
package handlers

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"echoloop/eventloop/frame"
)

var (
	// ErrUnknown means New was given a handler name it does not know.
	ErrUnknown = errors.New("handlers: unknown handler")

	// ErrClosed means the connection is closed or closing: the reply was not
	// queued.
	ErrClosed = errors.New("handlers: connection closed")

	// ErrConfig means New was given a setting the handler cannot use, such
	// as a negative work time or pool size.
	ErrConfig = errors.New("handlers: bad configuration")
)

// Conn is a connection as a handler sees it while serving one of its frames.
// Its methods may be called only during OpenConn and ServeFrame, on the
// goroutine that called them; use Async for anything later or elsewhere.
type Conn interface {
	// ID is unique among the connections of one server process.
	ID() uint64

	// RemoteAddr is the peer's address.
	RemoteAddr() net.Addr

	// Reply encodes payload as one frame in the server's framing and queues
	// it after earlier replies. The payload is copied before Reply returns,
	// so it may alias the frame being served. Replies to the frames of one
	// read are written together. If the framing cannot carry payload (a '\n'
	// in a line, the wrong size for fixed:N), the connection is closed with
	// reason "bad reply" and the error says why.
	Reply(payload []byte) error

	// Close asks the server to close the connection once the replies queued
	// so far are written. No further frames are served.
	Close()

	// Pause asks the server to serve none of this connection's frames after
	// the current one until Resume is called on its AsyncConn: for a handler
	// that has taken on all the work it can. The frames already read wait,
	// in order. The server stops reading the socket meanwhile, so TCP flow
	// control slows the peer down. (Where the event loop cannot stop gnet
	// reading, with edge-triggered sockets or off Linux, it keeps what
	// arrives, up to the server's MaxPending, and closes the connection as
	// "slow consumer" past that.) Replies and Sends are still written while
	// paused. A connection paused longer than the idle timeout is closed as
	// idle. Pause during OpenConn pauses before the first frame.
	Pause()

	// Async returns a handle for this connection that is safe to use from
	// any goroutine for as long as the program likes; after the connection
	// closes its methods return ErrClosed.
	Async() AsyncConn
}

// AsyncConn reaches a connection from outside its serving goroutine: to
// answer after offloaded work, or to write to it on behalf of another
// connection. Every method is safe for concurrent use.
type AsyncConn interface {
	// ID is the same as the connection's Conn.ID.
	ID() uint64

	// Send encodes payload as one frame and queues it for the connection.
	// The payload is copied before Send returns. Send never waits for the
	// connection's socket, so one slow peer cannot hold up the goroutine
	// that writes to many: the frames queued for a connection are written
	// together, by the event loop once per loop turn, by the goroutine
	// model as soon as its previous write is done. Frames sent from one
	// goroutine arrive in the order sent; their order against replies
	// queued by ServeFrame is not defined. A connection whose queued frames
	// pass the server's MaxPending is closed as "slow consumer". It returns
	// ErrClosed once the connection is closed (frames sent while it closes
	// are dropped), or an error from the framing.
	Send(payload []byte) error

	// Close closes the connection once what is queued for it is written.
	Close() error

	// Resume ends the pause that Conn.Pause started: the server serves the
	// frames that waited, then reads on. Call it once per Pause, after the
	// Pause; a Resume that arrives while the connection is not paused ends
	// the next pause as soon as it starts.
	Resume() error
}

// Handler serves frames. ServeFrame is called once per complete frame; frame
// aliases the server's read buffer and is valid only until ServeFrame
// returns: copy it to keep it.
type Handler interface {
	ServeFrame(c Conn, frame []byte)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(c Conn, frame []byte)

// ServeFrame calls f(c, frame).
func (f HandlerFunc) ServeFrame(c Conn, frame []byte) { f(c, frame) }

// ConnObserver is implemented by handlers that track connections, such as a
// broadcast handler keeping a list of AsyncConns. OpenConn runs before the
// connection's first frame and may Reply (a greeting). CloseConn runs once,
// after the last frame; Reply there returns ErrClosed.
type ConnObserver interface {
	OpenConn(c Conn)
	CloseConn(c Conn)
}

// Finisher is implemented by handlers that may still owe a connection
// replies after ServeFrame has returned: work done elsewhere and answered
// through AsyncConn.Send. Once no more frames will come on the connection
// and all it sent has been served (the peer shut down its sending side, a
// half-close; or the server is shutting down and has served everything the
// peer sent before), a server without Finisher closes as soon as the
// replies queued so far are written, and later Sends return ErrClosed. With
// it, the server calls Finish instead and keeps the connection open for
// Sends, reading nothing more, until the handler calls c.Close after its
// last one; then it writes what was sent and closes. The usual limits still
// end it early: MaxPending and the write timeout (slow consumer), the idle
// timeout counted from the EOF or the last reply written (idle; the
// goroutine model looks at its timer once a timeout, so the close comes
// between one and two timeouts after that), and Shutdown's deadline.
//
// Finish runs at most once per connection, on the goroutine serving it,
// after its last ServeFrame; CloseConn runs after the handler's Close.
type Finisher interface {
	Finish(c AsyncConn)
}

// FramingChecker is implemented by handlers whose replies do not come from
// the frame itself, so a mismatch with the framing (a 5-byte ack under
// fixed:16) is found when the server starts, not at the first frame.
type FramingChecker interface {
	CheckFraming(c frame.Codec) error
}

// Config carries the settings a handler may take from the command line.
// Each handler reads only its own fields.
type Config struct {
	// Reply is the ack handler's message; empty means DefaultAckReply.
	Reply string

	// EchoSelf makes the broadcast handler send each frame back to its
	// sender too. Default off: the sender gets nothing back.
	EchoSelf bool

	// Work is the simulated work per frame of the work and block handlers.
	// Zero means DefaultWork; a negative value is an error. Use a tiny
	// value such as 1ns for (almost) no work.
	Work time.Duration

	// Workers is the size of the work handler's pool. Zero means
	// DefaultWorkers; a negative value is an error.
	Workers int

	// Ping makes the work and block handlers answer a frame that starts
	// with "ping" at once, as echo does, without the work: a probe for
	// what the work does to everyone else's round trips. Default off.
	Ping bool
}

// DefaultAckReply is what the ack handler answers unless told otherwise.
const DefaultAckReply = "Message received!"

var registry = map[string]func(Config) (Handler, error){
	"echo":      func(Config) (Handler, error) { return Echo{}, nil },
	"ack":       func(cfg Config) (Handler, error) { return NewAck(cfg.Reply), nil },
	"discard":   func(Config) (Handler, error) { return Discard{}, nil },
	"broadcast": func(cfg Config) (Handler, error) { return NewBroadcast(cfg.EchoSelf), nil },
	"work": func(cfg Config) (Handler, error) {
		return NewWork(WorkOptions{Work: cfg.Work, Workers: cfg.Workers, Ping: cfg.Ping})
	},
	"block": func(cfg Config) (Handler, error) { return NewBlock(cfg.Work, cfg.Ping) },
}

// Names lists the handlers New knows, sorted.
func Names() []string {
	names := make([]string, 0, len(registry))
	for name := range registry {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// New returns the handler registered under name.
func New(name string, cfg Config) (Handler, error) {
	mk, ok := registry[name]
	if !ok {
		return nil, fmt.Errorf("%w %q (known: %s)", ErrUnknown, name, strings.Join(Names(), ", "))
	}
	return mk(cfg)
}
