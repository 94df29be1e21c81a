package handlers

import (
	"bytes"
	"fmt"
	"sync"
	"time"
)

var (
	_ Handler      = (*Work)(nil)
	_ ConnObserver = (*Work)(nil)
	_ Finisher     = (*Work)(nil)
	_ Handler      = (*Block)(nil)
)

// Defaults of the work and block handlers.
const (
	// DefaultWork is the simulated work per frame.
	DefaultWork = 10 * time.Millisecond

	// DefaultWorkers is the work handler's pool size. The simulated work
	// waits (as on a disk, a database or another service) rather than
	// computes, so the pool is sized for waiting, not by the CPU count.
	DefaultWorkers = 64

	// QueuePerWorker is how many frames may wait for a worker, per worker:
	// the pool's queue holds Workers × QueuePerWorker frames.
	QueuePerWorker = 16
)

// pingPrefix marks the frames that Ping answers at once.
var pingPrefix = []byte("ping")

// WorkOptions configures NewWork.
type WorkOptions struct {
	// Work is how long each frame's simulated work takes (a sleep). Zero
	// means DefaultWork.
	Work time.Duration

	// Workers is the most frames worked on at once. Zero means
	// DefaultWorkers.
	Workers int

	// Ping answers a frame that starts with "ping" at once, without the
	// work, ahead of any work replies still due on its connection.
	Ping bool
}

// Work does each frame's slow work (simulated: a sleep) on a bounded pool
// of worker goroutines and answers with the frame itself through the
// connection's AsyncConn once the work is done, so the goroutine serving
// frames, the event loop included, never waits for it.
//
// A connection's frames are worked on one at a time, in the order they
// arrived, so its replies come back in that order; frames of different
// connections run in parallel, up to Workers at once. Connections with work
// waiting take turns, a frame each.
//
// The queue of frames waiting for a worker holds Workers × QueuePerWorker
// frames. A connection whose frame fills it is paused (Conn.Pause): the
// server stops serving its frames, and the goroutine model stops reading
// it, so TCP pushes back on the client the way a busy server does, and
// nothing is lost. As workers take frames off the queue, the paused
// connections are resumed, the longest-paused first. The queue therefore
// holds at most its size plus one frame per connection.
//
// A peer that half-closes, or is drained by a shutdown, gets every reply
// still owed, then the close: Work is a Finisher, and closes the
// connection once its last frame is answered.
//
// Workers are started as frames arrive, up to Workers, and exit when no
// frame waits, so an idle Work holds no goroutines.
type Work struct {
	work     time.Duration
	workers  int
	queueCap int
	ping     bool

	mu      sync.Mutex
	conns   map[uint64]*workConn
	ready   fifo[*workConn] // connections with frames waiting and no worker on them
	paused  fifo[*workConn] // connections paused on a full queue, oldest first
	queued  int             // frames waiting for a worker, over all connections
	running int             // worker goroutines
}

// workConn is one connection's share of the pool; guarded by Work.mu.
type workConn struct {
	ac     AsyncConn
	frames fifo[[]byte] // copies of the frames waiting, oldest first
	busy   bool         // in ready, or a worker is on its frame
	paused bool         // in Work.paused
	closed bool
	ended  bool // Finish came: close once the last frame is answered
}

// NewWork returns a Work handler; a negative Work or Workers is an error.
func NewWork(o WorkOptions) (*Work, error) {
	if o.Work < 0 {
		return nil, fmt.Errorf("%w: work %v is negative", ErrConfig, o.Work)
	}
	if o.Workers < 0 {
		return nil, fmt.Errorf("%w: %d workers is negative", ErrConfig, o.Workers)
	}
	if o.Work == 0 {
		o.Work = DefaultWork
	}
	if o.Workers == 0 {
		o.Workers = DefaultWorkers
	}
	return &Work{
		work: o.Work, workers: o.Workers, queueCap: o.Workers * QueuePerWorker, ping: o.Ping,
		conns: make(map[uint64]*workConn),
	}, nil
}

// OpenConn implements ConnObserver.
func (w *Work) OpenConn(c Conn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.conns[c.ID()] = &workConn{ac: c.Async()}
}

// CloseConn implements ConnObserver: the connection's waiting frames are
// dropped, and the room they took in the queue goes to paused connections.
func (w *Work) CloseConn(c Conn) {
	w.mu.Lock()
	wc := w.conns[c.ID()]
	delete(w.conns, c.ID())
	if wc == nil {
		w.mu.Unlock()
		return
	}
	wc.closed = true
	w.queued -= wc.frames.len()
	wc.frames = fifo[[]byte]{}
	resume := w.admit()
	w.mu.Unlock()
	resumeAll(resume)
}

