package conformance

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"

	"echoloop/bench/servertest"
	"echoloop/eventloop/frame"
	"echoloop/eventloop/session"
	"echoloop/handlers"
)

// TestStreamTorture sends frames one byte at a time, in random chunks, and
// all coalesced in one write, for every framing, and checks that every reply
// comes back byte-exact and in order.
func TestStreamTorture(t *testing.T) {
	eachModel(t, func(t *testing.T, m string) {
		for _, fr := range framings {
			t.Run(fr.spec, func(t *testing.T) {
				codec := mustParse(t, fr.spec)
				srv := start(t, m, codec, handlers.Echo{})
				for ci, ch := range chunkers {
					t.Run(ch.name, func(t *testing.T) {
						r := rand.New(rand.NewPCG(uint64(ci), 42))
						payloads := make([][]byte, ch.frames)
						var sent int64
						for i := range payloads {
							payloads[i] = fr.gen(r, ci, i)
							enc, _ := codec.Append(nil, payloads[i])
							sent += int64(len(enc))
						}
						before := srv.Stats()
						conn := servertest.Dial(t, srv.Addr())
						exchange(t, conn, codec, payloads, ch.split, r)
						// The goroutine model counts a write after it returns,
						// which may be after the client has read the bytes.
						servertest.Eventually(t, "bytes out to be counted", func() bool {
							return srv.Stats().BytesOut-before.BytesOut >= sent
						})
						after := srv.Stats()
						if got := after.BytesIn - before.BytesIn; got != sent {
							t.Errorf("server counted %d bytes in, client sent %d", got, sent)
						}
						if got := after.BytesOut - before.BytesOut; got != sent {
							t.Errorf("server counted %d bytes out, client received %d", got, sent)
						}
						if _, raw := codec.(frame.Raw); !raw {
							if got := after.FramesIn - before.FramesIn; got != int64(len(payloads)) {
								t.Errorf("server counted %d frames in, client sent %d", got, len(payloads))
							}
						}
					})
				}
			})
		}
	})
}

// TestManyClients runs 1,000 concurrent clients of 100 frames each against
// one server and verifies every reply.
func TestManyClients(t *testing.T) {
	const clients, frames = 1000, 100
	eachModel(t, func(t *testing.T, m string) {
		codec := frame.Length{}
		srv := start(t, m, codec, handlers.Echo{})
		gen := framings[1].gen // length: binary client and sequence numbers
		var wg sync.WaitGroup
		errs := make(chan error, clients)
		for c := range clients {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(c), 7))
				payloads := make([][]byte, frames)
				for i := range payloads {
					payloads[i] = gen(r, c, i)
				}
				conn := servertest.Dial(t, srv.Addr())
				defer conn.Close()
				cl := servertest.NewClient(conn, codec)
				// Pipeline in bursts of up to 10 frames, as a real client would.
				for i := 0; i < frames; {
					n := min(frames-i, 1+r.IntN(10))
					if err := cl.Send(payloads[i : i+n]...); err != nil {
						errs <- err
						return
					}
					for k := i; k < i+n; k++ {
						got, err := cl.Recv()
						if err != nil {
							errs <- err
							return
						}
						if !bytes.Equal(got, payloads[k]) {
							errs <- errors.New("reply does not match what was sent")
							return
						}
					}
					i += n
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("client: %v", err)
		}
		st := srv.Stats()
		if st.FramesIn != clients*frames || st.FramesOut != clients*frames {
			t.Errorf("server counted %d frames in and %d out, want %d each", st.FramesIn, st.FramesOut, clients*frames)
		}
		if st.ConnsTotal != clients {
			t.Errorf("server accepted %d connections, want %d", st.ConnsTotal, clients)
		}
	})
}

// TestOversizedInput sends a length prefix of 0xFFFFFFFF, and a line longer
// than the cap: each connection is closed with its reason counted and logged,
// a well-behaved client keeps being served throughout, and the server does
// not buffer toward the announced length.
func TestOversizedInput(t *testing.T) {
	cases := []struct {
		name  string
		codec frame.Codec
		bad   []byte // what the misbehaving client sends first
		good  []byte // a payload the well-behaved client round-trips
	}{
		{"length 0xFFFFFFFF", frame.Length{}, []byte{0xff, 0xff, 0xff, 0xff}, []byte("ok")},
		{"line over the cap", frame.Line{Max: 1024}, bytes.Repeat([]byte("x"), 1025), []byte("ok")},
	}
	eachModel(t, func(t *testing.T, m string) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				srv, logs := startLogged(t, m, session.Config{Codec: tc.codec, Handler: handlers.Echo{}})
				good := servertest.NewClient(servertest.Dial(t, srv.Addr()), tc.codec)
				roundTrip(t, good, tc.good)

				var before runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)

				bad := servertest.Dial(t, srv.Addr())
				// Keep sending after the bad header, as an attacker would: up to
				// 64 MiB, far more than any buffer the server should keep.
				go func() {
					junk := bytes.Repeat([]byte("y"), 1<<20)
					if _, err := bad.Write(tc.bad); err != nil {
						return
					}
					for range 64 {
						if _, err := bad.Write(junk); err != nil {
							return
						}
					}
				}()
				if err := servertest.WaitClosed(bad); !errors.Is(err, io.EOF) && !isReset(err) {
					t.Fatalf("bad client: %v, want the server to close", err)
				}
				roundTrip(t, good, tc.good)

				var after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&after)
				if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > 16<<20 {
					t.Errorf("heap grew by %d MiB for one bad client", grew>>20)
				}
				servertest.Eventually(t, "the close to be counted", func() bool {
					return srv.Stats().Closes[session.FrameTooLarge] == 1
				})
				if !logs.Contains(`"reason":"frame too large"`, `"remote":"`+bad.LocalAddr().String()) {
					t.Errorf("no close log with reason and remote address; logs:\n%s", logs)
				}
			})
		}
	})
}

func roundTrip(t *testing.T, cl *servertest.Client, payload []byte) {
	t.Helper()
	if err := cl.Send(payload); err != nil {
		t.Fatalf("send: %v", err)
	}
	got, err := cl.Recv()
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("got %q, want %q", got, payload)
	}
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe"))
}
