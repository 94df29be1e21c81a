package session

import (
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"echoloop/eventloop/frame"
	"echoloop/eventloop/proxyproto"
	"echoloop/handlers"
)

// Defaults for the zero Config.
const (
	DefaultAddr         = "127.0.0.1:7007"
	DefaultMaxPending   = 4 << 20
	DefaultMaxMemory    = 1 << 30
	DefaultFrameTimeout = 30 * time.Second
	DefaultLingerTime   = 2 * time.Second
	DefaultLingerBytes  = 64 << 10
)

// UnsentLimit is the most reply bytes the kernel keeps unsent for one
// connection beyond those in flight, that is, not yet sent because the
// peer's receive window is full (see LimitUnsent). Without it Linux lets
// the send buffer autotune to tcp_wmem's maximum, 4 MiB by default, for a
// peer that never reads: 200 such peers held 800 MB of kernel memory,
// enough to put every connection on the machine under TCP memory pressure.
// A peer that reads keeps its unsent queue near empty, so the cap costs it
// nothing; autotuning of what is in flight is untouched.
const UnsentLimit = 128 << 10

// MaxBuffer bounds MaxPending and a codec's largest frame: what one
// connection may make the server buffer stays well inside 32 bits.
const MaxBuffer = 1 << 30

// ErrMaxConns means MaxConns asks for more connections than the file
// descriptor limit allows.
var ErrMaxConns = errors.New("session: max conns over the file descriptor limit")

// Config is what both server models share. The zero value is a valid
// configuration: a line-framed echo server on DefaultAddr.
type Config struct {
	// Addr is the TCP address to listen on, host:port. Port 0 picks a free
	// port; the server's Addr method reports it. Empty means DefaultAddr.
	Addr string

	// ReusePort listens with SO_REUSEPORT, so that several server processes
	// (of either model) share Addr and the kernel spreads new connections
	// among them. Off, a second server on a busy address fails with
	// EADDRINUSE. Default off.
	ReusePort bool

	// Proxy is the PROXY protocol stage; the zero value is off. With
	// Proxy.Mode on, a connection from an address in Proxy.Trust must
	// start with a header of an accepted version, complete within the
	// frame timeout (proxyproto.Timeout), and the client's address in it
	// becomes the connection's RemoteAddr for the handler, the logs and
	// MaxConnsPerIP; a connection from any other address is closed at once
	// as ProxyUntrusted, and a missing, malformed or incomplete header
	// closes it as BadProxyHeader. The handler hears of a connection only
	// once its header has been read.
	Proxy proxyproto.Config

	// MaxConnsPerIP caps the connections served at once from one client
	// IP address (after the PROXY header, when there is one); the excess is
	// closed with reason TooManyFromAddr. Zero means no cap.
	MaxConnsPerIP int

	// Codec frames the byte stream. Nil means frame.Line with its default
	// 64 KiB cap.
	Codec frame.Codec

	// Handler serves each frame. Nil means handlers.Echo.
	Handler handlers.Handler

	// MaxConns caps the connections served at once; a connection over the cap
	// is closed as soon as it is accepted, with reason ConnLimit. Zero means
	// DefaultMaxConns of the file descriptor limit after Prepare raised it
	// (19,744 under a limit of 20,000). A larger value is an error: it would
	// let accept(2) fail with EMFILE instead of refusing cleanly.
	MaxConns int

	// IdleTimeout closes a connection that has sent no bytes for this long,
	// with reason Idle. Zero means no idle timeout. The event loop checks
	// in steps of IdleTimeout/32 (at least 10ms, at most 1s), so a
	// connection goes between IdleTimeout and IdleTimeout plus two steps
	// after its last byte.
	IdleTimeout time.Duration

	// MaxPending caps the reply bytes the server holds for one connection
	// whose peer does not read. Both models stop reading such a peer once
	// its socket refuses replies, and hold no more than one batch of them:
	// the goroutine model's goroutine blocks in write(2), and the event
	// loop stops watching the socket for input until its pending replies
	// are written (on Linux, level-triggered, gnet without its poll_opt tag;
	// see eventloop's readSwitch).
	// TCP flow control then stops the peer. The cap bounds what others
	// send it (broadcast, work replies), and, where the event loop cannot
	// stop reading, what it holds: it then stops serving the connection's
	// frames (they are kept) once its pending output passes the cap, until
	// it falls to half, and closes it as SlowConsumer if its kept input
	// would pass the cap as well, so such a peer holds at most about twice
	// MaxPending. At most MaxBuffer. Zero means DefaultMaxPending.
	MaxPending int

	// WriteTimeout closes, as SlowConsumer, a connection whose peer takes
	// none of its pending replies for this long, wherever they wait: in the
	// server's buffers, or in the kernel's send queue (in flight, or
	// unsent up to UnsentLimit).
	// Zero means no write timeout.
	WriteTimeout time.Duration

	// FrameTimeout closes, as SlowFrame, a connection whose frame has
	// started (its first byte arrived) but is not complete this long after,
	// so a peer that trickles a byte at a time cannot hold a connection
	// (and the buffer of its partial frame) for ever. Zero means
	// DefaultFrameTimeout; a negative value means no frame timeout. The
	// event loop checks it in the same steps as IdleTimeout.
	FrameTimeout time.Duration

	// MaxMemory is the budget, in bytes, for everything the server holds
	// for its clients: partial frames, input not yet served, replies not yet
	// sent, counted as the server really holds them (buffer capacities, not
	// just the bytes in use). Over it, the server closes the connections
	// holding the most, with reason MemoryLimit, until it is back under.
	// Zero means DefaultMaxMemory; a negative value means no budget. With several
	// event loops, the loops agree on the server's biggest holders in a
	// round across them, a few loop turns after the budget is passed.
	MaxMemory int64

	// LingerTime bounds a graceful close (see Reason.Lingers): after the
	// replies are written and the server's side shut down, it reads and
	// discards the peer's input for at most this long, and at most
	// LingerBytes of it, before it closes the socket. Zero means
	// DefaultLingerTime; a negative value closes at once.
	LingerTime time.Duration

	// LingerBytes is the most input a graceful close discards. Zero means
	// DefaultLingerBytes.
	LingerBytes int

	// Tracer, when set, hears of every read from every connection: the
	// bytes, the frames completed, the bytes carried to the next read, the
	// replies written (see Read). It must be safe for concurrent use. Nil,
	// the default, is off: then tracing costs a comparison per Serve and
	// per write, and no allocation.
	Tracer Tracer

	// Logger receives the server's logs. Packages add a "component" field;
	// per-connection events carry "conn" and "remote". The zero Logger
	// discards everything.
	Logger zerolog.Logger

	// FDLimit is the file descriptor limit found by Prepare, for the startup
	// log line. Prepare sets it; a caller's value is overwritten.
	FDLimit FDLimit
}

