package session

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"unsafe"

	"github.com/rs/zerolog"

	"echoloop/eventloop/frame"
	"echoloop/handlers"
)

// testConn is the model's side of a session for tests: no socket.
type testConn struct{ Session }

func (*testConn) RemoteAddr() net.Addr      { return nil }
func (*testConn) Async() handlers.AsyncConn { return nil }

func newSession(codec frame.Codec, h handlers.Handler) (*testConn, *Counters) {
	counters := &Counters{}
	c := &testConn{}
	c.Init(&Shared{Config: &Config{Codec: codec, Handler: h}, Counters: counters, Log: &zerolog.Logger{}})
	return c, counters
}

func TestSessionSize(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) == 8 && unsafe.Sizeof(Session{}) != 48 {
		t.Errorf("Session is %d bytes, documented as 48", unsafe.Sizeof(Session{}))
	}
}

func TestServe(t *testing.T) {
	tests := []struct {
		name     string
		codec    frame.Codec
		in       string
		out      string
		used     int
		need     int
		closing  Reason
		framesIn int64
	}{
		{"two lines and a partial", frame.Line{}, "a\nbc\nde", "a\nbc\n", 5, 3, Open, 2},
		{"nothing complete", frame.Line{}, "abc", "", 0, 4, Open, 0},
		{"length partial body", frame.Length{}, "\x00\x00\x00\x05ab", "", 0, 9, Open, 0},
		{"length zero frame", frame.Length{}, "\x00\x00\x00\x00", "\x00\x00\x00\x00", 4, 4, Open, 1},
		{"frames before a too large one", frame.Length{Max: 4},
			"\x00\x00\x00\x01a\x00\x00\x00\x09", "\x00\x00\x00\x01a", 5, 0, FrameTooLarge, 1},
		{"line over the cap", frame.Line{Max: 3}, "ok\nlong", "ok\n", 3, 0, FrameTooLarge, 1},
		{"fixed with rest", frame.Fixed{Size: 2}, "abcde", "abcd", 4, 2, Open, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, counters := newSession(tt.codec, handlers.Echo{})
			var out []byte
			used := s.Serve(s, []byte(tt.in), &out)
			if string(out) != tt.out || used != tt.used {
				t.Errorf("Serve = (%q, %d), want (%q, %d)", out, used, tt.out, tt.used)
			}
			if s.Need() != tt.need {
				t.Errorf("Need = %d, want %d", s.Need(), tt.need)
			}
			if s.Closing() != tt.closing {
				t.Errorf("Closing = %v, want %v", s.Closing(), tt.closing)
			}
			st := counters.Snapshot()
			if st.FramesIn != tt.framesIn || st.FramesOut != tt.framesIn {
				t.Errorf("frames in/out = %d/%d, want %d each", st.FramesIn, st.FramesOut, tt.framesIn)
			}
		})
	}
}

func TestBadReplyClosesAndStopsServing(t *testing.T) {
	served := 0
	h := handlers.HandlerFunc(func(c handlers.Conn, f []byte) {
		served++
		if err := c.Reply([]byte("x\ny")); !errors.Is(err, frame.ErrPayload) {
			t.Errorf("Reply err = %v, want ErrPayload", err)
		}
		if err := c.Reply(f); !errors.Is(err, handlers.ErrClosed) {
			t.Errorf("Reply after a bad reply = %v, want ErrClosed", err)
		}
	})
	s, _ := newSession(frame.Line{}, h)
	var out []byte
	used := s.Serve(s, []byte("a\nb\n"), &out)
	if served != 1 || len(out) != 0 || used != 2 || s.Closing() != BadReply {
		t.Fatalf("served %d, out %q, used %d, closing %v; want 1, \"\", 2, bad reply", served, out, used, s.Closing())
	}
}

func TestOpenAtLimit(t *testing.T) {
	counters := &Counters{}
	sh := &Shared{Config: &Config{Codec: frame.Line{}, Handler: handlers.Echo{}, MaxConns: 1}, Counters: counters, Log: &zerolog.Logger{}}
	var a, b testConn
	a.Init(sh)
	b.Init(sh)
	var out []byte
	a.Open(&a, &out)
	b.Open(&b, &out)
	if a.Closing() != Open || b.Closing() != ConnLimit {
		t.Fatalf("closing = %v, %v; want open, connection limit", a.Closing(), b.Closing())
	}
	a.Closed(&a, nil, io.EOF, 0)
	b.Closed(&b, nil, nil, 0)
	st := counters.Snapshot()
	if st.ConnsOpen != 0 || st.ConnsTotal != 2 || st.Closes[PeerClosed] != 1 || st.Closes[ConnLimit] != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestReasonFor(t *testing.T) {
	tests := []struct {
		err  error
		want Reason
	}{
		{io.EOF, PeerClosed},
		{os.NewSyscallError("read", io.EOF), PeerClosed},
		{os.NewSyscallError("read", syscall.ECONNRESET), Reset},
		{&net.OpError{Op: "write", Err: os.NewSyscallError("write", syscall.EPIPE)}, Reset},
		{net.ErrClosed, ServerStopping},
		{os.NewSyscallError("read", syscall.EIO), IOError},
	}
	for _, tt := range tests {
		if got := ReasonFor(tt.err); got != tt.want {
			t.Errorf("ReasonFor(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
	for _, r := range Reasons() {
		if txt, _ := r.MarshalText(); string(txt) != r.String() || r.String() == "" {
			t.Errorf("reason %d has text %q", r, txt)
		}
	}
}

func TestDefaultMaxConns(t *testing.T) {
	for _, tt := range []struct {
		limit uint64
		want  int
	}{{20000, 19744}, {1024, 768}, {64, 48}, {1, 1}, {0, 1}} {
		if got := DefaultMaxConns(tt.limit); got != tt.want {
			t.Errorf("DefaultMaxConns(%d) = %d, want %d", tt.limit, got, tt.want)
		}
	}
}

func TestPrepare(t *testing.T) {
	var c Config
	if err := c.Prepare(); err != nil {
		t.Fatal(err)
	}
	if c.Addr != DefaultAddr || c.Codec.String() != "line" || c.MaxConns != DefaultMaxConns(c.FDLimit.Cur) {
		t.Errorf("defaults: %+v", c)
	}
	over := Config{MaxConns: int(c.FDLimit.Cur)}
	if err := over.Prepare(); !errors.Is(err, ErrMaxConns) {
		t.Errorf("MaxConns at the fd limit: %v, want ErrMaxConns", err)
	}
	bad := Config{Codec: frame.Fixed{Size: 4}, Handler: handlers.NewAck("toolong")}
	if err := bad.Prepare(); !errors.Is(err, frame.ErrPayload) {
		t.Errorf("ack that does not fit: %v, want ErrPayload", err)
	}
}
