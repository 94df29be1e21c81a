// Package tracelog writes a server's trace of reads (session.Tracer) to a
// zerolog logger, one line per read, rate-limited: a burst of lines, then a
// steady rate, and the lines dropped meanwhile counted on the next line
// written. A trace is for watching a stream by hand; the limit keeps it
// from flooding the log, or slowing the server, under load.
//
// A line, in console format:
//
//	12:00:00 INF read conn=1 remote=127.0.0.1:40112 in=17 frames=1 sizes=[16] carried=1 out=16 writes=1
//
// and in JSON the same fields: conn, remote, in, frames, sizes, carried,
// out, writes, and dropped when lines were dropped before it (see
// session.Read for what each means). When a read completes more frames
// than session.MaxTracedSizes, sizes lists the first ones only.
package tracelog

import (
	"sync"
	"time"

	"github.com/rs/zerolog"

	"echoloop/eventloop/session"
)

// Defaults for the zero Options.
const (
	DefaultBurst = 100
	DefaultRate  = 20
)

// Fields are the fields of a trace line, in the order they are best read:
// a console writer given them as its FieldsOrder prints a line as a
// sentence about the read.
var Fields = []string{"conn", "remote", "in", "frames", "sizes", "carried", "out", "writes", "eof", "dropped"}

// Options configure a Log.
type Options struct {
	// Burst is how many lines may be written at once; the rate refills it.
	// Zero means DefaultBurst.
	Burst int

	// Rate is how many lines a second are written once the burst is spent.
	// Zero means DefaultRate.
	Rate float64

	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Log is a session.Tracer that logs each read at info level. Its methods
// are safe for concurrent use.
type Log struct {
	log  zerolog.Logger
	opts Options

	mu      sync.Mutex
	tokens  float64   // lines that may be written now
	last    time.Time // when tokens was last refilled
	dropped int64     // lines dropped since the last one written
}

var _ session.Tracer = (*Log)(nil)

// New returns a Log writing to l.
func New(l zerolog.Logger, o Options) *Log {
	if o.Burst <= 0 {
		o.Burst = DefaultBurst
	}
	if o.Rate <= 0 {
		o.Rate = DefaultRate
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Log{log: l, opts: o, tokens: float64(o.Burst), last: o.Now()}
}

// Options returns the options in effect, defaults filled in.
func (t *Log) Options() Options { return t.opts }

// TraceRead implements session.Tracer: it logs r, or counts it as dropped
// when over the rate.
func (t *Log) TraceRead(r *session.Read) {
	dropped, ok := t.take()
	if !ok {
		return
	}
	e := t.log.Info().Uint64("conn", r.Conn)
	if r.Remote != nil {
		e = e.Stringer("remote", r.Remote)
	}
	e = e.Int("in", r.In).Int("frames", r.Frames).Ints("sizes", r.Sizes).
		Int("carried", r.Carried).Int("out", r.Out).Int("writes", r.Writes)
	if r.EOF {
		e = e.Bool("eof", true)
	}
	if dropped > 0 {
		e = e.Int64("dropped", dropped)
	}
	e.Msg("read")
}

// Flush logs how many lines were dropped since the last one written, if
// any, so that the count is not lost when the trace ends.
func (t *Log) Flush() {
	t.mu.Lock()
	dropped := t.dropped
	t.dropped = 0
	t.mu.Unlock()
	if dropped > 0 {
		t.log.Info().Int64("dropped", dropped).Msg("trace lines dropped")
	}
}

// take reports whether a line may be written now, and if so how many were
// dropped before it.
func (t *Log) take() (dropped int64, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.opts.Now()
	if elapsed := now.Sub(t.last); elapsed > 0 {
		t.tokens = min(float64(t.opts.Burst), t.tokens+elapsed.Seconds()*t.opts.Rate)
		t.last = now
	}
	if t.tokens < 1 {
		t.dropped++
		return 0, false
	}
	t.tokens--
	dropped, t.dropped = t.dropped, 0
	return dropped, true
}
