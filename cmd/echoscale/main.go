// Command echoscale is the scale demonstration: it holds many idle
// connections (100,000 by default) on several echoloop processes sharing one
// address with SO_REUSEPORT, opened by several echoload processes from
// source addresses apart, with one verified round trip on every connection
// before and after a hold, for each concurrency model in turn. It reports
// the servers' total memory and CPU, every process's figures and the
// machine's limits, in results.json and RESULTS.md.
//
//	go run ./cmd/echoscale                               # 100,000 connections, both models, 60 s hold
//	go run ./cmd/echoscale -conns 20000 -hold 10s -out /tmp/scale
//
// Exit status: 0 when every model held every connection through both round
// trips, 1 when one did not, the plan does not fit the machine's limits or
// the run was interrupted (what was measured is still written), 2 for bad
// flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"echoloop/bench/scale"
	"echoloop/cmd/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stderr))
}

// defaultRamp paces each generator's connects. Unpaced, on this project's
// shared 2-core machine, the goroutine model's accept queues overflowed and
// 15 of 100,000 connects were still retrying their SYN after the generators'
// 30 s dial timeout; 6 × 500 a second is under what both models accept.
const defaultRamp = 500

const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

func run(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("echoscale", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	models := fs.String("models", "eventloop,goroutine", "concurrency `models` to run in turn, comma-separated")
	conns := fs.Int("conns", scale.DefaultConns, "connections in all")
	servers := fs.Int("servers", scale.DefaultServers, "server processes sharing the address")
	gens := fs.Int("generators", scale.DefaultGenerators, "load generator processes")
	sources := fs.Int("sources", scale.DefaultSources, "source addresses per generator (generator i has its own range from 127.0.0.1 on)")
	hold := fs.Duration("hold", scale.DefaultHold, "how long the connections are held between the two round trips")
	ramp := fs.Float64("ramp", defaultRamp, "new connections per second per generator; 0: as fast as each can, 512 connecting at once")
	connect := fs.Duration("connect-timeout", scale.DefaultConnectTimeout, "longest wait for every generator to be connected and verified")
	out := fs.String("out", "", "results `dir` (default bench/results/<date>-scale)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "Usage: echoscale [flags]\n\nHolds many idle connections on several server processes, verified before and after a hold, for each model.\n\nFlags:\n")
			fs.SetOutput(stderr)
			fs.PrintDefaults()
			return exitOK
		}
		return usage(stderr, err)
	}
	if fs.NArg() > 0 {
		return usage(stderr, fmt.Errorf("unexpected argument %q (all settings are flags; see -h)", fs.Arg(0)))
	}
	switch {
	case *conns < 1 || *servers < 1 || *gens < 1 || *sources < 1:
		return usage(stderr, errors.New("-conns, -servers, -generators and -sources must be at least 1"))
	case *hold < 0 || *ramp < 0 || *connect <= 0:
		return usage(stderr, errors.New("-hold and -ramp must not be negative, and -connect-timeout must be positive"))
	}
	root, err := cli.ModuleRoot("echoscale")
	if err != nil {
		fmt.Fprintf(stderr, "echoscale: %v\n", err)
		return exitFail
	}
	dir := *out
	if dir == "" {
		dir = filepath.Join(root, "bench", "results", time.Now().Format("2006-01-02")+"-scale")
	}
	res, runErr := scale.Run(ctx, scale.Options{
		Root: root, Models: strings.Split(*models, ","), Conns: *conns, Servers: *servers, Generators: *gens,
		Sources: *sources, Hold: *hold, Ramp: *ramp, ConnectTimeout: *connect,
		Command: strings.TrimSpace("go run ./cmd/echoscale " + strings.Join(args, " ")), Progress: stderr,
	})
	if errors.Is(runErr, scale.ErrPlan) {
		return usage(stderr, runErr)
	}
	if res == nil {
		fmt.Fprintf(stderr, "echoscale: %v\n", runErr)
		return exitFail
	}
	if err := write(dir, res); err != nil {
		fmt.Fprintf(stderr, "echoscale: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(stderr, "wrote %s and %s\n", filepath.Join(dir, "results.json"), filepath.Join(dir, "RESULTS.md"))
	if runErr != nil {
		fmt.Fprintf(stderr, "echoscale: %v\n", runErr)
		return exitFail
	}
	for _, m := range res.Models {
		if !m.OK {
			fmt.Fprintf(stderr, "echoscale: %s did not hold every connection; see RESULTS.md\n", m.Model)
			return exitFail
		}
	}
	return exitOK
}

// write saves res in dir as results.json and RESULTS.md.
func write(dir string, res *scale.Result) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := res.Save(filepath.Join(dir, "results.json")); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "RESULTS.md"))
	if err != nil {
		return err
	}
	if err := res.WriteMarkdown(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func usage(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "echoscale: %v\n", err)
	return exitUsage
}
