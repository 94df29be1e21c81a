//go:build !poll_opt

package eventloop

import (
	"bufio"
	"net"
	"testing"

	"echoloop/eventloop/frame"
	"echoloop/eventloop/session"
)

// TestReadSwitchFound fails when the pinned gnet no longer has its poller's
// descriptor where findReadSwitch looks: the loops would then go on reading
// peers that do not read (see readSwitch), which only benchmarks and the
// slow-reader conformance test would show.
func TestReadSwitchFound(t *testing.T) {
	s := serve(t, Options{Loops: 2, Config: session.Config{Addr: "127.0.0.1:0", Codec: frame.Line{}}})
	// A loop's state is made with its first connection; gnet gives the
	// second connection to the other loop.
	for range 2 {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("hi\n")); err != nil {
			t.Fatal(err)
		}
		if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	loops := s.loopStates()
	if len(loops) != 2 {
		t.Fatalf("%d loops have connections; want 2", len(loops))
	}
	for i, l := range loops {
		if !l.canStop || l.pauseAbove != 0 || l.resumeAt != 0 {
			t.Errorf("loop %d: read switch found %v, pause above %d, resume at %d; want true, 0, 0", i, l.canStop, l.pauseAbove, l.resumeAt)
		}
	}
}
