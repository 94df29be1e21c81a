// Command echoload is echoloop's load generator and interactive client. It
// opens connections to a server, sends frames in the server's framing, and
// verifies every reply byte-exact against what its connection sent; then it
// reports throughput, latency percentiles, errors and mismatches.
//
//	go run ./cmd/echoload -addr 127.0.0.1:7007 -conns 100 -duration 10s
//	go run ./cmd/echoload -rate 50000 -conns 100 -duration 30s -warmup 5s
//	go run ./cmd/echoload -idle -conns 10000 -ramp 2000 -hold 30s
//	echoload -idle -conns 16000 -hold 60s -gate 10m -json   # lined up by a driver on stdin
//	go run ./cmd/echoload -i -framing length
//	go run ./cmd/echoload -i -show-reads
//
// Exit status: 0 when every connection asked for was established (and held)
// and every reply verified; 1 on any mismatch, connection error or
// connection not established, or when the run cannot start (fd limit, local
// ports, interactive connection failed, or replies missing at its end); 2
// for bad flags; 3 when nothing failed but the server closed connections in
// order before the run ended (a drain: every reply it sent verified, the
// frames sent after its close unanswered).
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
	"strings"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"

	"echoloop/bench/load"
	"echoloop/cmd/internal/cli"
	"echoloop/eventloop/frame"
	"echoloop/eventloop/session"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// Exit statuses.
const (
	exitOK      = 0
	exitFail    = 1
	exitUsage   = 2
	exitDrained = 3 // load.Summary.Drained: not a failure, but not the whole run either
)

// flags holds the parsed command line.
type flags struct {
	addr        string
	framing     string
	conns       int
	size        cli.Size
	pipeline    int
	duration    time.Duration
	requests    int64
	rate        float64
	ramp        float64
	sources     int
	firstSource net.IP
	warmup      time.Duration
	idle        bool
	hold        time.Duration
	gate        time.Duration
	interactive bool
	showReads   bool
	jsonOut     bool
	client      string
	loops       int
	timeout     time.Duration
	dialTimeout time.Duration
	logLevel    string
	logFormat   string
	set         map[string]bool
}

func parseFlags(args []string, stderr io.Writer) (*flags, error) {
	f := &flags{set: map[string]bool{}}
	fs := flag.NewFlagSet("echoload", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported in one line by run
	fs.StringVar(&f.addr, "addr", session.DefaultAddr, "server `host:port`")
	fs.StringVar(&f.framing, "framing", "line", "frame format, as the server's: "+frame.Names)
	fs.IntVar(&f.conns, "conns", 10, "connections to open")
	f.size.N = load.DefaultSize
	fs.Var(&f.size, "size", fmt.Sprintf("payload `bytes` per frame (64, 1KiB); at least %d; fixed:N frames are N", load.MinSize))
	fs.IntVar(&f.pipeline, "pipeline", 1, "frames in flight per connection")
	fs.DurationVar(&f.duration, "duration", 0, "measured time after the warm-up (default 10s unless -requests is given)")
	fs.Int64Var(&f.requests, "requests", 0, "stop after this many measured frames (0: no count limit)")
	fs.Float64Var(&f.rate, "rate", 0, "open loop: total frames per second on a fixed schedule, latency from intended send times (0: closed loop)")
	fs.Float64Var(&f.ramp, "ramp", 0, fmt.Sprintf("new connections per second (0: as fast as possible, at most %d connecting at once)", load.MaxConnecting))
	fs.IntVar(&f.sources, "sources", 0, "spread connections over `N` source addresses 127.0.0.1..127.0.0.N (0: the kernel chooses)")
	fs.TextVar(&f.firstSource, "first-source", net.IP(nil), "with -sources, the first source `address` (default 127.0.0.1): several generators given ranges apart use local ports apart")
	fs.DurationVar(&f.warmup, "warmup", 0, "traffic before the measured window, not counted")
	fs.BoolVar(&f.idle, "idle", false, "idle mode: open the connections, verify one round trip on each, hold them for -hold, verify again, report how many were held")
	fs.DurationVar(&f.hold, "hold", 10*time.Second, "how long -idle holds the connections")
	fs.DurationVar(&f.gate, "gate", 0, "with -idle, wait this long at most before the hold and before the last round trips: print one JSON line {\"gate\":...} on stdout and wait for a line on stdin (0: no gates)")
	fs.BoolVar(&f.interactive, "i", false, "interactive: send each line of stdin as one frame, print each reply as it comes")
	fs.BoolVar(&f.showReads, "show-reads", false, "with -i: print each read from the server, its size and first bytes, before the replies it completes")
	fs.BoolVar(&f.jsonOut, "json", false, "print the summary as one line of JSON (schema: bench/load.Summary)")
	fs.StringVar(&f.client, "client", "", "client implementation: "+load.Clients+" (default epoll on Linux)")
	fs.IntVar(&f.loops, "loops", 0, "epoll loops, each on its own goroutine (0: GOMAXPROCS)")
	fs.DurationVar(&f.timeout, "timeout", load.DefaultTimeout, "fail a connection that waits this long for a reply")
	fs.DurationVar(&f.dialTimeout, "dial-timeout", load.DefaultDialTimeout, "fail a connection attempt that takes this long")
	fs.StringVar(&f.logLevel, "log-level", "warn", "log level: "+cli.LogLevels+" (info logs each phase)")
	fs.StringVar(&f.logFormat, "log-format", "", "log format: "+cli.LogFormats+" (default console on a terminal, json otherwise)")
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "Usage: echoload [flags]\n\nLoad an echoloop server and verify every reply byte-exact, or talk to it by hand (-i).\n\nFlags:\n")
			fs.SetOutput(stderr)
			fs.PrintDefaults()
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (all settings are flags; see -h)", fs.Arg(0))
	}
	fs.Visit(func(fl *flag.Flag) { f.set[fl.Name] = true })
	return f, f.check()
}

