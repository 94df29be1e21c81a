package proxyproto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"

	pp "github.com/pires/go-proxyproto"
)

// Header sizes.
const (
	// MaxV1Len is the longest v1 header, CRLF included, as the specification
	// bounds it ("PROXY UNKNOWN" with two full IPv6 addresses and ports).
	MaxV1Len = 107

	// MaxV2Length caps a v2 header's length field (the bytes after its
	// 16-byte fixed part: addresses and TLVs). The field allows 65,535, but
	// addresses take at most 216 bytes and real TLVs (a TLS client
	// certificate is the largest, 1 to 2 KiB) fit well within this; it is
	// also go-proxyproto's own limit, so a header under it is never refused
	// by the parser for its size. A larger length is ErrBadHeader as soon as
	// the field arrives, before its bytes are waited for.
	MaxV2Length = 4096

	// MaxLen is the longest header Parse accepts.
	MaxLen = v2FixedLen + MaxV2Length

	v2FixedLen = 16
)

var (
	// sigV1 is "PROXY" and the single space the specification requires
	// after it.
	sigV1 = []byte("PROXY ")
	sigV2 = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

// Details wrapped in ErrBadHeader by Parse's own checks; go-proxyproto's
// errors are wrapped the same way.
var (
	errNoSignature = errors.New("no PROXY protocol signature")
	errV1Refused   = errors.New("starts like a v1 header, but only v2 is accepted")
	errV2Refused   = errors.New("starts like a v2 header, but only v1 is accepted")
	errV1TooLong   = fmt.Errorf("v1 header without CRLF in its first %d bytes", MaxV1Len)
	errV2TooLong   = fmt.Errorf("v2 header length over %d", MaxV2Length)
	errV2Command   = errors.New("v2 version or command unknown")
	errV2Family    = errors.New("v2 address family or transport unknown")
	errV2Short     = errors.New("v2 length shorter than its addresses")
	errLength      = errors.New("parser read a different length")
)

// Header is what a PROXY header said about the connection.
type Header struct {
	// Version is 1 or 2; 0 when the mode is Off and no header was read.
	Version int

	// Local is true for a v2 LOCAL header or a v1 "PROXY UNKNOWN" line: the
	// balancer connected on its own behalf (a health check), so the
	// socket's own peer address stands.
	Local bool

	// Source is the address to use as the connection's remote address from
	// now on: the client's, as the header gives it (a *net.TCPAddr, or a
	// *net.UDPAddr for a v2 datagram family), or the socket's peer when
	// the header is Local or names no IP address (the v2 AF_UNIX family).
	Source net.Addr

	// Dest is the address the client connected to, as the balancer saw it;
	// nil when Local or not an IP address.
	Dest net.Addr

	// TLVs are the type-length-value fields of a v2 PROXY header, in order
	// (NOOP padding with a nil Value); nil when there are none.
	TLVs []pp.TLV
}

// Parse looks for a complete PROXY header at the start of buf, which holds
// the bytes a connection has sent so far, and returns it with n, the number
// of bytes it took: buf[n:] is the start of the framed stream, to be handed
// to the codec unchanged. remote is the socket's peer address, returned as
// Source when the header does not name the client.
//
// When buf holds only the start of a header, Parse returns ErrIncomplete and
// n == 0: call it again with everything buffered once more bytes arrive.
// Anything else is an error wrapping ErrBadHeader, also with n == 0, as soon
// as the bytes seen rule a header out: a first byte that begins no accepted
// signature fails at once, a v2 length over MaxV2Length as soon as the
// length arrives, a v1 line with no CRLF once MaxV1Len bytes are there.
// Since a prefix of the input decides no differently than the whole, the
// outcome does not depend on how the header was split across reads.
//
// With mode Off, Parse reads nothing: it returns a Header whose Source is
// remote, n == 0 and no error.
//
// buf is only read during the call: the Header shares no memory with it, and
// nothing of it is kept. Parse is safe for concurrent use.
func Parse(mode Mode, buf []byte, remote net.Addr) (Header, int, error) {
	if mode == Off {
		return Header{Source: remote}, 0, nil
	}
	n, err := headerLen(mode, buf)
	if err != nil {
		return Header{}, 0, err
	}
	h, err := parse(buf[:n])
	if err != nil {
		return Header{}, 0, fmt.Errorf("%w: %w", ErrBadHeader, err)
	}
	out := Header{Version: int(h.Version), Source: remote}
	if h.Command.IsLocal() {
		out.Local = true
		return out, n, nil
	}
	switch h.SourceAddr.(type) {
	case *net.TCPAddr, *net.UDPAddr:
		out.Source, out.Dest = h.SourceAddr, h.DestinationAddr
	}
	if h.Version == 2 {
		if out.TLVs, err = h.TLVs(); err != nil {
			return Header{}, 0, fmt.Errorf("%w: %w", ErrBadHeader, err)
		}
	}
	return out, n, nil
}

// headerLen returns the length of the header at the start of buf, once all of
// it is there, from its signature and its CRLF or length field; or
// ErrIncomplete, or ErrBadHeader when the bytes seen cannot start a header the
// mode accepts. It checks as much as the bytes seen allow and no more, so it
// fails on a prefix only where it would fail on the whole.
func headerLen(mode Mode, buf []byte) (int, error) {
	if len(buf) == 0 {
		return 0, ErrIncomplete
	}
	var detail error
	switch buf[0] {
	case sigV1[0]:
		if mode.accepts(1) {
			return v1Len(buf)
		}
		detail = errV1Refused
	case sigV2[0]:
		if mode.accepts(2) {
			return v2Len(buf)
		}
		detail = errV2Refused
	default:
		detail = errNoSignature
	}
	return 0, fmt.Errorf("%w: %w", ErrBadHeader, detail)
}

// v1Len is headerLen for a buf that starts like a v1 header. Whether the line
// is valid is the parser's to say; here it must start with the signature and
// end with a '\n' within MaxV1Len bytes.
func v1Len(buf []byte) (int, error) {
	if !hasPrefixSoFar(buf, sigV1) {
		return 0, fmt.Errorf("%w: %w", ErrBadHeader, errNoSignature)
	}
	if i := bytes.IndexByte(buf[:min(len(buf), MaxV1Len)], '\n'); i >= 0 {
		return i + 1, nil
	}
	if len(buf) >= MaxV1Len {
		return 0, fmt.Errorf("%w: %w", ErrBadHeader, errV1TooLong)
	}
	return 0, ErrIncomplete
}

// v2Len is headerLen for a buf that starts like a v2 header. It applies the
// parser's checks of the fixed part (the version and command byte, the
// family byte, the length against the addresses the family needs) as soon
// as each byte arrives, so a header these rule out fails at once rather
// than after its announced length.
func v2Len(buf []byte) (int, error) {
	bad := func(detail error) (int, error) { return 0, fmt.Errorf("%w: %w", ErrBadHeader, detail) }
	if !hasPrefixSoFar(buf, sigV2) {
		return bad(errNoSignature)
	}
	if len(buf) <= len(sigV2) {
		return 0, ErrIncomplete
	}
	cmd := pp.ProtocolVersionAndCommand(buf[12])
	if cmd != pp.LOCAL && cmd != pp.PROXY {
		return bad(errV2Command)
	}
	if len(buf) == 13 {
		return 0, ErrIncomplete
	}
	fam := pp.AddressFamilyAndProtocol(buf[13])
	addrLen, known := addrLens[fam]
	if !known || (fam == pp.UNSPEC && cmd != pp.LOCAL) {
		return bad(errV2Family)
	}
	if len(buf) < v2FixedLen {
		return 0, ErrIncomplete
	}
	length := int(binary.BigEndian.Uint16(buf[14:16]))
	switch {
	case length > MaxV2Length:
		return bad(errV2TooLong)
	case cmd == pp.PROXY && length < addrLen:
		return bad(errV2Short)
	case len(buf) < v2FixedLen+length:
		return 0, ErrIncomplete
	}
	return v2FixedLen + length, nil
}

// addrLens is the address block each v2 family carries, for the families
// go-proxyproto accepts.
var addrLens = map[pp.AddressFamilyAndProtocol]int{
	pp.UNSPEC:       0,
	pp.TCPv4:        12,
	pp.UDPv4:        12,
	pp.TCPv6:        36,
	pp.UDPv6:        36,
	pp.UnixStream:   216,
	pp.UnixDatagram: 216,
}

// hasPrefixSoFar says whether buf and sig agree on their common length.
func hasPrefixSoFar(buf, sig []byte) bool {
	k := min(len(buf), len(sig))
	return bytes.Equal(buf[:k], sig[:k])
}

// reader feeds one whole header to go-proxyproto, which reads from a
// *bufio.Reader. Pooled, so a header costs no new buffer: 512 bytes hold
// any v1 header in one fill, as go-proxyproto requires, and a v2 header
// takes a few fills at most.
type reader struct {
	src bytes.Reader
	br  *bufio.Reader
}

var readers = sync.Pool{New: func() any {
	r := new(reader)
	r.br = bufio.NewReaderSize(&r.src, 512)
	return r
}}

// parse parses hdr, exactly one whole header, with go-proxyproto, and checks
// that the parser took all of it and no more. The bufio.Reader's buffer keeps
// a copy of hdr until its next use; nothing keeps hdr itself.
func parse(hdr []byte) (*pp.Header, error) {
	r := readers.Get().(*reader)
	defer readers.Put(r)
	r.src.Reset(hdr)
	r.br.Reset(&r.src)
	h, err := pp.Read(r.br)
	left := r.br.Buffered() + r.src.Len()
	r.src.Reset(nil)
	if err == nil && left != 0 {
		err = errLength
	}
	return h, err
}
