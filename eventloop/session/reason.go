package session

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
)

// Reason says why a connection was closed. Both server models record exactly
// one per connection, count it in Stats and log it.
type Reason uint8

// Close reasons.
const (
	// Open is the zero Reason: the connection is not closing.
	Open Reason = iota
	// PeerClosed: the peer closed or shut down its side (EOF).
	PeerClosed
	// Reset: the peer reset the connection (ECONNRESET, EPIPE).
	Reset
	// FrameTooLarge: a frame announced or reached more than the max frame size.
	FrameTooLarge
	// Malformed: the codec rejected the input for a reason other than size.
	Malformed
	// BadReply: the handler produced a reply the framing cannot carry.
	BadReply
	// HandlerClosed: the handler asked for the close.
	HandlerClosed
	// ConnLimit: the server already held MaxConns connections.
	ConnLimit
	// ServerStopping: the server shut down; the connection was drained first
	// unless the shutdown deadline passed.
	ServerStopping
	// Idle: no bytes arrived for the idle timeout.
	Idle
	// SlowConsumer: the peer does not read its replies: they stayed over the
	// pending-output cap while its unserved input passed the cap too, or
	// made no progress for the write timeout.
	SlowConsumer
	// IOError: a read or write failed for another reason.
	IOError
	// MemoryLimit: the server held more than MaxMemory for its clients, and
	// this connection was among those holding the most.
	MemoryLimit
	// SlowFrame: a frame that had started did not complete within the
	// frame timeout.
	SlowFrame
	// ProxyUntrusted: the PROXY protocol is on and the connection came from
	// an address not trusted to send a header; refused before a byte was
	// read.
	ProxyUntrusted
	// BadProxyHeader: the PROXY protocol is on and the connection did not
	// start with a valid header: malformed, of a version not accepted, or
	// not complete within the header timeout or before the peer closed.
	BadProxyHeader
	// TooManyFromAddr: the client's IP address already had MaxConnsPerIP
	// connections.
	TooManyFromAddr

	numReasons
)

var reasonNames = [numReasons]string{
	Open:            "open",
	PeerClosed:      "peer closed",
	Reset:           "reset",
	FrameTooLarge:   "frame too large",
	Malformed:       "malformed",
	BadReply:        "bad reply",
	HandlerClosed:   "handler closed",
	ConnLimit:       "connection limit",
	ServerStopping:  "shutdown",
	Idle:            "idle",
	SlowConsumer:    "slow consumer",
	IOError:         "io error",
	MemoryLimit:     "memory limit",
	SlowFrame:       "slow frame",
	ProxyUntrusted:  "proxy untrusted",
	BadProxyHeader:  "bad proxy header",
	TooManyFromAddr: "too many from address",
}

func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// MarshalText makes reasons readable as JSON map keys.
func (r Reason) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// Reasons lists every close reason, Open excluded.
func Reasons() []Reason {
	rs := make([]Reason, 0, numReasons-1)
	for r := Open + 1; r < numReasons; r++ {
		rs = append(rs, r)
	}
	return rs
}

// Lingers says whether a close for r promises the peer the replies queued
// before it: the server then closes gracefully (it writes them, shuts down
// its sending side, and reads and discards what the peer still sends for a
// while), since closing a socket with unread input sends a reset, and a
// reset makes the peer's kernel drop replies it has not read yet. The other
// reasons close at once: the peer is gone, or has to be cut off (the PROXY
// header reasons among them: no reply was ever queued).
func (r Reason) Lingers() bool {
	switch r {
	case FrameTooLarge, Malformed, BadReply, HandlerClosed, ServerStopping:
		return true
	}
	return false
}

// Abandons says whether a close for r gives up on the replies the peer has
// not read: it stopped reading (SlowConsumer), or holds too much of the
// memory budget (MemoryLimit). Such a close resets the connection
// (SO_LINGER 0): the peer learns of it at once, and the kernel frees the
// replies. A plain close would queue its FIN behind them, where a peer that
// does not read never lets it through: it would not learn of the close, and
// the server's kernel would keep the replies, retrying, for minutes.
func (r Reason) Abandons() bool {
	return r == SlowConsumer || r == MemoryLimit
}

// ResetOnClose makes nc's Close reset the connection, for a close that
// abandons the replies the peer has not read (see Abandons; the shutdown
// deadline's forced closes are such closes too). A net.Conn that cannot
// set SO_LINGER is left as it is.
func ResetOnClose(nc net.Conn) {
	if l, ok := nc.(interface{ SetLinger(sec int) error }); ok {
		_ = l.SetLinger(0)
	}
}

// ReasonFor classifies the error that ended a connection's I/O. nil and EOF
// are a peer close; a reset or broken pipe is Reset; a closed socket is
// ServerStopping (only the server closes its own sockets); anything else is
// IOError.
func ReasonFor(err error) Reason {
	switch {
	case err == nil, errors.Is(err, io.EOF):
		return PeerClosed
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return Reset
	case errors.Is(err, net.ErrClosed):
		return ServerStopping
	}
	return IOError
}
