// Package scale is the scale demonstration: many idle connections held by
// several server processes sharing one address (SO_REUSEPORT), opened by
// several echoload processes from source addresses apart, with one verified
// round trip on every connection before and after a hold, and the servers'
// memory and CPU read from /proc around the hold. It runs each concurrency
// model in turn the same way; cmd/echoscale is its command.
//
// One process holds at most the fd limit's worth of sockets, and one source
// address has one ephemeral port range's worth of connections towards one
// server address: Limits says what a count needs, and Run refuses a plan
// that cannot fit before it starts anything.
//
// A run, for each model:
//
//	servers      started with -reuseport on one port, each with -metrics on
//	             its own; ready when /readyz answers; baseline read
//	generators   echoload -idle -gate, each with its share of the
//	             connections and its own source addresses; each connects,
//	             makes one verified round trip per connection, and waits
//	hold         when every generator waits, /proc is read and all the
//	             gates open at once; each generator holds for Plan.HoldS
//	             and waits again; /proc is read again, the gates open
//	verify       one more verified round trip on every connection; the
//	             generators report and exit; the servers are stopped
//
// Every wait is bounded, and every process the run started is stopped, by
// its PID, before Run returns.
package scale

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"echoloop/bench/load"
	"echoloop/eventloop/session"
)

// Errors returned by Run; compare with errors.Is.
var (
	// ErrPlan means the options cannot fit this machine's limits; the
	// message says which and what would.
	ErrPlan = errors.New("scale: the plan does not fit")

	// ErrInterrupted means the run's context ended before every model ran.
	ErrInterrupted = errors.New("scale: interrupted")
)

// Defaults for zero Options fields.
const (
	DefaultConns          = 100_000
	DefaultServers        = 6
	DefaultGenerators     = 6
	DefaultSources        = 2
	DefaultHold           = 60 * time.Second
	DefaultConnectTimeout = 10 * time.Minute

	// verifyTimeout bounds the last round trips and the generators' exit.
	verifyTimeout = 5 * time.Minute
	// readyTimeout bounds a server's start.
	readyTimeout = 30 * time.Second
)

// Options describes a run. The zero value with Root set is the
// demonstration: 100,000 connections, 6 servers, 6 generators with 2 source
// addresses each, a 60 s hold, both models.
type Options struct {
	Root       string   // the repository to build from; must hold go.mod
	Models     []string // concurrency models to run in turn; nil means eventloop, goroutine
	Conns      int      // connections in all; 0 means DefaultConns
	Servers    int      // server processes; 0 means DefaultServers
	Generators int      // generator processes; 0 means DefaultGenerators
	// Sources is how many source addresses each generator has, ranges that
	// do not overlap from 127.0.0.1 on; 0 means DefaultSources.
	Sources int
	Hold    time.Duration // 0 means DefaultHold
	// Ramp is new connections per second per generator; 0 lets echoload
	// open them as fast as it can, at most 512 at once per generator.
	Ramp float64
	// ConnectTimeout bounds the wait for every generator to be connected
	// and through its first round trips; 0 means DefaultConnectTimeout.
	ConnectTimeout time.Duration
	Command        string    // the command line, recorded
	Progress       io.Writer // a line per step; nil discards
}

// run is one Run's state.
type run struct {
	opts     Options
	limits   Limits
	bins     struct{ echoloop, echoload string }
	progress io.Writer
}

