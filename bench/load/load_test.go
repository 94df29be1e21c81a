package load_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/rs/zerolog"

	"echoloop/bench/load"
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
