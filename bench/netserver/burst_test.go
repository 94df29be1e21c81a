package netserver_test

import (
	"io"
	"net"
	"runtime"
	"testing"

	"echoloop/bench/model"
	"echoloop/bench/servertest"
	"echoloop/eventloop/frame"
	"echoloop/eventloop/session"
)

// Busy connections borrow large buffers only while data flows: after a
// burst of 64 KiB each, a thousand connections that are still open must
// not each keep a burst-sized read buffer and reply buffer (128 KiB).
func TestBurstBuffersAreGivenBack(t *testing.T) {
	const conns, frames, size = 1000, 16, 4096
	srv := servertest.Start(t, model.Options{Model: model.Goroutine, Config: session.Config{Codec: frame.Length{}}})
	burst, err := frame.Length{}.Append(nil, make([]byte, size))
	if err != nil {
		t.Fatal(err)
	}
	for range frames - 1 {
		burst = append(burst, burst[:4+size]...)
	}

	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	cs := make([]net.Conn, conns)
	for i := range cs {
		cs[i] = servertest.Dial(t, srv.Addr())
	}
	before := heap()
	reply := make([]byte, len(burst))
	for _, c := range cs {
		if _, err := c.Write(burst); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, reply); err != nil {
			t.Fatal(err)
		}
	}
	perConn := int64(heap()-before) / conns
	t.Logf("heap per connection after a %d KiB burst: %d bytes", len(burst)>>10, perConn)
	if perConn > 40<<10 {
		t.Errorf("each connection keeps %d bytes of heap after its burst; want under 40 KiB", perConn)
	}
}