// Prepare fills in defaults, raises the file descriptor limit, and checks
// that the parts fit together: a handler whose fixed replies the framing
// cannot carry, or a MaxConns the fd limit cannot hold, is an error here
// rather than a surprise at the first frame or the thousandth connection.
func (c *Config) Prepare() error {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.Codec == nil {
		c.Codec = frame.Line{}
	}
	if c.Handler == nil {
		c.Handler = handlers.Echo{}
	}
	switch {
	case c.IdleTimeout < 0:
		return fmt.Errorf("session: idle timeout %v is negative", c.IdleTimeout)
	case c.WriteTimeout < 0:
		return fmt.Errorf("session: write timeout %v is negative", c.WriteTimeout)
	case c.MaxPending < 0:
		return fmt.Errorf("session: max pending %d is negative", c.MaxPending)
	case c.MaxPending > MaxBuffer:
		return fmt.Errorf("session: max pending %d is over %d", c.MaxPending, MaxBuffer)
	case c.MaxPending == 0:
		c.MaxPending = DefaultMaxPending
	}
	if err := c.Proxy.Check(); err != nil {
		return err
	}
	if c.MaxConnsPerIP < 0 {
		return fmt.Errorf("session: max conns per IP %d is negative", c.MaxConnsPerIP)
	}
	switch {
	case c.LingerBytes < 0:
		return fmt.Errorf("session: linger bytes %d is negative", c.LingerBytes)
	case c.LingerBytes == 0:
		c.LingerBytes = DefaultLingerBytes
	}
	if c.FrameTimeout == 0 {
		c.FrameTimeout = DefaultFrameTimeout
	}
	if c.MaxMemory == 0 {
		c.MaxMemory = DefaultMaxMemory
	}
	if c.LingerTime == 0 {
		c.LingerTime = DefaultLingerTime
	}
	if _, raw := c.Codec.(frame.Raw); !raw && c.Codec.MaxPayload() > MaxBuffer {
		return fmt.Errorf("session: max frame %d is over %d", c.Codec.MaxPayload(), MaxBuffer)
	}
	if fc, ok := c.Handler.(handlers.FramingChecker); ok {
		if err := fc.CheckFraming(c.Codec); err != nil {
			return err
		}
	}
	lim, err := RaiseFDLimit()
	if err != nil {
		return err
	}
	c.FDLimit = lim
	most := DefaultMaxConns(lim.Cur)
	switch {
	case c.MaxConns < 0:
		return fmt.Errorf("session: max conns %d is negative", c.MaxConns)
	case c.MaxConns == 0:
		c.MaxConns = most
	case c.MaxConns > most:
		return fmt.Errorf("%w: %d connections do not fit the limit of %d descriptors (at most %d, keeping %d spare)",
			ErrMaxConns, c.MaxConns, lim.Cur, most, lim.Cur-uint64(most))
	}
	return nil
}

// FrameTimeoutOn says whether a frame timeout applies; after Prepare.
func (c *Config) FrameTimeoutOn() bool { return c.FrameTimeout > 0 }

// MemoryBudget is MaxMemory, or 0 when there is no budget; after Prepare.
func (c *Config) MemoryBudget() int64 { return max(c.MaxMemory, 0) }

// RejectLogger returns a logger for "connection refused" warnings that lets
// a burst through and then at most one line a second, so a connection flood
// cannot turn into a log flood.
func RejectLogger(l zerolog.Logger) zerolog.Logger {
	return l.Sample(&zerolog.BurstSampler{Burst: 10, Period: time.Second})
}
