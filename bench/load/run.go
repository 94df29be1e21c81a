package load

import (
	"context"
	"errors"
	"sync/atomic"
	"syscall"
	"time"
)

// Load is one configured run. Build it with New, start it with Run; Progress
// may be called from any goroutine while Run runs.
type Load struct {
	cfg  *config
	live liveCounters

	base      time.Time    // the run clock's zero, set by New
	runStart  atomic.Int64 // when Run started, on the run clock
	stopDial  atomic.Bool  // no more connection attempts (the run was cancelled)
	cancelled chan struct{}
	started   atomic.Bool
}

// errRunTwice means Run was called on a Load that already ran.
var errRunTwice = errors.New("load: a Load runs once")

// engine is a client implementation.
type engine interface {
	// connect dials every connection, paced by Ramp, and runs plan p (one
	// round trip) on each as soon as it is open; it returns when every
	// connection has finished p or failed.
	connect(p *plan)
	// phase runs p on every open connection and returns when all are done.
	phase(p *plan)
	// open is the number of connections open and not failed.
	open() int
	// close closes every connection and returns the figures to merge.
	close() []*stats
}

// New checks opts, fills in defaults, raises the file descriptor limit and
// checks it can hold the connections.
func New(opts Options) (*Load, error) {
	cfg, err := opts.prepare()
	if err != nil {
		return nil, err
	}
	l := &Load{cfg: cfg, cancelled: make(chan struct{}), base: time.Now()}
	l.live.phase.Store("ready")
	return l, nil
}

// Run is New then Load.Run.
func Run(ctx context.Context, opts Options) (*Summary, error) {
	l, err := New(opts)
	if err != nil {
		return nil, err
	}
	return l.Run(ctx)
}

func (l *Load) now() int64 { return int64(time.Since(l.base)) }

// Run opens the connections, runs the load (or idle hold) and returns the
// summary. It always ends by itself: every phase is bounded by the duration,
// the request count, or the dial and reply timeouts. Cancelling ctx ends the
// run early: connecting stops, the measured window closes at once, frames in
// flight are awaited (within Timeout), and the summary covers what was done.
// A Load runs once.
func (l *Load) Run(ctx context.Context) (*Summary, error) {
	if l.started.Swap(true) {
		return nil, errRunTwice
	}
	cfg := l.cfg
	log := cfg.Logger.With().Str("component", "load").Logger()
	l.runStart.Store(l.now())
	var eng engine
	if cfg.Client == Epoll {
		var err error
		if eng, err = newEpollEngine(l); err != nil {
			return nil, err
		}
	} else {
		eng = newGoroutineEngine(l)
	}

	// A cancelled context closes the window now; the phases see it.
	var cur atomic.Pointer[plan]
	stop := context.AfterFunc(ctx, func() {
		l.stopDial.Store(true)
		if p := cur.Load(); p != nil {
			p.windowEnd.Store(l.now())
		}
		close(l.cancelled)
	})
	defer stop()

	log.Info().Str("addr", cfg.Addr).Stringer("framing", cfg.Codec).Int("conns", cfg.Conns).Int("size", cfg.Size).
		Int("pipeline", cfg.Pipeline).Str("client", string(cfg.Client)).Int("loops", cfg.Loops).
		Uint64("fd_limit", cfg.fdLimit.Cur).Msg("connecting")
	l.live.phase.Store("connecting")
	hello := &plan{perConn: 1}
	hello.windowEnd.Store(noEnd)
	eng.connect(hello)
	established := int(l.live.established.Load())
	log.Info().Int("established", established).Int("open", eng.open()).Msg("connected")

	sum := &Summary{ConnectS: time.Duration(l.now() - l.runStart.Load()).Seconds()}
	var cpu0 rusage
	var winStart, winEnd int64
	switch {
	case ctx.Err() != nil:
		cpu0, winStart, winEnd = getRusage(), l.now(), l.now()
	case cfg.Idle:
		l.gate(ctx, "holding")
		l.live.phase.Store("holding")
		log.Info().Int("conns", eng.open()).Stringer("hold", cfg.Hold).Msg("holding")
		held := l.now()
		t := time.NewTimer(cfg.Hold)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		sum.HoldS = time.Duration(l.now() - held).Seconds()
		l.gate(ctx, "verifying")
		l.live.phase.Store("verifying")
		last := &plan{perConn: 1, measure: true}
		last.windowEnd.Store(noEnd)
		cpu0, winStart = getRusage(), l.now()
		eng.phase(last)
		winEnd = l.now()
		sum.ConnsHeld = eng.open()
	default:
		p := l.loadPlan(eng.open())
		cur.Store(p)
		if ctx.Err() != nil {
			p.windowEnd.Store(l.now())
		}
		l.live.phase.Store("warmup")
		cpuAt := make(chan rusage, 1)
		timer := time.AfterFunc(time.Duration(p.windowStart-l.now()), func() {
			cpu := getRusage()
			l.live.phase.Store("running")
			// A harness sampling the server's counters times them by
			// this line and the next.
			log.Info().Int("conns", eng.open()).Msg("measuring")
			cpuAt <- cpu // last: Run waits for it, so nothing logs after Run returns
		})
		eng.phase(p)
		winEnd = l.now()
		log.Info().Msg("measured")
		if !timer.Stop() {
			cpu0 = <-cpuAt
		} else {
			cpu0 = getRusage() // ended before the window opened
		}
		winStart = min(p.windowStart, winEnd)
		sum.ConnsHeld = eng.open()
		if p.pacer != nil {
			sum.OpenLoop = true
			// Frames scheduled per second of the window: over the duration, or
			// (a request count alone) over the gaps between the frames.
			frames, span := float64(p.iEnd-p.i0), cfg.Duration
			if cfg.Requests > 0 && (cfg.Duration == 0 || p.iEnd-p.i0 == uint64(cfg.Requests)) {
				frames, span = frames-1, p.pacer.Offset(p.iEnd-1)-p.pacer.Offset(p.i0)
			}
			if frames > 0 && span > 0 {
				sum.RateOffered = frames / span.Seconds()
			}
		}
	}
	cpu1 := getRusage()
	l.live.phase.Store("done")
	all := eng.close()
	sum.fill(cfg, all, established, winStart, winEnd, cpu0, cpu1)
	log.Info().Uint64("verified", sum.FramesVerified).Uint64("mismatches", sum.Mismatches).
		Uint64("errors", sum.ErrorsTotal).Msg("done")
	return sum, nil
}

