package session

import (
	"net"

	"echoloop/handlers"
)

// A Tracer hears of every read from every connection (Config.Tracer): what
// the bytes of one read did once its frames were served and their replies
// written. It is how a server shows TCP's stream nature: one send arriving
// as several reads, several sends as one read, a frame's tail carried over.
//
// TraceRead is called on the goroutine serving the connection (an event
// loop, or the connection's own goroutine), so it is called concurrently
// for different connections and must not block for long. r, and r.Sizes,
// are valid only until it returns: the model reuses them for the next read.
type Tracer interface {
	TraceRead(r *Read)
}

// TracerFunc adapts a function to a Tracer.
type TracerFunc func(r *Read)

// TraceRead implements Tracer.
func (f TracerFunc) TraceRead(r *Read) { f(r) }

// MaxTracedSizes is how many frame sizes a Read lists; frames past it are
// counted in Frames only, so a read of thousands of small frames costs no
// more to trace than one of MaxTracedSizes.
const MaxTracedSizes = 32

// Read is what one read from a connection did. The event loop makes one
// read per readable event (one OnTraffic), the goroutine model one per
// read(2). Sizes are as on the wire, a header or delimiter included, so the
// bytes carried into a read plus In are the sizes of all its frames plus
// Carried.
type Read struct {
	Conn   uint64   // the connection's ID
	Remote net.Addr // its RemoteAddr (from the PROXY header, when there is one)

	In      int   // bytes the read brought
	Frames  int   // frames it completed
	Sizes   []int // the sizes of the first MaxTracedSizes of them
	Carried int   // bytes kept for the next read: the start of a partial frame (event loop: also input kept unserved while the peer does not read its replies)
	Out     int   // reply bytes handed to the socket for the read's frames
	Writes  int   // write calls that carried them
	EOF     bool  // the read found the end of the peer's stream: it shut down its sending side (or closed)

	used int // the sizes of all Frames
}

// Used is how many bytes the read's frames took, all of them (Sizes may
// list only the first).
func (r *Read) Used() int { return r.used }

// traceFrames records in c's Read the frames one Serve completed: there
// are frames of them, and they took in. Their sizes are found by decoding
// in again, at most MaxTracedSizes of them, so that the loop serving
// frames stays as it is without a tracer: a trace costs a second look at
// the frames, and no tracer costs one comparison per Serve. (A handler
// that rewrote its frame in place could leave sizes short; the counts
// stay exact.)
func (s *Session) traceFrames(c handlers.Conn, in []byte, frames int) {
	r := recording(c)
	if r == nil {
		return
	}
	r.Frames += frames
	r.used += len(in)
	codec := s.sh.Config.Codec
	for len(in) > 0 && len(r.Sizes) < MaxTracedSizes {
		_, n, err := codec.Decode(in)
		if err != nil {
			break
		}
		r.Sizes = append(r.Sizes, n)
		in = in[n:]
	}
}

// Wrote records a write of n reply bytes.
func (r *Read) Wrote(n int) {
	r.Out += n
	r.Writes++
}

// Reset empties r for the next read, keeping Sizes' array.
func (r *Read) Reset() { *r = Read{Sizes: r.Sizes[:0]} }

// A Recorder is a model's connection while tracing is on: it keeps the Read
// of the read being served, or returns nil when none is (a greeting from
// OpenConn, a write from an AsyncConn). Serve records the frames it
// completes there. Both models' connections implement it.
type Recorder interface {
	Recording() *Read
}

// recording returns the Read c records the current read in, or nil.
func recording(c handlers.Conn) *Read {
	if rc, ok := c.(Recorder); ok {
		return rc.Recording()
	}
	return nil
}

// Tracing says whether the server traces reads (Config.Tracer is set).
func (s *Session) Tracing() bool { return s.sh.Config.Tracer != nil }

// TraceRead ends the trace of one read: it hands r, with the connection's
// ID and c's RemoteAddr, to the Tracer, unless the read did nothing (a
// wake-up with no bytes, frames, writes or EOF), and empties r for the next
// read.
// Call it only while Tracing.
func (s *Session) TraceRead(c handlers.Conn, r *Read) {
	if r.In > 0 || r.Frames > 0 || r.Writes > 0 || r.EOF {
		r.Conn, r.Remote = s.id, c.RemoteAddr()
		s.sh.Config.Tracer.TraceRead(r)
	}
	r.Reset()
}
