package load_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"echoloop/bench/load"
	"echoloop/bench/load/faultserver"
	"echoloop/bench/model"
	"echoloop/bench/servertest"
	"echoloop/eventloop/frame"
	"echoloop/eventloop/session"
)

var clients = []load.Client{load.Epoll, load.Goroutine}

// startEcho starts an echo server of model m with the given framing.
func startEcho(t *testing.T, m, spec string) model.Server {
	t.Helper()
	codec, err := frame.Parse(spec, 0)
	if err != nil {
		t.Fatal(err)
	}
	return servertest.Start(t, model.Options{Model: m, Config: session.Config{Codec: codec}})
}

func run(t *testing.T, opts load.Options) *load.Summary {
	t.Helper()
	opts.Logger = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
	sum, err := load.Run(context.Background(), opts)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return sum
}

// TestEveryFramingAndModel runs a verified closed-loop load with each client
// against each server model in each framing.
func TestEveryFramingAndModel(t *testing.T) {
	for _, m := range model.Names() {
		for _, spec := range []string{"line", "length", "fixed:16", "raw"} {
			for _, cl := range clients {
				t.Run(fmt.Sprintf("%s/%s/%s", m, spec, cl), func(t *testing.T) {
					t.Parallel()
					srv := startEcho(t, m, spec)
					codec, _ := frame.Parse(spec, 0)
					size := 100
					if spec == "fixed:16" {
						size = 0
					}
					sum := run(t, load.Options{Addr: srv.Addr().String(), Codec: codec, Conns: 8, Size: size,
						Pipeline: 4, Requests: 2000, Client: cl})
					if !sum.OK || sum.FramesVerified != 2000 || sum.FramesSent != 2000 {
						t.Errorf("summary not ok: %+v", sum)
					}
					if sum.ConnsEstablished != 8 || sum.ConnsHeld != 8 {
						t.Errorf("conns established %d held %d, want 8", sum.ConnsEstablished, sum.ConnsHeld)
					}
					if sum.Latency.Count != 2000 || sum.Latency.P50US <= 0 || sum.Latency.MaxUS < sum.Latency.P99US {
						t.Errorf("latency %+v", sum.Latency)
					}
				})
			}
		}
	}
}

func TestDropByteIsCaught(t *testing.T) {
	for _, cl := range clients {
		for _, spec := range []string{"line", "length", "raw"} {
			t.Run(string(cl)+"/"+spec, func(t *testing.T) {
				t.Parallel()
				codec, _ := frame.Parse(spec, 0)
				addr := faultserver.Start(t, codec, faultserver.DropByte{Offset: 300})
				sum := run(t, load.Options{Addr: addr.String(), Codec: codec, Conns: 2, Pipeline: 2, Requests: 200, Client: cl, Timeout: 2 * time.Second})
				if sum.OK || sum.Mismatches != 2 || len(sum.MismatchSamples) != 2 {
					t.Fatalf("want one mismatch per connection, got %d: %+v", sum.Mismatches, sum.MismatchSamples)
				}
				m := sum.MismatchSamples[0]
				if spec == "line" && !strings.Contains(m.Reason, "dropped") {
					t.Errorf("reason %q, want it to say bytes were dropped", m.Reason)
				}
				if m.Offset < 0 || m.Want == m.Got {
					t.Errorf("mismatch does not show the difference: %+v", m)
				}
				if sum.ConnsHeld != 0 {
					t.Errorf("%d connections held after a mismatch, want 0: the stream cannot be trusted", sum.ConnsHeld)
				}
			})
		}
	}
}

func TestSwappedRepliesAreCaught(t *testing.T) {
	for _, cl := range clients {
		for _, spec := range []string{"line", "length", "fixed:32"} {
			t.Run(string(cl)+"/"+spec, func(t *testing.T) {
				t.Parallel()
				codec, _ := frame.Parse(spec, 0)
				addr := faultserver.Start(t, codec, faultserver.SwapReplies{At: 5})
				sum := run(t, load.Options{Addr: addr.String(), Codec: codec, Conns: 3, Pipeline: 4, Requests: 300, Client: cl, Timeout: 2 * time.Second})
				if sum.OK || sum.Mismatches != 3 {
					t.Fatalf("want one mismatch per connection, got %d: %+v", sum.Mismatches, sum.MismatchSamples)
				}
				for _, m := range sum.MismatchSamples {
					if m.Seq != 5 || !strings.Contains(m.Reason, "carries seq 6: out of order") {
						t.Errorf("mismatch %v, want seq 5 answered by seq 6's reply", m)
					}
				}
			})
		}
	}
}