// gate calls Options.Gate, if set, before phase next; Progress says
// "waiting" meanwhile.
func (l *Load) gate(ctx context.Context, next string) {
	if l.cfg.Gate == nil || ctx.Err() != nil {
		return
	}
	l.live.phase.Store("waiting")
	l.cfg.Gate(ctx, next)
}

// loadPlan lays out the load phase starting now over n open connections.
func (l *Load) loadPlan(n int) *plan {
	cfg := l.cfg
	now := l.now()
	p := &plan{windowStart: now + int64(cfg.Warmup), t0: now, pacer: cfg.Pacer, n: uint64(max(n, 1))}
	end := int64(noEnd)
	if cfg.Duration > 0 {
		end = p.windowStart + int64(cfg.Duration)
	}
	p.windowEnd.Store(end)
	if cfg.Requests > 0 && p.pacer == nil {
		p.budget = new(atomic.Int64)
		p.budget.Store(cfg.Requests)
	}
	if p.pacer != nil {
		const most = 1 << 62
		p.i0 = firstAtOrAfter(p.pacer, cfg.Warmup, most)
		p.iEnd = most
		if cfg.Duration > 0 {
			p.iEnd = firstAtOrAfter(p.pacer, cfg.Warmup+cfg.Duration, most)
		}
		if cfg.Requests > 0 {
			p.iEnd = min(p.iEnd, p.i0+uint64(cfg.Requests))
		}
	}
	return p
}

// Progress is a snapshot of a run in progress.
type Progress struct {
	Phase       string        // ready, connecting, warmup, running, waiting (at a Gate), holding, verifying, done
	Elapsed     time.Duration // since Run started
	Asked       int           // connections asked for
	Established int           // connections established so far
	Open        int           // connections open and not failed
	Frames      uint64        // replies verified so far, warm-up included
	Errors      uint64        // failed connections so far
	Mismatches  uint64        // mismatched replies so far
}

// Progress returns the run's counters now. Safe from any goroutine; the
// frame count lags by at most one batch of replies per connection.
func (l *Load) Progress() Progress {
	p := Progress{
		Phase:       l.live.phase.Load().(string),
		Asked:       l.cfg.Conns,
		Established: int(l.live.established.Load()),
		Open:        int(l.live.open.Load()),
		Frames:      l.live.frames.Load(),
		Errors:      l.live.errors.Load(),
		Mismatches:  l.live.mismatches.Load(),
	}
	if l.started.Load() {
		p.Elapsed = time.Duration(l.now() - l.runStart.Load())
	}
	return p
}

// Config returns the options in effect, defaults filled in.
func (l *Load) Config() Options { return l.cfg.Options }

// rusage is the process's CPU time so far.
type rusage struct{ user, sys time.Duration }

func getRusage() rusage {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return rusage{}
	}
	return rusage{user: time.Duration(ru.Utime.Nano()), sys: time.Duration(ru.Stime.Nano())}
}
