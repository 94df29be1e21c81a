package eventloop

import (
	"context"
	"sync"
	"sync/atomic"

	"echoloop/eventloop/session"
	"echoloop/handlers"
)

// A loop's mailbox holds the frames sent to its connections through their
// AsyncConns until the loop writes them. Send, on any goroutine (a worker,
// another loop, or this loop serving another connection's frame), encodes
// the frame into the mailbox under a short lock and never touches a socket.
// The loop empties the mailbox in a task that the first Send since the last
// flush queues. gnet runs queued tasks at the end of a loop turn, after the
// sockets that were ready together with the task's wake-up (for a Send made
// during a turn that is the next turn, which is over at once when no other
// socket is ready). The flush groups the frames by connection, in the order
// they were sent, and writes each connection's frames with one write: a
// frame broadcast to 1,000 connections by each of 50 senders in one turn
// costs 1,000 writes, not 50,000. This is nats-server's flushClients (append
// to each receiver's pending output while reading, flush each receiver once
// at the end), over a loop turn rather than over one read. A mailbox past
// mailFlushAt is flushed at the end of the read that filled it instead, so a
// large fan-out does not pile up for a whole turn.
//
// Every byte in the mailbox counts toward the memory budget until it is
// flushed. Flushed frames join each connection's pending output, where the
// slow-consumer policy applies: a connection with more than MaxPending
// pending after its frames are written is closed as SlowConsumer (it cannot
// be paused: its frames come from others), as is one whose output makes no
// progress for the write timeout.
type mailbox struct {
	mu     sync.Mutex
	frames []byte // encoded frames, in the order sent
	sends  []mail // which connection each frame is for

	bytes atomic.Int64 // frames plus records queued, counted in the memory total
	armed atomic.Bool  // a flush task is queued and has not started
}

// mail records that the frame ending at end in mailbox.frames is for c.
type mail struct {
	c   *conn
	end int
}

// mailRecord is what one mail record costs, counted with its frame.
const mailRecord = 16

// mailFlushAt is how much the mailbox may hold before the loop flushes it at
// the end of a read rather than of the turn.
const mailFlushAt = 4 << 20

// maxKeptMail is the largest frame buffer a loop keeps for the next flush.
const maxKeptMail = 8 << 20

// post queues payload, encoded, for c, and has c's loop flush it. The
// payload is copied before post returns.
func (l *loopState) post(c *conn, payload []byte) error {
	m := &l.mail
	m.mu.Lock()
	n := len(m.frames)
	frames, err := c.Codec().Append(m.frames, payload)
	if err != nil {
		m.mu.Unlock()
		return err
	}
	m.frames = frames
	m.sends = append(m.sends, mail{c: c, end: len(frames)})
	size := int64(len(frames)-n) + mailRecord
	m.bytes.Add(size)
	m.mu.Unlock()
	l.srv.counters.AddMemory(size)
	if !m.armed.Load() && m.armed.CompareAndSwap(false, true) {
		if err := l.el.Execute(context.Background(), l.flushTask); err != nil {
			m.armed.Store(false)
			return handlers.ErrClosed // the engine is stopping: nothing will be written
		}
	}
	return nil
}

// fanout is one connection's share of a flush: its frames are chained
// through loopState.next, in the order sent.
type fanout struct {
	c           *conn
	first, last int32 // indexes into the flushed sends
	frames      int
}

// flushMail writes out everything in the mailbox, each connection's frames
// with one write. cur is the connection whose callback is running, or nil:
// it is marked, not closed under gnet's feet, and flushMail reports whether
// it must close (too slow, or evicted for memory).
func (l *loopState) flushMail(cur *conn) (closeCur bool) {
	m := &l.mail
	m.mu.Lock()
	frames, sends := m.frames, m.sends
	if len(sends) == 0 {
		m.mu.Unlock()
		return false
	}
	m.frames, m.sends = l.spareFrames[:0], l.spareSends[:0]
	queued := m.bytes.Swap(0)
	m.mu.Unlock()

	// Group by connection, keeping each one's frames in order.
	if cap(l.next) < len(sends) {
		l.next = make([]int32, len(sends))
	}
	next := l.next[:len(sends)]
	var last *conn
	at := -1
	for i, s := range sends {
		next[i] = -1
		if s.c != last {
			j, ok := l.fanIndex[s.c]
			if !ok {
				j = len(l.fans)
				l.fanIndex[s.c] = j
				l.fans = append(l.fans, fanout{c: s.c, first: int32(i), last: int32(i)})
			} else {
				next[l.fans[j].last] = int32(i)
				l.fans[j].last = int32(i)
			}
			last, at = s.c, j
		} else {
			next[l.fans[at].last] = int32(i)
			l.fans[at].last = int32(i)
		}
		l.fans[at].frames++
	}

	for _, f := range l.fans {
		if l.deliver(f, frames, sends, next, cur) {
			closeCur = true
		}
	}
	clear(l.fanIndex)
	clear(l.fans)
	l.fans = l.fans[:0]
	l.srv.counters.AddMemory(-queued)

	clear(sends) // keep no closed connection alive
	if cap(frames) > maxKeptMail {
		frames = nil
	}
	l.spareFrames, l.spareSends = frames[:0], sends[:0]
	return closeCur
}

// deliver writes f's frames to its connection in one write, then applies
// the slow-consumer cap and the memory budget. Frames for a connection that
// has closed or started closing are dropped, unless the handler owes them
// after a half-close: then they go to the hand-off that writes them.
func (l *loopState) deliver(f fanout, frames []byte, sends []mail, next []int32, cur *conn) (closeCur bool) {
	c := f.c
	if c.closed.Load() {
		if o := l.srv.owedTo(c); o != nil {
			o.add(l.gather(f, frames, sends, next), f.frames, l.srv.opts.MaxPending)
			l.reset()
		}
		return false
	}
	if c.Closing() != session.Open {
		return false
	}
	c.write(l.gather(f, frames, sends, next))
	l.reset()
	if c.closed.Load() {
		return false // the write failed and gnet has closed c
	}
	c.CountAsyncFrames(f.frames)
	if c.gc.OutboundBuffered() > l.srv.opts.MaxPending {
		c.CloseFor(session.SlowConsumer, nil)
		if c == cur {
			return true
		}
		_ = l.el.Close(c.gc)
		return false
	}
	return l.settle(c, cur)
}

// gather collects f's frames, in order, into the loop's output buffer.
func (l *loopState) gather(f fanout, frames []byte, sends []mail, next []int32) []byte {
	out := l.out[:0]
	for i := f.first; i >= 0; i = next[i] {
		start := 0
		if i > 0 {
			start = sends[i-1].end
		}
		out = append(out, frames[start:sends[i].end]...)
	}
	l.out = out
	return out
}

// runFlush is the task a Send queues on the loop (loopState.flushTask).
func (l *loopState) runFlush(context.Context) error {
	l.mail.armed.Store(false) // before the flush: a Send after it queues another
	l.flushMail(nil)
	return nil
}
