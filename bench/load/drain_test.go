package load_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"echoloop/bench/load"
	"echoloop/bench/load/faultserver"
	"echoloop/bench/model"
	"echoloop/bench/servertest"
	"echoloop/eventloop/frame"
)

// TestServerDrains stops a real server mid-run: it answers the frames it
// has read, then closes each connection after a whole reply. That is not a
// failure: the connections count as drained, the frames sent after the
// server's close as unanswered, and the run ends with no error.
func TestServerDrains(t *testing.T) {
	const conns = 8
	for _, m := range model.Names() {
		for _, cl := range clients {
			t.Run(fmt.Sprintf("%s/%s", m, cl), func(t *testing.T) {
				t.Parallel()
				srv := startEcho(t, m, "line")
				l, err := load.New(load.Options{Addr: srv.Addr().String(), Conns: conns, Pipeline: 4,
					Duration: 10 * time.Minute, Client: cl, Logger: zerolog.New(zerolog.NewTestWriter(t))})
				if err != nil {
					t.Fatal(err)
				}
				done := make(chan *load.Summary, 1)
				go func() {
					sum, err := l.Run(context.Background())
					if err != nil {
						t.Errorf("run: %v", err)
					}
					done <- sum
				}()
				servertest.Until(t, servertest.IOTimeout, "replies under load", func() (bool, string) {
					p := l.Progress()
					return p.Phase == "running" && p.Frames >= 1000, fmt.Sprintf("%+v", p)
				})
				ctx, cancel := context.WithTimeout(context.Background(), servertest.IOTimeout)
				defer cancel()
				if err := srv.Shutdown(ctx); err != nil {
					t.Fatalf("shutdown: %v", err)
				}
				var sum *load.Summary
				select {
				case sum = <-done:
				case <-time.After(servertest.IOTimeout):
					t.Fatal("the run did not end once the server had closed every connection")
				}
				if sum == nil {
					return
				}
				if sum.ErrorsTotal != 0 || sum.Mismatches != 0 || sum.ConnsDrained != conns || sum.ConnsHeld != 0 {
					t.Errorf("errors %d %v, mismatches %d, drained %d, held %d: want no error or mismatch and all %d connections drained",
						sum.ErrorsTotal, sum.Errors, sum.Mismatches, sum.ConnsDrained, sum.ConnsHeld, conns)
				}
				if sum.OK || !sum.Drained {
					t.Errorf("ok %v, drained %v: want a run that is not ok (cut short) but drained", sum.OK, sum.Drained)
				}
				if sum.FramesVerified+sum.FramesUnanswered != sum.FramesSent {
					t.Errorf("%d frames sent, %d verified, %d unanswered: every frame sent is answered or was in flight at the close",
						sum.FramesSent, sum.FramesVerified, sum.FramesUnanswered)
				}
			})
		}
	}
}

// TestServerClosesMidReply: a close in the middle of a reply, orderly as it
// is (FIN, not RST), is a failure, not a drain.
func TestServerClosesMidReply(t *testing.T) {
	for _, cl := range clients {
		t.Run(string(cl), func(t *testing.T) {
			t.Parallel()
			addr := faultserver.Start(t, frame.Line{}, faultserver.CloseMidReply{At: 50})
			sum := run(t, load.Options{Addr: addr.String(), Conns: 1, Requests: 1000, Client: cl})
			if sum.ConnsDrained != 0 || sum.Drained || sum.OK || len(sum.Errors) != 1 || sum.Errors[0].Kind != load.Closed {
				t.Errorf("drained %d (%v), ok %v, errors %+v: want one closed error", sum.ConnsDrained, sum.Drained, sum.OK, sum.Errors)
			}
		})
	}
}
