package conformance

import (
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"echoloop/bench/model"
	"echoloop/bench/servertest"
	"echoloop/eventloop/frame"
	"echoloop/eventloop/proxyproto"
	"echoloop/eventloop/session"
	"echoloop/handlers"
)

// traceChan is a Tracer that sends a copy of each read to a channel. A
// test that lets more than its capacity pile up fails rather than block the
// server.
type traceChan struct {
	t     *testing.T
	reads chan session.Read
}

func (tc traceChan) TraceRead(r *session.Read) {
	cp := *r
	cp.Sizes = slices.Clone(r.Sizes)
	select {
	case tc.reads <- cp:
	default:
		tc.t.Errorf("trace of %+v dropped: nobody reads the trace", cp)
	}
}

// startTraced starts a server of model m whose reads are traced into the
// returned channel.
func startTraced(t *testing.T, m string, codec frame.Codec) (model.Server, traceChan) {
	t.Helper()
	tc := traceChan{t: t, reads: make(chan session.Read, 16)}
	srv := servertest.Start(t, model.Options{Model: m, Config: session.Config{
		Codec: codec, Handler: handlers.Echo{}, Tracer: tc,
	}})
	return srv, tc
}

// traceWant is what a test expects of one read.
type traceWant struct {
	in, frames int
	sizes      []int
	carried    int
	out        int
	writes     int
	eof        bool
}

// next waits for the server's trace of its next read from conn (the
// server has read what the client sent) and checks it.
func (tc traceChan) next(t *testing.T, conn net.Conn, want traceWant) {
	t.Helper()
	tc.nextFrom(t, conn.LocalAddr().String(), want)
}

// nextFrom is next for a client whose address is remote.
func (tc traceChan) nextFrom(t *testing.T, remote string, want traceWant) {
	t.Helper()
	var r session.Read
	select {
	case r = <-tc.reads:
	case <-time.After(10 * time.Second):
		t.Fatalf("no trace of a read; want %+v", want)
	}
	got := traceWant{r.In, r.Frames, r.Sizes, r.Carried, r.Out, r.Writes, r.EOF}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("read traced as %+v, want %+v", got, want)
	}
	if r.Remote.String() != remote {
		t.Errorf("read traced from %v, want the client's %v", r.Remote, remote)
	}
}

// TestTraceSplitFrame sends a line in two writes, each only once the
// server has read the one before: the first read completes nothing and
// carries its bytes, the second completes the frame and answers it.
func TestTraceSplitFrame(t *testing.T) {
	eachModel(t, func(t *testing.T, m string) {
		srv, tc := startTraced(t, m, frame.Line{})
		conn := servertest.Dial(t, srv.Addr())
		mustWrite(t, conn, "hel")
		tc.next(t, conn, traceWant{in: 3, frames: 0, sizes: []int{}, carried: 3})
		mustWrite(t, conn, "lo\n")
		tc.next(t, conn, traceWant{in: 3, frames: 1, sizes: []int{6}, carried: 0, out: 6, writes: 1})
		mustReply(t, conn, "hello\n")
	})
}

// TestTraceFramesInOneWrite sends three frames and the start of a fourth
// in one write: one read completes three, answered in one write, and
// carries the fourth's bytes; the next completes it.
func TestTraceFramesInOneWrite(t *testing.T) {
	eachModel(t, func(t *testing.T, m string) {
		srv, tc := startTraced(t, m, frame.Line{})
		conn := servertest.Dial(t, srv.Addr())
		mustWrite(t, conn, "a\nbb\nccc\ndd")
		tc.next(t, conn, traceWant{in: 11, frames: 3, sizes: []int{2, 3, 4}, carried: 2, out: 9, writes: 1})
		mustReply(t, conn, "a\nbb\nccc\n")
		mustWrite(t, conn, "\n")
		tc.next(t, conn, traceWant{in: 1, frames: 1, sizes: []int{3}, out: 3, writes: 1})
		mustReply(t, conn, "dd\n")
	})
}

// TestTraceFixedCarriesRest is the textbook's 17-byte "Greetings, server"
// to a server reading 16-byte frames: one frame, one byte carried.
func TestTraceFixedCarriesRest(t *testing.T) {
	eachModel(t, func(t *testing.T, m string) {
		srv, tc := startTraced(t, m, frame.Fixed{Size: 16})
		conn := servertest.Dial(t, srv.Addr())
		mustWrite(t, conn, "Greetings, server")
		tc.next(t, conn, traceWant{in: 17, frames: 1, sizes: []int{16}, carried: 1, out: 16, writes: 1})
		mustReply(t, conn, "Greetings, serve")
	})
}

// TestTraceEOF: a client that sends a frame and the start of another and
// then shuts down its sending side shows as a read that completes the
// frame, then a read that finds the EOF with the partial frame's bytes
// still carried.
func TestTraceEOF(t *testing.T) {
	eachModel(t, func(t *testing.T, m string) {
		srv, tc := startTraced(t, m, frame.Line{})
		conn := servertest.Dial(t, srv.Addr())
		mustWrite(t, conn, "hello\nwor")
		tc.next(t, conn, traceWant{in: 9, frames: 1, sizes: []int{6}, carried: 3, out: 6, writes: 1})
		if err := conn.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		tc.next(t, conn, traceWant{sizes: []int{}, carried: 3, eof: true})
		mustReply(t, conn, "hello\n")
	})
}

// TestTraceAfterProxyHeader sends a PROXY header, a frame and the start of
// the next in one write: the trace shows the stream after the header (the
// header is the balancer's, not the client's), from the client's address
// in the header; the next read completes the frame.
func TestTraceAfterProxyHeader(t *testing.T) {
	const header = "PROXY TCP4 192.0.2.7 127.0.0.1 40000 7007\r\n"
	eachModel(t, func(t *testing.T, m string) {
		tc := traceChan{t: t, reads: make(chan session.Read, 16)}
		srv := startProxy(t, m, proxyproto.V1, "127.0.0.1", session.Config{
			Codec: frame.Line{}, Handler: handlers.Echo{}, Tracer: tc,
		})
		conn := servertest.Dial(t, srv.Addr())
		client := "192.0.2.7:40000"
		mustWrite(t, conn, header+"hello\nwo")
		tc.nextFrom(t, client, traceWant{in: 8, frames: 1, sizes: []int{6}, carried: 2, out: 6, writes: 1})
		mustReply(t, conn, "hello\n")
		mustWrite(t, conn, "rld\n")
		tc.nextFrom(t, client, traceWant{in: 4, frames: 1, sizes: []int{6}, out: 6, writes: 1})
		mustReply(t, conn, "world\n")
	})
}

func mustWrite(t *testing.T, conn net.Conn, s string) {
	t.Helper()
	if _, err := conn.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
}

func mustReply(t *testing.T, conn net.Conn, want string) {
	t.Helper()
	got, err := servertest.ReadFull(conn, len(want))
	if err != nil || string(got) != want {
		t.Fatalf("reply %q, %v; want %q", got, err, want)
	}
}
