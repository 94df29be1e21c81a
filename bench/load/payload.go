package load

import (
	"fmt"
	"strconv"
)

// Payload layout. Every payload starts with a 10-byte header naming the
// connection and the frame, written in a 64-letter printable alphabet:
//
//	bytes 0-3   connection id, 24 bits, 4 letters
//	bytes 4-9   sequence number, 36 bits (it wraps), 6 letters
//	bytes 10-   filler: printable letters chosen by (id, seq)
//
// A reply is verified against the payload regenerated from the connection's
// id and the sequence number it expects next, so no copy of what was sent is
// kept. A reply delivered to the wrong connection carries another id; one out
// of order carries another sequence number; a dropped, added or changed byte
// changes the length or the filler. No payload contains '\n', so every
// payload fits line framing.
const (
	// MinSize is the smallest payload that carries a connection id and a
	// sequence number. Smaller sizes, and fixed:N with N < MinSize, are
	// refused rather than verified partly.
	MinSize = idLen + seqLen

	idLen    = 4
	seqLen   = 6
	maxConns = 1 << (6 * idLen)  // connection ids that fit the header
	seqMask  = 1<<(6*seqLen) - 1 // sequence numbers wrap here
	spread   = 256               // filler offsets; see Payload.filler
)

// alphabet has 64 printable letters, none of them '\n'.
const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_"

// letterValue maps a letter back to its 6-bit value, -1 for a non-letter.
var letterValue = func() (v [256]int8) {
	for i := range v {
		v[i] = -1
	}
	for i := range len(alphabet) {
		v[alphabet[i]] = int8(i)
	}
	return v
}()

// Payload makes and checks the payloads of one size. It is immutable once
// built and safe for concurrent use.
type Payload struct {
	size    int
	pattern []byte // shared filler source: size-MinSize+spread letters
}

// NewPayload returns the payload maker for size bytes (at least MinSize).
func NewPayload(size int) (*Payload, error) {
	if size < MinSize {
		return nil, fmt.Errorf("%w: payload size %d is under %d, the bytes that carry the connection id and sequence number", ErrInvalid, size, MinSize)
	}
	p := &Payload{size: size, pattern: make([]byte, size-MinSize+spread)}
	x := uint64(0x9E3779B97F4A7C15) // xorshift64*, fixed seed: same bytes every run
	for i := range p.pattern {
		x ^= x >> 12
		x ^= x << 25
		x ^= x >> 27
		p.pattern[i] = alphabet[(x*0x2545F4914F6CDD1D)>>58]
	}
	return p, nil
}

// Size is the payload length in bytes.
func (p *Payload) Size() int { return p.size }

// filler is the part after the header for (id, seq): a window of the shared
// pattern at an offset that moves with both, so neighbouring frames and
// connections differ in their filler as well as in their header. The slice
// aliases the pattern and must not be modified.
func (p *Payload) filler(id uint32, seq uint64) []byte {
	off := (uint64(id)*97 + seq*31) % spread
	return p.pattern[off : off+uint64(p.size-MinSize)]
}

func putHeader(h *[MinSize]byte, id uint32, seq uint64) {
	for i := idLen - 1; i >= 0; i-- {
		h[i] = alphabet[id&63]
		id >>= 6
	}
	seq &= seqMask
	for i := MinSize - 1; i >= idLen; i-- {
		h[i] = alphabet[seq&63]
		seq >>= 6
	}
}

// Append appends the payload of frame seq of connection id to dst.
func (p *Payload) Append(dst []byte, id uint32, seq uint64) []byte {
	var h [MinSize]byte
	putHeader(&h, id, seq)
	dst = append(dst, h[:]...)
	return append(dst, p.filler(id, seq)...)
}

// Verify reports whether b is exactly the payload of frame seq of
// connection id. It does not allocate.
func (p *Payload) Verify(b []byte, id uint32, seq uint64) bool {
	if len(b) != p.size {
		return false
	}
	var h [MinSize]byte
	putHeader(&h, id, seq)
	return string(b[:MinSize]) == string(h[:]) && string(b[MinSize:]) == string(p.filler(id, seq))
}

// Header reads the connection id and sequence number a payload claims to
// carry; ok is false if b does not start with a well-formed header.
func Header(b []byte) (id uint32, seq uint64, ok bool) {
	if len(b) < MinSize {
		return 0, 0, false
	}
	for i := range MinSize {
		v := letterValue[b[i]]
		if v < 0 {
			return 0, 0, false
		}
		if i < idLen {
			id = id<<6 | uint32(v)
		} else {
			seq = seq<<6 | uint64(v)
		}
	}
	return id, seq, true
}

// Mismatch describes one reply that was not what its connection sent.
type Mismatch struct {
	Conn    uint32 `json:"conn"`     // connection id (0-based, in dial order)
	Seq     uint64 `json:"seq"`      // sequence number of the frame the reply should echo
	Reason  string `json:"reason"`   // what was wrong, in words
	Offset  int    `json:"offset"`   // first differing byte of the payload; -1 if not compared
	WantLen int    `json:"want_len"` // expected payload length
	GotLen  int    `json:"got_len"`  // received payload length
	Want    string `json:"want"`     // expected bytes around Offset, Go-quoted
	Got     string `json:"got"`      // received bytes around Offset, Go-quoted
}

func (m Mismatch) String() string {
	s := fmt.Sprintf("conn %d seq %d: %s", m.Conn, m.Seq, m.Reason)
	if m.Offset >= 0 {
		s += fmt.Sprintf(" at byte %d: want %s, got %s", m.Offset, m.Want, m.Got)
	}
	return s
}

// describe explains why got is not the payload of (id, seq). It allocates
// and is meant for the rare mismatch only.
func (p *Payload) describe(got []byte, id uint32, seq uint64) Mismatch {
	want := p.Append(nil, id, seq)
	m := Mismatch{Conn: id, Seq: seq & seqMask, WantLen: len(want), GotLen: len(got), Offset: -1}
	off := 0
	for off < len(want) && off < len(got) && want[off] == got[off] {
		off++
	}
	m.Offset = off
	lo := max(off-8, 0)
	m.Want = strconv.Quote(string(want[lo:min(off+8, len(want))]))
	m.Got = strconv.Quote(string(got[lo:min(off+8, len(got))]))
	gid, gseq, ok := Header(got)
	switch {
	case ok && gid != id:
		m.Reason = fmt.Sprintf("reply carries the header of connection %d seq %d: delivered to the wrong connection", gid, gseq)
	case ok && gseq != seq&seqMask:
		m.Reason = fmt.Sprintf("reply carries seq %d: out of order, lost or repeated", gseq)
	case len(got) != len(want):
		m.Reason = fmt.Sprintf("reply is %d bytes, sent %d: bytes dropped or added", len(got), len(want))
	default:
		m.Reason = "reply bytes differ from those sent"
	}
	return m
}
