package model_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"echoloop/bench/harness"
	"echoloop/bench/model"
	"echoloop/bench/servertest"
	"echoloop/eventloop/frame"
	"echoloop/eventloop/session"
)

// An attack benchmark with a proc dimension runs its clients against a
// server in one of two places. proc=in: in this process, on the same CPUs as
// the clients, so the figures mix the two. proc=pinned: as an echoloop
// process (./cmd/echoloop, built once per test binary) pinned to serverCPU,
// while this process, its clients, runs pinned to clientCPU on one P, so
// client and server never take each other's CPU. pinned is skipped without
// taskset or two CPUs.
const (
	procIn     = "in"
	procPinned = "pinned"

	serverCPU, clientCPU = "0", "1"
)

// attackServer is what the attack benchmarks need of the server under test.
type attackServer interface {
	Addr() net.Addr
	Stats() session.Stats
}

// startFunc starts a server of model m with cfg for benchmark b and stops
// it when b ends.
type startFunc func(b *testing.B, m string, cfg session.Config) attackServer

// forEachProc runs f as sub-benchmarks proc=in and proc=pinned, with the
// startFunc of each.
func forEachProc(b *testing.B, f func(b *testing.B, start startFunc)) {
	b.Run("proc="+procIn, func(b *testing.B) { f(b, startIn) })
	b.Run("proc="+procPinned, func(b *testing.B) {
		if _, err := exec.LookPath("taskset"); err != nil {
			b.Skip("proc=pinned needs taskset (util-linux) to pin the server and the clients apart")
		}
		if runtime.NumCPU() < 2 {
			b.Skipf("proc=pinned needs two CPUs to pin the server and the clients apart; this process may use %d", runtime.NumCPU())
		}
		bin, err := echoloopBin()
		if err != nil {
			b.Fatal(err)
		}
		was, err := harness.PinProcess(os.Getpid(), clientCPU)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			if _, err := harness.PinProcess(os.Getpid(), was); err != nil {
				b.Errorf("pin this process back to CPUs %s: %v", was, err)
			}
		})
		f(b, func(b *testing.B, m string, cfg session.Config) attackServer { return startPinned(b, bin, m, cfg) })
	})
}

// startIn starts the server in this process.
func startIn(b *testing.B, m string, cfg session.Config) attackServer {
	cfg.Logger = nopLogger
	srv := servertest.Start(b, model.Options{Model: m, Config: cfg})
	reportProcs(b, map[string]int{"proc": os.Getpid()})
	return srv
}

// echoloopDir holds the echoloop binary built for proc=pinned; TestMain
// removes it.
var echoloopDir string

// echoloopBin builds ./cmd/echoloop, once per test binary.
var echoloopBin = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "echoloop-bench-")
	if err != nil {
		return "", err
	}
	echoloopDir = dir
	bin := filepath.Join(dir, "echoloop")
	return bin, harness.GoBuild(context.Background(), ".", "echoloop/cmd/echoloop", bin)
})

// startPinned runs bin as model m with cfg, pinned to serverCPU, and sets
// this process, pinned already to clientCPU, to one P for the rest of b.
func startPinned(b *testing.B, bin, m string, cfg session.Config) attackServer {
	args, err := echoloopArgs(m, cfg)
	if err != nil {
		b.Fatal(err)
	}
	srv, err := harness.StartServer(b.Context(), bin, serverCPU, nil, args...)
	if err != nil {
		b.Fatalf("echoloop: %v", err)
	}
	// Registered first, so it runs last: after the clients' connections
	// are closed.
	b.Cleanup(func() {
		if err := srv.Stop(30 * time.Second); err != nil {
			b.Errorf("echoloop (pid %d) did not stop cleanly: %v", srv.PID(), err)
		}
	})
	addr, err := net.ResolveTCPAddr("tcp", srv.Addr)
	if err != nil {
		b.Fatalf("echoloop listens on %q: %v", srv.Addr, err)
	}
	// The benchmark framework sets GOMAXPROCS before each run and checks
	// it after, so one P for one CPU is set here, in the run.
	procs := runtime.GOMAXPROCS(1)
	b.Cleanup(func() { runtime.GOMAXPROCS(procs) })
	reportProcs(b, map[string]int{"srv": srv.PID(), "cli": os.Getpid()})
	return &pinnedServer{b: b, srv: srv, addr: addr, model: m}
}

