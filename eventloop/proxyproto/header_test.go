package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	pp "github.com/pires/go-proxyproto"

	"echoloop/eventloop/frame"
)

// socketPeer is the address the socket reports, used for LOCAL headers.
var socketPeer = &net.TCPAddr{IP: net.IPv4(10, 0, 0, 9), Port: 40000}

// v2Header builds a v2 header by hand: the signature, the version and
// command byte, the family byte, the length, then body (addresses and
// TLVs).
func v2Header(cmd, fam byte, body ...[]byte) []byte {
	b := append([]byte(nil), sigV2...)
	b = append(b, cmd, fam)
	rest := bytes.Join(body, nil)
	b = binary.BigEndian.AppendUint16(b, uint16(len(rest)))
	return append(b, rest...)
}

// addr4 is a v2 IPv4 address block.
func addr4(src, dst string, sport, dport uint16) []byte {
	b := append(net.ParseIP(src).To4(), net.ParseIP(dst).To4()...)
	b = binary.BigEndian.AppendUint16(b, sport)
	return binary.BigEndian.AppendUint16(b, dport)
}

func addr6(src, dst string, sport, dport uint16) []byte {
	b := append(net.ParseIP(src).To16(), net.ParseIP(dst).To16()...)
	b = binary.BigEndian.AppendUint16(b, sport)
	return binary.BigEndian.AppendUint16(b, dport)
}

func tlv(typ byte, value string) []byte {
	b := binary.BigEndian.AppendUint16([]byte{typ}, uint16(len(value)))
	return append(b, value...)
}

const (
	cmdLocal = 0x20
	cmdProxy = 0x21
)

