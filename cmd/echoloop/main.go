// Command echoloop is a TCP server that frames a byte stream and answers each
// frame: by default a line-framed echo server on 127.0.0.1:7007, served by a
// single gnet event loop (-model eventloop) or by one goroutine per
// connection (-model goroutine).
//
//	go run ./cmd/echoloop -framing length -handler echo -addr 127.0.0.1:7007
//
// Exit status: 0 after a clean stop on SIGINT or SIGTERM, 1 when the server
// cannot run (address in use...), 2 for bad flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"echoloop/bench/model"
	"echoloop/cmd/internal/cli"
	"echoloop/eventloop"
	"echoloop/eventloop/frame"
	"echoloop/eventloop/proxyproto"
	"echoloop/eventloop/session"
	"echoloop/eventloop/tracelog"
	"echoloop/handlers"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stderr))
}

// Exit statuses.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// flags holds the parsed command line.
type flags struct {
	model     string
	addr      string
	framing   string
	handler   string
	reply     string
	echoSelf  bool
	work      time.Duration
	workers   int
	ping      bool
	maxFrame  cli.Size
	maxConns  int
	loops     int
	maxPend   cli.Size
	maxMem    cli.Size
	frameTO   time.Duration
	linger    time.Duration
	idle      time.Duration
	writeTO   time.Duration
	stopTO    time.Duration
	drainTO   time.Duration
	reusePort bool
	proxy     proxyproto.Mode
	trust     proxyproto.Trust
	perIP     int
	metrics   string
	lockOS    bool
	readBuf   cli.Size
	edge      bool
	trace     bool
	logLevel  string
	logFormat string
}

