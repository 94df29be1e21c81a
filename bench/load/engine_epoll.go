//go:build linux

package load

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const haveEpoll = true

// defaultClient is Epoll: pinned to one core against a server on the
// other, it makes about a third more round trips per second than the
// goroutine client (figures in the package documentation).
const defaultClient = Epoll

// epollEngine drives the connections from Options.Loops goroutines, each
// with its own epoll instance and an even share of the connections
// (connection i belongs to loop i mod Loops). A loop runs only inside
// connect and phase; between phases its sockets sit untouched.
type epollEngine struct {
	l     *Load
	loops []*eloop
	start int64 // when connect began: the ramp's zero
}

// Connection states.
const (
	stNew uint8 = iota
	stConnecting
	stOpen
	stDead
)

// econn is one connection, owned by its loop.
type econn struct {
	connState
	fd     int
	state  uint8
	events uint32 // epoll interest now registered
	in     []byte // a partial reply carried to the next read
	out    []byte // encoded frames the socket did not take yet
	last   int64  // last progress, or the connect attempt's start
}

// eloop is one epoll loop; every field belongs to the goroutine running it.
type eloop struct {
	e      *epollEngine
	l      *Load
	cfg    *config
	epfd   int
	poller *os.File        // epfd, registered in the Go runtime's poller
	rc     syscall.RawConn // poller's, to park the goroutine until epfd is readable
	conns  []*econn        // this loop's connections in dial order; epoll data is the index
	events []unix.EpollEvent
	rbuf   []byte
	wbuf   []byte
	st     stats

	plan       *plan
	alive      int   // open connections
	connecting int   // connection attempts in progress
	dialed     int   // connections attempted so far (connect phase)
	inflight   int64 // frames sent and not yet answered, over the open connections
	unsent     int64 // frames the open connections will still send this phase; -1: unbounded

	order      []*econn // open loop: open connections in traffic-index order
	curK       uint64   // open loop: next frame to release is round curK...
	curJ       int      // ...of connection order[curJ]
	nextFrame  int64    // open loop: when that frame is due; never when none is left
	nextSweep  int64
	sweepEvery int64
}

func newEpollEngine(l *Load) (engine, error) {
	cfg := l.cfg
	e := &epollEngine{l: l}
	for range cfg.Loops {
		fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			e.close()
			return nil, fmt.Errorf("load: epoll_create1: %w", err)
		}
		lp := &eloop{e: e, l: l, cfg: cfg, epfd: fd, events: make([]unix.EpollEvent, 256),
			rbuf: make([]byte, 64<<10+2*cfg.wire), st: stats{hist: newHist(), live: &l.live}}
		// An epoll fd is itself pollable: readable when it has events. Handing it
		// to the runtime's poller lets the loop park like any goroutine blocked
		// on a socket, instead of blocking its thread in epoll_wait (which makes
		// the scheduler hand the P to another thread after 20µs: two context
		// switches per idle wait).
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
			e.close()
			return nil, fmt.Errorf("load: epoll fd: %w", err)
		}
		lp.poller = os.NewFile(uintptr(fd), "epoll")
		rc, err := lp.poller.SyscallConn()
		if err != nil {
			lp.poller.Close()
			e.close()
			return nil, fmt.Errorf("load: epoll fd: %w", err)
		}
		lp.rc = rc
		lp.sweepEvery = int64(max(min(cfg.Timeout, cfg.DialTimeout)/10, time.Millisecond))
		e.loops = append(e.loops, lp)
	}
	for i := range cfg.Conns {
		lp := e.loops[i%len(e.loops)]
		c := &econn{fd: -1}
		c.init(uint32(i), cfg.Pipeline)
		lp.conns = append(lp.conns, c)
	}
	return e, nil
}

func (e *epollEngine) each(fn func(lp *eloop)) {
	var wg sync.WaitGroup
	for _, lp := range e.loops {
		wg.Go(func() { fn(lp) })
	}
	wg.Wait()
}

func (e *epollEngine) connect(p *plan) {
	e.start = e.l.now()
	e.each(func(lp *eloop) {
		lp.begin(p)
		lp.run(true)
	})
}

func (e *epollEngine) phase(p *plan) {
	idx := uint64(0)
	for i := range e.l.cfg.Conns { // traffic index: dial order among the open connections
		lp := e.loops[i%len(e.loops)]
		c := lp.conns[i/len(e.loops)]
		if c.state == stOpen {
			c.begin(idx)
			idx++
		}
	}
	e.each(func(lp *eloop) {
		lp.begin(p)
		lp.order = lp.order[:0]
		for _, c := range lp.conns {
			if c.state == stOpen {
				lp.order = append(lp.order, c)
				if r := c.remaining(p); r < 0 || lp.unsent < 0 {
					lp.unsent = -1
				} else {
					lp.unsent += r
				}
			}
		}
		lp.curK, lp.curJ = 0, 0
		lp.nextFrame = never
		now := lp.l.now()
		if p.pacer != nil {
			lp.setNextFrame()
		} else {
			for _, c := range lp.order {
				lp.send(c, now)
			}
		}
		lp.run(false)
	})
}

