package eventloop_test

import (
	"context"
	"strings"
	"testing"

	"github.com/panjf2000/gnet/v2"
	"github.com/rs/zerolog"

	"echoloop/bench/servertest"
	"echoloop/eventloop"
	"echoloop/eventloop/frame"
	"echoloop/eventloop/session"
	"echoloop/handlers"
)

// bootOnly is a gnet engine that stops as soon as it has started.
type bootOnly struct{ gnet.BuiltinEventEngine }

func (*bootOnly) OnBoot(gnet.Engine) gnet.Action { return gnet.Shutdown }

// gnet keeps one logger per process. Once a server has stopped, gnet lines
// from other engines in the process (which keep gnet's current logger when
// they set none) must not reach its logger: a finished test's log, written
// to late, is a data race in the testing package.
func TestGnetLogsStopAtShutdown(t *testing.T) {
	var sink servertest.LogBuffer
	srv, err := eventloop.New(eventloop.Options{Config: session.Config{
		Addr: "127.0.0.1:0", Codec: frame.Line{}, Handler: handlers.Echo{},
		Logger: zerolog.New(&sink).Level(zerolog.DebugLevel),
	}})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.ListenAndServe() }()
	<-srv.Ready()
	if srv.Addr() == nil {
		t.Fatalf("server did not start: %v", <-served)
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-served
	if !strings.Contains(sink.String(), `"component":"gnet"`) {
		t.Fatalf("gnet's lines did not reach the running server's logger:\n%s", sink.String())
	}
	before := sink.String()

	if err := gnet.Run(&bootOnly{}, "tcp://127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if after := sink.String(); after != before {
		t.Errorf("a stopped server's logger received gnet lines from another engine:\n%s", after[len(before):])
	}
}