func parseFlags(args []string, stderr io.Writer) (*flags, error) {
	f := &flags{}
	fs := flag.NewFlagSet("echoloop", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported in one line by run
	fs.StringVar(&f.model, "model", model.EventLoop, "concurrency model: "+strings.Join(model.Names(), ", ")+
		"; or "+model.Reference+", gnet's minimal echo loop, the bench's reference (no framing or limits)")
	fs.StringVar(&f.addr, "addr", session.DefaultAddr, "TCP `host:port` to listen on (port 0 picks a free port)")
	fs.StringVar(&f.framing, "framing", "line", "frame format: "+frame.Names)
	fs.StringVar(&f.handler, "handler", "echo", "what to answer: "+strings.Join(handlers.Names(), ", "))
	fs.StringVar(&f.reply, "reply", handlers.DefaultAckReply, "the ack handler's reply `text`")
	fs.BoolVar(&f.echoSelf, "echo-self", false, "-handler broadcast: send each frame back to its sender too")
	fs.DurationVar(&f.work, "work", handlers.DefaultWork, "-handler work or block: simulated work per frame (a sleep)")
	fs.IntVar(&f.workers, "workers", handlers.DefaultWorkers, fmt.Sprintf("-handler work: frames worked on at once; up to %d more wait per worker, then the connection is paused", handlers.QueuePerWorker))
	fs.BoolVar(&f.ping, "ping", false, "-handler work or block: answer a frame that starts with \"ping\" at once, without the work")
	fs.Var(&f.maxFrame, "max-frame", "largest frame payload in `bytes` (65536, 64KiB, 1MiB); 0 = the framing's default: line 64KiB, length 1MiB")
	fs.IntVar(&f.maxConns, "max-conns", 0, "most connections served at once; 0 = the fd limit less a reserve")
	fs.IntVar(&f.loops, "loops", 1, "event loops (-model eventloop); 1 is single-threaded, like select")
	f.maxPend.N = session.DefaultMaxPending
	fs.Var(&f.maxPend, "max-pending", "most reply `bytes` held for a peer that does not read")
	f.maxMem.N = session.DefaultMaxMemory
	fs.Var(&f.maxMem, "max-memory", "memory `bytes` held for all clients (partial frames, unserved input, unsent replies); over it the biggest holders are closed; 0 = no limit")
	fs.DurationVar(&f.frameTO, "frame-timeout", session.DefaultFrameTimeout, "close a connection whose started frame is not complete this long after; 0 = never")
	fs.DurationVar(&f.linger, "linger", session.DefaultLingerTime, "a close after a protocol error or during shutdown discards the peer's input this long (at most 64KiB) so replies are not reset; 0 = close at once")
	fs.DurationVar(&f.idle, "idle-timeout", 5*time.Minute, "close a connection silent this long; 0 = never")
	fs.DurationVar(&f.writeTO, "write-timeout", 30*time.Second, "close a peer whose replies make no progress this long; 0 = never")
	fs.DurationVar(&f.stopTO, "shutdown-timeout", 10*time.Second, "on SIGINT/SIGTERM, how long connections may drain before they are closed")
	fs.DurationVar(&f.drainTO, "drain-delay", 0, "on SIGINT/SIGTERM, fail /readyz and keep serving and accepting this long before the drain, so a load balancer stops sending new connections")
	fs.BoolVar(&f.reusePort, "reuseport", false, "listen with SO_REUSEPORT so that several processes share -addr; without it a busy address is an error")
	fs.TextVar(&f.proxy, "proxy-protocol", proxyproto.Off, "expect a PROXY protocol header (off, v1, v2, any) from the -proxy-trust addresses before the first frame")
	fs.TextVar(&f.trust, "proxy-trust", proxyproto.Trust{}, "the load balancers allowed to send a PROXY header, as `CIDR,...` (an IP alone is one address); required with -proxy-protocol; connections from elsewhere are refused")
	fs.IntVar(&f.perIP, "max-conns-per-ip", 0, "most connections served at once from one client IP (the PROXY header's, when on); 0 = no cap")
	fs.BoolVar(&f.lockOS, "lock-os-thread", false, "gnet lever: pin each event loop to its own OS thread")
	fs.Var(&f.readBuf, "read-buffer", "gnet lever: `bytes` one read takes per event loop (default 64KiB)")
	fs.BoolVar(&f.edge, "edge-triggered", false, "gnet lever: edge-triggered epoll instead of level-triggered (the loop then cannot stop reading a peer that does not read its replies)")
	fs.BoolVar(&f.trace, "trace", false, fmt.Sprintf("log a line per read: the connection, the bytes that arrived, the frames they completed and their sizes, "+
		"the bytes of a partial frame carried to the next read, the reply bytes and writes; at most %d lines at once, then %d a second "+
		"(the next line written says how many were dropped); shown whatever -log-level", tracelog.DefaultBurst, tracelog.DefaultRate))
	fs.StringVar(&f.metrics, "metrics", "", "serve Prometheus metrics on `host:port` at /metrics; empty = off")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: "+cli.LogLevels)
	fs.StringVar(&f.logFormat, "log-format", "", "log format: "+cli.LogFormats+" (default console on a terminal, json otherwise)")
	fs.Usage = func() {} // a parse error is one line; only -h prints usage
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "Usage: echoloop [flags]\n\nA select-style TCP server: frames a byte stream and answers each frame.\n\nFlags:\n")
			fs.SetOutput(stderr)
			fs.PrintDefaults()
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (all settings are flags; see -h)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	if set["reply"] && f.handler != "ack" {
		return nil, fmt.Errorf("-reply is used only by -handler ack, not %q", f.handler)
	}
	if set["echo-self"] && f.handler != "broadcast" {
		return nil, fmt.Errorf("-echo-self is used only by -handler broadcast, not %q", f.handler)
	}
	for _, name := range []string{"work", "ping"} {
		if set[name] && f.handler != "work" && f.handler != "block" {
			return nil, fmt.Errorf("-%s is used only by -handler work or block, not %q", name, f.handler)
		}
	}
	if set["workers"] && f.handler != "work" {
		return nil, fmt.Errorf("-workers is used only by -handler work, not %q (block works on the serving goroutine)", f.handler)
	}
	if f.work <= 0 {
		return nil, fmt.Errorf("-work %v: need a positive duration (1ns for almost none)", f.work)
	}
	if f.workers < 1 || f.workers > maxWorkers {
		return nil, fmt.Errorf("-workers %d: need 1 to %d", f.workers, maxWorkers)
	}
	if f.maxFrame.Given && f.framing == "raw" {
		return nil, errors.New("-max-frame does not apply to -framing raw: a raw frame is whatever one read returns")
	}
	if f.maxFrame.Given && strings.HasPrefix(f.framing, "fixed:") {
		return nil, fmt.Errorf("-max-frame does not apply to -framing %s: its frames are exactly N bytes", f.framing)
	}
	if err := checkAddr(f.addr); err != nil {
		return nil, fmt.Errorf("-addr: %w", err)
	}
	if f.metrics != "" {
		if err := checkAddr(f.metrics); err != nil {
			return nil, fmt.Errorf("-metrics: %w", err)
		}
	}
	if f.maxFrame.N > session.MaxBuffer {
		return nil, fmt.Errorf("-max-frame %d is over 1 GiB", f.maxFrame.N)
	}
	if f.model == model.Reference {
		for _, name := range []string{"framing", "handler", "reply", "max-frame", "max-conns", "max-pending", "max-memory", "frame-timeout", "linger", "idle-timeout", "write-timeout", "reuseport", "proxy-protocol", "proxy-trust", "max-conns-per-ip", "drain-delay", "trace"} {
			if set[name] {
				return nil, fmt.Errorf("-%s does not apply to -model %s: the reference echo loop has no framing, handler or limits", name, model.Reference)
			}
		}
	}
	if f.model == model.Goroutine {
		for _, name := range []string{"lock-os-thread", "edge-triggered"} {
			if set[name] {
				return nil, fmt.Errorf("-%s is a gnet lever: it does not apply to -model goroutine", name)
			}
		}
	}
	if f.readBuf.N > 1<<30 {
		return nil, fmt.Errorf("-read-buffer %d is over 1 GiB", f.readBuf.N)
	}
	if set["loops"] && f.model == model.Goroutine {
		return nil, errors.New("-loops applies to -model eventloop; the goroutine model runs on GOMAXPROCS threads (set the GOMAXPROCS environment variable)")
	}
	if f.loops < 1 {
		return nil, fmt.Errorf("-loops %d: need at least 1", f.loops)
	}
	switch {
	case f.maxPend.N < 1:
		return nil, fmt.Errorf("-max-pending %d: need at least 1 byte", f.maxPend.N)
	case f.maxPend.N > session.MaxBuffer:
		return nil, fmt.Errorf("-max-pending %d is over 1 GiB", f.maxPend.N)
	case f.idle < 0:
		return nil, fmt.Errorf("-idle-timeout %v is negative (0 turns it off)", f.idle)
	case f.writeTO < 0:
		return nil, fmt.Errorf("-write-timeout %v is negative (0 turns it off)", f.writeTO)
	case f.maxMem.N < 0:
		return nil, fmt.Errorf("-max-memory %d is negative (0 turns the limit off)", f.maxMem.N)
	case f.frameTO < 0:
		return nil, fmt.Errorf("-frame-timeout %v is negative (0 turns it off)", f.frameTO)
	case f.linger < 0:
		return nil, fmt.Errorf("-linger %v is negative (0 closes at once)", f.linger)
	case f.stopTO <= 0:
		return nil, fmt.Errorf("-shutdown-timeout %v: need a positive duration", f.stopTO)
	}
	if f.proxy != proxyproto.Off && f.trust.Len() == 0 {
		return nil, fmt.Errorf("-proxy-protocol %s needs -proxy-trust: the addresses of the load balancers that send the header", f.proxy)
	}
	if set["proxy-trust"] && f.proxy == proxyproto.Off {
		return nil, errors.New("-proxy-trust applies only with -proxy-protocol v1, v2 or any")
	}
	if f.perIP < 0 {
		return nil, fmt.Errorf("-max-conns-per-ip %d is negative (0 means no cap)", f.perIP)
	}
	if f.drainTO < 0 {
		return nil, fmt.Errorf("-drain-delay %v is negative (0 drains at once)", f.drainTO)
	}
	if f.maxConns < 0 {
		return nil, fmt.Errorf("-max-conns %d is negative (0 means the default)", f.maxConns)
	}
	return f, nil
}

