package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pp "github.com/pires/go-proxyproto"
	"github.com/rs/zerolog"

	"echoloop/bench/model"
	"echoloop/bench/servertest"
	"echoloop/eventloop/frame"
	"echoloop/eventloop/proxyproto"
	"echoloop/eventloop/session"
	"echoloop/handlers"
)

// addrRecorder echoes frames and notes the remote address the handler sees
// at each open and each frame.
type addrRecorder struct {
	mu   sync.Mutex
	seen []string
}

func (r *addrRecorder) note(c handlers.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, c.RemoteAddr().String())
}

func (r *addrRecorder) addrs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seen)
}

func (r *addrRecorder) ServeFrame(c handlers.Conn, f []byte) { r.note(c); _ = c.Reply(f) }
func (r *addrRecorder) OpenConn(c handlers.Conn)             { r.note(c) }
func (r *addrRecorder) CloseConn(handlers.Conn)              {}

// proxyServer is a server of either model with the PROXY protocol on, the
// addresses its handler saw, and its logs.
type proxyServer struct {
	model.Server
	rec  *addrRecorder
	logs *servertest.LogBuffer
}

func startProxy(t *testing.T, m string, mode proxyproto.Mode, trust string, cfg session.Config) proxyServer {
	t.Helper()
	tr, err := proxyproto.ParseTrust(trust)
	if err != nil {
		t.Fatal(err)
	}
	ps := proxyServer{rec: new(addrRecorder), logs: new(servertest.LogBuffer)}
	if cfg.Handler == nil {
		cfg.Handler = ps.rec
	}
	cfg.Logger = zerolog.New(io.MultiWriter(ps.logs, zerolog.NewTestWriter(t))).Level(zerolog.DebugLevel)
	cfg.Proxy = proxyproto.Config{Mode: mode, Trust: tr}
	ps.Server = servertest.Start(t, model.Options{Model: m, Config: cfg})
	return ps
}

func (ps proxyServer) closes(t *testing.T, want map[session.Reason]int64) {
	t.Helper()
	servertest.Until(t, servertest.IOTimeout, fmt.Sprintf("closes %v", want), func() (bool, string) {
		st := ps.Stats()
		return maps(st.Closes, want) && st.ConnsOpen == 0, fmt.Sprintf("closes %v, %d open", st.Closes, st.ConnsOpen)
	})
}

