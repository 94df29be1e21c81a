package conformance

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"echoloop/bench/model"
	"echoloop/bench/servertest"
	"echoloop/eventloop/frame"
	"echoloop/eventloop/session"
	"echoloop/handlers"
)

// TestTextbookClients runs the two classic socket-tutorial clients
// unchanged: one send and one recv against a raw ack server, and a 16-byte
// sendall/recvall exchange against a fixed:16 server.
func TestTextbookClients(t *testing.T) {
	eachModel(t, func(t *testing.T, m string) {
		t.Run("raw ack", func(t *testing.T) {
			srv := start(t, m, frame.Raw{}, handlers.NewAck(""))
			conn := servertest.Dial(t, srv.Addr())
			if _, err := conn.Write([]byte("Hello, server!")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 1024)
			_ = conn.SetReadDeadline(time.Now().Add(servertest.IOTimeout))
			n, err := conn.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(buf[:n]); got != "Message received!" {
				t.Fatalf("recv(1024) = %q, want %q", got, "Message received!")
			}
		})
		t.Run("fixed:16 ack", func(t *testing.T) {
			srv := start(t, m, frame.Fixed{Size: 16}, handlers.NewAck("Goodbye, client!"))
			conn := servertest.Dial(t, srv.Addr())
			if _, err := conn.Write([]byte("Hello, server!!!")); err != nil {
				t.Fatal(err)
			}
			got, err := servertest.ReadFull(conn, 16)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != "Goodbye, client!" {
				t.Fatalf("recvall(16) = %q, want %q", got, "Goodbye, client!")
			}
		})
	})
}

// TestAckReplyMustFitFraming checks that a server refuses to start with an
// ack reply its framing cannot carry, rather than failing at the first frame.
func TestAckReplyMustFitFraming(t *testing.T) {
	for _, m := range model.Names() {
		_, err := model.New(model.Options{Model: m, Config: session.Config{
			Codec: frame.Fixed{Size: 16}, Handler: handlers.NewAck("short"),
		}})
		if !errors.Is(err, frame.ErrPayload) {
			t.Errorf("%s: New with a 5-byte ack under fixed:16 = %v, want ErrPayload", m, err)
		}
	}
}

// TestConnectionLimit fills the server to MaxConns: the next connection is
// closed at once, counted and logged, and a slot freed is usable again.
func TestConnectionLimit(t *testing.T) {
	eachModel(t, func(t *testing.T, m string) {
		srv, logs := startLogged(t, m, session.Config{MaxConns: 2})
		a := servertest.NewClient(servertest.Dial(t, srv.Addr()), frame.Line{})
		b := servertest.NewClient(servertest.Dial(t, srv.Addr()), frame.Line{})
		roundTrip(t, a, []byte("a"))
		roundTrip(t, b, []byte("b"))

		over := servertest.Dial(t, srv.Addr())
		if err := servertest.WaitClosed(over); !errors.Is(err, io.EOF) && !isReset(err) {
			t.Fatalf("connection over the limit: %v, want closed", err)
		}
		servertest.Eventually(t, "the refusal to be counted", func() bool {
			return srv.Stats().Closes[session.ConnLimit] == 1
		})
		if !logs.Contains("connection refused: at the connection limit", `"max_conns":2`) {
			t.Errorf("no refusal warning logged; logs:\n%s", logs)
		}
		roundTrip(t, a, []byte("still served"))

		a.Conn.Close()
		servertest.Eventually(t, "the freed slot", func() bool { return srv.Stats().ConnsOpen == 1 })
		c := servertest.NewClient(servertest.Dial(t, srv.Addr()), frame.Line{})
		roundTrip(t, c, []byte("c"))
	})
}

// TestShutdown checks that Shutdown closes idle connections with reason
// "server stopping" and makes ListenAndServe return.
func TestShutdown(t *testing.T) {
	eachModel(t, func(t *testing.T, m string) {
		srv := start(t, m, frame.Line{}, handlers.Echo{})
		cl := servertest.NewClient(servertest.Dial(t, srv.Addr()), frame.Line{})
		roundTrip(t, cl, []byte("hello"))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Fatalf("shutdown: %v", err)
		}
		if err := servertest.WaitClosed(cl.Conn); !errors.Is(err, io.EOF) && !isReset(err) {
			t.Fatalf("after shutdown the client read %v, want the connection closed", err)
		}
		if n := srv.Stats().Closes[session.ServerStopping]; n != 1 {
			t.Errorf("closes for server stopping = %d, want 1", n)
		}
	})
}

