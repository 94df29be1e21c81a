// Package frame turns a TCP byte stream into frames and back.
//
// TCP delivers bytes, not messages: one write by the peer may arrive as many
// reads, and many writes as one read. A server therefore keeps what it has read
// and asks a Codec whether a whole frame is there yet. Every codec here is a
// pure function over []byte: it never allocates, never blocks, never reads past
// the buffer and never panics, whatever the input. The event loop, the
// goroutine-per-connection server and the load generator all use this package,
// so the three speak exactly the same framing.
//
// The four framings:
//
//	length   4-byte big-endian unsigned length N, then N payload bytes
//	line     payload bytes, then '\n' (a '\r' before it is payload)
//	fixed:N  exactly N payload bytes, no header
//	raw      no framing: whatever one read delivered is one frame
package frame

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Errors returned by Parse, Decode and Append; compare with errors.Is.
var (
	// ErrIncomplete means buf holds no complete frame yet: read more bytes
	// and call Decode again with everything buffered. Nothing was consumed.
	ErrIncomplete = errors.New("frame: incomplete frame")

	// ErrTooLarge means the frame at the start of buf announces or reaches a
	// payload longer than the codec's limit. The stream cannot be resynchronised;
	// the connection should be closed.
	ErrTooLarge = errors.New("frame: frame too large")

	// ErrPayload means Append was given a payload this framing cannot carry:
	// a '\n' inside a line, or a payload whose size differs from fixed:N.
	ErrPayload = errors.New("frame: payload cannot be encoded in this framing")

	// ErrSpec means Parse was given a framing it does not know.
	ErrSpec = errors.New("frame: unknown framing")
)

// Default limits, chosen so that one frame always fits comfortably in memory
// while a hostile peer cannot make the server buffer much.
const (
	DefaultMaxLength = 1 << 20  // length framing: 1 MiB payload
	DefaultMaxLine   = 64 << 10 // line framing: 64 KiB before the '\n'
	maxFixed         = 1 << 20  // fixed:N accepts N up to 1 MiB
	headerLen        = 4
)

// A Codec splits a byte stream into frames and encodes payloads as frames.
// Implementations are immutable values, safe for concurrent use.
type Codec interface {
	// Decode looks for one complete frame at the start of buf. On success it
	// returns the payload and n, the number of bytes of buf the frame used
	// (header and delimiter included); payload aliases buf and is valid only
	// as long as buf is. When buf holds only part of a frame it returns
	// ErrIncomplete and n == 0; an empty buf is such a part, and a server
	// may skip asking. A frame over the limit is ErrTooLarge.
	Decode(buf []byte) (payload []byte, n int, err error)

	// Append appends payload, encoded as one frame, to dst and returns the
	// extended slice. It fails with ErrPayload or ErrTooLarge, leaving dst
	// unchanged, when the framing cannot carry payload.
	Append(dst, payload []byte) ([]byte, error)

	// Need returns how many bytes must be buffered in all before Decode can
	// return the frame that starts buf: the whole frame's length once the
	// codec can tell it (a length header), otherwise len(buf)+1. A server
	// uses it to skip decoding until enough has arrived and to size its read
	// buffer. Only meaningful when Decode(buf) returned ErrIncomplete.
	Need(buf []byte) int

	// MaxPayload is the largest payload Decode accepts.
	MaxPayload() int

	// String is the framing's spec as Parse accepts it ("line", "fixed:16").
	String() string
}

// A Resumer is a Codec that finds a frame's end by scanning for it (a
// delimiter), and can resume the scan where an earlier call stopped.
// A server that keeps a partial frame buffered across reads calls DecodeFrom
// with the number of bytes it has already shown the codec, so each byte is
// scanned once however many reads the frame takes: without it, a line that
// arrives one byte per read would cost time quadratic in its length.
type Resumer interface {
	Codec

	// DecodeFrom is Decode for a buf whose first scanned bytes are known to
	// hold no frame end (an earlier Decode of that prefix returned
	// ErrIncomplete). It returns what Decode(buf) returns.
	DecodeFrom(buf []byte, scanned int) (payload []byte, n int, err error)
}

// DecodeFrom decodes buf with c, resuming a scan after the first scanned
// bytes when c is a Resumer; other codecs find a frame's end without a
// scan and decode buf afresh.
func DecodeFrom(c Codec, buf []byte, scanned int) ([]byte, int, error) {
	if scanned > 0 { // first: most calls have none, and the assertion costs more
		if r, ok := c.(Resumer); ok {
			return r.DecodeFrom(buf, scanned)
		}
	}
	return c.Decode(buf)
}

// Compile-time checks that every framing is a Codec.
var (
	_ Resumer = Line{}
	_ Codec   = Length{}
	_ Codec   = Line{}
	_ Codec   = Fixed{}
	_ Codec   = Raw{}
)

// Names lists the framing specs Parse accepts, for help and error texts.
const Names = "line, length, fixed:N, raw"

// Parse returns the codec for a spec: "line", "length", "fixed:N" or "raw".
// max caps the payload of line and length frames (0 means the default);
// fixed and raw take their size from the spec and the read, so a non-zero max
// smaller than N is an error for fixed:N and max is ignored for raw.
func Parse(spec string, max int) (Codec, error) {
	if max < 0 {
		return nil, fmt.Errorf("frame: max frame size %d is negative", max)
	}
	switch {
	case spec == "line":
		if max == 0 {
			max = DefaultMaxLine
		}
		return Line{Max: max}, nil
	case spec == "length":
		if max == 0 {
			max = DefaultMaxLength
		}
		if uint64(max) > 1<<32-1 {
			return nil, fmt.Errorf("frame: max frame size %d does not fit a 4-byte length", max)
		}
		return Length{Max: max}, nil
	case spec == "raw":
		return Raw{}, nil
	case strings.HasPrefix(spec, "fixed:"):
		n, err := strconv.Atoi(strings.TrimPrefix(spec, "fixed:"))
		if err != nil || n < 1 || n > maxFixed {
			// A known framing with a size out of range: not ErrSpec.
			return nil, fmt.Errorf("frame: %q: fixed:N needs N from 1 to %d", spec, maxFixed)
		}
		if max != 0 && n > max {
			return nil, fmt.Errorf("frame: fixed:%d frames exceed the max frame size %d", n, max)
		}
		return Fixed{Size: n}, nil
	}
	return nil, fmt.Errorf("%w %q (known: %s)", ErrSpec, spec, Names)
}