// reportProcs reports, when b ends, what each process of procs (by the
// metric prefix) did from now on: the CPU it used, in percent of one CPU
// (prefix-cpu-%), and how long its threads waited for a CPU while
// runnable, in ms per second (prefix-wait-ms/s). With proc=in the one
// process, "proc", is server and clients, waiting for each other or for
// other processes (a child process of attackers, such as
// SlowReadersBeside's, is not counted). With proc=pinned the server ("srv") and the clients
// ("cli") each have a CPU of their own: a process near 100% is the
// bottleneck, and its wait is mostly time other processes on the machine
// took from it, which the run's figures then measure as well.
func reportProcs(b *testing.B, procs map[string]int) {
	type sample struct{ cpu, wait time.Duration }
	read := func(pid int) (s sample, err error) {
		if s.cpu, err = harness.CPUTime(pid); err == nil {
			s.wait, err = harness.RunQueueWait(pid)
		}
		return s, err
	}
	t0 := time.Now()
	before := map[string]sample{}
	for who, pid := range procs {
		before[who], _ = read(pid)
	}
	b.Cleanup(func() {
		secs := time.Since(t0).Seconds()
		for who, pid := range procs {
			if s, err := read(pid); err == nil {
				b.ReportMetric(100*(s.cpu-before[who].cpu).Seconds()/secs, who+"-cpu-%")
				b.ReportMetric(millis(s.wait-before[who].wait)/secs, who+"-wait-ms/s")
			}
		}
	})
}

// echoloopArgs are the echoloop flags that serve model m as a server in
// this process with cfg would: the Config fields the attack benchmarks set,
// and the Config defaults where the command's defaults differ (it has idle
// and write timeouts, a Config none). A field it does not translate is an
// error, so the two variants cannot drift apart unnoticed.
func echoloopArgs(m string, cfg session.Config) ([]string, error) {
	args := []string{"-model", m, "-addr", "127.0.0.1:0", "-metrics", "127.0.0.1:0",
		"-log-format", "json", "-log-level", "info",
		"-idle-timeout", cfg.IdleTimeout.String(), "-write-timeout", cfg.WriteTimeout.String()}
	if cfg.Codec != nil {
		args = append(args, "-framing", cfg.Codec.String())
		switch cfg.Codec.(type) {
		case frame.Line, frame.Length:
			args = append(args, "-max-frame", strconv.Itoa(cfg.Codec.MaxPayload()))
		}
	}
	if cfg.MaxPending > 0 {
		args = append(args, "-max-pending", strconv.Itoa(cfg.MaxPending))
	}
	rest := cfg
	rest.Codec, rest.IdleTimeout, rest.WriteTimeout, rest.MaxPending, rest.Logger = nil, 0, 0, 0, zerolog.Logger{}
	if !reflect.ValueOf(rest).IsZero() {
		return nil, fmt.Errorf("echoloopArgs: the Config sets fields it does not pass on as flags: %+v", rest)
	}
	return args, nil
}

// pinnedServer is an echoloop process; its Stats are read from its metrics.
type pinnedServer struct {
	b     *testing.B
	srv   *harness.Server
	addr  net.Addr
	model string
}

func (s *pinnedServer) Addr() net.Addr { return s.addr }

// Stats scrapes the server's metrics: every field of session.Stats has one.
func (s *pinnedServer) Stats() session.Stats {
	m, err := s.srv.Scrape()
	if err != nil {
		s.b.Fatalf("scrape echoloop's metrics: %v", err)
	}
	get := func(name, labels string) int64 {
		if labels != "" {
			labels += ","
		}
		return int64(m[fmt.Sprintf("echoloop_%s{%smodel=%q}", name, labels, s.model)])
	}
	st := session.Stats{
		ConnsOpen: get("connections_open", ""), ConnsTotal: get("connections_total", ""),
		FramesIn: get("frames_total", `direction="in"`), FramesOut: get("frames_total", `direction="out"`),
		BytesIn: get("bytes_total", `direction="in"`), BytesOut: get("bytes_total", `direction="out"`),
		PartialFrames: get("partial_frames_total", ""), AcceptErrors: get("accept_errors_total", ""),
		MemoryHeld: get("memory_held_bytes", ""), Closes: map[session.Reason]int64{},
	}
	for _, r := range session.Reasons() {
		key := fmt.Sprintf("echoloop_closes_total{model=%q,reason=%q}", s.model, r)
		if n := int64(m[key]); n > 0 {
			st.Closes[r] = n
		}
	}
	return st
}

// reportTCP reports, when b ends, what TCP did on the whole machine from
// now on: the milliseconds it spent over its memory pressure threshold
// (tcp-pressure-ms), when it prunes receive queues and drops segments, and
// its retransmission timeouts (tcp-rtos), each a stall of 200ms or more. A
// flood of clients that never read can put it there (each such connection
// fills its socket buffers on both ends; the server's send side is capped at
// session.UnsentLimit unsent, the rest is the clients'), and so can other
// work on the machine.
func reportTCP(b *testing.B) {
	before, err := harness.TCPCounters()
	if err != nil {
		return
	}
	b.Cleanup(func() {
		after, err := harness.TCPCounters()
		if err != nil {
			return
		}
		b.ReportMetric(float64(after["TCPMemoryPressuresChrono"]-before["TCPMemoryPressuresChrono"]), "tcp-pressure-ms")
		b.ReportMetric(float64(after["TCPTimeouts"]-before["TCPTimeouts"]), "tcp-rtos")
	})
}