func (e *epollEngine) open() int { return int(e.l.live.open.Load()) }

func (e *epollEngine) close() []*stats {
	var all []*stats
	for _, lp := range e.loops {
		for _, c := range lp.conns {
			if c.fd >= 0 {
				_ = unix.Close(c.fd)
				c.fd = -1
			}
		}
		_ = lp.poller.Close()
		all = append(all, &lp.st)
	}
	return all
}

func (lp *eloop) begin(p *plan) {
	lp.plan = p
	lp.unsent = 0
	lp.nextSweep = lp.l.now() + lp.sweepEvery
}

// run is the loop: dial (connect phase), release due open-loop frames, check
// timeouts, wait for readiness, handle it; until the phase is finished.
func (lp *eloop) run(dialing bool) {
	for {
		now := lp.l.now()
		wake := now + int64(100*time.Millisecond) // notice cancellation
		if dialing {
			if t := lp.dial(now); t > 0 {
				wake = min(wake, t)
			}
		}
		if lp.plan.pacer != nil {
			lp.release(now)
			if lp.nextFrame != never {
				wake = min(wake, lp.nextFrame)
			}
		}
		if now >= lp.nextSweep {
			lp.sweep(now)
			lp.nextSweep = now + lp.sweepEvery
		}
		wake = min(wake, lp.nextSweep)
		lp.st.flushLive()
		if lp.finished(now, dialing) {
			return
		}
		n := lp.wait(wake)
		now = lp.l.now()
		for _, ev := range lp.events[:n] {
			c := lp.conns[ev.Fd]
			switch c.state {
			case stConnecting:
				lp.connected(c, ev.Events, now)
			case stOpen:
				if ev.Events&(unix.EPOLLIN|unix.EPOLLERR|unix.EPOLLHUP|unix.EPOLLRDHUP) != 0 {
					lp.read(c, now)
				}
				if c.state == stOpen && ev.Events&unix.EPOLLOUT != 0 {
					lp.flush(c, now)
				}
			}
		}
	}
}

func (lp *eloop) finished(now int64, dialing bool) bool {
	if dialing && (lp.dialed < len(lp.conns) || lp.connecting > 0) {
		return false
	}
	switch p := lp.plan; {
	case lp.inflight > 0:
		return false
	case lp.alive == 0, lp.unsent == 0, now >= p.windowEnd.Load():
		return true
	case p.budget != nil && p.budget.Load() <= 0:
		return true
	}
	return false
}

// dial starts the connection attempts that are due and returns when the
// next one is (0 if none is waiting on the ramp).
func (lp *eloop) dial(now int64) int64 {
	cfg := lp.cfg
	if lp.l.stopDial.Load() {
		lp.dialed = len(lp.conns)
	}
	perLoop := max(MaxConnecting/len(lp.e.loops), 1)
	for lp.dialed < len(lp.conns) {
		c := lp.conns[lp.dialed]
		if cfg.Ramp > 0 {
			due := lp.e.start + int64(float64(c.id)*1e9/cfg.Ramp)
			if due > now {
				return due
			}
		} else if lp.connecting >= perLoop {
			return 0
		}
		lp.dialed++
		lp.startConnect(c, now)
	}
	return 0
}

func (lp *eloop) startConnect(c *econn, now int64) {
	cfg := lp.cfg
	c.last = now
	sa, family := sockaddr(cfg.raddr.IP, cfg.raddr.Port)
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		lp.dead(c, fmt.Errorf("socket: %w", err))
		return
	}
	c.fd = fd
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	if len(cfg.sources) > 0 {
		src, _ := sockaddr(cfg.sources[int(c.id)%len(cfg.sources)], 0)
		if err = setBindNoPort(fd); err == nil {
			err = unix.Bind(fd, src)
		}
		if err != nil {
			lp.dead(c, fmt.Errorf("bind source address: %w", err))
			return
		}
	}
	err = unix.Connect(fd, sa)
	switch {
	case err == nil:
		if lp.register(c, unix.EPOLLIN|unix.EPOLLRDHUP) {
			lp.opened(c, now)
		}
	case errors.Is(err, unix.EINPROGRESS):
		c.state = stConnecting
		lp.connecting++
		lp.register(c, unix.EPOLLOUT)
	default:
		lp.dead(c, fmt.Errorf("connect: %w", err))
	}
}