// maxWorkers bounds -workers: each worker is a goroutine, and the queue
// holds QueuePerWorker frames per worker.
const maxWorkers = 1 << 16

// checkAddr refuses a listen address that cannot be one whatever the
// machine: no port, or a port out of range. An address that is well formed
// but cannot be bound (in use, an unknown host) is a run-time failure.
func checkAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %w", addr, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: port %q is not a number from 0 to 65535", addr, port)
	}
	return nil
}

// build turns flags into a server, or returns a usage error.
func build(f *flags, log zerolog.Logger, tracer session.Tracer) (model.Server, error) {
	codec, err := frame.Parse(f.framing, int(f.maxFrame.N))
	if err != nil {
		return nil, fmt.Errorf("-framing: %w", err)
	}
	h, err := handlers.New(f.handler, handlers.Config{
		Reply: f.reply, EchoSelf: f.echoSelf, Work: f.work, Workers: f.workers, Ping: f.ping,
	})
	if err != nil {
		return nil, fmt.Errorf("-handler: %w", err)
	}
	cfg := session.Config{
		Addr: f.addr, Codec: codec, Handler: h, MaxConns: f.maxConns, Logger: log,
		IdleTimeout: f.idle, MaxPending: int(f.maxPend.N), WriteTimeout: f.writeTO,
		MaxMemory: offIfZero(f.maxMem.N), FrameTimeout: offIfZero(f.frameTO), LingerTime: offIfZero(f.linger),
		ReusePort: f.reusePort, Proxy: proxyproto.Config{Mode: f.proxy, Trust: f.trust}, MaxConnsPerIP: f.perIP,
		Tracer: tracer,
	}
	srv, err := model.New(model.Options{
		Model: f.model, Config: cfg, Loops: f.loops,
		ReadBufferCap: int(f.readBuf.N), LockOSThread: f.lockOS, EdgeTriggered: f.edge,
	})
	switch {
	case errors.Is(err, session.ErrMaxConns):
		return nil, fmt.Errorf("-max-conns: %w", err)
	case errors.Is(err, model.ErrUnknown):
		return nil, fmt.Errorf("-model: %w", err)
	}
	return srv, err
}