// validHeaders are headers Parse accepts in their own version's mode and in
// Any, with what it must make of them.
var validHeaders = []struct {
	name    string
	hdr     []byte
	version int
	source  string // Source.String()
	dest    string // Dest.String(), "" for nil
	local   bool
	tlvs    []pp.TLV
}{
	{name: "v1 tcp4", hdr: []byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"),
		version: 1, source: "192.0.2.1:56324", dest: "198.51.100.2:443"},
	{name: "v1 tcp6", hdr: []byte("PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n"),
		version: 1, source: "[2001:db8::1]:1", dest: "[2001:db8::2]:65535"},
	{name: "v1 unknown", hdr: []byte("PROXY UNKNOWN\r\n"),
		version: 1, source: socketPeer.String(), local: true},
	{name: "v1 unknown long", hdr: []byte("PROXY UNKNOWN ffff:f::f:ffff ffff:f::f:ffff 65535 65535\r\n"),
		version: 1, source: socketPeer.String(), local: true},
	{name: "v1 longest", hdr: []byte("PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
		version: 1, source: socketPeer.String(), local: true},
	{name: "v2 tcp4", hdr: v2Header(cmdProxy, 0x11, addr4("192.0.2.1", "198.51.100.2", 56324, 443)),
		version: 2, source: "192.0.2.1:56324", dest: "198.51.100.2:443"},
	{name: "v2 tcp6", hdr: v2Header(cmdProxy, 0x21, addr6("2001:db8::1", "2001:db8::2", 1, 7007)),
		version: 2, source: "[2001:db8::1]:1", dest: "[2001:db8::2]:7007"},
	{name: "v2 udp4", hdr: v2Header(cmdProxy, 0x12, addr4("192.0.2.1", "198.51.100.2", 53, 53)),
		version: 2, source: "192.0.2.1:53", dest: "198.51.100.2:53"},
	{name: "v2 tlvs", hdr: v2Header(cmdProxy, 0x11, addr4("192.0.2.1", "198.51.100.2", 56324, 443),
		tlv(0x01, "h2"), tlv(0x02, "example.com"), tlv(0x04, "\x00\x00\x00"), tlv(0xE0, "app")),
		version: 2, source: "192.0.2.1:56324", dest: "198.51.100.2:443",
		tlvs: []pp.TLV{{Type: pp.PP2_TYPE_ALPN, Value: []byte("h2")}, {Type: pp.PP2_TYPE_AUTHORITY, Value: []byte("example.com")},
			{Type: pp.PP2_TYPE_NOOP}, {Type: 0xE0, Value: []byte("app")}}},
	{name: "v2 tlvs at the length cap", hdr: v2Header(cmdProxy, 0x11, addr4("192.0.2.1", "198.51.100.2", 1, 2),
		tlv(0xE1, strings.Repeat("c", MaxV2Length-12-3))),
		version: 2, source: "192.0.2.1:1", dest: "198.51.100.2:2",
		tlvs: []pp.TLV{{Type: 0xE1, Value: bytes.Repeat([]byte("c"), MaxV2Length-12-3)}}},
	{name: "v2 local", hdr: v2Header(cmdLocal, 0x00),
		version: 2, source: socketPeer.String(), local: true},
	{name: "v2 local with addresses", hdr: v2Header(cmdLocal, 0x11, addr4("192.0.2.1", "198.51.100.2", 1, 2)),
		version: 2, source: socketPeer.String(), local: true},
	{name: "v2 local short block", hdr: v2Header(cmdLocal, 0x21, []byte{1, 2, 3}),
		version: 2, source: socketPeer.String(), local: true},
	{name: "v2 unix", hdr: v2Header(cmdProxy, 0x31, make([]byte, 216)),
		version: 2, source: socketPeer.String()},
}

func modesFor(version int) []Mode { return []Mode{Mode(version), Any} }

func TestParseValid(t *testing.T) {
	for _, tt := range validHeaders {
		for _, mode := range modesFor(tt.version) {
			t.Run(fmt.Sprintf("%s/%s", tt.name, mode), func(t *testing.T) {
				h, n, err := Parse(mode, tt.hdr, socketPeer)
				if err != nil || n != len(tt.hdr) {
					t.Fatalf("Parse = n %d, %v; want n %d, nil", n, err, len(tt.hdr))
				}
				dest := ""
				if h.Dest != nil {
					dest = h.Dest.String()
				}
				if h.Version != tt.version || h.Local != tt.local || h.Source.String() != tt.source || dest != tt.dest {
					t.Errorf("got version %d local %v source %v dest %q; want %d %v %s %q",
						h.Version, h.Local, h.Source, dest, tt.version, tt.local, tt.source, tt.dest)
				}
				if !tlvsEqual(h.TLVs, tt.tlvs) {
					t.Errorf("TLVs %v, want %v", h.TLVs, tt.tlvs)
				}
			})
		}
	}
}

func tlvsEqual(a, b []pp.TLV) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Type != b[i].Type || !bytes.Equal(a[i].Value, b[i].Value) {
			return false
		}
	}
	return true
}

// Every strict prefix of a valid header is incomplete and consumes nothing:
// the header may arrive split at any byte.
func TestParseSplitAtEveryByte(t *testing.T) {
	for _, tt := range validHeaders {
		for _, mode := range modesFor(tt.version) {
			for i := range len(tt.hdr) {
				if _, n, err := Parse(mode, tt.hdr[:i], socketPeer); !errors.Is(err, ErrIncomplete) || n != 0 {
					t.Fatalf("%s/%s: %d of %d bytes: n %d, %v; want ErrIncomplete", tt.name, mode, i, len(tt.hdr), n, err)
				}
			}
		}
	}
}

