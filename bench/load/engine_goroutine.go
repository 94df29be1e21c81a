package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// goroutineEngine runs one goroutine per connection with blocking reads on a
// net.TCPConn, and a short-lived one for each blocking write. Between phases
// each connection's goroutine waits on its next channel; the coordinator
// hands it the next plan.
type goroutineEngine struct {
	l     *Load
	cfg   *config
	sink  *sharedHist
	conns []*gconn // dialed ones, in dial order; fixed once connect returns
	mu    sync.Mutex

	phaseWG sync.WaitGroup // connections still running the current phase
	exitWG  sync.WaitGroup // connection goroutines not yet returned
	failed  []*stats       // figures of connections that never opened
}

// gconn is one connection and its goroutine, which owns every field but
// next and written. While writing is set, out belongs to the goroutine
// writing it (write).
//
// Each batch of frames is written on a goroutine of its own so that replies
// are read while the batch waits for the socket to take it. A server that
// stops reading while its replies are not read (one blocked in write(2))
// would otherwise wait on the client while the client waits on it, whenever
// a batch is more than the socket buffers hold.
type gconn struct {
	connState
	e    *goroutineEngine
	nc   *net.TCPConn
	st   stats
	next chan *plan

	buf        []byte // buf[start:end] is received and not yet consumed
	start, end int

	out      []byte     // the batch of frames last filled
	writing  bool       // out is being written: fill no more until written answers
	written  chan error // write's answer for each batch: nil, or its error
	writeOut func()     // c.write, bound once in serve: "go c.write()" allocates per call

	last  int64 // last progress: a reply, or a send with nothing in flight
	rdl   int64 // read deadline now set on the socket
	timer *time.Timer
	dead  bool
}

func newGoroutineEngine(l *Load) *goroutineEngine {
	return &goroutineEngine{l: l, cfg: l.cfg, sink: &sharedHist{h: newHist()}}
}

func (e *goroutineEngine) newStats() stats {
	return stats{sink: e.sink, batch: make([]int64, 0, 64), live: &e.l.live}
}

func (e *goroutineEngine) connect(p *plan) {
	cfg := e.cfg
	var sem chan struct{}
	if cfg.Ramp == 0 {
		sem = make(chan struct{}, MaxConnecting)
	}
	dialer := net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: -1}
	if len(cfg.sources) > 0 {
		dialer.Control = bindNoPort
	}
	start := time.Now()
	e.phaseWG.Add(cfg.Conns)
	for i := range cfg.Conns {
		if cfg.Ramp > 0 {
			due := start.Add(time.Duration(float64(i) * 1e9 / cfg.Ramp))
			if !e.sleepUntil(due) {
				e.phaseWG.Add(i - cfg.Conns)
				break
			}
		} else {
			select {
			case sem <- struct{}{}:
			case <-e.l.cancelled:
			}
		}
		if e.l.stopDial.Load() {
			e.phaseWG.Add(i - cfg.Conns)
			break
		}
		d := dialer
		if len(cfg.sources) > 0 {
			d.LocalAddr = &net.TCPAddr{IP: cfg.sources[i%len(cfg.sources)]}
		}
		e.exitWG.Add(1)
		go e.dial(uint32(i), d, sem, p)
	}
	e.phaseWG.Wait()
}

// sleepUntil waits until t; false if the run was cancelled first.
func (e *goroutineEngine) sleepUntil(t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-e.l.cancelled:
		return false
	}
}

func (e *goroutineEngine) dial(id uint32, d net.Dialer, sem chan struct{}, p *plan) {
	defer e.exitWG.Done()
	c := &gconn{e: e, st: e.newStats(), next: make(chan *plan, 1)}
	c.init(id, e.cfg.Pipeline)
	nc, err := d.DialContext(context.Background(), "tcp", e.cfg.raddr.String())
	if sem != nil {
		<-sem
	}
	if err != nil {
		c.st.fail(err)
		c.st.flushLive()
		e.mu.Lock()
		e.failed = append(e.failed, &c.st)
		e.mu.Unlock()
		e.phaseWG.Done()
		return
	}
	c.nc = nc.(*net.TCPConn)
	e.l.live.established.Add(1)
	e.l.live.open.Add(1)
	e.mu.Lock()
	e.conns = append(e.conns, c)
	e.mu.Unlock()
	c.serve(p)
}

// serve runs the first plan, then every plan handed over until next closes.
func (c *gconn) serve(p *plan) {
	e := c.e
	size := min(max(e.cfg.Pipeline*e.cfg.wire, 4096), 64<<10)
	if e.cfg.Idle {
		size = 512
	}
	c.buf = make([]byte, size+e.cfg.wire)
	c.written, c.writeOut = make(chan error, 1), c.write
	for {
		if !c.dead {
			c.run(p)
		}
		c.st.flushLive()
		e.phaseWG.Done()
		var ok bool
		if p, ok = <-c.next; !ok {
			break
		}
	}
	if c.timer != nil {
		c.timer.Stop()
	}
	if c.writing { // a failed connection's, closed: the write is returning
		<-c.written
	}
	_ = c.nc.Close()
}

// write writes out and answers on written. It runs on a goroutine of its
// own, started by run for each batch. A write has no deadline of its own:
// while it blocks, frames are in flight and run's read deadline runs; a
// connection that fails is closed, which ends the write.
func (c *gconn) write() {
	_, err := c.nc.Write(c.out)
	c.written <- err
}

