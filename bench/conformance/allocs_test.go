//go:build !race

package conformance

import (
	"bytes"
	"fmt"
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
	// 64-byte frames, and frames larger than any read buffer: those are
	// served from a buffer sized to them, which must be reused too.
	for _, tt := range []struct {
		spec string
		size int
	}{{"length", 64}, {"line", 64}, {"fixed:64", 64}, {"length", 256 << 10}} {
		for _, m := range model.Names() {
			t.Run(fmt.Sprintf("%s/%s/%d", m, tt.spec, tt.size), func(t *testing.T) {
				codec := mustParse(t, tt.spec)
				srv := start(t, m, codec, handlers.Echo{})
				conn := servertest.Dial(t, srv.Addr())
				payload := bytes.Repeat([]byte("a"), tt.size)
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
					t.Fatalf("reply %.40q differs from request", reply)
				}
				if allocs != 0 {
					t.Errorf("%.2f allocations per echoed frame, want 0", allocs)
				}
			})
		}
	}
}