func maps(a, b map[session.Reason]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// proxyHeader formats a header from the client src to the server dst, with
// tlvs (v2 only).
func proxyHeader(t *testing.T, version byte, src, dst string, tlvs ...pp.TLV) []byte {
	t.Helper()
	h := pp.HeaderProxyFromAddrs(version, tcpAddr(t, src), tcpAddr(t, dst))
	if len(tlvs) > 0 {
		if err := h.SetTLVs(tlvs); err != nil {
			t.Fatal(err)
		}
	}
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tcpAddr(t *testing.T, s string) *net.TCPAddr {
	t.Helper()
	a, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func lines(ps ...string) []byte {
	var b []byte
	for _, p := range ps {
		b, _ = frame.Line{}.Append(b, []byte(p))
	}
	return b
}

// A header and frames in one write: the frames are echoed byte for byte,
// and the handler, from OpenConn on, and the close log see the header's
// client address, not the socket's.
func TestProxyHeaderThenFrames(t *testing.T) {
	eachModel(t, func(t *testing.T, m string) {
		for _, tt := range []struct {
			name, client string
			hdr          func(t *testing.T, server string) []byte
		}{
			{"v1", "192.0.2.1:56324", func(t *testing.T, server string) []byte {
				return proxyHeader(t, 1, "192.0.2.1:56324", server)
			}},
			{"v2 with TLVs", "[2001:db8::1]:443", func(t *testing.T, server string) []byte {
				return proxyHeader(t, 2, "[2001:db8::1]:443", "[2001:db8::2]:7007",
					pp.TLV{Type: pp.PP2_TYPE_AUTHORITY, Value: []byte("example.com")}, pp.TLV{Type: 0xE0, Value: []byte("app")})
			}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				ps := startProxy(t, m, proxyproto.Any, "127.0.0.1", session.Config{})
				conn := servertest.Dial(t, ps.Addr())
				frames := lines("hello", "", "PROXY TCP4 is payload here", "\r\x00\xff")
				if _, err := conn.Write(append(tt.hdr(t, ps.Addr().String()), frames...)); err != nil {
					t.Fatal(err)
				}
				got, err := servertest.ReadFull(conn, len(frames))
				if err != nil || !bytes.Equal(got, frames) {
					t.Fatalf("echo %q, %v; want %q", got, err, frames)
				}
				if seen := ps.rec.addrs(); len(seen) != 5 || slices.IndexFunc(seen, func(a string) bool { return a != tt.client }) >= 0 {
					t.Errorf("handler saw %v; want %s at the open and each of 4 frames", seen, tt.client)
				}
				conn.Close()
				ps.closes(t, map[session.Reason]int64{session.PeerClosed: 1})
				if !ps.logs.Contains(`"remote":"`+tt.client+`"`, "connection closed") {
					t.Errorf("no close logged with the header's address:\n%s", ps.logs)
				}
			})
		}
	})
}

// A header that arrives a byte per read, and the frames after it.
func TestProxySplitHeader(t *testing.T) {
	eachModel(t, func(t *testing.T, m string) {
		for _, version := range []byte{1, 2} {
			t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
				ps := startProxy(t, m, proxyproto.Any, "127.0.0.0/8", session.Config{})
				conn := servertest.Dial(t, ps.Addr())
				hdr := proxyHeader(t, version, "198.51.100.7:1234", ps.Addr().String())
				for i := range hdr {
					if _, err := conn.Write(hdr[i : i+1]); err != nil {
						t.Fatal(err)
					}
					servertest.Until(t, servertest.IOTimeout, "the byte read", func() (bool, string) {
						n := ps.Stats().BytesIn
						return n == int64(i+1), fmt.Sprintf("%d of %d bytes read", n, i+1)
					})
				}
				c := servertest.NewClient(conn, frame.Line{})
				if err := c.Send([]byte("after"), []byte("the header")); err != nil {
					t.Fatal(err)
				}
				for _, want := range []string{"after", "the header"} {
					if got, err := c.Recv(); err != nil || string(got) != want {
						t.Fatalf("got %q, %v; want %q", got, err, want)
					}
				}
				if seen := ps.rec.addrs(); len(seen) == 0 || seen[0] != "198.51.100.7:1234" {
					t.Errorf("handler saw %v", seen)
				}
			})
		}
	})
}

// A LOCAL header (a balancer's health check) leaves the socket's own peer
// address.
func TestProxyLocal(t *testing.T) {
	eachModel(t, func(t *testing.T, m string) {
		ps := startProxy(t, m, proxyproto.V2, "127.0.0.1", session.Config{})
		conn := servertest.Dial(t, ps.Addr())
		local := &pp.Header{Version: 2, Command: pp.LOCAL, TransportProtocol: pp.UNSPEC}
		hdr, err := local.Format()
		if err != nil {
			t.Fatal(err)
		}
		c := servertest.NewClient(conn, frame.Line{})
		if _, err := conn.Write(append(hdr, lines("ping")...)); err != nil {
			t.Fatal(err)
		}
		if got, err := c.Recv(); err != nil || string(got) != "ping" {
			t.Fatalf("got %q, %v", got, err)
		}
		if seen := ps.rec.addrs(); len(seen) != 2 || seen[1] != conn.LocalAddr().String() {
			t.Errorf("handler saw %v; want the socket's peer %v", seen, conn.LocalAddr())
		}
	})
}

