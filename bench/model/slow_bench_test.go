package model_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"echoloop/bench/model"
	"echoloop/bench/servertest"
	"echoloop/eventloop/frame"
	"echoloop/eventloop/session"
)

// BenchmarkSlowReader measures the round-trip latency of 100 well-behaved
// clients (64-byte frames, one in flight each) with and without slow
// readers beside them: clients that write frames as fast as they can and
// never read a reply. A new slow reader replaces each one the server closes,
// so one is always there. Compare p99 between slow=0 and slow=1 of a model:
//
//	go test -run '^$' -bench SlowReader -benchtime 20000x ./bench/model
func BenchmarkSlowReader(b *testing.B) {
	for _, m := range model.Names() {
		for _, slow := range []int{0, 1} {
			b.Run(fmt.Sprintf("model=%s/slow=%d", m, slow), func(b *testing.B) { benchSlowReader(b, m, slow > 0) })
		}
	}
}

func benchSlowReader(b *testing.B, m string, slow bool) {
	const clients = 100
	codec := frame.Length{}
	srv := servertest.Start(b, model.Options{Model: m, Config: session.Config{
		Codec: codec, WriteTimeout: time.Second, Logger: nopLogger,
	}})
	conns := make([]net.Conn, clients)
	for i := range conns {
		conns[i] = servertest.Dial(b, srv.Addr())
	}

	stop := make(chan struct{})
	var slowWG sync.WaitGroup
	if slow {
		slowWG.Go(func() {
			flood, _ := codec.Append(nil, bytes.Repeat([]byte("s"), 64<<10))
			flood = bytes.Repeat(flood, 16)
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.Dial("tcp", srv.Addr().String())
				if err != nil {
					return
				}
				_ = c.(*net.TCPConn).SetReadBuffer(16 << 10)
				for {
					_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
					_, err := c.Write(flood)
					if err == nil {
						continue
					}
					select {
					case <-stop:
						c.Close()
						return
					default:
					}
					if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
						continue // blocked by flow control: keep pushing
					}
					break // closed by the server: start another
				}
				c.Close()
			}
		})
	}

	req, _ := codec.Append(nil, bytes.Repeat([]byte("n"), 64))
	lat := make([][]time.Duration, clients)
	b.ResetTimer()
	var wg sync.WaitGroup
	for i, c := range conns {
		n := b.N / clients
		if i < b.N%clients {
			n++
		}
		lat[i] = make([]time.Duration, 0, n)
		wg.Go(func() {
			reply := make([]byte, len(req))
			_ = c.SetDeadline(time.Now().Add(5 * time.Minute))
			for range n {
				t0 := time.Now()
				if _, err := c.Write(req); err != nil {
					b.Error(err)
					return
				}
				if _, err := io.ReadFull(c, reply); err != nil {
					b.Error(err)
					return
				}
				lat[i] = append(lat[i], time.Since(t0))
				if !bytes.Equal(reply, req) {
					b.Error("reply differs from request")
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	close(stop)
	slowWG.Wait()

	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	pct := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Microseconds()) }
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	b.ReportMetric(float64(srv.Stats().Closes[session.SlowConsumer]), "slow-closed")
}