// A header followed in the same read by frames: Parse takes the header
// only, and the rest decodes as the frames that were sent, byte for byte.
func TestParseThenFrames(t *testing.T) {
	codec := frame.Length{}
	var frames []byte
	for _, p := range []string{"hello", "", "PROXY TCP4 looks like a header\r\n", "\r\n\r\n\x00\r\nQUIT\n"} {
		frames, _ = codec.Append(frames, []byte(p))
	}
	for _, tt := range validHeaders {
		buf := append(append([]byte(nil), tt.hdr...), frames...)
		_, n, err := Parse(Any, buf, socketPeer)
		if err != nil || n != len(tt.hdr) {
			t.Fatalf("%s: n %d, %v; want n %d, nil", tt.name, n, err, len(tt.hdr))
		}
		if !bytes.Equal(buf[n:], frames) {
			t.Fatalf("%s: the bytes after the header differ from the frames sent", tt.name)
		}
		// Any prefix that holds the header and part of a frame decides the same.
		for i := n; i <= len(buf); i++ {
			if _, m, err := Parse(Any, buf[:i], socketPeer); err != nil || m != n {
				t.Fatalf("%s: %d bytes: n %d, %v", tt.name, i, m, err)
			}
		}
	}
}

func TestParseBad(t *testing.T) {
	v1 := []byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n")
	v2 := v2Header(cmdProxy, 0x11, addr4("192.0.2.1", "198.51.100.2", 56324, 443))
	oversized := v2Header(cmdLocal, 0x00)
	binary.BigEndian.PutUint16(oversized[14:], 0xFFFF) // and no body: refused on the length alone
	justOver := v2Header(cmdLocal, 0x00, make([]byte, MaxV2Length+1))
	for _, tt := range []struct {
		name   string
		mode   Mode
		in     []byte
		decide int   // fewest bytes on which Parse must already fail; 0 for all of them
		detail error // wrapped, besides ErrBadHeader; nil to skip
	}{
		{"garbage", Any, []byte("GET / HTTP/1.1\r\n"), 1, errNoSignature},
		{"frame, no header", V1, []byte("hello\n"), 1, errNoSignature},
		{"binary", Any, []byte{0, 0, 0, 5, 'h'}, 1, errNoSignature},
		{"v1 signature typo", Any, []byte("PROXZ TCP4"), 5, errNoSignature},
		{"v1 no space", V1, []byte("PROXYTCP4 "), 6, errNoSignature},
		{"v1 in v2 mode", V2, v1, 1, errV1Refused},
		{"v2 in v1 mode", V1, v2, 1, errV2Refused},
		{"v1 too long", V1, append([]byte("PROXY UNKNOWN "), bytes.Repeat([]byte("x"), 200)...), MaxV1Len, errV1TooLong},
		{"v1 LF without CR", V1, []byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\n"), 0, pp.ErrLineMustEndWithCrlf},
		{"v1 bad address", V1, []byte("PROXY TCP4 192.0.2.300 198.51.100.2 56324 443\r\n"), 0, pp.ErrInvalidAddress},
		{"v1 bad port", V1, []byte("PROXY TCP4 192.0.2.1 198.51.100.2 65536 443\r\n"), 0, pp.ErrInvalidPortNumber},
		{"v1 bad protocol", V1, []byte("PROXY UDP4 192.0.2.1 198.51.100.2 1 2\r\n"), 0, pp.ErrCantReadAddressFamilyAndProtocol},
		{"v1 v6 address in tcp4", V1, []byte("PROXY TCP4 ::1 ::1 1 2\r\n"), 0, pp.ErrInvalidAddress},
		{"v2 signature typo", V2, append([]byte("\r\n\r\n\x00\r\nQUIX\n"), v2[12:]...), 11, errNoSignature},
		{"v2 version 1", V2, v2Header(0x11, 0x11, addr4("192.0.2.1", "198.51.100.2", 1, 2)), 13, errV2Command},
		{"v2 unknown command", V2, v2Header(0x22, 0x11, addr4("192.0.2.1", "198.51.100.2", 1, 2)), 13, errV2Command},
		{"v2 unknown family", V2, v2Header(cmdProxy, 0x13, addr4("192.0.2.1", "198.51.100.2", 1, 2)), 14, errV2Family},
		{"v2 proxy unspec", V2, v2Header(cmdProxy, 0x00), 14, errV2Family},
		{"v2 oversized length", V2, oversized, 16, errV2TooLong},
		{"v2 just over the cap", V2, justOver, 16, errV2TooLong},
		{"v2 length short of addresses", V2, v2Header(cmdProxy, 0x21, addr4("192.0.2.1", "198.51.100.2", 1, 2)), 16, errV2Short},
		{"v2 truncated tlv", V2, v2Header(cmdProxy, 0x11, addr4("192.0.2.1", "198.51.100.2", 1, 2), []byte{0x01, 0x00}), 30, pp.ErrTruncatedTLV},
		{"v2 tlv longer than header", V2, v2Header(cmdProxy, 0x11, addr4("192.0.2.1", "198.51.100.2", 1, 2), []byte{0x01, 0x00, 0x09, 'x'}), 32, pp.ErrTruncatedTLV},
	} {
		t.Run(tt.name, func(t *testing.T) {
			decide := tt.decide
			if decide == 0 {
				decide = len(tt.in)
			}
			for i := range len(tt.in) + 1 {
				_, n, err := Parse(tt.mode, tt.in[:i], socketPeer)
				if n != 0 {
					t.Fatalf("%d bytes: consumed %d", i, n)
				}
				if i < decide {
					if !errors.Is(err, ErrIncomplete) {
						t.Fatalf("%d bytes: %v; want ErrIncomplete before byte %d", i, err, decide)
					}
					continue
				}
				if !errors.Is(err, ErrBadHeader) || (tt.detail != nil && !errors.Is(err, tt.detail)) {
					t.Fatalf("%d bytes: %v; want ErrBadHeader wrapping %v", i, err, tt.detail)
				}
			}
		})
	}
}

func TestParseTruncated(t *testing.T) {
	// The peer sent part of a header and stopped: the stage waits, and the
	// server's timeout or the peer's EOF ends the wait (the server's test).
	for _, tt := range validHeaders {
		if _, _, err := Parse(Any, tt.hdr[:len(tt.hdr)-1], socketPeer); !errors.Is(err, ErrIncomplete) {
			t.Errorf("%s less its last byte: %v, want ErrIncomplete", tt.name, err)
		}
	}
}

func TestParseOff(t *testing.T) {
	h, n, err := Parse(Off, []byte("PROXY TCP4 192.0.2.1 198.51.100.2 1 2\r\n"), socketPeer)
	if err != nil || n != 0 || h.Source != socketPeer || h.Version != 0 {
		t.Errorf("Off: %+v, n %d, %v; want the socket's peer, nothing consumed", h, n, err)
	}
}

// The Header shares no memory with the buffer: the caller may reuse it.
func TestParseKeepsNothing(t *testing.T) {
	for _, tt := range validHeaders {
		buf := append([]byte(nil), tt.hdr...)
		h, _, err := Parse(Any, buf, socketPeer)
		if err != nil {
			t.Fatal(err)
		}
		source := h.Source.String()
		var tlvs []pp.TLV
		for _, v := range h.TLVs {
			tlvs = append(tlvs, pp.TLV{Type: v.Type, Value: bytes.Clone(v.Value)})
		}
		for i := range buf {
			buf[i] = 0xAA
		}
		if h.Source.String() != source || !tlvsEqual(h.TLVs, tlvs) {
			t.Errorf("%s: the header changed with the buffer: %v %v", tt.name, h.Source, h.TLVs)
		}
	}
}

// Our cap on the v2 length must not be over the parser's own, or a header
// this stage waited for would be refused by the parser.
func TestMaxV2LengthWithinParser(t *testing.T) {
	if MaxV2Length > int(pp.MaxV2HeaderSize) {
		t.Errorf("MaxV2Length %d over go-proxyproto's MaxV2HeaderSize %d", MaxV2Length, pp.MaxV2HeaderSize)
	}
}
