//go:build !race

package conformance

import (
	"bytes"
	"io"
	"testing"

	"echoloop/bench/model"
	"echoloop/bench/servertest"
	"echoloop/handlers"
)

// TestEchoHotPathDoesNotAllocate round-trips 64-byte frames over loopback
// and counts heap allocations in the whole process, server and client: the
// steady-state path (read, decode, echo, encode, write) must make none. The
// client reuses its buffers, so any allocation counted is the server's. (The
// race detector allocates on its own, hence the build tag.)
//
// The subtests run one at a time: AllocsPerRun counts the whole process.
func TestEchoHotPathDoesNotAllocate(t *testing.T) {
	for _, spec := range []string{"length", "line", "fixed:64"} {
		for _, m := range model.Names() {
			t.Run(m+"/"+spec, func(t *testing.T) {
				codec := mustParse(t, spec)
				srv := start(t, m, codec, handlers.Echo{})
				conn := servertest.Dial(t, srv.Addr())
				payload := bytes.Repeat([]byte("a"), 64)
				req, _ := codec.Append(nil, payload)
				reply := make([]byte, len(req))
				roundTrip := func() {
					if _, err := conn.Write(req); err != nil {
						t.Fatal(err)
					}
					if _, err := io.ReadFull(conn, reply); err != nil {
						t.Fatal(err)
					}
				}
				for range 100 { // warm up: buffers grown, pools filled
					roundTrip()
				}
				allocs := testing.AllocsPerRun(2000, roundTrip)
				if !bytes.Equal(reply, req) {
					t.Fatalf("reply %q differs from request", reply)
				}
				if allocs != 0 {
					t.Errorf("%.2f allocations per echoed frame, want 0", allocs)
				}
			})
		}
	}
}
