package eventloop

// connList is an intrusive doubly linked list of conns. A conn is in at
// most one list, whose index it keeps in slot; adding and removing are O(1)
// and allocate nothing.
type connList struct {
	head *conn
	n    int
}

// Slot values of a conn that is in no wheel slot.
const (
	noSlot   = -1 // in no list
	loopList = -2 // in the loop's list (no idle timeout)
)

func (l *connList) push(c *conn, slot int32) {
	c.slot, c.prev, c.next = slot, nil, l.head
	if l.head != nil {
		l.head.prev = c
	}
	l.head = c
	l.n++
}

func (l *connList) remove(c *conn) {
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		l.head = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	}
	c.slot, c.prev, c.next = noSlot, nil, nil
	l.n--
}

// take empties the list and returns its former head; the conns keep their
// next links so the caller can walk them, but belong to no list.
func (l *connList) take() *conn {
	head := l.head
	for c := head; c != nil; c = c.next {
		c.slot = noSlot
	}
	l.head, l.n = nil, 0
	return head
}

// wheel finds idle connections in time proportional to the connections due,
// not to all connections. Time is counted in ticks. A conn sits in the slot
// of the tick at which it would become idle if no byte arrived; a byte only
// updates its lastActive (see loopState.touch), never its slot. When a slot's
// tick comes, each conn in it is either idle (closed) or, having been active
// since, moved to the slot of its new due tick. So an active connection is
// looked at once per idle timeout, an idle one once.
//
// A conn keeps lastActive in 32 bits (wrapping after 2^32 ticks: 16 months
// at the smallest tick of 10ms); the wheel compares ticks by difference, so
// the wrap does not matter as long as one timeout is under 2^31 ticks.
type wheel struct {
	slots []connList
	span  int64 // ticks from the last activity to closing: the timeout plus one
	swept int64 // the last tick whose slot was processed
}

func newWheel(span int64, now int64) *wheel {
	// span+1 slots: a conn is never due more than span ticks ahead.
	return &wheel{slots: make([]connList, span+1), span: span, swept: now}
}

// activeAt is the full tick of c's last activity, as of now.
func activeAt(c *conn, now int64) int64 { return now - int64(int32(now)-c.lastActive) }

// add places c according to its lastActive, as of now.
func (w *wheel) add(c *conn, now int64) {
	i := (activeAt(c, now) + w.span) % int64(len(w.slots))
	w.slots[i].push(c, int32(i))
}

// remove takes c out of its slot.
func (w *wheel) remove(c *conn) { w.slots[c.slot].remove(c) }

// advance processes every slot from the last swept tick up to now and calls
// expire for each conn that has been inactive for span ticks. expire is
// called with c already out of the wheel.
func (w *wheel) advance(now int64, expire func(c *conn)) {
	n := int64(len(w.slots))
	from := max(w.swept+1, now-n+1) // after a long stall, each slot once
	for t := from; t <= now; t++ {
		// Detach the slot first: a conn may be due in this same slot again.
		var next *conn
		for c := w.slots[t%n].take(); c != nil; c = next {
			next = c.next
			c.prev, c.next = nil, nil
			if activeAt(c, now)+w.span <= now {
				expire(c)
			} else {
				w.add(c, now)
			}
		}
	}
	w.swept = max(w.swept, now)
}

// each calls fn for every conn in the wheel; fn may remove the conn.
func (w *wheel) each(fn func(c *conn)) {
	for i := range w.slots {
		each(&w.slots[i], fn)
	}
}

// each calls fn for every conn in l; fn may remove the conn.
func each(l *connList, fn func(c *conn)) {
	var next *conn
	for c := l.head; c != nil; c = next {
		next = c.next
		fn(c)
	}
}
