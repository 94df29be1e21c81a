package load

import (
	"errors"
	"io"
	"os"
	"syscall"
)

// Kind classifies why a connection failed.
type Kind string

// Error kinds, in the order reports list them.
const (
	Refused       Kind = "refused"       // ECONNREFUSED on connect
	Reset         Kind = "reset"         // ECONNRESET, EPIPE, ECONNABORTED
	Closed        Kind = "closed"        // the server closed the connection (EOF) mid-reply or before its first reply; a close in order is Summary.ConnsDrained
	Timeout       Kind = "timeout"       // no connect within DialTimeout, or no progress within Timeout
	EMFILE        Kind = "emfile"        // EMFILE or ENFILE: out of file descriptors
	EADDRNOTAVAIL Kind = "eaddrnotavail" // EADDRNOTAVAIL: out of local ports (or address)
	Other         Kind = "other"         // anything else; the example says what
)

// Kinds lists every kind.
var Kinds = []Kind{Refused, Reset, Closed, Timeout, EMFILE, EADDRNOTAVAIL, Other}

// Hint is what to do about a kind of error, or "" where there is no general
// fix.
func (k Kind) Hint() string {
	switch k {
	case Refused:
		return "nothing accepted the connection: check the server is up on -addr; if it is, its accept backlog overflowed: lower -ramp"
	case Reset:
		return "the server reset connections: see its log for the close reason (connection limit, frame too large)"
	case Closed:
		return "the server closed connections: see its log for the close reason; is it an echo server with a big enough -max-frame?"
	case Timeout:
		return "no connect within -dial-timeout or no reply within -timeout: the server is stalled or overloaded; lower -conns, -pipeline or -rate"
	case EMFILE:
		return "out of file descriptors: raise the limit (ulimit -n, or the hard limit) or lower -conns"
	case EADDRNOTAVAIL:
		return "out of local ports: spread connections over more source addresses with -sources"
	}
	return ""
}

// errTimeout marks a connection that made no progress within the timeout.
var errTimeout = errors.New("load: no progress within the timeout")

// errConnectTimeout marks a connection attempt over the dial timeout.
var errConnectTimeout = errors.New("load: connect did not finish within the dial timeout")

// classify returns the kind of a socket error.
func classify(err error) Kind {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return Refused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED):
		return Reset
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return Closed
	case errors.Is(err, errTimeout), errors.Is(err, errConnectTimeout), errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, syscall.ETIMEDOUT):
		return Timeout
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return EMFILE
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return EADDRNOTAVAIL
	}
	var t interface{ Timeout() bool }
	if errors.As(err, &t) && t.Timeout() {
		return Timeout
	}
	return Other
}
