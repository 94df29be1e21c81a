// Package proxyproto is the PROXY protocol header stage that runs before
// framing, on either server model: the balancer in front of the server (an
// L4 proxy such as HAProxy, NGINX stream, Envoy or a cloud NLB) opens each
// connection with a header that names the client, and the server reads it
// before any frame and uses the client's address from then on.
//
// As the specification says, the server never guesses whether a header is
// present: with the protocol on, a connection from a trusted address must
// start with a valid header, and any other connection is refused. The stage
// is a pure function over the bytes buffered so far (Parse), shaped like the
// codecs of package frame: it returns ErrIncomplete and consumes nothing
// until the whole header is there, so it works the same whether the header
// arrives in one read or one byte per read, and whatever follows it in the
// same read is left to the codec untouched.
//
// Parse finds where the header ends itself (the CRLF of a v1 line, the
// length field of a v2 header), rejecting at once bytes that cannot begin a
// header, and then hands exactly those bytes to github.com/pires/go-proxyproto
// for the parse proper. The package imports no gnet.
package proxyproto

import (
	"errors"
	"fmt"
	"time"
)

// Errors returned by this package; compare with errors.Is.
var (
	// ErrIncomplete means the buffer holds only the start of a header: read
	// more bytes and call Parse again with everything buffered. Nothing was
	// consumed.
	ErrIncomplete = errors.New("proxyproto: incomplete header")

	// ErrBadHeader means the buffer does not start with a header this stage
	// accepts: no signature, a version the Mode does not accept, a header
	// too long, or one the parser rejected. The error wraps the detail
	// (which may be one of go-proxyproto's errors). The connection should
	// be closed.
	ErrBadHeader = errors.New("proxyproto: bad proxy header")

	// ErrMode means ParseMode was given a mode it does not know.
	ErrMode = errors.New("proxyproto: unknown mode")

	// ErrTrust means ParseTrust was given an entry that is neither an IP
	// address nor a CIDR prefix.
	ErrTrust = errors.New("proxyproto: bad trusted address")

	// ErrNoTrust means the protocol is on but no address is trusted to
	// send a header, so every connection would be refused.
	ErrNoTrust = errors.New("proxyproto: protocol on with no trusted address")
)

// Mode says which header versions a connection must start with.
type Mode uint8

// Modes.
const (
	// Off is the zero Mode: no header is expected, and bytes are framed from
	// the first one.
	Off Mode = iota
	// V1 accepts only the text header ("PROXY TCP4 ...\r\n").
	V1
	// V2 accepts only the binary header.
	V2
	// Any accepts either, told apart by the first byte.
	Any

	numModes
)

var modeNames = [numModes]string{Off: "off", V1: "v1", V2: "v2", Any: "any"}

func (m Mode) String() string {
	if m < numModes {
		return modeNames[m]
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// ParseMode parses a mode as the -proxy-protocol flag spells it: off, v1, v2
// or any.
func ParseMode(s string) (Mode, error) {
	for m, name := range modeNames {
		if s == name {
			return Mode(m), nil
		}
	}
	return Off, fmt.Errorf("%w %q (known: off, v1, v2, any)", ErrMode, s)
}

// MarshalText implements encoding.TextMarshaler, so a Mode serves as a flag
// with flag.TextVar.
func (m Mode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseMode.
func (m *Mode) UnmarshalText(text []byte) error {
	v, err := ParseMode(string(text))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// accepts says whether the mode accepts a header of version v (1 or 2).
func (m Mode) accepts(v int) bool { return m == Any || int(m) == v }

// Config is the stage's configuration, the same for both server models. The
// zero value is the protocol off.
type Config struct {
	// Mode is the header versions accepted; Off (the zero value) means no
	// header is read.
	Mode Mode

	// Trust lists the addresses allowed to send a header (the balancers).
	// With the protocol on, a connection from any other address is refused
	// before a byte is read; it must not be empty then.
	Trust Trust
}

// Check reports a configuration the server cannot run with: an unknown mode
// (ErrMode), or the protocol on with nobody trusted (ErrNoTrust).
func (c Config) Check() error {
	switch {
	case c.Mode >= numModes:
		return fmt.Errorf("%w %v", ErrMode, c.Mode)
	case c.Mode != Off && c.Trust.Len() == 0:
		return ErrNoTrust
	}
	return nil
}

// DefaultTimeout bounds the wait for a whole header when the server has no
// frame timeout: a balancer sends the header at once, so a few seconds is
// generous.
const DefaultTimeout = 5 * time.Second

// Timeout is how long a connection may take to send its whole header: the
// server's frame timeout, or DefaultTimeout when that is off (zero or
// negative).
func Timeout(frameTimeout time.Duration) time.Duration {
	if frameTimeout > 0 {
		return frameTimeout
	}
	return DefaultTimeout
}