// A connection from an address not trusted is closed before anything it
// sends is read, even a valid header.
func TestProxyUntrusted(t *testing.T) {
	eachModel(t, func(t *testing.T, m string) {
		ps := startProxy(t, m, proxyproto.Any, "10.0.0.0/8,192.0.2.1", session.Config{})
		conn := servertest.Dial(t, ps.Addr())
		_, _ = conn.Write(append(proxyHeader(t, 1, "192.0.2.1:1", "192.0.2.2:2"), lines("hello")...))
		if err := servertest.WaitClosed(conn); !errors.Is(err, io.EOF) && !isReset(err) {
			t.Fatalf("untrusted client: %v", err)
		}
		ps.closes(t, map[session.Reason]int64{session.ProxyUntrusted: 1})
		if st := ps.Stats(); st.FramesIn != 0 || len(ps.rec.addrs()) != 0 {
			t.Errorf("served %d frames, handler saw %v", st.FramesIn, ps.rec.addrs())
		}
		if !ps.logs.Contains("not trusted to send a PROXY header", `"remote":"127.0.0.1:`) {
			t.Errorf("refusal not logged:\n%s", ps.logs)
		}
	})
}

// Whatever is not a whole valid header closes the connection as a bad
// header, logged, with no frame served and the handler never told.
func TestProxyBadHeader(t *testing.T) {
	eachModel(t, func(t *testing.T, m string) {
		oversized := append([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11"), 0xff, 0xff)
		for _, tt := range []struct {
			name  string
			mode  proxyproto.Mode
			send  func(t *testing.T) []byte
			close bool // half-close after sending
		}{
			{"garbage", proxyproto.Any, func(*testing.T) []byte { return []byte("GET / HTTP/1.1\r\n\r\n") }, false},
			{"frames, no header", proxyproto.V1, func(*testing.T) []byte { return lines("hello") }, false},
			{"v1 header in v2 mode", proxyproto.V2, func(t *testing.T) []byte {
				return append(proxyHeader(t, 1, "192.0.2.1:1", "192.0.2.2:2"), lines("hello")...)
			}, false},
			{"v1 bad address", proxyproto.V1, func(*testing.T) []byte { return []byte("PROXY TCP4 1.2.3 4.5.6.7 1 2\r\nhello\n") }, false},
			{"oversized v2 length", proxyproto.V2, func(*testing.T) []byte { return oversized }, false},
			{"truncated, then EOF", proxyproto.Any, func(t *testing.T) []byte {
				h := proxyHeader(t, 2, "192.0.2.1:1", "192.0.2.2:2")
				return h[:len(h)-1]
			}, true},
			{"truncated, then nothing", proxyproto.Any, func(*testing.T) []byte { return []byte("PROXY TCP4 192.0.2.1") }, false},
		} {
			t.Run(tt.name, func(t *testing.T) {
				// The frame timeout bounds the wait for the rest of a header.
				ps := startProxy(t, m, tt.mode, "127.0.0.1", session.Config{FrameTimeout: 200 * time.Millisecond})
				conn := servertest.Dial(t, ps.Addr())
				if _, err := conn.Write(tt.send(t)); err != nil {
					t.Fatal(err)
				}
				if tt.close {
					if err := conn.CloseWrite(); err != nil {
						t.Fatal(err)
					}
				}
				if err := servertest.WaitClosed(conn); !errors.Is(err, io.EOF) && !isReset(err) {
					t.Fatalf("client: %v", err)
				}
				ps.closes(t, map[session.Reason]int64{session.BadProxyHeader: 1})
				if st := ps.Stats(); st.FramesIn != 0 || st.PartialFrames != 0 || len(ps.rec.addrs()) != 0 {
					t.Errorf("served %d frames, %d partial, handler saw %v", st.FramesIn, st.PartialFrames, ps.rec.addrs())
				}
				if !ps.logs.Contains("bad PROXY header", `"remote":"127.0.0.1:`) {
					t.Errorf("bad header not logged:\n%s", ps.logs)
				}
			})
		}
	})
}

// A peer that connects and closes without a byte (a balancer's TCP check)
// has simply closed.
func TestProxyEmptyConnection(t *testing.T) {
	eachModel(t, func(t *testing.T, m string) {
		ps := startProxy(t, m, proxyproto.Any, "127.0.0.1", session.Config{})
		conn := servertest.Dial(t, ps.Addr())
		if err := conn.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if err := servertest.WaitClosed(conn); !errors.Is(err, io.EOF) {
			t.Fatalf("client: %v", err)
		}
		ps.closes(t, map[session.Reason]int64{session.PeerClosed: 1})
	})
}

// Shutdown does not wait for a header that is on its way: the connection is
// closed as the server stops. A handler that is a Finisher is not told of
// it: it never opened, so the handler has nothing to finish.
func TestProxyShutdownAwaitingHeader(t *testing.T) {
	eachModel(t, func(t *testing.T, m string) {
		fin := new(countFinish)
		ps := startProxy(t, m, proxyproto.Any, "127.0.0.1", session.Config{Handler: fin})
		conn := servertest.Dial(t, ps.Addr())
		if _, err := conn.Write([]byte("PROXY TCP4 ")); err != nil {
			t.Fatal(err)
		}
		servertest.Until(t, servertest.IOTimeout, "the partial header read", func() (bool, string) {
			st := ps.Stats()
			return st.BytesIn == 11 && st.ConnsOpen == 1, fmt.Sprintf("%d bytes read, %d open", st.BytesIn, st.ConnsOpen)
		})
		ctx, cancel := context.WithTimeout(context.Background(), servertest.IOTimeout)
		defer cancel()
		if err := ps.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		ps.closes(t, map[session.Reason]int64{session.ServerStopping: 1})
		if st := ps.Stats(); st.PartialFrames != 0 || st.MemoryHeld != 0 {
			t.Errorf("%d partial frames, %d bytes held", st.PartialFrames, st.MemoryHeld)
		}
		if n := fin.finished.Load(); n != 0 {
			t.Errorf("the handler was told to finish %d connections that never opened", n)
		}
	})
}

// countFinish echoes, and counts the connections it is told to finish
// (closing each at once).
type countFinish struct{ finished atomic.Int64 }

func (*countFinish) ServeFrame(c handlers.Conn, f []byte) { _ = c.Reply(f) }
func (h *countFinish) Finish(c handlers.AsyncConn) {
	h.finished.Add(1)
	_ = c.Close()
}

func TestProxyConfig(t *testing.T) {
	for _, m := range model.Names() {
		_, err := model.New(model.Options{Model: m, Config: session.Config{Proxy: proxyproto.Config{Mode: proxyproto.V1}}})
		if !errors.Is(err, proxyproto.ErrNoTrust) {
			t.Errorf("%s: protocol on, nobody trusted: %v, want ErrNoTrust", m, err)
		}
	}
}

// MaxConnsPerIP counts the client's address from the header, not the
// balancer's: every connection here comes from 127.0.0.1.
func TestProxyMaxConnsPerIP(t *testing.T) {
	eachModel(t, func(t *testing.T, m string) {
		ps := startProxy(t, m, proxyproto.V2, "127.0.0.1", session.Config{MaxConnsPerIP: 1})
		open := func(client string) *servertest.Client {
			conn := servertest.Dial(t, ps.Addr())
			if _, err := conn.Write(proxyHeader(t, 2, client, ps.Addr().String())); err != nil {
				t.Fatal(err)
			}
			return servertest.NewClient(conn, frame.Line{})
		}
		first := open("192.0.2.1:1000")
		roundTrip(t, first, []byte("first"))
		other := open("192.0.2.2:1000")
		roundTrip(t, other, []byte("another client"))
		second := open("192.0.2.1:1001")
		if err := servertest.WaitClosed(second.Conn); !errors.Is(err, io.EOF) && !isReset(err) {
			t.Fatalf("a second connection from 192.0.2.1: read %v, want it closed", err)
		}
		roundTrip(t, first, []byte("first, still"))
		servertest.Eventually(t, "the refusal counted", func() bool {
			return ps.Stats().Closes[session.TooManyFromAddr] == 1
		})
		if !ps.logs.Contains("too many from this address", `"remote":"192.0.2.1:1001"`) {
			t.Errorf("refusal not logged with the header's address:\n%s", ps.logs)
		}
	})
}