// TestOpenLoopShowsStall runs against a server that stalls once for 300ms.
// Open loop, latency counts from each frame's intended send time, so every
// frame due during the stall shows it; closed loop sends nothing while it
// waits, so the stall hides in a single sample (coordinated omission).
func TestOpenLoopShowsStall(t *testing.T) {
	const stall = 300 * time.Millisecond
	for _, cl := range clients {
		t.Run(string(cl), func(t *testing.T) {
			t.Parallel()
			addr := faultserver.Start(t, frame.Line{}, faultserver.StallOnce{After: 200, For: stall})
			open := run(t, load.Options{Addr: addr.String(), Rate: 1000, Duration: time.Second, Client: cl})
			if !open.OK || !open.OpenLoop || open.RateOffered != 1000 {
				t.Fatalf("open loop run: %+v", open)
			}
			// About 300 of the 1000 frames were due during the stall, delayed
			// by up to 300ms: p90 falls among them.
			if open.Latency.P90US < 100e3 || open.Latency.MaxUS < 250e3 {
				t.Errorf("open loop hides the stall: p90 %.0fµs, max %.0fµs", open.Latency.P90US, open.Latency.MaxUS)
			}

			addr = faultserver.Start(t, frame.Line{}, faultserver.StallOnce{After: 200, For: stall})
			closed := run(t, load.Options{Addr: addr.String(), Duration: time.Second, Client: cl})
			if !closed.OK || closed.Latency.MaxUS < 250e3 {
				t.Fatalf("closed loop run: %+v", closed)
			}
			if closed.Latency.P90US > 50e3 {
				t.Errorf("closed loop p90 %.0fµs: want the stall in one sample only", closed.Latency.P90US)
			}
		})
	}
}

func TestIdle(t *testing.T) {
	for _, m := range model.Names() {
		for _, cl := range clients {
			t.Run(m+"/"+string(cl), func(t *testing.T) {
				t.Parallel()
				srv := startEcho(t, m, "length")
				sum := run(t, load.Options{Addr: srv.Addr().String(), Codec: frame.Length{}, Conns: 200, Idle: true,
					Hold: 100 * time.Millisecond, Ramp: 5000, Client: cl})
				if !sum.OK || sum.Mode != "idle" || sum.ConnsHeld != 200 || sum.FramesVerified != 200 {
					t.Fatalf("idle run: %+v", sum)
				}
				if st := srv.Stats(); st.ConnsTotal != 200 || st.FramesIn != 400 {
					t.Errorf("server saw %d connections and %d frames, want 200 and 400", st.ConnsTotal, st.FramesIn)
				}
			})
		}
	}
}

// TestIdleGate checks that an idle run waits at its gates: at the first the
// server has seen exactly one frame per connection, and still only that at
// the second (no last round trip starts before the gate opens); the last
// round trips follow it.
func TestIdleGate(t *testing.T) {
	for _, m := range model.Names() {
		for _, cl := range clients {
			t.Run(m+"/"+string(cl), func(t *testing.T) {
				t.Parallel()
				const conns = 50
				srv := startEcho(t, m, "line")
				var l *load.Load
				var gates []string
				gate := func(ctx context.Context, next string) {
					gates = append(gates, next)
					if p := l.Progress(); p.Phase != "waiting" || p.Open != conns {
						t.Errorf("at gate %q: progress %+v", next, p)
					}
					// The server counts a frame before it answers it, and every
					// answer was verified before the gate: no waiting needed.
					if in := srv.Stats().FramesIn; in != conns {
						t.Errorf("at gate %q the server has seen %d frames, want %d", next, in, conns)
					}
				}
				l, err := load.New(load.Options{Addr: srv.Addr().String(), Conns: conns, Idle: true,
					Hold: 10 * time.Millisecond, Gate: gate, Client: cl})
				if err != nil {
					t.Fatal(err)
				}
				sum, err := l.Run(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if !sum.OK || sum.ConnsHeld != conns || sum.HoldS <= 0 || sum.ConnectS <= 0 {
					t.Errorf("summary %+v", sum)
				}
				if want := []string{"holding", "verifying"}; !slices.Equal(gates, want) {
					t.Errorf("gates %q, want %q", gates, want)
				}
				if in := srv.Stats().FramesIn; in != 2*conns {
					t.Errorf("the server saw %d frames, want %d", in, 2*conns)
				}
			})
		}
	}
}

// TestIdleGateCancel checks that a run cancelled while it waits at a gate
// ends: the gate returns with the context, the hold and the second gate are
// skipped, and Run returns.
func TestIdleGateCancel(t *testing.T) {
	srv := startEcho(t, model.EventLoop, "line")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var gates []string
	gate := func(ctx context.Context, next string) {
		gates = append(gates, next)
		cancel()
		<-ctx.Done()
	}
	_, err := load.Run(ctx, load.Options{Addr: srv.Addr().String(), Conns: 5, Idle: true, Hold: time.Hour, Gate: gate,
		Logger: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(gates, []string{"holding"}) {
		t.Errorf("gates %q, want only the first", gates)
	}
}
