package load_test

import (
	"context"
	"fmt"
	"log"

	"echoloop/bench/load"
	"echoloop/bench/model"
	"echoloop/eventloop/frame"
	"echoloop/eventloop/session"
)

// Run a verified load against a length-prefixed echo server: 4 connections,
// 8 frames in flight on each, 1000 measured frames after the first round
// trip on each connection.
func Example() {
	srv, err := model.New(model.Options{Config: session.Config{Addr: "127.0.0.1:0", Codec: frame.Length{}}})
	if err != nil {
		log.Fatal(err)
	}
	go srv.ListenAndServe()
	<-srv.Ready()
	defer srv.Shutdown(context.Background())

	sum, err := load.Run(context.Background(), load.Options{
		Addr: srv.Addr().String(), Codec: frame.Length{},
		Conns: 4, Size: 128, Pipeline: 8, Requests: 1000,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(sum.OK, sum.FramesVerified, sum.Mismatches, sum.Latency.Count)
	// Output: true 1000 0 1000
}