// Run checks the plan against the machine's limits, builds echoloop and
// echoload once, runs every model in turn and returns the result. A model
// that fails is recorded with its reason and the next one still runs. Run
// returns an error only when nothing could be measured (a plan that does
// not fit, a failed build) or ctx ended; the result then holds what was
// measured.
func Run(ctx context.Context, opts Options) (*Result, error) {
	r := &run{opts: opts.withDefaults(), progress: opts.Progress}
	if r.progress == nil {
		r.progress = io.Discard
	}
	var err error
	if r.limits, err = readLimits(r.opts); err != nil {
		return nil, err
	}
	if err := r.opts.fits(r.limits); err != nil {
		return nil, err
	}
	res := &Result{Schema: Schema, Command: opts.Command, Started: time.Now().UTC(), Env: environment(r.opts.Root),
		Limits: r.limits, Plan: Plan{Conns: r.opts.Conns, Servers: r.opts.Servers, Generators: r.opts.Generators,
			SourcesPerGenerator: r.opts.Sources, HoldS: r.opts.Hold.Seconds(), Ramp: r.opts.Ramp}}
	dir, err := os.MkdirTemp("", "echoscale-bin-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	r.say("building echoloop and echoload from %s", r.opts.Root)
	if err := r.build(ctx, dir); err != nil {
		return nil, err
	}
	var tcpBase int
	if m, err := sampleMachine(); err == nil {
		tcpBase = m.TCPInUse
	}
	for i, model := range r.opts.Models {
		if i > 0 {
			r.settle(ctx, tcpBase)
		}
		if ctx.Err() != nil {
			break
		}
		m := r.runModel(ctx, model, &res.Plan)
		res.Models = append(res.Models, m)
		if m.Failed != "" {
			r.say("%s: FAILED: %s", model, m.Failed)
		} else {
			t := m.Totals
			r.say("%s: %d of %d connections held, %d failures; servers %s RSS (%s per connection), %.2f s CPU over the %.1f s hold",
				model, t.ConnsHeld, t.ConnsAsked, t.Failures, mib(t.ServerRSSEnd), kib(t.RSSPerConn), t.ServerCPUHoldS, m.HoldS)
		}
	}
	res.Finished = time.Now().UTC()
	if ctx.Err() != nil {
		return res, ErrInterrupted
	}
	return res, nil
}

func (o Options) withDefaults() Options {
	if len(o.Models) == 0 {
		o.Models = []string{"eventloop", "goroutine"}
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.Conns, DefaultConns)
	def(&o.Servers, DefaultServers)
	def(&o.Generators, DefaultGenerators)
	def(&o.Sources, DefaultSources)
	if o.Hold == 0 {
		o.Hold = DefaultHold
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	return o
}

// readLimits reads the limits that decide how many processes and source
// addresses opts needs.
func readLimits(o Options) (Limits, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return Limits{}, fmt.Errorf("scale: getrlimit: %w", err)
	}
	l := Limits{FDSoft: rl.Cur, FDHard: rl.Max,
		ServerMaxConns:    int(rl.Max) - session.FDReserve,
		GeneratorMaxConns: int(rl.Max) - load.FDReserve}
	ports, err := readInts("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil || len(ports) != 2 {
		return l, fmt.Errorf("scale: the ephemeral port range: %v", err)
	}
	l.PortLow, l.PortHigh = ports[0], ports[1]
	l.PortsPerSource = l.PortHigh - l.PortLow + 1
	if v, err := readInts("/proc/sys/net/core/somaxconn"); err == nil {
		l.Somaxconn = v[0]
	}
	if v, err := readInts("/proc/sys/net/ipv4/tcp_max_syn_backlog"); err == nil {
		l.SynBacklog = v[0]
	}
	l.MinServers = ceilDiv(o.Conns, max(l.ServerMaxConns, 1))
	l.MinGenerators = ceilDiv(o.Conns, max(l.GeneratorMaxConns, 1))
	l.MinSources = ceilDiv(o.Conns, max(l.PortsPerSource, 1))
	return l, nil
}

// fits refuses a plan the limits cannot hold, saying what would.
func (o Options) fits(l Limits) error {
	perServer := ceilDiv(o.Conns, max(o.Servers, 1))
	perGen := ceilDiv(o.Conns, max(o.Generators, 1))
	switch {
	case o.Conns < 1 || o.Servers < 1 || o.Generators < 1 || o.Sources < 1 || o.Hold < 0 || o.Ramp < 0 || o.ConnectTimeout < 0:
		return fmt.Errorf("%w: connections, servers, generators and sources must be positive, and durations and the ramp not negative", ErrPlan)
	case o.Generators > o.Conns:
		return fmt.Errorf("%w: %d generators for %d connections: at most one per connection", ErrPlan, o.Generators, o.Conns)
	case perServer > l.ServerMaxConns:
		return fmt.Errorf("%w: %d connections over %d servers is %d each, and one server holds at most %d (fd limit %d less %d kept in reserve): use %d servers or more",
			ErrPlan, o.Conns, o.Servers, perServer, l.ServerMaxConns, l.FDHard, session.FDReserve, l.MinServers)
	case perGen > l.GeneratorMaxConns:
		return fmt.Errorf("%w: %d connections over %d generators is %d each, and one generator holds at most %d (fd limit %d less %d): use %d generators or more",
			ErrPlan, o.Conns, o.Generators, perGen, l.GeneratorMaxConns, l.FDHard, load.FDReserve, l.MinGenerators)
	case perGen > o.Sources*l.PortsPerSource:
		return fmt.Errorf("%w: %d connections per generator need more than the %d local ports of %d source addresses (port range %d-%d): use %d sources or more",
			ErrPlan, perGen, o.Sources*l.PortsPerSource, o.Sources, l.PortLow, l.PortHigh, ceilDiv(perGen, l.PortsPerSource))
	case o.Generators*o.Sources > 250:
		return fmt.Errorf("%w: %d generators × %d sources run past 127.0.0.250", ErrPlan, o.Generators, o.Sources)
	}
	for _, m := range o.Models {
		if m != "eventloop" && m != "goroutine" {
			return fmt.Errorf("%w: model %q: want eventloop or goroutine", ErrPlan, m)
		}
	}
	return nil
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

func (r *run) say(format string, a ...any) {
	fmt.Fprintf(r.progress, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
}

// build compiles the server and the generator into dir, once for the run.
func (r *run) build(ctx context.Context, dir string) error {
	r.bins.echoloop, r.bins.echoload = filepath.Join(dir, "echoloop"), filepath.Join(dir, "echoload")
	for bin, pkg := range map[string]string{r.bins.echoloop: "./cmd/echoloop", r.bins.echoload: "./cmd/echoload"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
		cmd.Dir = r.opts.Root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("scale: go build %s: %v\n%s", pkg, err, out)
		}
	}
	return nil
}

// settle waits, at most a minute, for the kernel to be done with the last
// model's sockets, so the next model does not start beside their teardown.
func (r *run) settle(ctx context.Context, base int) {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		m, err := sampleMachine()
		if err != nil || m.TCPInUse <= base+1000 {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	r.say("the kernel still had sockets of the last model in use after a minute; going on")
}

// gateLine is the part of what echoload -gate writes at each gate that the
// driver reads.
type gateLine struct {
	Gate string `json:"gate"`
	Open int    `json:"conns_open"`
}

// runModel runs one model: servers, generators, hold, verify, stop. A
// failure stops it early with m.Failed set and what was measured kept.
func (r *run) runModel(ctx context.Context, model string, plan *Plan) (m Model) {
	o := r.opts
	m.Model = model
	fail := func(format string, a ...any) Model {
		m.Failed = fmt.Sprintf(format, a...)
		return m
	}
	ports, err := freePorts(1 + o.Servers)
	if err != nil {
		return fail("free ports: %v", err)
	}
	m.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))

	// Connections are idle for the whole run, longer than echoloop's
	// default idle timeout (5 minutes) when connecting is slow: keep them.
	idle := o.ConnectTimeout + o.Hold + verifyTimeout
	var servers []*child
	defer func() {
		for i, s := range servers {
			m.Servers[i].ExitCode = s.stop(20 * time.Second)
		}
		m.total() // last: the generators' summaries are in by now, even after a failure
		m.OK = m.Failed == "" && m.Totals.Failures == 0 && m.Totals.Mismatches == 0 && m.Totals.ConnsHeld == o.Conns
	}()
	var ready []string
	for i := range o.Servers {
		metrics := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1+i]))
		args := []string{"-addr", m.Addr, "-reuseport", "-metrics", metrics,
			"-idle-timeout", idle.String(), "-log-level", "warn", "-log-format", "json"}
		if plan.ServerArgs == nil {
			plan.ServerArgs = args
		}
		s, err := startChild(fmt.Sprintf("server %d", i+1), r.bins.echoloop, false, append([]string{"-model", model}, args...)...)
		if err != nil {
			return fail("%v", err)
		}
		servers = append(servers, s)
		m.Servers = append(m.Servers, Server{PID: s.pid(), Metrics: "http://" + metrics + "/metrics"})
		ready = append(ready, "http://"+metrics+"/readyz")
	}
	for i, s := range servers {
		if err := awaitReady(ctx, s, ready[i]); err != nil {
			return fail("%v", err)
		}
	}
	r.say("%s: %d servers ready on %s", model, len(servers), m.Addr)
	m.Before, _ = sampleMachine()
	for i, s := range servers {
		if m.Servers[i].Baseline, err = sampleProc(s.pid()); err != nil {
			return fail("server %d: %v", i+1, err)
		}
	}

	var gens []*child
	defer func() {
		for i, g := range gens {
			m.Generators[i].ExitCode = g.stop(20 * time.Second)
			// After a failure, a generator stopped early still wrote its
			// summary: what it had reached.
			for b := range g.lines {
				var sum load.Summary
				if m.Generators[i].Summary == nil && json.Unmarshal(b, &sum) == nil && sum.Schema > 0 {
					m.Generators[i].Summary = &sum
				}
			}
		}
	}()
	start := time.Now()
	for i := range o.Generators {
		conns := o.Conns / o.Generators
		if i < o.Conns%o.Generators {
			conns++
		}
		first := net.IPv4(127, 0, 0, byte(1+i*o.Sources))
		last := net.IPv4(127, 0, 0, byte(i*o.Sources+o.Sources))
		args := []string{"-addr", m.Addr, "-idle", "-conns", strconv.Itoa(conns), "-hold", o.Hold.String(),
			"-gate", (o.ConnectTimeout + time.Minute).String(), "-sources", strconv.Itoa(o.Sources), "-first-source", first.String(),
			"-timeout", "30s", "-dial-timeout", "30s", "-json", "-log-level", "warn", "-log-format", "json"}
		if o.Ramp > 0 {
			args = append(args, "-ramp", strconv.FormatFloat(o.Ramp, 'f', -1, 64))
		}
		if plan.GeneratorArgs == nil {
			plan.GeneratorArgs = args
		}
		g, err := startChild(fmt.Sprintf("generator %d", i+1), r.bins.echoload, true, args...)
		if err != nil {
			return fail("%v", err)
		}
		gens = append(gens, g)
		m.Generators = append(m.Generators, Generator{PID: g.pid(), Conns: conns, Sources: first.String() + "-" + last.String()})
		m.Totals.ConnsAsked += conns
	}
	r.say("%s: %d generators started, %d connections asked", model, len(gens), m.Totals.ConnsAsked)

	// Every wait below is bounded by its own deadline and by ctx.
	gate := func(name string, limit time.Duration) error {
		deadline := time.NewTimer(limit)
		defer deadline.Stop()
		for i, g := range gens {
			b, err := g.line(deadline.C, ctx.Done())
			if err != nil {
				return err
			}
			var gl gateLine
			if err := json.Unmarshal(b, &gl); err != nil || gl.Gate != name {
				return fmt.Errorf("generator %d wrote %q where its %q gate line was due: %s", i+1, b, name, g.tail)
			}
			if name == "holding" {
				m.Totals.ConnsAtHold += gl.Open
			}
		}
		return nil
	}
	open := func() error {
		for i, g := range gens {
			if _, err := io.WriteString(g.stdin, "\n"); err != nil {
				return fmt.Errorf("generator %d: opening its gate: %v", i+1, err)
			}
		}
		return nil
	}
	if err := gate("holding", o.ConnectTimeout); err != nil {
		return fail("connecting: %v", err)
	}
	m.ConnectS = time.Since(start).Seconds()
	r.say("%s: %d connections open and verified after %.1f s; holding %v", model, m.Totals.ConnsAtHold, m.ConnectS, o.Hold)

	m.HoldStart, _ = sampleMachine()
	if err := r.sampleAll(servers, gens, &m, true); err != nil {
		return fail("%v", err)
	}
	holdStart := time.Now()
	if err := open(); err != nil {
		return fail("%v", err)
	}
	if err := gate("verifying", o.Hold+2*time.Minute); err != nil {
		return fail("holding: %v", err)
	}
	m.HoldS = time.Since(holdStart).Seconds()
	m.HoldEnd, _ = sampleMachine()
	if err := r.sampleAll(servers, gens, &m, false); err != nil {
		return fail("%v", err)
	}
	// /metrics is read once, after the hold: a scrape allocates, and its
	// memory and CPU would land in the figures of the hold.
	m.Totals.ServerConnsOpen = scrapeOpen(m.Servers)
	verifyStart := time.Now()
	if err := open(); err != nil {
		return fail("%v", err)
	}
	r.say("%s: held %.1f s; verifying", model, m.HoldS)

	deadline := time.NewTimer(verifyTimeout)
	defer deadline.Stop()
	for i, g := range gens {
		b, err := g.line(deadline.C, ctx.Done())
		if err != nil {
			return fail("verifying: %v", err)
		}
		var sum load.Summary
		if err := json.Unmarshal(b, &sum); err != nil {
			return fail("generator %d: its summary: %v: %q", i+1, err, b)
		}
		m.Generators[i].Summary = &sum
		select {
		case <-g.exited:
		case <-deadline.C:
			return fail("generator %d did not exit after its summary", i+1)
		case <-ctx.Done():
			return fail("%v", ErrInterrupted)
		}
	}
	m.VerifyS = time.Since(verifyStart).Seconds()
	for i, s := range servers {
		if m.Servers[i].Final, err = sampleProc(s.pid()); err != nil {
			return fail("server %d: %v", i+1, err)
		}
	}
	return m
}

