//go:build !race

package session

import (
	"testing"

	"echoloop/eventloop/frame"
	"echoloop/handlers"
)

func TestServeDoesNotAllocate(t *testing.T) {
	for _, codec := range []frame.Codec{frame.Length{}, frame.Line{}, frame.Fixed{Size: 5}, frame.Raw{}} {
		s, _ := newSession(codec, handlers.Echo{})
		var in []byte
		for range 8 {
			in, _ = codec.Append(in, []byte("hello"))
		}
		out := make([]byte, 0, 4*len(in))
		allocs := testing.AllocsPerRun(1000, func() {
			out = out[:0]
			s.Serve(s, in, &out)
		})
		if allocs != 0 {
			t.Errorf("%s: Serve allocates %.1f times per call", codec, allocs)
		}
	}
}
