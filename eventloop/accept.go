package eventloop

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"echoloop/eventloop/session"
)

// The server owns its listening socket and accepts on a goroutine of its
// own, handing each connection to a loop through gnet's Engine.Register
// (EventLoop.Enroll), rather than letting gnet accept. In gnet v2.10.0 an
// accept(2) that fails with anything but EAGAIN, EINTR or a connection
// already reset (EMFILE, ENFILE, ENOBUFS, ENOMEM) stops the whole engine and
// drops every connection, whether the descriptors ran out through us or
// through something the connection cap cannot see. Owning accept lets such
// a failure back off, as net/http and the goroutine model do, while the
// loops go on serving; it also makes "address in use" the listen's own
// error, and lets a drain stop accepting without stopping the engine.
//
// Enroll costs a dup(2) per connection on one of gnet's worker goroutines,
// which holds the socket's second descriptor until OnOpen has run on the
// loop. At most maxEnrolling connections are between accept and OnOpen at
// once, so the process never holds more than 2*maxEnrolling descriptors
// beyond those OnOpen counts against MaxConns, well inside
// session.FDReserve; and a burst waits in the kernel's listen backlog, not
// in a queue of ours.
const maxEnrolling = 8

// An accept burst of at least burstMin connections is followed, once no
// connection has come for burstQuiet, by a collection that gives its garbage
// back to the OS; see acceptor.loop.
const (
	burstMin   = 100
	burstQuiet = time.Second
)

// While the open connections grow, the acceptor starts a collection each
// time they have grown by 1/growthStep (and at least burstMin) since the
// last one. Each enrollment leaves about 800 bytes of garbage (package net's
// netFD, Enroll's channels and closures, the remote address resolved
// again), much of it in the size classes of what every connection keeps
// (its addresses, gnet's boxed safe context, our conn). The collector
// frees garbage but moves nothing, so what was made since the last
// collection stays as holes between the survivors, resident while the
// connections idle. Left to the pacer, which lets the heap double, a burst
// of 10,000 ended with about 105 B of holes per connection; collecting at
// each eighth of growth leaves about 30 B, for 3 to 8 µs of collector CPU
// per connection accepted. Churn at a steady count triggers none: its new
// connections fill the holes.
const growthStep = 8

// acceptor accepts connections from ln and enrolls them on the engine's
// loops.
type acceptor struct {
	s    *Server
	ln   net.Listener
	eng  gnet.Engine
	done chan struct{} // closed when the engine has stopped: stop waiting on it

	enrolling  chan (<-chan gnet.RegisteredResult) // results not yet seen
	collecting atomic.Bool                         // a collection started by loop runs; set by loop, cleared by collect
	wg         sync.WaitGroup
}

// startAcceptor starts accepting from ln onto eng's loops; stop ends it.
func (s *Server) startAcceptor(ln net.Listener, eng gnet.Engine) *acceptor {
	a := &acceptor{
		s:         s,
		ln:        ln,
		eng:       eng,
		done:      make(chan struct{}),
		enrolling: make(chan (<-chan gnet.RegisteredResult), maxEnrolling-1),
	}
	a.wg.Go(a.reap)
	a.wg.Go(a.loop)
	return a
}

// stop closes the listener (new connections are then refused by the
// kernel) and waits until every accepted connection has reached its loop.
// It must run while the loops still run, or after engineStopped.
func (a *acceptor) stop() {
	_ = a.ln.Close()
	a.wg.Wait()
}

// engineStopped tells the acceptor that the loops have stopped, so that
// enrollments they never finished are not waited for.
func (a *acceptor) engineStopped() { close(a.done) }

// loop accepts until the listener closes.
func (a *acceptor) loop() {
	defer close(a.enrolling)
	s := a.s
	var backoff session.AcceptBackoff
	// After a burst of accepts, collect what the enrollments left behind
	// and give the pages back, once the burst has been over for
	// burstQuiet: otherwise a quiet server keeps the burst's garbage in
	// its resident size until the collector next runs, which on an idle
	// heap may be minutes away. Steady churn keeps resetting the timer and
	// reuses that memory instead.
	var burst atomic.Int64
	reclaim := time.AfterFunc(time.Hour, func() {
		if burst.Swap(0) >= burstMin {
			debug.FreeOSMemory() // collects first
		}
	})
	reclaim.Stop()
	defer reclaim.Stop()
	var grown growth
	for {
		nc, err := a.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors (ours or the system's) or kernel memory:
			// the loops keep serving; the new connection waits in the
			// backlog until the pause is over.
			s.counters.AcceptFailed()
			pause := backoff.Failed()
			s.rejectLog.Warn().Err(err).Stringer("retry_in", pause).Msg("accept failed")
			time.Sleep(pause)
			continue
		}
		backoff.Succeeded()
		// Failing, it leaves the kernel's own bound: the send buffer.
		_ = session.LimitUnsent(nc)
		if burst.Add(1) >= burstMin {
			reclaim.Reset(burstQuiet)
		}
		if !a.collecting.Load() && grown.step(s.counters.Open()) {
			a.collecting.Store(true)
			a.wg.Go(a.collect)
		}
		res, err := a.eng.Register(gnet.NewNetConnContext(context.Background(), nc))
		if err != nil {
			// The engine is stopping.
			_ = nc.Close()
			continue
		}
		a.enrolling <- res // blocks while maxEnrolling are on their way
	}
}

// growth tells when the open connections have grown by a step (see
// growthStep) since the last collection.
type growth struct {
	base int64 // open connections at the last step, or the fewest since
}

// step notes that open connections are open and reports whether they have
// grown by a step, which then starts the next.
func (g *growth) step(open int64) bool {
	g.base = min(g.base, open)
	if open-g.base < max(burstMin, g.base/growthStep) {
		return false
	}
	g.base = open
	return true
}

// collect runs a collection while connections arrive (see growthStep), off
// the accept path.
func (a *acceptor) collect() {
	runtime.GC()
	a.collecting.Store(false)
}

// reap waits for each enrollment in turn, which bounds how many are in
// flight, and reports those that failed.
func (a *acceptor) reap() {
	for res := range a.enrolling {
		select {
		case r := <-res:
			if r.Err != nil {
				// Register closes the accepted socket itself; the
				// usual cause is dup(2) meeting EMFILE.
				a.s.counters.AcceptFailed()
				a.s.rejectLog.Warn().Err(r.Err).Msg("accept failed: cannot hand the connection to a loop")
			}
		case <-a.done:
		}
	}
}

// engineSocket makes the path of a Unix socket for gnet's own listener, in
// a directory only this process can enter. gnet v2.10.0 will not run an
// engine without a listener of its own, but every connection comes through
// the acceptor: nothing ever connects to this one, and the directory is
// removed as soon as the engine has bound it. remove removes the directory.
func engineSocket() (path string, remove func(), err error) {
	dir, err := os.MkdirTemp("", "echoloop-")
	if err != nil {
		return "", nil, err
	}
	return filepath.Join(dir, "engine.sock"), func() { _ = os.RemoveAll(dir) }, nil
}
