package eventloop

import (
	"fmt"
	"slices"
	"testing"
	"time"
	"unsafe"
)

func TestWheel(t *testing.T) {
	w := newWheel(5, 0) // idle after 5 ticks
	quiet, busy := &conn{}, &conn{}
	w.add(quiet, 0)
	w.add(busy, 0)
	var expired []*conn
	expire := func(c *conn) { expired = append(expired, c) }
	for now := int64(1); now <= 12; now++ {
		if now%2 == 0 {
			busy.lastActive = int32(now) // traffic only updates lastActive
		}
		w.advance(now, expire)
		if now < 5 && len(expired) > 0 {
			t.Fatalf("tick %d: expired before the timeout", now)
		}
	}
	if len(expired) != 1 || expired[0] != quiet {
		t.Fatalf("expired %v, want only the quiet conn", expired)
	}
	if busy.slot < 0 {
		t.Fatal("the busy conn fell out of the wheel")
	}
}

func TestWheelCatchesUpAfterAStall(t *testing.T) {
	w := newWheel(3, 0)
	cs := make([]*conn, 10)
	for i := range cs {
		cs[i] = &conn{lastActive: int32(i % 3)}
		w.add(cs[i], 0)
	}
	n := 0
	w.advance(100, func(*conn) { n++ }) // one jump far past every slot
	if n != len(cs) {
		t.Fatalf("expired %d of %d after a long stall", n, len(cs))
	}
}

// TestWheelWraps runs the 32-bit activity ticks across their wrap.
func TestWheelWraps(t *testing.T) {
	start := int64(1<<32 - 3)
	w := newWheel(5, start)
	c := &conn{lastActive: int32(start)}
	w.add(c, start)
	expired := false
	for now := start + 1; now <= start+10; now++ {
		w.advance(now, func(*conn) { expired = true })
		if expired && now < start+5 {
			t.Fatalf("expired at tick %d, before the timeout", now-start)
		}
	}
	if !expired {
		t.Fatal("not expired across the wrap")
	}
}

// TestConnSize guards the per-connection cost the documentation states.
func TestConnSize(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("sizes stated for 64-bit platforms")
	}
	if got := unsafe.Sizeof(conn{}); got != 112 {
		t.Errorf("conn is %d bytes, documented as 112", got)
	}
}

func TestConnListRemove(t *testing.T) {
	var l connList
	a, b, c := &conn{}, &conn{}, &conn{}
	l.push(a, 7)
	l.push(b, 7)
	l.push(c, 7)
	l.remove(b)
	var got []*conn
	each(&l, func(x *conn) { got = append(got, x) })
	if len(got) != 2 || got[0] != c || got[1] != a || l.n != 2 || b.slot != noSlot || a.slot != 7 {
		t.Fatalf("after removing the middle: %v (n=%d)", got, l.n)
	}
}

// BenchmarkWheelTick measures one sweep tick with many connections tracked.
// idle: the connections went silent together and none is due yet, the cost
// between expiries, which does not grow with their number. active: every
// connection keeps talking, so each is re-slotted once per timeout, n/span
// per tick. fullscan: what a sweep over every connection costs instead.
func BenchmarkWheelTick(b *testing.B) {
	const span = 300 // a 5m timeout in 1s ticks
	for _, n := range []int{1000, 19000} {
		b.Run(fmt.Sprintf("idle/conns=%d", n), func(b *testing.B) {
			w := newWheel(span, 0)
			for range n {
				w.add(&conn{}, 0)
			}
			now := int64(0)
			b.ReportAllocs()
			for b.Loop() {
				if now++; now == span { // all would be due: start the quiet stretch again
					now, w.swept = 1, 0
				}
				w.advance(now, func(*conn) { b.Fatal("nothing should expire") })
			}
		})
		b.Run(fmt.Sprintf("active/conns=%d", n), func(b *testing.B) {
			w := newWheel(span, 0)
			for i := range n {
				w.add(&conn{lastActive: int32(i % span)}, 0)
			}
			now := int64(0)
			b.ReportAllocs()
			for b.Loop() {
				// Everything stays active: each tick re-slots what is due and
				// expires nothing, the steady state of a busy server.
				now++
				w.advance(now, func(*conn) { b.Fatal("nothing should expire") })
				for c := w.slots[(now+1)%int64(len(w.slots))].head; c != nil; c = c.next {
					c.lastActive = int32(now)
				}
			}
		})
		b.Run(fmt.Sprintf("fullscan/conns=%d", n), func(b *testing.B) {
			cs := make([]*conn, n)
			for i := range cs {
				cs[i] = &conn{}
			}
			now, expired := int64(0), 0
			for b.Loop() {
				now++
				for _, c := range cs {
					if int64(c.lastActive)+span <= now {
						expired++
					}
				}
			}
			_ = expired
		})
	}
}

// TestTouchStampedBySweep: a read counts as activity at the first sweep
// after it, however late that sweep runs, so the connection is not closed as
// idle before the timeout has passed since the read.
func TestTouchStampedBySweep(t *testing.T) {
	s := &Server{start: time.Now(), tick: time.Hour}
	l := &loopState{srv: s, wheel: newWheel(5, 0)} // idle after 5 ticks
	c, other := &conn{}, &conn{}
	l.add(c)
	var expired []*conn
	sweepAt := func(tick int64) {
		s.start = time.Now().Add(-time.Duration(tick)*s.tick - s.tick/2)
		l.clockNow()
		l.stampTouched()
		l.wheel.advance(l.now, func(c *conn) { expired = append(expired, c) })
	}
	sweepAt(1)
	// Read at tick 1, 2 and 3; the sweeps of ticks 2 and 3 do not come.
	l.touch(c)
	s.start = s.start.Add(-s.tick)
	l.add(other) // moves the loop's clock between the reads
	l.touch(c)
	l.touch(c)
	s.start = s.start.Add(-s.tick)
	l.touch(c)
	if len(l.touched) != 2 {
		t.Fatalf("c listed %d times, want once per clock the loop saw", len(l.touched))
	}
	sweepAt(4)
	if c.lastActive != 4 {
		t.Fatalf("c stamped %d by the sweep of tick 4", c.lastActive)
	}
	for tick := int64(5); tick <= 8; tick++ {
		sweepAt(tick)
		if slices.Contains(expired, c) {
			t.Fatalf("c closed as idle at tick %d, 5 ticks after its read at 3 or later", tick)
		}
	}
	sweepAt(9)
	if !slices.Contains(expired, c) {
		t.Fatal("c not closed as idle 5 ticks after the sweep that stamped it")
	}
}