func (lp *eloop) register(c *econn, events uint32) bool {
	ev := unix.EpollEvent{Events: events, Fd: int32(c.id) / int32(len(lp.e.loops))}
	if err := unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_ADD, c.fd, &ev); err != nil {
		lp.dead(c, fmt.Errorf("epoll_ctl: %w", err))
		return false
	}
	c.events = events
	return true
}

func (lp *eloop) interest(c *econn, events uint32) {
	if c.events == events {
		return
	}
	ev := unix.EpollEvent{Events: events, Fd: int32(c.id) / int32(len(lp.e.loops))}
	if err := unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_MOD, c.fd, &ev); err != nil {
		lp.fail(c, fmt.Errorf("epoll_ctl: %w", err))
		return
	}
	c.events = events
}

// connected finishes a connection attempt the poller reported.
func (lp *eloop) connected(c *econn, events uint32, now int64) {
	errno, err := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err == nil && errno != 0 {
		err = unix.Errno(errno)
	}
	if err == nil && events&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		err = unix.ECONNREFUSED
	}
	if err != nil {
		lp.dead(c, fmt.Errorf("connect: %w", err))
		return
	}
	lp.connecting--
	lp.opened(c, now)
	if c.state == stOpen && len(c.out) == 0 {
		lp.interest(c, unix.EPOLLIN|unix.EPOLLRDHUP) // no longer EPOLLOUT
	}
}

// opened counts a new connection and starts the connect phase's plan on it.
func (lp *eloop) opened(c *econn, now int64) {
	c.state = stOpen
	lp.alive++
	lp.l.live.established.Add(1)
	lp.l.live.open.Add(1)
	c.begin(0)
	lp.unsent += c.remaining(lp.plan)
	lp.send(c, now)
}

// dead closes a connection that never opened.
func (lp *eloop) dead(c *econn, err error) {
	if c.state == stConnecting {
		lp.connecting--
	}
	if c.fd >= 0 {
		_ = unix.Close(c.fd)
		c.fd = -1
	}
	c.state = stDead
	lp.st.fail(err)
	lp.debug(c, err)
}

// fail closes an open connection.
func (lp *eloop) fail(c *econn, err error) {
	if c.state != stOpen {
		return
	}
	lp.inflight -= int64(c.inflight())
	if r := c.remaining(lp.plan); r > 0 && lp.unsent > 0 {
		lp.unsent -= r
	}
	_ = unix.Close(c.fd)
	c.fd = -1
	c.state = stDead
	lp.alive--
	lp.l.live.open.Add(-1)
	switch {
	case errors.Is(err, errDrained):
		lp.st.drain(c.unanswered())
	case !errors.Is(err, errMismatch):
		lp.st.fail(err)
	}
	lp.debug(c, err)
}

func (lp *eloop) debug(c *econn, err error) {
	if log := lp.cfg.Logger; log.Debug().Enabled() {
		log.Debug().Str("component", "load").Uint32("conn", c.id).Err(err).Msg("connection failed")
	}
}

func (lp *eloop) read(c *econn, now int64) {
	if need := 2*len(c.in) + 4096; len(lp.rbuf) < need {
		lp.rbuf = make([]byte, need+64<<10)
	}
	k := copy(lp.rbuf, c.in)
	n, err := rawRead(c.fd, lp.rbuf[k:])
	switch {
	case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
		return
	case err != nil:
		lp.fail(c, fmt.Errorf("read: %w", err))
		return
	case n == 0:
		lp.fail(c, fmt.Errorf("read: %w", c.closed(len(c.in))))
		return
	}
	data := lp.rbuf[:k+n]
	before := c.recvSeq
	used, err := c.consume(data, now, lp.cfg, &lp.st)
	lp.inflight -= int64(c.recvSeq - before)
	if err != nil {
		lp.fail(c, err)
		return
	}
	c.in = append(c.in[:0], data[used:]...)
	if used > 0 {
		c.last = now
		lp.send(c, now)
	}
}

// send writes the frames c may send now, keeping what the socket does not
// take for EPOLLOUT.
func (lp *eloop) send(c *econn, now int64) {
	if len(c.out) > 0 || c.state != stOpen {
		return
	}
	if c.inflight() == 0 {
		c.last = now
	}
	before := c.sendSeq
	out, _ := c.fill(lp.wbuf[:0], now, lp.cfg, lp.plan, &lp.st)
	lp.wbuf = out
	sent := int64(c.sendSeq - before)
	if sent == 0 {
		return
	}
	lp.inflight += sent
	if lp.unsent > 0 {
		lp.unsent -= sent
	}
	lp.write(c, out, now)
}

func (lp *eloop) write(c *econn, out []byte, now int64) {
	n, err := rawWrite(c.fd, out)
	switch {
	case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
		n = 0
	case err != nil:
		lp.fail(c, fmt.Errorf("write: %w", err))
		return
	}
	if n < len(out) {
		c.out = append(c.out[:0], out[n:]...)
		lp.interest(c, unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLOUT)
	}
}

