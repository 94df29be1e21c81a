package session

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"echoloop/eventloop/frame"
	"echoloop/handlers"
)

// recordingConn is a model's connection that records its reads.
type recordingConn struct {
	testConn
	read Read
}

func (c *recordingConn) Recording() *Read { return &c.read }

// traced starts a session that traces into a slice of copies.
func traced(codec frame.Codec) (*recordingConn, *[]Read) {
	var got []Read
	c := &recordingConn{}
	cfg := &Config{Codec: codec, Handler: handlers.Echo{}, Tracer: TracerFunc(func(r *Read) {
		cp := *r
		cp.Sizes = slices.Clone(r.Sizes)
		got = append(got, cp)
	})}
	c.Init(&Shared{Config: cfg, Counters: &Counters{}, Log: &zerolog.Logger{}})
	return c, &got
}

func TestServeRecordsFrames(t *testing.T) {
	c, got := traced(frame.Line{})
	var out []byte
	used := c.Serve(c, []byte("a\nbb\nccc"), &out)
	c.read.In, c.read.Carried = 8, 8-used
	c.TraceRead(c, &c.read)
	want := Read{Conn: c.ID(), In: 8, Frames: 2, Sizes: []int{2, 3}, Carried: 3, used: 5}
	if len(*got) != 1 || fmt.Sprint((*got)[0]) != fmt.Sprint(want) {
		t.Fatalf("traced %+v, want [%+v]", *got, want)
	}
	if c.read.Frames != 0 || len(c.read.Sizes) != 0 || c.read.In != 0 {
		t.Errorf("TraceRead left %+v, want it empty for the next read", c.read)
	}
}

func TestTraceReadSkipsEmptyReads(t *testing.T) {
	c, got := traced(frame.Line{})
	c.TraceRead(c, &c.read) // a wake-up that read nothing
	if len(*got) != 0 {
		t.Fatalf("traced %+v for a read that did nothing", *got)
	}
}

func TestTracedSizesAreCapped(t *testing.T) {
	c, got := traced(frame.Line{})
	var out []byte
	in := []byte(strings.Repeat("x\n", MaxTracedSizes+8))
	c.Serve(c, in, &out)
	c.read.In = len(in)
	c.TraceRead(c, &c.read)
	r := (*got)[0]
	if r.Frames != MaxTracedSizes+8 || len(r.Sizes) != MaxTracedSizes || r.Used() != len(in) {
		t.Errorf("frames %d, sizes %d, used %d; want %d, %d, %d", r.Frames, len(r.Sizes), r.Used(), MaxTracedSizes+8, MaxTracedSizes, len(in))
	}
}

func TestServeWithoutRecorder(t *testing.T) {
	// A model's connection that is not a Recorder is served as usual.
	s, _ := newSession(frame.Line{}, handlers.Echo{})
	s.sh.Config.Tracer = TracerFunc(func(*Read) { t.Error("traced") })
	var out []byte
	if used := s.Serve(s, []byte("a\n"), &out); used != 2 || string(out) != "a\n" {
		t.Errorf("Serve = %d, %q", used, out)
	}
}

// BenchmarkServeTraced is BenchmarkServe with a tracer that drops each
// read: what a traced read costs before any logging or rate limit.
func BenchmarkServeTraced(b *testing.B) {
	c := &recordingConn{}
	cfg := &Config{Codec: frame.Line{}, Handler: handlers.Echo{}, Tracer: TracerFunc(func(*Read) {})}
	c.Init(&Shared{Config: cfg, Counters: &Counters{}, Log: &zerolog.Logger{}})
	var in []byte
	for range 16 {
		in, _ = frame.Line{}.Append(in, []byte(strings.Repeat("e", 64)))
	}
	out := make([]byte, 0, 2*len(in))
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		out = out[:0]
		c.Serve(c, in, &out)
		c.read.In = len(in)
		c.TraceRead(c, &c.read)
	}
}
