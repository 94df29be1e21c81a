package load_test

import (
	"context"
	"fmt"
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
