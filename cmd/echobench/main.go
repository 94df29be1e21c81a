// Command echobench measures echoloop's event loop against the
// goroutine-per-connection server, both against gnet's minimal echo loop,
// and all against the Python textbook pair (a select loop and a thread per
// client, left out when there is no python3), side by side: each server its
// own process pinned to its CPUs, the load generator pinned to the others,
// every reply verified. It writes a
// results folder: raw.json (every measurement), REPORT.md and charts.
//
//	go run ./cmd/echobench -profile quick          # a smoke test, under a minute
//	go run ./cmd/echobench -profile full           # the comparison, about 21 minutes on 2 cores
//	go run ./cmd/echobench -report DIR             # rewrite DIR's report from raw.json and READING.md; print its headline
//
// Exit status: 0 when every cell ran and every reply matched, 1 when a cell
// failed, a reply did not match or the run was interrupted (what was
// measured is still written), 2 for bad flags.
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
	"runtime"
	"strings"
	"syscall"
	"time"

	"echoloop/bench/harness"
	"echoloop/bench/report"
	"echoloop/bench/results"
	"echoloop/cmd/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// readingFile is the person-written reading of a run, kept beside raw.json
// and put into REPORT.md.
const readingFile = "READING.md"

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("echobench", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	cores := runtime.NumCPU()
	profile := fs.String("profile", "quick", "matrix to run: "+strings.Join(harness.ProfileNames(), ", "))
	out := fs.String("out", "", "results `dir` (default bench/results/<date>-<label>)")
	label := fs.String("label", "", "name of the run (default the profile's name)")
	serverCPUs := fs.String("server-cpus", "0", "taskset `list` of CPUs for the servers")
	loadCPUs := fs.String("load-cpus", defaultLoadCPUs(cores), "taskset `list` of CPUs for the load generator")
	servers := fs.String("servers", "", "comma-separated server `names` to keep from the profile (default all)")
	reps := fs.Int("reps", 0, "repetitions of each cell (default the profile's: full 3, quick 1)")
	baseline := fs.String("baseline", "", "also measure echoloop as it was at git `rev`, as server eventloop-1@rev, beside this tree's")
	reportDir := fs.String("report", "", "rewrite the report of results `dir` from its raw.json and "+readingFile+", and run nothing")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "Usage: echobench [flags]\n\nMeasures the event loop against the goroutine model, pinned apart, every reply verified.\n\nFlags:\n")
			fs.SetOutput(stderr)
			fs.PrintDefaults()
			return exitOK
		}
		return usage(stderr, err)
	}
	if fs.NArg() > 0 {
		return usage(stderr, fmt.Errorf("unexpected argument %q (all settings are flags; see -h)", fs.Arg(0)))
	}
	if *reportDir != "" {
		res, err := writeReport(*reportDir, nil)
		if err != nil {
			fmt.Fprintf(stderr, "echobench: %v\n", err)
			return exitFail
		}
		fmt.Fprintf(stderr, "wrote %s; its headline, for the README:\n", filepath.Join(*reportDir, "REPORT.md"))
		fmt.Fprint(stdout, report.Headline(res, filepath.ToSlash(*reportDir)))
		return exitOK
	}

	p, ok := harness.Profiles(cores)[*profile]
	if !ok {
		return usage(stderr, fmt.Errorf("-profile %q: want one of %s", *profile, strings.Join(harness.ProfileNames(), ", ")))
	}
	p, err := p.Filter(*servers)
	if err != nil {
		return usage(stderr, fmt.Errorf("-servers: %w", err))
	}
	if *reps < 0 {
		return usage(stderr, fmt.Errorf("-reps %d is negative", *reps))
	}
	if *reps > 0 {
		p.Reps = *reps
	}
	if *serverCPUs == *loadCPUs || *loadCPUs == "" {
		return usage(stderr, fmt.Errorf("-server-cpus %q and -load-cpus %q must name different CPUs (this machine has %d)", *serverCPUs, *loadCPUs, cores))
	}
	root, err := cli.ModuleRoot("echobench")
	if err != nil {
		fmt.Fprintf(stderr, "echobench: %v\n", err)
		return exitFail
	}
	if *label == "" {
		*label = p.Name
	}
	dir := *out
	if dir == "" {
		dir = filepath.Join(root, "bench", "results", time.Now().Format("2006-01-02")+"-"+*label)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintf(stderr, "echobench: %v\n", err)
		return exitFail
	}

	cmdline := "go run ./cmd/echobench " + strings.Join(args, " ")
	progress, stopProgress := newProgress(stderr)
	res, runErr := harness.Run(ctx, harness.Options{
		Profile: p, Root: root, ServerCPUs: *serverCPUs, LoadCPUs: *loadCPUs,
		Label: *label, Command: strings.TrimSpace(cmdline), Progress: progress, Baseline: *baseline,
	})
	stopProgress()
	if res == nil {
		fmt.Fprintf(stderr, "echobench: %v\n", runErr)
		return exitFail
	}
	if err := res.Save(filepath.Join(dir, "raw.json")); err != nil {
		fmt.Fprintf(stderr, "echobench: %v\n", err)
		return exitFail
	}
	if _, err := writeReport(dir, res); err != nil {
		fmt.Fprintf(stderr, "echobench: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(stderr, "wrote %s (read %s)\n", dir, filepath.Join(dir, "REPORT.md"))
	failed := 0
	for _, c := range res.Cells {
		if c.Failed != "" {
			failed++
		}
	}
	for _, c := range res.Idle {
		if c.Failed != "" {
			failed++
		}
	}
	switch {
	case runErr != nil:
		fmt.Fprintf(stderr, "echobench: %v\n", runErr)
		return exitFail
	case failed > 0:
		fmt.Fprintf(stderr, "echobench: %d cells failed; see REPORT.md\n", failed)
		return exitFail
	}
	return exitOK
}

// writeReport writes dir's REPORT.md and charts from res, or from dir's
// raw.json when res is nil, with dir's READING.md if there is one. It
// returns the run it reported.
func writeReport(dir string, res *results.Run) (*results.Run, error) {
	if res == nil {
		var err error
		if res, err = results.Load(filepath.Join(dir, "raw.json")); err != nil {
			return nil, err
		}
	}
	reading, err := os.ReadFile(filepath.Join(dir, readingFile))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return res, report.Write(dir, res, string(reading))
}

func usage(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "echobench: %v\n", err)
	return exitUsage
}

// defaultLoadCPUs is every CPU but the first, which the servers get.
func defaultLoadCPUs(cores int) string {
	switch {
	case cores < 2:
		return ""
	case cores == 2:
		return "1"
	}
	return fmt.Sprintf("1-%d", cores-1)
}
