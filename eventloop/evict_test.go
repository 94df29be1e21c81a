package eventloop

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"echoloop/eventloop/frame"
	"echoloop/eventloop/session"
)

// TestEvictAcrossLoops checks that with two loops the memory budget evicts
// the server's biggest holder, even when the budget is passed by a read on
// the other loop: one connection holds most of the budget on one loop, small
// holders on both loops hold the rest, and a small one on the other loop
// pushes the total over. Evicting on that loop alone would close a small
// holder and keep the big one.
func TestEvictAcrossLoops(t *testing.T) {
	const budget = 4 << 20
	codec, err := frame.Parse("length", 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, Options{Loops: 2, Config: session.Config{
		Addr: "127.0.0.1:0", Codec: codec, MaxMemory: budget, FrameTimeout: -1,
	}})

	// partial sends the first n bytes of a frame of size bytes and waits
	// until the server holds at least want bytes in all.
	partial := func(c net.Conn, size, n int, want int64) {
		t.Helper()
		msg := binary.BigEndian.AppendUint32(nil, uint32(size))
		msg = append(msg, make([]byte, n)...)
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() (bool, string) {
			st := s.Stats()
			return st.MemoryHeld >= want, fmt.Sprintf("holding %d, want %d", st.MemoryHeld, want)
		})
	}
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	big := dial()
	partial(big, 8<<20, 3<<19, 3<<19) // held as a 2 MiB buffer
	held := s.Stats().MemoryHeld
	var small []net.Conn
	for range 4 {
		c := dial()
		partial(c, 1<<20, 1<<18, held+1<<18) // 512 KiB buffers
		held = s.Stats().MemoryHeld
		small = append(small, c)
	}

	// The loop of each connection, found on the loops themselves.
	var mu sync.Mutex
	loopOf := map[string]*loopState{}
	s.onEveryLoop(func(l *loopState) {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range l.busy {
			loopOf[c.gc.RemoteAddr().String()] = l
		}
	})
	bigLoop := loopOf[big.LocalAddr().String()]
	var pusher net.Conn
	for _, c := range small {
		if l := loopOf[c.LocalAddr().String()]; l != nil && l != bigLoop {
			pusher = c
		}
	}
	if bigLoop == nil || pusher == nil {
		t.Fatalf("connections not spread over both loops: %v", loopOf)
	}

	// Grow the pusher's frame until the server is over budget. Each piece
	// is waited for until read: how much a piece adds to what is held
	// depends on how its reads fall against the buffer's growth steps.
	more := make([]byte, 1<<18)
	for s.Stats().Closes[session.MemoryLimit] == 0 {
		in := s.Stats().BytesIn
		if _, err := pusher.Write(more); err != nil {
			t.Fatalf("the pusher was cut off: %v", err)
		}
		waitFor(t, func() (bool, string) {
			st := s.Stats()
			return st.BytesIn >= in+int64(len(more)) || st.Closes[session.MemoryLimit] > 0,
				fmt.Sprintf("read %d of %d, holding %d, closes %v", st.BytesIn-in, len(more), st.MemoryHeld, st.Closes)
		})
	}
	waitFor(t, func() (bool, string) {
		st := s.Stats()
		return st.MemoryHeld <= budget, fmt.Sprintf("holding %d over the budget %d", st.MemoryHeld, budget)
	})
	if n := s.Stats().Closes[session.MemoryLimit]; n != 1 {
		t.Errorf("%d connections evicted, want only the big one", n)
	}
	_ = big.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := big.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the big holder: read %v, want it closed", err)
	}
}

// waitFor polls cond until it holds, for at most 20s.
func waitFor(t *testing.T, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", state)
		}
		time.Sleep(time.Millisecond)
	}
}
