package handlers_test

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"echoloop/bench/servertest"
	"echoloop/handlers"
)

// fakeConn is a connection of fakeServer: it keeps what reaches its peer,
// replies and sent frames alike, in the order they arrive, and honours
// Pause and Resume as a server does.
type fakeConn struct {
	id  uint64
	srv *fakeServer

	mu     sync.Mutex
	got    []string
	closed bool
	resume chan struct{} // a Resume, for serve to take
	paused bool          // set by Pause while serving; read by serve
	pauses int
}

func (c *fakeConn) ID() uint64                { return c.id }
func (c *fakeConn) RemoteAddr() net.Addr      { return nil }
func (c *fakeConn) Close()                    {}
func (c *fakeConn) Async() handlers.AsyncConn { return fakeAsync{c} }
func (c *fakeConn) Reply(p []byte) error      { return c.Send(p) }

func (c *fakeConn) Send(p []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return handlers.ErrClosed
	}
	c.got = append(c.got, string(p))
	c.srv.delivered.Done()
	return nil
}

func (c *fakeConn) Pause() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pauses++
	c.paused = true
}

// fakeAsync is a fakeConn's AsyncConn.
type fakeAsync struct{ *fakeConn }

// Close records the close where the peer would see it: after what came
// before it.
func (a fakeAsync) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.got = append(a.got, closeMark)
	return nil
}

// closeMark stands for AsyncConn.Close among a fakeConn's replies.
const closeMark = "<close>"

func (a fakeAsync) Resume() error {
	a.resume <- struct{}{}
	return nil
}

func (c *fakeConn) replies() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.got)
}

// fakeServer drives a handler the way both server models do: each
// connection's frames are served in order on its own goroutine, OpenConn
// first, and a paused connection is served no further until resumed.
type fakeServer struct {
	h         handlers.Handler
	conns     []*fakeConn
	delivered sync.WaitGroup // one Done per frame that reaches a peer
}

func newFakeServer(h handlers.Handler, n int) *fakeServer {
	s := &fakeServer{h: h}
	for i := range n {
		c := &fakeConn{id: uint64(i + 1), srv: s, resume: make(chan struct{}, 1)}
		s.conns = append(s.conns, c)
		if o, ok := h.(handlers.ConnObserver); ok {
			o.OpenConn(c)
		}
	}
	return s
}

// serve serves frames on c, waiting out every pause.
func (s *fakeServer) serve(c *fakeConn, frames []string) {
	for _, f := range frames {
		s.h.ServeFrame(c, []byte(f))
		c.mu.Lock()
		paused := c.paused
		c.paused = false
		c.mu.Unlock()
		if paused {
			<-c.resume
		}
	}
}

func (s *fakeServer) close(c *fakeConn) {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	if o, ok := s.h.(handlers.ConnObserver); ok {
		o.CloseConn(c)
	}
}

func TestBroadcastReachesEveryoneElse(t *testing.T) {
	for _, echoSelf := range []bool{false, true} {
		t.Run(fmt.Sprintf("echoSelf=%v", echoSelf), func(t *testing.T) {
			b := handlers.NewBroadcast(echoSelf)
			s := newFakeServer(b, 3)
			a, bc, c := s.conns[0], s.conns[1], s.conns[2]
			per := 2
			if echoSelf {
				per = 3
			}
			s.delivered.Add(2 * per)
			s.serve(a, []string{"a1"})
			s.serve(bc, []string{"b1"})
			s.delivered.Wait()
			want := map[*fakeConn][]string{a: {"b1"}, bc: {"a1"}, c: {"a1", "b1"}}
			if echoSelf {
				want = map[*fakeConn][]string{a: {"a1", "b1"}, bc: {"a1", "b1"}, c: {"a1", "b1"}}
			}
			for conn, w := range want {
				if got := conn.replies(); !slices.Equal(got, w) {
					t.Errorf("conn %d got %q, want %q", conn.id, got, w)
				}
			}

			s.close(c)
			if n := b.Peers(); n != 2 {
				t.Fatalf("%d peers after one left, want 2", n)
			}
			s.delivered.Add(per - 1)
			s.serve(a, []string{"a2"})
			s.delivered.Wait()
			if got := c.replies(); len(got) != 2 {
				t.Errorf("a closed connection got %q", got)
			}
		})
	}
}

// TestBroadcastOrder has every connection send at once from its own
// goroutine, as on the goroutine model: each receiver gets each sender's
// frames in order.
func TestBroadcastOrder(t *testing.T) {
	const conns, frames = 8, 200
	s := newFakeServer(handlers.NewBroadcast(false), conns)
	s.delivered.Add(conns * (conns - 1) * frames)
	var wg sync.WaitGroup
	for _, c := range s.conns {
		fs := make([]string, frames)
		for i := range fs {
			fs[i] = fmt.Sprintf("%d:%d", c.id, i)
		}
		wg.Go(func() { s.serve(c, fs) })
	}
	wg.Wait()
	s.delivered.Wait()
	for _, c := range s.conns {
		checkPerSender(t, c)
	}
}

