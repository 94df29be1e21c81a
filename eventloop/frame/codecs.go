package frame

import (
	"bytes"
	"encoding/binary"
	"strconv"
)

// Length frames carry a 4-byte big-endian unsigned payload length, then the
// payload. Zero-length frames are valid. A length over Max is rejected as soon
// as the header is seen, before a byte of the body is buffered.
type Length struct {
	// Max is the largest payload accepted; zero or less means DefaultMaxLength.
	Max int
}

func (l Length) max() int {
	if l.Max <= 0 {
		return DefaultMaxLength
	}
	return l.Max
}

// Decode implements Codec.
func (l Length) Decode(buf []byte) ([]byte, int, error) {
	if len(buf) < headerLen {
		return nil, 0, ErrIncomplete
	}
	// Compare as uint64 so a length of 0xFFFFFFFF cannot overflow int on
	// 32-bit platforms.
	size := uint64(binary.BigEndian.Uint32(buf))
	if size > uint64(l.max()) {
		return nil, 0, ErrTooLarge
	}
	end := headerLen + int(size)
	if len(buf) < end {
		return nil, 0, ErrIncomplete
	}
	return buf[headerLen:end:end], end, nil
}

// Append implements Codec.
func (l Length) Append(dst, payload []byte) ([]byte, error) {
	if len(payload) > l.max() {
		return dst, ErrTooLarge
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	return append(dst, payload...), nil
}

// Need implements Codec.
func (l Length) Need(buf []byte) int {
	if len(buf) < headerLen {
		return headerLen
	}
	size := uint64(binary.BigEndian.Uint32(buf))
	if size > uint64(l.max()) {
		return len(buf) + 1 // Decode reports ErrTooLarge; nothing to wait for
	}
	return headerLen + int(size)
}

// MaxPayload implements Codec.
func (l Length) MaxPayload() int { return l.max() }

func (Length) String() string { return "length" }

// Line frames end at '\n', which is not part of the payload. A '\r' before the
// '\n' stays in the payload, so an echo is byte-exact for CRLF clients too.
type Line struct {
	// Max is the longest payload accepted, '\n' excluded; zero or less means
	// DefaultMaxLine. More than Max bytes without a '\n' is ErrTooLarge.
	Max int
}

func (l Line) max() int {
	if l.Max <= 0 {
		return DefaultMaxLine
	}
	return l.Max
}

// Decode implements Codec.
func (l Line) Decode(buf []byte) ([]byte, int, error) { return l.DecodeFrom(buf, 0) }

// DecodeFrom implements Resumer: the search for '\n' starts at buf[scanned].
func (l Line) DecodeFrom(buf []byte, scanned int) ([]byte, int, error) {
	limit := l.max()
	// Search no further than Max+1 bytes: a '\n' beyond that ends a line
	// that is too long anyway.
	window := buf
	if len(window) > limit+1 {
		window = window[:limit+1]
	}
	scanned = min(max(scanned, 0), len(window))
	if i := bytes.IndexByte(window[scanned:], '\n'); i >= 0 {
		i += scanned
		return buf[:i:i], i + 1, nil
	}
	if len(buf) > limit {
		return nil, 0, ErrTooLarge
	}
	return nil, 0, ErrIncomplete
}

// Append implements Codec.
func (l Line) Append(dst, payload []byte) ([]byte, error) {
	if len(payload) > l.max() {
		return dst, ErrTooLarge
	}
	if bytes.IndexByte(payload, '\n') >= 0 {
		return dst, ErrPayload
	}
	dst = append(dst, payload...)
	return append(dst, '\n'), nil
}

// Need implements Codec: a line's end is unknown until its '\n' arrives.
func (Line) Need(buf []byte) int { return len(buf) + 1 }

// MaxPayload implements Codec.
func (l Line) MaxPayload() int { return l.max() }

func (Line) String() string { return "line" }

// Fixed frames are exactly Size bytes with no header: the classic
// recvall(sock, 16) protocol.
type Fixed struct {
	// Size is the frame size in bytes; it must be at least 1 (Parse checks).
	// A Fixed with Size < 1 decodes every byte as its own frame.
	Size int
}

func (f Fixed) size() int { return max(f.Size, 1) }

// Decode implements Codec.
func (f Fixed) Decode(buf []byte) ([]byte, int, error) {
	n := f.size()
	if len(buf) < n {
		return nil, 0, ErrIncomplete
	}
	return buf[:n:n], n, nil
}

// Append implements Codec.
func (f Fixed) Append(dst, payload []byte) ([]byte, error) {
	if len(payload) != f.size() {
		return dst, ErrPayload
	}
	return append(dst, payload...), nil
}

// Need implements Codec.
func (f Fixed) Need(buf []byte) int { return max(f.size(), len(buf)+1) }

// MaxPayload implements Codec.
func (f Fixed) MaxPayload() int { return f.size() }

func (f Fixed) String() string { return "fixed:" + strconv.Itoa(f.size()) }

// Raw has no framing: Decode returns everything buffered as one frame, which
// on a server is whatever one read delivered (the naive recv(1024) pattern and
// plain RFC 862 echo). Its frame boundaries are accidents of timing, so only
// the byte stream, not the frame count, is meaningful.
type Raw struct{}

// Decode implements Codec. Only an empty buf is ErrIncomplete.
func (Raw) Decode(buf []byte) ([]byte, int, error) {
	if len(buf) == 0 {
		return nil, 0, ErrIncomplete
	}
	return buf[:len(buf):len(buf)], len(buf), nil
}

// Append implements Codec.
func (Raw) Append(dst, payload []byte) ([]byte, error) {
	return append(dst, payload...), nil
}

// Need implements Codec.
func (Raw) Need(buf []byte) int { return len(buf) + 1 }

// MaxPayload implements Codec. A raw frame is at most one read, which the
// server bounds by its read buffer, not by the codec.
func (Raw) MaxPayload() int { return int(^uint(0) >> 1) }

func (Raw) String() string { return "raw" }