func (e *goroutineEngine) phase(p *plan) {
	var open []*gconn
	for _, c := range e.conns {
		if !c.dead {
			open = append(open, c)
		}
	}
	e.phaseWG.Add(len(open))
	for i, c := range open {
		c.begin(uint64(i))
		c.next <- p
	}
	e.phaseWG.Wait()
}

func (e *goroutineEngine) open() int { return int(e.l.live.open.Load()) }

func (e *goroutineEngine) close() []*stats {
	for _, c := range e.conns {
		close(c.next)
	}
	e.exitWG.Wait()
	all := append([]*stats{}, e.failed...)
	for _, c := range e.conns {
		all = append(all, &c.st)
	}
	return append(all, &stats{hist: e.sink.h})
}

func (c *gconn) fail(err error) {
	c.dead = true
	c.e.l.live.open.Add(-1)
	switch {
	case errors.Is(err, errDrained):
		c.st.drain(c.unanswered())
	case !errors.Is(err, errMismatch):
		c.st.fail(err)
	}
	if log := c.e.cfg.Logger; log.Debug().Enabled() {
		log.Debug().Str("component", "load").Uint32("conn", c.id).Err(err).Msg("connection failed")
	}
	_ = c.nc.SetLinger(0)
	_ = c.nc.Close()
}

func (e *goroutineEngine) at(t int64) time.Time { return e.l.base.Add(time.Duration(t)) }

// run drives the connection through plan p. It fills a batch of frames when
// the last one is written, starts writing it, and reads replies meanwhile.
// A frame's send time is when its batch is filled, just before the write. An
// open-loop frame that falls due during a write goes out after it (when the
// next reply shows the write has ended); its latency counts from when it was
// due.
//
// Deadlines: a timer update per read would cost as much as the rest of the
// loop, so the read deadline is moved only when it lags the wanted one
// (last progress + Timeout) by more than an eighth of Timeout, or must come
// sooner (an open-loop frame due). A timeout therefore fires after between
// 7/8 and all of Timeout without progress.
func (c *gconn) run(p *plan) {
	e, cfg := c.e, c.e.cfg
	timeout := int64(cfg.Timeout)
	for {
		now := e.l.now()
		var wake int64 // 0 while a batch is being written: only replies to wait for
		if !c.writing {
			if c.inflight() == 0 {
				c.last = now
			}
			c.out, wake = c.fill(c.out[:0], now, cfg, p, &c.st)
			if len(c.out) > 0 {
				c.writing = true
				go c.writeOut()
			}
		}
		if c.inflight() == 0 {
			if c.writing {
				// Every frame of the batch is answered, so the server has
				// taken all of it: the write is returning.
				c.writing = false
				if err := <-c.written; err != nil {
					c.fail(err)
					return
				}
				continue
			}
			if wake == never {
				return
			}
			c.wait(wake) // open loop: nothing in flight until the next frame is due
			continue
		}
		want := c.last + timeout
		if wake > 0 && wake < want {
			want = wake // wake up to send the next frame on time
		}
		if want < c.rdl || want-c.rdl > timeout/8 || c.rdl <= now {
			c.rdl = want
			if err := c.nc.SetReadDeadline(e.at(want)); err != nil {
				c.fail(err)
				return
			}
		}
		if c.start > 0 && c.end == len(c.buf) {
			c.end = copy(c.buf, c.buf[c.start:c.end])
			c.start = 0
		}
		n, err := c.nc.Read(c.buf[c.end:])
		now = e.l.now()
		if n > 0 {
			c.end += n
			used, cerr := c.consume(c.buf[c.start:c.end], now, cfg, &c.st)
			if cerr != nil {
				c.fail(cerr)
				return
			}
			if used > 0 {
				c.start += used
				c.last = now
				if c.start == c.end {
					c.start, c.end = 0, 0
				}
				if c.st.liveFrames >= 64 {
					c.st.flushLive()
				}
			}
		}
		if c.writing {
			select {
			case werr := <-c.written:
				c.writing = false
				if werr != nil {
					c.fail(werr)
					return
				}
			default: // still writing: go on reading
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded) && now-c.last < timeout*7/8:
			// a wake-up for the schedule
		case errors.Is(err, os.ErrDeadlineExceeded):
			c.fail(fmt.Errorf("%w: %d frames in flight, nothing received for %v", errTimeout, c.inflight(), time.Duration(now-c.last).Round(time.Millisecond)))
			return
		case errors.Is(err, io.EOF):
			c.fail(c.closed(c.end - c.start))
			return
		default:
			c.fail(err)
			return
		}
	}
}

// wait sleeps until the run-clock time t, or until the run is cancelled.
func (c *gconn) wait(t int64) {
	d := time.Duration(t - c.e.l.now())
	if d <= 0 {
		return
	}
	if c.timer == nil {
		c.timer = time.NewTimer(d)
	} else {
		c.timer.Reset(d)
	}
	select {
	case <-c.timer.C:
	case <-c.e.l.cancelled:
		c.timer.Stop()
	}
}

// bindNoPort sets IP_BIND_ADDRESS_NO_PORT before the dialer binds a source
// address, so the local port is chosen at connect time per destination and
// one source address is not limited to one port range across all servers.
func bindNoPort(network, address string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) { serr = setBindNoPort(int(fd)) })
	if err != nil {
		return err
	}
	return serr
}
