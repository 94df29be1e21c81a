package conformance

import (
	"errors"
	"io"
	"net"
	"testing"

	"echoloop/bench/servertest"
	"echoloop/eventloop/frame"
	"echoloop/eventloop/session"
)

// dialFrom connects to addr from the local IP src (any 127.0.0.0/8 address
// works on loopback).
func dialFrom(t *testing.T, src string, addr net.Addr) *net.TCPConn {
	t.Helper()
	d := net.Dialer{Timeout: servertest.IOTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr.String())
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, src, err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// TestMaxConnsPerIP checks the per-address cap: with 2 allowed, a third
// connection from the same IP is refused (closed, counted as "too many from
// address") while another IP is still served, and a slot frees when one of
// the first two closes.
func TestMaxConnsPerIP(t *testing.T) {
	eachModel(t, func(t *testing.T, m string) {
		srv, logs := startLogged(t, m, session.Config{MaxConnsPerIP: 2})
		a := servertest.NewClient(dialFrom(t, "127.0.0.1", srv.Addr()), frame.Line{})
		b := servertest.NewClient(dialFrom(t, "127.0.0.1", srv.Addr()), frame.Line{})
		roundTrip(t, a, []byte("a"))
		roundTrip(t, b, []byte("b"))

		third := dialFrom(t, "127.0.0.1", srv.Addr())
		if err := servertest.WaitClosed(third); !errors.Is(err, io.EOF) && !isReset(err) {
			t.Fatalf("third connection from one IP: read %v, want it closed", err)
		}
		other := servertest.NewClient(dialFrom(t, "127.0.0.2", srv.Addr()), frame.Line{})
		roundTrip(t, other, []byte("other address"))
		roundTrip(t, a, []byte("a still served"))

		b.Conn.Close()
		servertest.Eventually(t, "the closed connection to free its slot", func() bool {
			return srv.Stats().Closes[session.PeerClosed] == 1
		})
		again := servertest.NewClient(dialFrom(t, "127.0.0.1", srv.Addr()), frame.Line{})
		roundTrip(t, again, []byte("a slot again"))

		if n := srv.Stats().Closes[session.TooManyFromAddr]; n != 1 {
			t.Errorf("%d closes for too many from address, want 1", n)
		}
		if !logs.Contains("connection refused: too many from this address") {
			t.Error("the refusal was not logged")
		}
	})
}
