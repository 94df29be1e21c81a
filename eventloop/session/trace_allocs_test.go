//go:build !race

package session

import (
	"testing"

	"echoloop/eventloop/frame"
)

// TestTracedServeDoesNotAllocate: a traced read reuses its Read, sizes
// included, so tracing costs no allocation per read or per frame.
func TestTracedServeDoesNotAllocate(t *testing.T) {
	c, _ := traced(frame.Line{})
	c.sh.Config.Tracer = TracerFunc(func(*Read) {})
	in := []byte("a\nbb\nccc\n")
	out := make([]byte, 0, 64)
	allocs := testing.AllocsPerRun(1000, func() {
		out = out[:0]
		c.Serve(c, in, &out)
		c.read.In = len(in)
		c.TraceRead(c, &c.read)
	})
	if allocs != 0 {
		t.Errorf("a traced Serve allocates %.1f times per read", allocs)
	}
}
