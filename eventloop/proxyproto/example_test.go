package proxyproto_test

import (
	"fmt"
	"net"

	"echoloop/eventloop/proxyproto"
)

// A connection's first reads, as a server sees them: Parse waits until the
// header is whole, then takes exactly the header and leaves the frames after
// it to the codec.
func ExampleParse() {
	balancer := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 51000} // the socket's peer
	stream := []byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 7007\r\nhello\nworld\n")

	_, n, err := proxyproto.Parse(proxyproto.Any, stream[:20], balancer) // the first read
	fmt.Println(n, err)

	h, n, err := proxyproto.Parse(proxyproto.Any, stream, balancer) // all read so far
	fmt.Println(h.Version, h.Source, h.Dest, n, err)
	fmt.Printf("for the codec: %q\n", stream[n:])

	_, _, err = proxyproto.Parse(proxyproto.V2, stream, balancer)
	fmt.Println(err)
	// Output:
	// 0 proxyproto: incomplete header
	// 1 192.0.2.1:56324 198.51.100.2:7007 46 <nil>
	// for the codec: "hello\nworld\n"
	// proxyproto: bad proxy header: starts like a v1 header, but only v2 is accepted
}
