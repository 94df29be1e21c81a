package conformance

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"echoloop/bench/model"
	"echoloop/bench/servertest"
	"echoloop/eventloop/frame"
	"echoloop/eventloop/session"
	"echoloop/handlers"
)

// eachModel runs fn as a subtest for every concurrency model.
func eachModel(t *testing.T, fn func(t *testing.T, m string)) {
	for _, m := range model.Names() {
		t.Run(m, func(t *testing.T) {
			t.Parallel()
			fn(t, m)
		})
	}
}

// start starts a server of model m with the given framing and handler.
func start(t *testing.T, m string, codec frame.Codec, h handlers.Handler) model.Server {
	t.Helper()
	return servertest.Start(t, model.Options{Model: m, Config: session.Config{Codec: codec, Handler: h}})
}

// startLogged is start with the server's logs captured for inspection.
func startLogged(t *testing.T, m string, cfg session.Config) (model.Server, *servertest.LogBuffer) {
	t.Helper()
	logs := &servertest.LogBuffer{}
	cfg.Logger = zerolog.New(io.MultiWriter(logs, zerolog.NewTestWriter(t))).Level(zerolog.DebugLevel)
	return servertest.Start(t, model.Options{Model: m, Config: cfg}), logs
}

// framings are the framings every stream test covers, each with a payload
// generator that makes payloads the framing can carry. Payloads start with
// the client and frame number, so a reply on the wrong connection or out of
// order cannot match.
var framings = []struct {
	spec string
	gen  func(r *rand.Rand, client, seq int) []byte
}{
	{"line", func(r *rand.Rand, client, seq int) []byte {
		p := fmt.Appendf(nil, "%d:%d:", client, seq)
		for range r.IntN(200) {
			b := byte(r.IntN(256))
			if b == '\n' {
				b = '\r' // keep CRs: they must come back as they went
			}
			p = append(p, b)
		}
		return p
	}},
	{"length", func(r *rand.Rand, client, seq int) []byte {
		if seq%7 == 3 {
			return []byte{} // zero-length frames are valid
		}
		p := binary.BigEndian.AppendUint32(nil, uint32(client))
		p = binary.BigEndian.AppendUint32(p, uint32(seq))
		for range r.IntN(300) {
			p = append(p, byte(r.IntN(256)))
		}
		return p
	}},
	{"fixed:16", func(r *rand.Rand, client, seq int) []byte {
		p := binary.BigEndian.AppendUint32(nil, uint32(client))
		p = binary.BigEndian.AppendUint32(p, uint32(seq))
		for len(p) < 16 {
			p = append(p, byte(r.IntN(256)))
		}
		return p
	}},
	{"raw", func(r *rand.Rand, client, seq int) []byte {
		p := fmt.Appendf(nil, "[%d:%d]", client, seq)
		for range r.IntN(100) {
			p = append(p, byte(r.IntN(256)))
		}
		return p
	}},
}

func mustParse(t testing.TB, spec string) frame.Codec {
	t.Helper()
	c, err := frame.Parse(spec, 0)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// chunker splits a byte stream into writes.
type chunker func(r *rand.Rand, stream []byte) [][]byte

var chunkers = []struct {
	name   string
	frames int // frames per test: fewer where every byte is its own write
	split  chunker
}{
	{"byte at a time", 40, func(_ *rand.Rand, s []byte) [][]byte {
		out := make([][]byte, len(s))
		for i := range s {
			out[i] = s[i : i+1]
		}
		return out
	}},
	{"random chunks", 400, func(r *rand.Rand, s []byte) [][]byte {
		var out [][]byte
		for len(s) > 0 {
			n := min(len(s), 1+r.IntN(700))
			out = append(out, s[:n])
			s = s[n:]
		}
		return out
	}},
	{"coalesced", 2000, func(_ *rand.Rand, s []byte) [][]byte { return [][]byte{s} }},
}

// exchange writes the frames of payloads in the chunks split makes, while
// reading and checking every reply concurrently (a client that wrote
// everything before reading could deadlock against a full socket buffer).
// For raw framing it checks the echoed byte stream instead of frames.
func exchange(t *testing.T, conn net.Conn, codec frame.Codec, payloads [][]byte, split chunker, r *rand.Rand) {
	t.Helper()
	var stream []byte
	for _, p := range payloads {
		var err error
		if stream, err = codec.Append(stream, p); err != nil {
			t.Fatalf("encode: %v", err)
		}
	}
	chunks := split(r, stream)
	wrote := writeChunks(conn, chunks)
	if _, raw := codec.(frame.Raw); raw {
		got, err := servertest.ReadFull(conn, len(stream))
		if err != nil {
			t.Fatalf("read raw echo: %v", err)
		}
		if !bytes.Equal(got, stream) {
			t.Fatalf("raw echo differs from what was sent (%d bytes)", len(stream))
		}
	} else {
		cl := servertest.NewClient(conn, codec)
		for i, want := range payloads {
			got, err := cl.Recv()
			if err != nil {
				t.Fatalf("reply %d of %d: %v", i, len(payloads), err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("reply %d = %q, want %q", i, got, want)
			}
		}
	}
	if err := <-wrote; err != nil {
		t.Fatalf("write: %v", err)
	}
}

// waitStuck waits until srv has read at least atLeast bytes and then stopped
// reading for 300ms: every byte its peers sent has been taken in, or it is
// blocked on replies nobody reads.
func waitStuck(t *testing.T, srv model.Server, atLeast int64) {
	t.Helper()
	var last int64
	changed := time.Now()
	servertest.Eventually(t, "the server to stop taking input", func() bool {
		if in := srv.Stats().BytesIn; in != last {
			last, changed = in, time.Now()
		}
		return last >= atLeast && time.Since(changed) > 300*time.Millisecond
	})
}

// writeChunks writes each chunk to conn in turn, on a goroutine of its own
// so the caller can read the replies meanwhile, and reports the first write
// error, or nil once all are written.
func writeChunks(conn net.Conn, chunks [][]byte) <-chan error {
	wrote := make(chan error, 1)
	go func() {
		for _, c := range chunks {
			if _, err := conn.Write(c); err != nil {
				wrote <- err
				return
			}
		}
		wrote <- nil
	}()
	return wrote
}