// Finish implements Finisher: the connection is closed now if no frame of
// its waits or is being worked on, else by the worker that answers its
// last.
func (w *Work) Finish(ac AsyncConn) {
	w.mu.Lock()
	wc := w.conns[ac.ID()]
	done := wc == nil || !wc.busy
	if wc != nil {
		wc.ended = true
	}
	w.mu.Unlock()
	if done {
		_ = ac.Close()
	}
}

// ServeFrame implements Handler: it queues a copy of frame for a worker.
func (w *Work) ServeFrame(c Conn, frame []byte) {
	if w.ping && bytes.HasPrefix(frame, pingPrefix) {
		_ = c.Reply(frame)
		return
	}
	f := bytes.Clone(frame) // frame dies when ServeFrame returns
	if f == nil {
		f = []byte{}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	wc := w.conns[c.ID()]
	if wc == nil || wc.closed {
		return // not opened through OpenConn: nothing to answer through
	}
	wc.frames.push(f)
	w.queued++
	if !wc.busy {
		wc.busy = true
		w.ready.push(wc)
		if w.running < w.workers {
			w.running++
			go w.run()
		}
	}
	if w.queued >= w.queueCap && !wc.paused {
		// Full: this connection sends no more until there is room. Paused
		// before anyone can resume it (admit runs under mu).
		c.Pause()
		wc.paused = true
		w.paused.push(wc)
	}
}

// run is a worker: it takes the connection first in line, does the work of
// its oldest frame and answers, then puts the connection back in line if
// it has more, until no connection waits.
func (w *Work) run() {
	w.mu.Lock()
	for {
		wc, ok := w.ready.pop()
		if !ok {
			w.running--
			w.mu.Unlock()
			return
		}
		f, ok := wc.frames.pop()
		if !ok || wc.closed {
			wc.busy = false
			continue
		}
		w.queued--
		resume := w.admit()
		w.mu.Unlock()

		resumeAll(resume)
		time.Sleep(w.work) // the simulated work: blocks this worker only
		// Sent before the connection's next frame can start (it is not
		// back in line yet), so replies keep the frames' order.
		_ = wc.ac.Send(f)

		w.mu.Lock()
		if wc.frames.len() > 0 && !wc.closed {
			w.ready.push(wc)
			continue
		}
		wc.busy = false
		if wc.ended && !wc.closed {
			// The peer half-closed and this was its last frame: after
			// the reply just sent (the close comes after it).
			w.mu.Unlock()
			_ = wc.ac.Close()
			w.mu.Lock()
		}
	}
}

// admit takes from the paused list the connections that now fit in the
// queue, one per free place, and returns their handles for resumeAll.
// Called with mu held.
func (w *Work) admit() []AsyncConn {
	var resume []AsyncConn
	for free := w.queueCap - w.queued; len(resume) < free; {
		wc, ok := w.paused.pop()
		if !ok {
			break
		}
		wc.paused = false
		if !wc.closed {
			resume = append(resume, wc.ac)
		}
	}
	return resume
}

// resumeAll resumes paused connections, outside Work.mu: Resume may queue
// a task on an event loop.
func resumeAll(acs []AsyncConn) {
	for _, ac := range acs {
		_ = ac.Resume()
	}
}

// Block does the same simulated work as Work, but on the goroutine serving
// the frame, then answers with the frame: on purpose, to show what blocking
// does. On the event loop every connection of the loop waits for it; on the
// goroutine model only the connection whose frame it is.
type Block struct {
	work time.Duration
	ping bool
}

// NewBlock returns a Block handler doing work per frame (zero means
// DefaultWork; negative is an error); ping answers frames that start with
// "ping" at once.
func NewBlock(work time.Duration, ping bool) (*Block, error) {
	if work < 0 {
		return nil, fmt.Errorf("%w: work %v is negative", ErrConfig, work)
	}
	if work == 0 {
		work = DefaultWork
	}
	return &Block{work: work, ping: ping}, nil
}

// ServeFrame implements Handler.
func (b *Block) ServeFrame(c Conn, frame []byte) {
	if !(b.ping && bytes.HasPrefix(frame, pingPrefix)) {
		time.Sleep(b.work) // frame stays valid: ServeFrame has not returned
	}
	_ = c.Reply(frame)
}

// fifo is a first-in, first-out queue on a slice that reuses its space.
type fifo[T any] struct {
	items []T
	head  int
}

func (q *fifo[T]) len() int { return len(q.items) - q.head }

func (q *fifo[T]) push(v T) {
	if q.head > 0 && q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0 // empty: start over at the front
	}
	q.items = append(q.items, v)
}

func (q *fifo[T]) pop() (v T, ok bool) {
	if q.head == len(q.items) {
		return v, false
	}
	v = q.items[q.head]
	var zero T
	q.items[q.head] = zero // drop the reference
	q.head++
	if q.head > 32 && q.head*2 > len(q.items) {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	return v, true
}
