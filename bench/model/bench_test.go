package model_test

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"testing"

	"echoloop/bench/model"
	"echoloop/bench/servertest"
	"echoloop/eventloop/frame"
	"echoloop/eventloop/session"
	"echoloop/handlers"
)

// BenchmarkEcho round-trips length-framed payloads over loopback with the
// same client against both models, one frame in flight per connection, and
// checks every reply. ns/op is wall time per round trip over all
// connections. Compare the models with
//
//	go test -run '^$' -bench Echo -count 10 ./bench/model | tee out.txt
//	benchstat -col /model out.txt
//
// Client and server share this machine's CPUs, so this compares the models
// under identical conditions; the echobench command measures them pinned
// apart.
func BenchmarkEcho(b *testing.B) {
	for _, conns := range []int{1, 64} {
		for _, size := range []int{64, 4096} {
			for _, m := range model.Names() {
				b.Run(fmt.Sprintf("conns=%d/size=%d/model=%s", conns, size, m), func(b *testing.B) {
					benchEcho(b, m, conns, size)
				})
			}
		}
	}
}

func benchEcho(b *testing.B, m string, conns, size int) {
	codec := frame.Length{}
	srv := servertest.Start(b, model.Options{Model: m, Config: session.Config{
		Codec: codec, Handler: handlers.Echo{}, Logger: nopLogger,
	}})
	req, _ := codec.Append(nil, bytes.Repeat([]byte{'e'}, size))
	clients := make([]io.ReadWriter, conns)
	for i := range clients {
		clients[i] = servertest.Dial(b, srv.Addr())
	}
	b.SetBytes(int64(len(req)))
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	for i, c := range clients {
		n := b.N / conns
		if i < b.N%conns {
			n++
		}
		wg.Go(func() {
			reply := make([]byte, len(req))
			for range n {
				if _, err := c.Write(req); err != nil {
					b.Error(err)
					return
				}
				if _, err := io.ReadFull(c, reply); err != nil {
					b.Error(err)
					return
				}
				if !bytes.Equal(reply, req) {
					b.Error("reply differs from request")
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if st := srv.Stats(); st.FramesOut != int64(b.N) {
		b.Fatalf("server answered %d frames, want %d", st.FramesOut, b.N)
	}
}
