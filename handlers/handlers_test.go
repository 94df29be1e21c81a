package handlers_test

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"echoloop/eventloop/frame"
	"echoloop/handlers"
)

// recorder is a handlers.Conn that keeps the replies, for testing handlers
// without a socket.
type recorder struct {
	replies []string
	closed  bool
}

func (r *recorder) ID() uint64                         { return 1 }
func (r *recorder) RemoteAddr() net.Addr               { return nil }
func (r *recorder) Close()                             { r.closed = true }
func (r *recorder) Pause()                             {}
func (r *recorder) Async() handlers.AsyncConn          { return nil }
func (r *recorder) Reply(p []byte) error               { r.replies = append(r.replies, string(p)); return nil }
func (r *recorder) serve(h handlers.Handler, f string) { h.ServeFrame(r, []byte(f)) }

func TestBuiltins(t *testing.T) {
	tests := []struct {
		name string
		cfg  handlers.Config
		in   []string
		want []string
	}{
		{"echo", handlers.Config{}, []string{"a", "", "b"}, []string{"a", "", "b"}},
		{"ack", handlers.Config{}, []string{"a", "b"}, []string{"Message received!", "Message received!"}},
		{"ack", handlers.Config{Reply: "Goodbye, client!"}, []string{"x"}, []string{"Goodbye, client!"}},
		{"discard", handlers.Config{}, []string{"a", "b"}, nil},
	}
	for _, tt := range tests {
		h, err := handlers.New(tt.name, tt.cfg)
		if err != nil {
			t.Fatal(err)
		}
		r := &recorder{}
		for _, f := range tt.in {
			r.serve(h, f)
		}
		if fmt.Sprint(r.replies) != fmt.Sprint(tt.want) {
			t.Errorf("%s: replies %q, want %q", tt.name, r.replies, tt.want)
		}
	}
}

func TestUnknownHandler(t *testing.T) {
	_, err := handlers.New("chat", handlers.Config{})
	if !errors.Is(err, handlers.ErrUnknown) {
		t.Fatalf("err = %v, want ErrUnknown", err)
	}
	if !strings.Contains(err.Error(), "known: ack, block, broadcast, discard, echo, work") {
		t.Errorf("error %q does not list the known handlers", err)
	}
}

func TestAckCheckFraming(t *testing.T) {
	if err := handlers.NewAck("Goodbye, client!").CheckFraming(frame.Fixed{Size: 16}); err != nil {
		t.Errorf("16-byte reply under fixed:16: %v", err)
	}
	if err := handlers.NewAck("").CheckFraming(frame.Fixed{Size: 16}); !errors.Is(err, frame.ErrPayload) {
		t.Errorf("17-byte default reply under fixed:16: %v, want ErrPayload", err)
	}
	if err := handlers.NewAck("a\nb").CheckFraming(frame.Line{}); !errors.Is(err, frame.ErrPayload) {
		t.Errorf("reply with a newline under line: %v, want ErrPayload", err)
	}
}

// A handler is any function of a Conn and a frame: this one answers in upper
// case. The frame is only valid during the call; Reply copies it.
func ExampleHandlerFunc() {
	upper := handlers.HandlerFunc(func(c handlers.Conn, f []byte) {
		_ = c.Reply([]byte(strings.ToUpper(string(f))))
	})
	r := &recorder{}
	r.serve(upper, "hello")
	fmt.Println(r.replies)
	// Output: [HELLO]
}

func ExampleNew() {
	h, err := handlers.New("ack", handlers.Config{Reply: "got it"})
	if err != nil {
		panic(err)
	}
	r := &recorder{}
	r.serve(h, "anything")
	fmt.Println(r.replies)
	_, err = handlers.New("nope", handlers.Config{})
	fmt.Println(err)
	// Output:
	// [got it]
	// handlers: unknown handler "nope" (known: ack, block, broadcast, discard, echo, work)
}
