package model_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"echoloop/bench/model"
	"echoloop/bench/servertest"
	"echoloop/eventloop/frame"
	"echoloop/eventloop/session"
	"echoloop/handlers"
)

// Shape of BenchmarkWorkBeside.
const (
	workConns   = 100                   // connections sending work frames, one in flight each
	pingConns   = 10                    // connections doing plain round trips beside them
	workTime    = 10 * time.Millisecond // simulated work per frame
	pingEvery   = 2 * time.Millisecond  // the least time between one ping connection's round trips
	workWindow  = time.Second           // the measured window per op
	workWarmup  = 3                     // work replies per work connection before measuring
	workPayload = 64
)

// BenchmarkWorkBeside measures what slow work does to everyone else's round
// trips. 100 connections each send a frame whose handling takes 10ms of
// simulated blocking work (a sleep), wait for its reply, and send the next;
// beside them, 10 connections send "ping" frames, which the handler
// answers at once without the work (handlers' Ping option, -ping), at most
// one every 2ms each, and time their round trips. The ping frames go to the
// same server as the work, so they wait for whatever the work holds up:
// a second server would have its own loop and show nothing.
//
// handler=work does the work on a pool (64 workers) and answers through
// Conn.Async: the serving goroutine never waits. handler=block does it on
// the serving goroutine: on the event loop that is the loop itself, so a
// ping waits for every work frame served before it in the loop's turn; on
// the goroutine model it holds up only the connection whose frame it is.
// Each op is a 1-second window, after every work connection has had 3
// replies; it reports the pings' p50, p99 and worst round trip in ms, how
// many pings that is, and the work frames answered per second:
//
//	go test -run '^$' -bench WorkBeside -benchtime 5x ./bench/model
func BenchmarkWorkBeside(b *testing.B) {
	for _, h := range []string{"work", "block"} {
		for _, m := range model.Names() {
			b.Run(fmt.Sprintf("handler=%s/model=%s", h, m), func(b *testing.B) { benchWorkBeside(b, m, h) })
		}
	}
}

func benchWorkBeside(b *testing.B, m, name string) {
	h, err := handlers.New(name, handlers.Config{Work: workTime, Ping: true})
	if err != nil {
		b.Fatal(err)
	}
	codec := frame.Length{}
	srv := servertest.Start(b, model.Options{Model: m, Config: session.Config{
		Codec: codec, Handler: h, Logger: nopLogger,
	}})

	// Connect everyone first: a loop blocked by work accepts one
	// connection per turn, so connecting later would take seconds each.
	workers, pingers := make([]net.Conn, workConns), make([]net.Conn, pingConns)
	for i := range workers {
		workers[i] = servertest.Dial(b, srv.Addr())
	}
	for i := range pingers {
		pingers[i] = servertest.Dial(b, srv.Addr())
	}
	servertest.Eventually(b, "every connection opened", func() bool {
		return srv.Stats().ConnsOpen == workConns+pingConns
	})

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var worked atomic.Int64
	warm := make(chan struct{}, workConns)
	errs := make(chan error, workConns+pingConns)
	work, _ := codec.Append(nil, bytes.Repeat([]byte("w"), workPayload))
	for _, c := range workers {
		wg.Go(func() {
			errs <- roundTrips(c, work, stop, nil, func(n int, _ time.Duration, _ bool) {
				worked.Add(1)
				if n == workWarmup {
					warm <- struct{}{}
				}
			})
		})
	}
	for range workConns {
		select {
		case <-warm:
		case err := <-errs:
			b.Fatalf("work connection: %v", err)
		}
	}

	ping, _ := codec.Append(nil, append([]byte("ping"), bytes.Repeat([]byte("p"), workPayload-4)...))
	var mu sync.Mutex
	var lat []time.Duration
	var measuring atomic.Bool
	for _, c := range pingers {
		wg.Go(func() {
			errs <- roundTrips(c, ping, stop, &measuring, func(_ int, d time.Duration, measured bool) {
				if measured {
					mu.Lock()
					lat = append(lat, d)
					mu.Unlock()
				}
				time.Sleep(pingEvery - min(d, pingEvery))
			})
		})
	}

	b.ResetTimer()
	measuring.Store(true)
	worked0, t0 := worked.Load(), time.Now()
	for b.Loop() {
		time.Sleep(workWindow)
	}
	measuring.Store(false)
	workRate := float64(worked.Load()-worked0) / time.Since(t0).Seconds()
	b.StopTimer()
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}

	mu.Lock()
	defer mu.Unlock()
	slices.Sort(lat)
	b.ReportMetric(millis(quantile(lat, 0.50)), "ping-p50-ms")
	b.ReportMetric(millis(quantile(lat, 0.99)), "ping-p99-ms")
	b.ReportMetric(millis(quantile(lat, 1)), "ping-worst-ms")
	b.ReportMetric(float64(len(lat)), "pings")
	b.ReportMetric(workRate, "work/s")
	b.ReportMetric(0, "ns/op")
}

// roundTrips sends req and reads its echo, checking it, until stop closes,
// calling done after each with the count so far, the round trip's time, and
// whether measuring (if not nil) was set when it was sent: a round trip
// that began in the window counts, however long it takes.
func roundTrips(c net.Conn, req []byte, stop <-chan struct{}, measuring *atomic.Bool, done func(n int, d time.Duration, measured bool)) error {
	reply := make([]byte, len(req))
	_ = c.SetDeadline(time.Now().Add(5 * time.Minute))
	for n := 1; ; n++ {
		select {
		case <-stop:
			return nil
		default:
		}
		measured := measuring != nil && measuring.Load()
		t0 := time.Now()
		if _, err := c.Write(req); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, reply); err != nil {
			return err
		}
		d := time.Since(t0)
		if !bytes.Equal(reply, req) {
			return fmt.Errorf("reply %q differs from request", reply)
		}
		done(n, d, measured)
	}
}
