package proxyproto

import (
	"bufio"
	"bytes"
	"testing"

	pp "github.com/pires/go-proxyproto"
)

// BenchmarkParse is the cost of the header stage per connection: Parse of a
// whole header, as a server calls it once the header has arrived. For
// comparison, "parser-only" is go-proxyproto reading the same header the
// way its own Listener does (a new bufio.Reader per connection), without
// this stage's checks.
func BenchmarkParse(b *testing.B) {
	for _, name := range []string{"v1 tcp4", "v1 tcp6", "v2 tcp4", "v2 tcp6", "v2 tlvs", "v2 local"} {
		var hdr []byte
		for _, tt := range validHeaders {
			if tt.name == name {
				hdr = tt.hdr
			}
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := Parse(Any, hdr, socketPeer); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/parser-only", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := pp.Read(bufio.NewReader(bytes.NewReader(hdr))); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkIncomplete is what a header that arrives in pieces costs per
// read before it is whole: finding its end, nothing parsed.
func BenchmarkIncomplete(b *testing.B) {
	v1 := []byte("PROXY TCP6 2001:db8::1 2001:db8::2 1 65535")
	v2 := v2Header(cmdProxy, 0x21, addr6("2001:db8::1", "2001:db8::2", 1, 7007))
	for name, part := range map[string][]byte{"v1": v1, "v2": v2[:len(v2)-1]} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := Parse(Any, part, socketPeer); err != ErrIncomplete {
					b.Fatal(err)
				}
			}
		})
	}
}
