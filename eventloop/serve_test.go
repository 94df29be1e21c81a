package eventloop

import (
	"context"
	"testing"
	"time"
)

// serve starts a server with opts on its Addr (127.0.0.1:0 in tests) and
// shuts it down when the test ends.
func serve(t *testing.T, opts Options) *Server {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.ListenAndServe() }()
	<-s.Ready()
	if s.Addr() == nil {
		t.Fatalf("not listening: %v", <-served)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		<-served
	})
	return s
}