// offIfZero maps a flag's 0 ("off") to the Config's negative "off"; Config
// reads 0 as "the default".
func offIfZero[T int64 | time.Duration](v T) T {
	if v == 0 {
		return -1
	}
	return v
}

// memoryOverhead is what the process needs beyond the memory it holds for
// clients: the runtime, per-connection state (about 1 KiB for an idle
// connection on the event loop, 10 KiB on the goroutine model), pools.
const memoryOverhead = 256 << 20

// limitHeap ties the Go runtime's soft memory limit to the client budget,
// unless GOMEMLIMIT sets one: near the limit the collector works harder
// instead of letting the heap grow past what the budget allows, and the
// scavenger gives freed memory back to the OS sooner.
func limitHeap(cfg session.Config, maxConns int, goroutines bool) int64 {
	if os.Getenv("GOMEMLIMIT") != "" || cfg.MemoryBudget() == 0 {
		return 0
	}
	perConn := int64(1 << 10)
	if goroutines {
		perConn = 10 << 10
	}
	limit := cfg.MemoryBudget() + memoryOverhead + int64(maxConns)*perConn
	debug.SetMemoryLimit(limit)
	return limit
}

func run(ctx context.Context, args []string, stderr io.Writer) int {
	usageErr := func(err error) int {
		fmt.Fprintf(stderr, "echoloop: %v\n", err)
		return exitUsage
	}
	f, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		return usageErr(err)
	}
	log, err := cli.NewLogger(stderr, f.logLevel, f.logFormat)
	if err != nil {
		return usageErr(fmt.Errorf("-log: %w", err))
	}
	fdWas := softFDLimitAtStart() // before build raises the limit
	var tracer session.Tracer     // a nil *tracelog.Log in it would not be a nil Tracer
	if f.trace {
		trace := newTrace(log)
		tracer = trace
		defer trace.Flush()
	}
	srv, err := build(f, log, tracer)
	if err != nil {
		return usageErr(err)
	}
	memLimit := int64(0)
	if f.model != model.Reference {
		memLimit = limitHeap(srv.Config(), srv.Config().MaxConns, f.model == model.Goroutine)
	}
	if f.model != model.Goroutine {
		eventloop.SpareP() // a spare P keeps the runtime from handing off a loop blocked in epoll_wait
	}

	served := make(chan error, 1)
	go func() { served <- srv.ListenAndServe() }()
	select {
	case <-srv.Ready():
	case err := <-served:
		return startFailed(stderr, f.addr, err)
	}
	if srv.Addr() == nil { // failed before listening; ListenAndServe says why
		return startFailed(stderr, f.addr, <-served)
	}
	var draining atomic.Bool // /readyz fails from the signal on
	var metricsAddr net.Addr
	if f.metrics != "" {
		hs, addr, err := serveMetrics(f.metrics, srv, f.model, func() bool { return !draining.Load() })
		if err != nil {
			_ = srv.Shutdown(context.Background())
			<-served
			fmt.Fprintf(stderr, "echoloop: -metrics: %v\n", err)
			return exitFail
		}
		defer hs.Close()
		metricsAddr = addr
	}
	logStart(log, srv, f, metricsAddr, memLimit, fdWas)

	select {
	case err := <-served:
		log.Error().Err(err).Msg("server stopped unexpectedly")
		return exitFail
	case <-ctx.Done():
	}
	draining.Store(true)
	if f.drainTO > 0 {
		// Listen for a second signal before the line that invites one.
		again := make(chan os.Signal, 1)
		signal.Notify(again, syscall.SIGINT, syscall.SIGTERM)
		log.Info().Stringer("drain_delay", f.drainTO).Int64("conns", srv.Stats().ConnsOpen).
			Msg("shutting down: not ready, still serving until the drain")
		ok := waitDrainDelay(f.drainTO, again, served)
		signal.Stop(again)
		if !ok {
			log.Error().Msg("server stopped unexpectedly")
			return exitFail
		}
	}
	log.Info().Stringer("timeout", f.stopTO).Int64("conns", srv.Stats().ConnsOpen).Msg("shutting down: draining connections")
	stopCtx, cancel := context.WithTimeout(context.Background(), f.stopTO)
	defer cancel()
	if err := srv.Shutdown(stopCtx); errors.Is(err, context.DeadlineExceeded) {
		log.Warn().Stringer("timeout", f.stopTO).Msg("shutdown timeout passed: busy connections were closed")
	} else if err != nil {
		log.Error().Err(err).Msg("shutdown failed")
		return exitFail
	}
	if err := <-served; !model.IsServerClosed(err) {
		log.Error().Err(err).Msg("server stopped with an error")
		return exitFail
	}
	st := srv.Stats()
	log.Info().Int64("conns_total", st.ConnsTotal).Int64("frames_in", st.FramesIn).Int64("frames_out", st.FramesOut).
		Interface("closes", st.Closes).Msg("stopped")
	return exitOK
}