func (lp *eloop) flush(c *econn, now int64) {
	if len(c.out) == 0 {
		lp.interest(c, unix.EPOLLIN|unix.EPOLLRDHUP)
		return
	}
	n, err := rawWrite(c.fd, c.out)
	switch {
	case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
		return
	case err != nil:
		lp.fail(c, fmt.Errorf("write: %w", err))
		return
	}
	c.last = now
	c.out = c.out[:copy(c.out, c.out[n:])]
	if len(c.out) == 0 {
		lp.interest(c, unix.EPOLLIN|unix.EPOLLRDHUP)
		lp.send(c, now)
	}
}

// release hands every open-loop frame due by now to its connection.
func (lp *eloop) release(now int64) {
	for lp.nextFrame != never && lp.nextFrame <= now {
		c := lp.order[lp.curJ]
		lp.send(c, now) // unless the pipeline is full: then the next reply sends it
		lp.curJ++
		if lp.curJ == len(lp.order) {
			lp.curJ = 0
			lp.curK++
		}
		lp.setNextFrame()
	}
}

func (lp *eloop) setNextFrame() {
	p := lp.plan
	lp.nextFrame = never
	if len(lp.order) == 0 {
		return
	}
	i := lp.curK*p.n + lp.order[lp.curJ].idx
	if i >= p.iEnd {
		return
	}
	if t := p.t0 + int64(p.pacer.Offset(i)); t < p.windowEnd.Load() {
		lp.nextFrame = t
	}
}

// sweep fails connections over their dial timeout or reply timeout.
func (lp *eloop) sweep(now int64) {
	dialTO, replyTO := int64(lp.cfg.DialTimeout), int64(lp.cfg.Timeout)
	for _, c := range lp.conns {
		switch {
		case c.state == stConnecting && now-c.last >= dialTO:
			lp.dead(c, fmt.Errorf("%w (%v)", errConnectTimeout, lp.cfg.DialTimeout))
		case c.state == stOpen && (c.inflight() > 0 || len(c.out) > 0) && now-c.last >= replyTO:
			lp.fail(c, fmt.Errorf("%w: %d frames in flight, nothing received for %v", errTimeout, c.inflight(), time.Duration(now-c.last).Round(time.Millisecond)))
		}
	}
}

func sockaddr(ip []byte, port int) (unix.Sockaddr, int) {
	if ip4 := ipv4(ip); ip4 != nil {
		sa := &unix.SockaddrInet4{Port: port}
		copy(sa.Addr[:], ip4)
		return sa, unix.AF_INET
	}
	sa := &unix.SockaddrInet6{Port: port}
	copy(sa.Addr[:], ip)
	return sa, unix.AF_INET6
}

func ipv4(ip []byte) []byte {
	if len(ip) == 4 {
		return ip
	}
	if len(ip) == 16 && string(ip[:12]) == "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff" {
		return ip[12:]
	}
	return nil
}

func setBindNoPort(fd int) error {
	return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
}

// wait returns the number of events ready, waiting for them until the run
// clock reaches wake: at once if some are ready, else parked in the runtime's
// poller with a deadline.
func (lp *eloop) wait(wake int64) int {
	if n := epollPoll(lp.epfd, lp.events); n > 0 {
		return n
	}
	d := wake - lp.l.now()
	if d <= 0 {
		return 0
	}
	if err := lp.poller.SetReadDeadline(lp.l.base.Add(time.Duration(wake))); err != nil {
		panic(fmt.Sprintf("load: epoll fd deadline: %v", err)) // only if the fd is not pollable: a bug here
	}
	n := 0
	err := lp.rc.Read(func(fd uintptr) bool {
		n = epollPoll(int(fd), lp.events)
		return n > 0
	})
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		panic(fmt.Sprintf("load: waiting on the epoll fd: %v", err))
	}
	return n
}

// The loop's sockets are non-blocking and its epoll_wait calls do not wait,
// so it makes them as raw system calls, which the scheduler does not track.
// Through syscall.Syscall, a loopback write that runs long (it carries the
// receiving side's TCP processing) lets sysmon take the P away and wake
// another thread, thousands of times a second; raw calls keep the loop on
// its thread.

// epollPoll returns the events ready now, without waiting.
func epollPoll(epfd int, events []unix.EpollEvent) int {
	for {
		r, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
		switch errno {
		case 0:
			return int(r)
		case unix.EINTR:
			continue
		}
		panic(fmt.Sprintf("load: epoll_wait: %v", errno)) // only EBADF/EFAULT/EINVAL: a bug here
	}
}

func rawRead(fd int, b []byte) (int, error) {
	r, _, errno := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}

func rawWrite(fd int, b []byte) (int, error) {
	r, _, errno := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}
