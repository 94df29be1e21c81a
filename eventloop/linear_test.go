package eventloop

import (
	"bytes"
	"net"
	"testing"

	"github.com/panjf2000/gnet/v2"

	"echoloop/eventloop/frame"
	"echoloop/eventloop/session"
)

// fakeConn is the part of a gnet.Conn that OnOpen, OnTraffic and OnClose
// use, with gnet v2.10.0's inbound buffering: each callback sees its read
// in the loop's buffer; bytes left unread move to the connection's ring
// (a copy); Next while the ring holds some copies the ring and the read
// into a new slice. It counts every byte copied, so a test can tell the
// server's cost of buffering apart from the bytes it was given.
type fakeConn struct {
	gnet.Conn // nil: any other method panics

	ctx     any
	ring    []byte // what gnet keeps between callbacks
	read    []byte // this callback's read
	copied  int    // bytes copied by Next and into the ring
	out     int    // reply bytes written
	pending int    // what OutboundBuffered reports: replies the peer has not taken
}

func (f *fakeConn) Context() any                  { return f.ctx }
func (f *fakeConn) SetContext(ctx any)            { f.ctx = ctx }
func (f *fakeConn) EventLoop() gnet.EventLoop     { return nil }
func (f *fakeConn) RemoteAddr() net.Addr          { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (f *fakeConn) InboundBuffered() int          { return len(f.ring) + len(f.read) }
func (f *fakeConn) OutboundBuffered() int         { return f.pending }
func (f *fakeConn) Wake(gnet.AsyncCallback) error { return nil }
func (f *fakeConn) Fd() int                       { return -1 }

func (f *fakeConn) Write(p []byte) (int, error) {
	f.out += len(p)
	return len(p), nil
}

// Next is gnet's: the read itself while the ring is empty, else a copy of
// the ring and the read.
func (f *fakeConn) Next(n int) ([]byte, error) {
	total := len(f.ring) + len(f.read)
	if n <= 0 || n > total {
		n = total
	}
	if len(f.ring) == 0 {
		buf := f.read[:n]
		f.read = f.read[n:]
		return buf, nil
	}
	buf := make([]byte, n)
	fromRing := copy(buf, f.ring)
	copy(buf[fromRing:], f.read)
	f.copied += n
	f.ring = f.ring[fromRing:]
	f.read = f.read[n-fromRing:]
	return buf, nil
}

// deliver runs one read of p through the handler as gnet does.
func (f *fakeConn) deliver(h *handler, p []byte) gnet.Action {
	f.read = p
	action := h.OnTraffic(f)
	f.ring = append(f.ring, f.read...)
	f.copied += len(f.read)
	f.read = nil
	return action
}

// TestPartialFrameCostIsLinear feeds one 1 MiB frame of every framing in
// 1-byte, 1,000-byte and 64 KiB reads and counts the bytes copied on the
// way (by the server into its buffers, and by gnet's Next and ring): at
// most a small constant times the frame, however it is cut. Before partial
// frames had a buffer of their own, a line arriving a byte at a time was
// re-peeked (a copy of everything buffered) on every read.
func TestPartialFrameCostIsLinear(t *testing.T) {
	const size = 1 << 20
	payload := bytes.Repeat([]byte{'a'}, size)
	codecs := []frame.Codec{
		frame.Line{Max: size},
		frame.Length{Max: size},
		frame.Fixed{Size: size},
		frame.Raw{},
	}
	for _, codec := range codecs {
		wire, err := codec.Append(nil, payload)
		if err != nil {
			t.Fatal(err)
		}
		for _, piece := range []int{1, 1000, 64 << 10} {
			t.Run(codec.String()+"/"+itoa(piece), func(t *testing.T) {
				counted := &scanCounter{Codec: codec}
				var serverCodec frame.Codec = counted
				if _, ok := codec.(frame.Resumer); !ok {
					serverCodec = codec // finds frame ends without a scan
				}
				srv, err := New(Options{Config: session.Config{Codec: serverCodec, Addr: "127.0.0.1:0"}})
				if err != nil {
					t.Fatal(err)
				}
				h := &handler{srv: srv}
				f := &fakeConn{}
				if _, action := h.OnOpen(f); action != gnet.None {
					t.Fatalf("OnOpen: action %v", action)
				}
				l := f.ctx.(*conn).loop
				limit := 4 * len(wire)
				for off := 0; off < len(wire); off += piece {
					if action := f.deliver(h, wire[off:min(off+piece, len(wire))]); action != gnet.None {
						t.Fatalf("read at %d: action %v", off, action)
					}
					if cost := f.copied + int(l.copied); cost > limit {
						t.Fatalf("after %d of %d bytes, %d bytes copied: over %d (4x the frame)", off+piece, len(wire), cost, limit)
					}
					if counted.scanned > limit {
						t.Fatalf("after %d of %d bytes, %d bytes scanned for a frame end: over %d (4x the frame)", off+piece, len(wire), counted.scanned, limit)
					}
				}
				if f.out != len(wire) {
					t.Fatalf("echoed %d bytes, want %d", f.out, len(wire))
				}
				t.Logf("%d bytes copied and %d scanned for a %d-byte frame", f.copied+int(l.copied), counted.scanned, len(wire))
			})
		}
	}
}

func itoa(n int) string {
	switch {
	case n >= 1<<10 && n%(1<<10) == 0:
		return itoa(n>>10) + "KiB"
	case n < 10:
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

// scanCounter counts the bytes a scanning codec (a frame.Resumer) looks at
// to find frame ends; the other codecs find them in constant time.
type scanCounter struct {
	frame.Codec
	scanned int
}

func (s *scanCounter) Decode(buf []byte) ([]byte, int, error) { return s.DecodeFrom(buf, 0) }

func (s *scanCounter) DecodeFrom(buf []byte, scanned int) ([]byte, int, error) {
	r := s.Codec.(frame.Resumer)
	payload, n, err := r.DecodeFrom(buf, scanned)
	if n > 0 {
		s.scanned += n - scanned
	} else {
		s.scanned += min(len(buf), r.MaxPayload()+1) - scanned
	}
	return payload, n, err
}

// TestFrameStartedWhilePausedTimesOut: a partial frame that begins while
// the connection is paused (its peer not reading) must carry its start time
// into the time after the pause, or the frame timeout never sees it.
func TestFrameStartedWhilePausedTimesOut(t *testing.T) {
	srv, err := New(Options{Config: session.Config{Addr: "127.0.0.1:0", MaxPending: 1 << 10}})
	if err != nil {
		t.Fatal(err)
	}
	h := &handler{srv: srv}
	f := &fakeConn{}
	h.OnOpen(f)
	c := f.ctx.(*conn)
	f.pending = 2 << 10 // the peer reads nothing: the next reply pauses c
	f.deliver(h, []byte("whole\n"))
	if c.ext == nil || !c.ext.paused {
		t.Fatal("not paused with output over max-pending")
	}
	f.deliver(h, []byte("part")) // kept while paused: a frame has begun
	f.pending = 0
	c.loop.checkBusy() // resumes c
	f.deliver(h, []byte("ial"))
	if c.ext == nil || c.ext.frameStart == 0 {
		t.Fatalf("partial frame %q has no start time: the frame timeout cannot close it", c.ext.in)
	}
}