// checkPerSender checks that c got frames/sender "sender:seq" from every
// other connection, each sender's in order.
func checkPerSender(t *testing.T, c *fakeConn) {
	t.Helper()
	next := map[uint64]int{}
	for _, f := range c.replies() {
		var from uint64
		var seq int
		if _, err := fmt.Sscanf(f, "%d:%d", &from, &seq); err != nil {
			t.Fatalf("conn %d got %q: %v", c.id, f, err)
		}
		if from == c.id {
			t.Fatalf("conn %d got its own frame %q", c.id, f)
		}
		if seq != next[from] {
			t.Fatalf("conn %d got %q from %d, want seq %d", c.id, f, from, next[from])
		}
		next[from]++
	}
}

// TestWorkOrderAndPause runs more frames than the pool's queue holds, from
// many connections at once, with a pool of 2: every reply comes back, each
// connection's in order, and connections are paused and resumed on the way.
func TestWorkOrderAndPause(t *testing.T) {
	const conns, frames = 10, 60 // 600 frames against a queue of 2 × 16
	w, err := handlers.NewWork(handlers.WorkOptions{Work: time.Microsecond, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	s := newFakeServer(w, conns)
	s.delivered.Add(conns * frames)
	var wg sync.WaitGroup
	for _, c := range s.conns {
		fs := make([]string, frames)
		for i := range fs {
			fs[i] = fmt.Sprintf("%d:%d", c.id, i)
		}
		wg.Go(func() { s.serve(c, fs) })
	}
	wg.Wait()
	s.delivered.Wait()
	pauses := 0
	for _, c := range s.conns {
		got := c.replies()
		for i, f := range got {
			if want := fmt.Sprintf("%d:%d", c.id, i); f != want {
				t.Fatalf("conn %d reply %d = %q, want %q", c.id, i, f, want)
			}
		}
		if len(got) != frames {
			t.Fatalf("conn %d got %d replies, want %d", c.id, len(got), frames)
		}
		pauses += c.pauses
	}
	if pauses == 0 {
		t.Error("no connection was paused, though the frames outnumbered the queue")
	}
}

// TestWorkClosedConn: a connection that closes with work queued gets no
// replies, and its place in the queue goes to the others.
func TestWorkClosedConn(t *testing.T) {
	w, err := handlers.NewWork(handlers.WorkOptions{Work: time.Microsecond, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	s := newFakeServer(w, 2)
	gone, stays := s.conns[0], s.conns[1]
	s.close(gone)
	w.ServeFrame(gone, []byte("lost"))
	s.delivered.Add(1)
	s.serve(stays, []string{"kept"})
	s.delivered.Wait()
	if got := gone.replies(); len(got) != 0 {
		t.Errorf("closed connection got %q", got)
	}
	if got := stays.replies(); !slices.Equal(got, []string{"kept"}) {
		t.Errorf("open connection got %q", got)
	}
}

func TestPing(t *testing.T) {
	w, _ := handlers.NewWork(handlers.WorkOptions{Work: time.Hour, Ping: true})
	b, _ := handlers.NewBlock(time.Hour, true)
	for _, h := range []handlers.Handler{w, b} {
		s := newFakeServer(h, 1)
		s.delivered.Add(1)
		s.serve(s.conns[0], []string{"ping 1"}) // an hour of work would time the test out
		s.delivered.Wait()
		if got := s.conns[0].replies(); !slices.Equal(got, []string{"ping 1"}) {
			t.Errorf("%T: ping got %q", h, got)
		}
	}
}

func TestBlockReplies(t *testing.T) {
	b, err := handlers.NewBlock(time.Microsecond, false)
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{}
	r.serve(b, "ping")
	r.serve(b, "two")
	if fmt.Sprint(r.replies) != "[ping two]" {
		t.Errorf("replies %q", r.replies)
	}
}

func TestWorkConfig(t *testing.T) {
	for _, cfg := range []handlers.Config{{Work: -time.Second}, {Workers: -1}} {
		if _, err := handlers.New("work", cfg); !errors.Is(err, handlers.ErrConfig) {
			t.Errorf("work %+v: %v, want ErrConfig", cfg, err)
		}
	}
	if _, err := handlers.New("block", handlers.Config{Work: -1}); !errors.Is(err, handlers.ErrConfig) {
		t.Errorf("block with negative work: %v, want ErrConfig", err)
	}
}

// TestWorkFinish: once finished (after a half-close), Work closes the connection at
// once when it owes nothing, and otherwise right after its last reply.
func TestWorkFinish(t *testing.T) {
	w, err := handlers.NewWork(handlers.WorkOptions{Work: time.Millisecond, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	s := newFakeServer(w, 2)
	idle, busy := s.conns[0], s.conns[1]
	w.Finish(idle.Async())
	if got := idle.replies(); !slices.Equal(got, []string{closeMark}) {
		t.Errorf("a connection owed nothing got %q, want the close at once", got)
	}

	frames := []string{"a", "b", "c", "d"}
	s.delivered.Add(len(frames))
	s.serve(busy, frames)
	w.Finish(busy.Async())
	s.delivered.Wait()
	want := append(slices.Clone(frames), closeMark)
	servertest.Eventually(t, "the close after the last reply", func() bool { return len(busy.replies()) == len(want) })
	if got := busy.replies(); !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
