//go:build !race

package proxyproto

import "testing"

// A header still arriving costs no allocation per read: Parse only finds
// that its end is not there yet.
func TestIncompleteAllocs(t *testing.T) {
	v1 := []byte("PROXY TCP6 2001:db8::1 2001:db8::2 1 65535")
	v2 := v2Header(cmdProxy, 0x21, addr6("2001:db8::1", "2001:db8::2", 1, 7007))
	for _, part := range [][]byte{v1, v2[:len(v2)-1], nil} {
		if n := testing.AllocsPerRun(100, func() { _, _, _ = Parse(Any, part, socketPeer) }); n != 0 {
			t.Errorf("Parse of %d bytes of a header: %v allocations, want 0", len(part), n)
		}
	}
}
