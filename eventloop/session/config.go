package session

import (
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"echoloop/eventloop/frame"
	"echoloop/handlers"
)

// Defaults for the zero Config.
const (
	DefaultAddr       = "127.0.0.1:7007"
	DefaultMaxPending = 4 << 20
)

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
	// whose peer does not read. The event loop stops serving that
	// connection's frames (they stay buffered) until its pending output
	// falls to half the cap, and closes it as SlowConsumer if its unserved
	// input passes the cap as well. At most MaxBuffer. The goroutine model holds no more than
	// one batch of replies: its goroutine blocks in write(2) and stops
	// reading, and TCP flow control stops the peer. Zero means
	// DefaultMaxPending.
	MaxPending int

	// WriteTimeout closes, as SlowConsumer, a connection whose pending
	// replies make no progress for this long while the server waits on it
	// (the event loop has paused it; the goroutine is blocked in write).
	// Zero means no write timeout.
	WriteTimeout time.Duration

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

// RejectLogger returns a logger for "connection refused" warnings that lets
// a burst through and then at most one line a second, so a connection flood
// cannot turn into a log flood.
func RejectLogger(l zerolog.Logger) zerolog.Logger {
	return l.Sample(&zerolog.BurstSampler{Burst: 10, Period: time.Second})
}