// newTrace is -trace's Tracer, logging to log at info level whatever
// -log-level says: asking for a trace is asking to see it.
func newTrace(log zerolog.Logger) *tracelog.Log {
	return tracelog.New(log.With().Str("component", "trace").Logger().Level(zerolog.InfoLevel), tracelog.Options{})
}

// waitDrainDelay keeps serving for d after the first signal, so that load
// balancers polling /readyz stop sending new connections before the
// listener closes; a second SIGINT or SIGTERM (on again) cuts it short. It
// reports false if the server stopped meanwhile.
func waitDrainDelay(d time.Duration, again <-chan os.Signal, served <-chan error) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-again:
	case <-served:
		return false
	}
	return true
}

func startFailed(stderr io.Writer, addr string, err error) int {
	if errors.Is(err, syscall.EADDRINUSE) {
		fmt.Fprintf(stderr, "echoloop: address %s is already in use; stop the other server or pick another -addr\n", addr)
	} else {
		fmt.Fprintf(stderr, "echoloop: cannot start: %v\n", err)
	}
	return exitFail
}

// logStart logs the start-up line; fdWas is the soft fd limit the process
// started with, 0 if unknown.
func logStart(log zerolog.Logger, srv model.Server, f *flags, metrics net.Addr, memLimit int64, fdWas uint64) {
	cfg := srv.Config()
	e := log.Info().Stringer("addr", srv.Addr()).Str("model", f.model)
	if metrics != nil {
		e = e.Str("metrics", "http://"+metrics.String()+"/metrics")
	}
	e = e.Int("gomaxprocs", runtime.GOMAXPROCS(0))
	if f.model == model.Reference {
		e.Int("loops", f.loops).Uint64("fd_limit", cfg.FDLimit.Cur).Str("limits", "none").Msg("listening")
		return
	}
	e = e.
		Stringer("framing", cfg.Codec).Str("handler", f.handler)
	switch f.handler {
	case "broadcast":
		e = e.Bool("echo_self", f.echoSelf)
	case "work":
		e = e.Stringer("work", f.work).Int("workers", f.workers).Bool("ping", f.ping)
	case "block":
		e = e.Stringer("work", f.work).Bool("ping", f.ping)
	}
	if cfg.Codec.String() != "raw" {
		e = e.Int("max_frame", cfg.Codec.MaxPayload())
	}
	if f.model != model.Goroutine {
		e = e.Int("loops", f.loops).Bool("lock_os_thread", f.lockOS).Bool("edge_triggered", f.edge)
	}
	if fdWas > 0 {
		e = e.Uint64("fd_limit_was", fdWas)
	}
	e.Int("max_conns", cfg.MaxConns).Int("max_pending", cfg.MaxPending).
		Int64("max_memory", cfg.MemoryBudget()).Int64("go_memory_limit", memLimit).
		Stringer("idle_timeout", cfg.IdleTimeout).Stringer("write_timeout", cfg.WriteTimeout).
		Stringer("frame_timeout", max(cfg.FrameTimeout, 0)).Stringer("linger", max(cfg.LingerTime, 0)).
		Uint64("fd_limit", cfg.FDLimit.Cur).Uint64("fd_limit_hard", cfg.FDLimit.Max).
		Bool("trace", f.trace).Msg("listening")
}