// TestConnectDuringShutdown checks that both models stop accepting when the
// drain begins: a connection that arrives while the server drains is
// refused, and only the connection that was there is counted.
func TestConnectDuringShutdown(t *testing.T) {
	eachModel(t, func(t *testing.T, m string) {
		srv := start(t, m, frame.Line{}, handlers.Echo{})
		hold := servertest.NewClient(servertest.Dial(t, srv.Addr()), frame.Line{})
		roundTrip(t, hold, []byte("hello"))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stopped := make(chan error, 1)
		go func() { stopped <- srv.Shutdown(ctx) }()
		// hold's close lingers until hold closes too: the drain is on.
		if err := servertest.WaitClosed(hold.Conn); !errors.Is(err, io.EOF) {
			t.Fatalf("held connection: read %v, want EOF", err)
		}
		// The listener closed when the drain began: a new connection is
		// refused by the kernel, not accepted only to be closed.
		if late, err := net.Dial("tcp", srv.Addr().String()); err == nil {
			late.Close()
			t.Fatal("connecting during the drain succeeded, want connection refused")
		} else if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("connecting during the drain: %v, want connection refused", err)
		}
		hold.Conn.Close()
		if err := <-stopped; err != nil {
			t.Fatalf("shutdown: %v", err)
		}
		st := srv.Stats()
		if st.Closes[session.ServerStopping] != 1 || st.ConnsTotal != 1 {
			t.Errorf("conns total %d, closes %v: want 1 accepted, 1 closed for shutdown", st.ConnsTotal, st.Closes)
		}
	})
}

// TestHandlerAPI exercises what later handlers rely on, on both models: a
// greeting from OpenConn, replies sent later from another goroutine,
// writes to other connections (broadcast), CloseConn, a handler-requested
// close, and a reply the framing cannot carry.
func TestHandlerAPI(t *testing.T) {
	eachModel(t, func(t *testing.T, m string) {
		h := newTestHandler()
		srv := start(t, m, frame.Line{}, h)
		a := servertest.NewClient(servertest.Dial(t, srv.Addr()), frame.Line{})
		b := servertest.NewClient(servertest.Dial(t, srv.Addr()), frame.Line{})
		for _, cl := range []*servertest.Client{a, b} {
			if got := recv(t, cl); got != "welcome" {
				t.Fatalf("greeting = %q, want welcome", got)
			}
		}

		// A reply produced later, on another goroutine.
		if err := a.Send([]byte("later hi")); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, a); got != "hi" {
			t.Fatalf("offloaded reply = %q, want hi", got)
		}

		// A write to every other connection.
		if err := a.Send([]byte("all news")); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, b); got != "news" {
			t.Fatalf("broadcast reached b as %q, want news", got)
		}

		// The handler closes the connection after its reply.
		if err := b.Send([]byte("bye")); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, b); got != "goodbye" {
			t.Fatalf("reply before close = %q, want goodbye", got)
		}
		if _, err := b.Recv(); !errors.Is(err, io.EOF) && !isReset(err) {
			t.Fatalf("after bye: %v, want closed", err)
		}
		servertest.Eventually(t, "CloseConn for b", func() bool { return h.closedCount() == 1 })

		// A reply with a newline cannot be a line frame.
		if err := a.Send([]byte("bad")); err != nil {
			t.Fatal(err)
		}
		if err := servertest.WaitClosed(a.Conn); !errors.Is(err, io.EOF) && !isReset(err) {
			t.Fatalf("after a bad reply: %v, want closed", err)
		}
		servertest.Eventually(t, "both closes counted", func() bool {
			st := srv.Stats()
			return st.Closes[session.HandlerClosed] == 1 && st.Closes[session.BadReply] == 1
		})
	})
}

func recv(t *testing.T, cl *servertest.Client) string {
	t.Helper()
	p, err := cl.Recv()
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	return string(p)
}

// testHandler is a small chat-like handler built only on the public API.
type testHandler struct {
	mu     sync.Mutex
	conns  map[uint64]handlers.AsyncConn
	closed int
}

func newTestHandler() *testHandler { return &testHandler{conns: map[uint64]handlers.AsyncConn{}} }

func (h *testHandler) OpenConn(c handlers.Conn) {
	h.mu.Lock()
	h.conns[c.ID()] = c.Async()
	h.mu.Unlock()
	_ = c.Reply([]byte("welcome"))
}

func (h *testHandler) CloseConn(c handlers.Conn) {
	h.mu.Lock()
	delete(h.conns, c.ID())
	h.closed++
	h.mu.Unlock()
	if err := c.Reply([]byte("too late")); !errors.Is(err, handlers.ErrClosed) {
		panic("Reply in CloseConn did not return ErrClosed")
	}
}

func (h *testHandler) closedCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closed
}

func (h *testHandler) ServeFrame(c handlers.Conn, f []byte) {
	switch {
	case bytes.HasPrefix(f, []byte("later ")):
		msg, ac := bytes.Clone(f[len("later "):]), c.Async()
		go func() { _ = ac.Send(msg) }() // f dies when ServeFrame returns
	case bytes.HasPrefix(f, []byte("all ")):
		h.mu.Lock()
		for id, ac := range h.conns {
			if id != c.ID() {
				_ = ac.Send(f[len("all "):])
			}
		}
		h.mu.Unlock()
	case string(f) == "bye":
		_ = c.Reply([]byte("goodbye"))
		c.Close()
	case string(f) == "bad":
		if err := c.Reply([]byte("two\nlines")); !errors.Is(err, frame.ErrPayload) {
			panic("bad reply was accepted")
		}
	}
}