// sampleAll reads /proc for every server and generator, at the start or the
// end of the hold. The servers go first: they are what is measured.
func (r *run) sampleAll(servers, gens []*child, m *Model, start bool) error {
	for i, s := range servers {
		smp, err := sampleProc(s.pid())
		if err != nil {
			return fmt.Errorf("server %d: %v", i+1, err)
		}
		if start {
			m.Servers[i].HoldStart = smp
		} else {
			m.Servers[i].HoldEnd = smp
		}
	}
	for i, g := range gens {
		smp, err := sampleProc(g.pid())
		if err != nil {
			return fmt.Errorf("generator %d: %v", i+1, err)
		}
		if start {
			m.Generators[i].HoldStart = smp
		} else {
			m.Generators[i].HoldEnd = smp
		}
	}
	return nil
}

// total adds up the processes' figures.
func (m *Model) total() {
	t := &m.Totals
	t.Errors = map[string]uint64{}
	for _, g := range m.Generators {
		t.GeneratorRSSEnd += g.HoldEnd.RSS
		if g.HoldEnd.taken() {
			t.GeneratorCPUHoldS += g.HoldEnd.CPUS - g.HoldStart.CPUS
		}
		if s := g.Summary; s != nil {
			t.ConnsEstablished += s.ConnsEstablished
			t.ConnsHeld += s.ConnsHeld
			t.Mismatches += s.Mismatches
			for _, e := range s.Errors {
				t.Errors[string(e.Kind)] += e.Count
			}
		}
	}
	t.Failures = t.ConnsAsked - t.ConnsHeld
	for _, s := range m.Servers {
		t.ServerRSSBaseline += s.Baseline.RSS
		t.ServerRSSStart += s.HoldStart.RSS
		t.ServerRSSEnd += s.HoldEnd.RSS
		if s.HoldStart.taken() {
			t.ServerCPUConnectS += s.HoldStart.CPUS - s.Baseline.CPUS
		}
		if s.HoldEnd.taken() {
			t.ServerCPUHoldS += s.HoldEnd.CPUS - s.HoldStart.CPUS
		}
		if s.Final.taken() { // read only when the run went through
			t.ServerCPUVerifyS += s.Final.CPUS - s.HoldEnd.CPUS
		}
	}
	held := t.ServerConnsOpen
	if held <= 0 {
		held = t.ConnsAtHold
	}
	if held > 0 {
		t.RSSPerConn = float64(t.ServerRSSEnd-t.ServerRSSBaseline) / float64(held)
		t.RSSPerConnTotal = float64(t.ServerRSSEnd) / float64(held)
	}
	if m.HoldS > 0 {
		t.ServerCPUHoldPct = 100 * t.ServerCPUHoldS / m.HoldS
	}
	if m.HoldEnd.BusyS > 0 {
		t.OtherCPUHoldS = math.Max(0, m.HoldEnd.BusyS-m.HoldStart.BusyS-t.ServerCPUHoldS-t.GeneratorCPUHoldS)
	}
}
