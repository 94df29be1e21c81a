package session

import (
	"bytes"
	"testing"

	"echoloop/eventloop/frame"
	"echoloop/handlers"
)

// BenchmarkServe serves one read of 16 line frames of 64 bytes with the echo
// handler: the decoding and dispatch both models share, per read, with no
// tracer set. Compare a change to the hot path with the commit before it:
//
//	go test -run '^$' -bench Serve -count 10 ./eventloop/session
func BenchmarkServe(b *testing.B) {
	s, _ := newSession(frame.Line{}, handlers.Echo{})
	var in []byte
	for range 16 {
		in, _ = frame.Line{}.Append(in, bytes.Repeat([]byte{'e'}, 64))
	}
	out := make([]byte, 0, 2*len(in))
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		out = out[:0]
		if s.Serve(s, in, &out) != len(in) {
			b.Fatal("frames left unserved")
		}
	}
}