// check refuses combinations that make no sense, before anything runs.
func (f *flags) check() error {
	only := func(mode string, names ...string) error {
		for _, n := range names {
			if f.set[n] {
				return fmt.Errorf("-%s does not apply to %s", n, mode)
			}
		}
		return nil
	}
	if f.set["show-reads"] && !f.interactive {
		return errors.New("-show-reads is for -i (interactive): a load run does not print replies")
	}
	switch {
	case f.interactive:
		return only("-i (interactive)", "conns", "size", "pipeline", "duration", "requests", "rate", "ramp", "sources", "first-source",
			"warmup", "idle", "hold", "gate", "json", "client", "loops")
	case f.idle:
		if err := only("-idle", "duration", "requests", "rate", "warmup", "pipeline"); err != nil {
			return err
		}
	case f.set["hold"], f.set["gate"]:
		return errors.New("-hold and -gate are for -idle")
	}
	switch {
	case f.conns < 1:
		return fmt.Errorf("-conns %d: need at least 1", f.conns)
	case f.pipeline < 1:
		return fmt.Errorf("-pipeline %d: need at least 1", f.pipeline)
	case f.duration < 0, f.warmup < 0, f.hold < 0, f.gate < 0:
		return errors.New("-duration, -warmup, -hold and -gate must not be negative")
	case f.timeout <= 0 || f.dialTimeout <= 0:
		return errors.New("-timeout and -dial-timeout must be positive")
	case f.requests < 0:
		return fmt.Errorf("-requests %d is negative", f.requests)
	case f.rate < 0:
		return fmt.Errorf("-rate %v is negative (0 means closed loop)", f.rate)
	case f.ramp < 0:
		return fmt.Errorf("-ramp %v is negative (0 means as fast as possible)", f.ramp)
	case f.sources < 0:
		return fmt.Errorf("-sources %d is negative", f.sources)
	case f.set["first-source"] && f.sources == 0:
		return errors.New("-first-source needs -sources")
	case f.loops < 0:
		return fmt.Errorf("-loops %d is negative", f.loops)
	case f.set["loops"] && f.client == string(load.Goroutine):
		return errors.New("-loops applies to -client epoll")
	case f.size.N > 1<<30:
		return fmt.Errorf("-size %d is over 1 GiB", f.size.N)
	}
	return nil
}

// codec parses -framing. Line and length frames are capped at the payload
// size, so a longer reply is caught as soon as it exceeds it.
func (f *flags) codec() (frame.Codec, error) {
	max := 0
	if !f.interactive && (f.framing == "line" || f.framing == "length") {
		max = int(f.size.N)
	}
	c, err := frame.Parse(f.framing, max)
	if err != nil {
		return nil, fmt.Errorf("-framing: %w", err)
	}
	return c, nil
}

