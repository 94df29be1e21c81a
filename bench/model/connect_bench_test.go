package model_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"

	"echoloop/bench/model"
	"echoloop/bench/servertest"
	"echoloop/eventloop/frame"
	"echoloop/eventloop/session"
	"echoloop/handlers"
)

// BenchmarkConnect measures the accept path: each operation connects, makes
// one verified round trip and closes, from 8 clients at once. ns/op is wall
// time per connection. The event loop accepts on a goroutine of its own and
// hands each socket to a loop (eventloop/accept.go); this is what that
// costs against the goroutine model's plain accept loop.
//
//	go test -run '^$' -bench Connect -count 5 ./bench/model
func BenchmarkConnect(b *testing.B) {
	for _, m := range model.Names() {
		b.Run("model="+m, func(b *testing.B) {
			codec := frame.Line{}
			srv := servertest.Start(b, model.Options{Model: m, Config: session.Config{
				Codec: codec, Handler: handlers.Echo{}, Logger: nopLogger,
			}})
			addr := srv.Addr().String()
			const clients = 8
			req := []byte("hello\n")
			b.ResetTimer()
			var wg sync.WaitGroup
			for i := range clients {
				n := b.N / clients
				if i < b.N%clients {
					n++
				}
				wg.Go(func() {
					reply := make([]byte, len(req))
					for range n {
						if err := connectOnce(addr, req, reply); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "conns/s")
		})
	}
}

// connectOnce dials addr, round-trips req and closes.
func connectOnce(addr string, req, reply []byte) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write(req); err != nil {
		return err
	}
	if _, err := io.ReadFull(c, reply); err != nil {
		return err
	}
	if !bytes.Equal(reply, req) {
		return fmt.Errorf("reply %q, want %q", reply, req)
	}
	return nil
}