func (f *flags) options(codec frame.Codec) load.Options {
	o := load.Options{
		Addr: f.addr, Codec: codec, Conns: f.conns, Size: int(f.size.N), Pipeline: f.pipeline,
		Duration: f.duration, Requests: f.requests, Rate: f.rate, Ramp: f.ramp, Sources: f.sources, FirstSource: f.firstSource,
		Warmup: f.warmup, Idle: f.idle, DialTimeout: f.dialTimeout, Timeout: f.timeout,
		Client: load.Client(f.client), Loops: f.loops,
	}
	if _, fixed := codec.(frame.Fixed); fixed && !f.set["size"] {
		o.Size = 0 // the framing's N
	}
	if f.idle {
		o.Hold = f.hold
	}
	return o
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	usageErr := func(err error) int {
		fmt.Fprintf(stderr, "echoload: %v\n", err)
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
	codec, err := f.codec()
	if err != nil {
		return usageErr(err)
	}
	if f.interactive {
		err := load.Interactive(ctx, load.InteractiveOptions{Addr: f.addr, Codec: codec, In: stdin, Out: stdout,
			Notes: stderr, ShowReads: f.showReads, DialTimeout: f.dialTimeout, Wait: f.timeout})
		if err != nil {
			fmt.Fprintf(stderr, "echoload: %v\n", err)
			return exitFail
		}
		return exitOK
	}

	opts := f.options(codec)
	opts.Logger = log
	var g *stdinGate
	if f.gate > 0 {
		g = &stdinGate{in: stdin, out: stdout, wait: f.gate, log: log}
		opts.Gate = g.gate
	}
	l, err := load.New(opts)
	switch {
	case errors.Is(err, load.ErrInvalid):
		return usageErr(errors.New(flagNames(strings.TrimPrefix(err.Error(), load.ErrInvalid.Error()+": "))))
	case err != nil:
		fmt.Fprintf(stderr, "echoload: %v\n", err)
		return exitFail
	}
	if g != nil {
		g.l = l
	}
	stopProgress := startProgress(l, stderr)
	sum, err := l.Run(ctx)
	stopProgress()
	if err != nil {
		fmt.Fprintf(stderr, "echoload: %v\n", err)
		return exitFail
	}
	if f.jsonOut {
		err = sum.WriteJSON(stdout)
	} else {
		err = sum.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "echoload: writing the summary: %v\n", err)
		return exitFail
	}
	switch {
	case sum.OK:
		return exitOK
	case sum.Drained:
		return exitDrained
	}
	return exitFail
}

// flagNames turns the library's field names in an option error into the
// command's flag names.
func flagNames(msg string) string {
	for _, r := range []struct{ field, flag string }{
		{"size ", "-size "}, {"conns ", "-conns "}, {"pipeline ", "-pipeline "}, {"rate ", "-rate "},
		{"ramp ", "-ramp "}, {"sources ", "-sources "}, {"first source ", "-first-source "}, {"loops ", "-loops "}, {"client ", "-client "},
		{"address ", "-addr "}, {"framing ", "-framing "},
	} {
		if strings.HasPrefix(msg, r.field) {
			return r.flag + strings.TrimPrefix(msg, r.field)
		}
	}
	return msg
}

// startProgress shows a live status line on stderr while the run goes on, if
// stderr is a terminal; it returns a function that stops and clears it.
func startProgress(l *load.Load, stderr io.Writer) func() {
	file, ok := stderr.(*os.File)
	if !ok || !isatty.IsTerminal(file.Fd()) {
		return func() {}
	}
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		var lastFrames uint64
		lastAt := time.Now()
		for {
			select {
			case <-done:
				fmt.Fprint(file, "\r\x1b[K")
				return
			case now := <-tick.C:
				p := l.Progress()
				rate := float64(p.Frames-lastFrames) / now.Sub(lastAt).Seconds()
				lastFrames, lastAt = p.Frames, now
				fmt.Fprintf(file, "\r\x1b[K%-10s %6.1fs  conns %d/%d open %d  %9.0f frames/s  %d verified  errors %d  mismatches %d",
					p.Phase, p.Elapsed.Seconds(), p.Established, p.Asked, p.Open, rate, p.Frames, p.Errors, p.Mismatches)
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
	}
}
