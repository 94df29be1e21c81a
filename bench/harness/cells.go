package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"echoloop/bench/load"
	"echoloop/bench/results"
)

// framing is what every cell speaks: the common binary protocol shape.
const framing = "length"

// sources spreads the generator's connections over 127.0.0.1..8, so tens
// of thousands of connections, and the TIME_WAIT of the previous cell's,
// never exhaust one address's ephemeral ports.
const sources = "8"

// runLoad measures one load cell against a fresh server: it starts the
// server, runs echoload against it, and reads the server's /proc at the
// moments echoload opens and closes its measured window (its "measuring"
// and "measured" log lines), so connection set-up and warm-up stay out of
// the server's figures as they do out of the generator's.
func (h *harness) runLoad(ctx context.Context, spec results.Server, cell results.Cell) (measured results.Cell) {
	defer func() { markInterrupted(ctx, &measured.Failed) }()
	srv, err := h.startServer(ctx, spec)
	if err != nil {
		cell.Failed = err.Error()
		return cell
	}
	defer srv.stop(15 * time.Second)
	h.gomaxprocs[spec.Name] = srv.GOMAXPROCS

	args := []string{"-addr", srv.Addr, "-framing", framing, "-conns", strconv.Itoa(cell.Conns),
		"-size", strconv.Itoa(cell.Size), "-pipeline", strconv.Itoa(cell.Pipeline),
		"-warmup", h.opts.Profile.Warmup.String(), "-duration", h.opts.Profile.Duration.String(),
		"-sources", sources, "-timeout", "10s", "-json", "-log-format", "json", "-log-level", "info"}
	if cell.Kind == results.Open {
		args = append(args, "-rate", strconv.FormatFloat(cell.RateOffered, 'f', 0, 64))
	}
	var out bytes.Buffer
	gen, err := startChild(h.bins.echoload, h.opts.LoadCPUs, nil, &out, args...)
	if err != nil {
		cell.Failed = err.Error()
		return cell
	}
	defer gen.stop(5 * time.Second)

	limit := 2*time.Minute + h.opts.Profile.Warmup + h.opts.Profile.Duration
	if _, err := gen.await(ctx, "measuring", limit); err != nil {
		cell.Failed = "load generator: " + err.Error()
		return cell
	}
	before, err := sampleProc(srv.pid())
	if err != nil {
		cell.Failed = "server: " + err.Error()
		return cell
	}
	// A thread per client ends as the generator closes its connections,
	// on the very line that ends the window, and takes its context
	// switches with it: read the threads once more shortly before.
	late := make(chan procSample, 1)
	lateTimer := time.AfterFunc(max(h.opts.Profile.Duration-lateSample, 0), func() {
		s, _ := sampleProc(srv.pid())
		late <- s
	})
	defer lateTimer.Stop()
	if _, err := gen.await(ctx, "measured", limit); err != nil {
		cell.Failed = "load generator: " + err.Error()
		return cell
	}
	after, err := sampleProc(srv.pid())
	if err != nil {
		cell.Failed = "server: " + err.Error()
		return cell
	}
	if !lateTimer.Stop() {
		after.remember(<-late)
	}
	cell.Goroutines = srv.goroutines() // after the window: scraping costs CPU
	select {
	case <-gen.exited:
	case <-ctx.Done():
		cell.Failed = results.Interrupted
		return cell
	case <-time.After(limit):
		cell.Failed = "load generator did not finish: " + gen.tail.String()
		return cell
	}
	var sum load.Summary
	if err := json.Unmarshal(out.Bytes(), &sum); err != nil {
		cell.Failed = fmt.Sprintf("load generator summary: %v (stderr: %s)", err, gen.tail)
		return cell
	}
	h.fill(&cell, &sum, between(before, after))
	return cell
}

// lateSample is how long before the end of a load cell's window the
// server's threads are read once more.
const lateSample = 150 * time.Millisecond

// markInterrupted replaces the reason a cell failed with
// results.Interrupted when the run was stopped: whichever step noticed
// first ("load generator: context canceled"), the cause was the stop, not
// the server.
func markInterrupted(ctx context.Context, failed *string) {
	if *failed != "" && ctx.Err() != nil {
		*failed = results.Interrupted
	}
}

// fill copies the generator's summary and the server's usage into cell.
func (h *harness) fill(cell *results.Cell, sum *load.Summary, u usage) {
	cell.FramesPerS, cell.MBPerS = sum.FramesPerS, sum.MBPerS
	cell.Latency = results.Latency{P50: sum.Latency.P50US, P90: sum.Latency.P90US, P99: sum.Latency.P99US,
		P999: sum.Latency.P999US, Max: sum.Latency.MaxUS}
	cell.ConnsEstablished = sum.ConnsEstablished
	cell.FramesVerified = sum.FramesVerified
	cell.Mismatches = sum.Mismatches
	if len(sum.Errors) > 0 || sum.ConnsDrained > 0 {
		cell.Errors = make(map[string]uint64)
		for _, e := range sum.Errors {
			cell.Errors[string(e.Kind)] += e.Count
		}
	}
	if sum.ConnsDrained > 0 { // not the generator's failure, but the cell did not run as asked
		cell.Errors["drained"] = uint64(sum.ConnsDrained)
	}
	cell.LoadCPU = sum.CPU.Utilization
	cell.ServerCPU = u.cores
	// The server's window is the generator's give or take a log line's
	// delivery; scale frames to the server's own wall time.
	if frames := float64(sum.FramesVerified) * u.wall.Seconds() / max(sum.ElapsedS, 1e-9); frames > 0 {
		cell.CPUPerFrameUS = float64(u.cpu.Microseconds()) / frames
	}
	cell.RSS, cell.Threads = u.rss, u.threads
	cell.VolCtxSwPerS, cell.InvolCtxSwPerS = u.volPS, u.involPS
	cell.Bottleneck = bottleneck(cell.ServerCPU, h.serverCores, cell.LoadCPU, h.loadCores)
}

// bottleneck names the side whose CPU budget was (nearly) used up.
func bottleneck(server float64, serverCores int, gen float64, genCores int) string {
	const busy = 0.9
	s := server >= busy*float64(serverCores)
	g := gen >= busy*float64(genCores)
	switch {
	case s && g:
		return "both"
	case s:
		return "server"
	case g:
		return "load generator"
	}
	return "neither"
}

// runIdle measures one idle-memory cell against a fresh server: its RSS
// before any connection, then while the generator holds conns connections
// after one verified round trip on each.
func (h *harness) runIdle(ctx context.Context, spec results.Server, conns, rep int) (measured results.Idle) {
	defer func() { markInterrupted(ctx, &measured.Failed) }()
	cell := results.Idle{Server: spec.Name, Conns: conns, Rep: rep, Goroutines: -1}
	srv, err := h.startServer(ctx, spec)
	if err != nil {
		cell.Failed = err.Error()
		return cell
	}
	defer srv.stop(15 * time.Second)
	settle := h.opts.Profile.Settle
	time.Sleep(settle) // let start-up allocation finish before the baseline
	base, err := sampleProc(srv.pid())
	if err != nil {
		cell.Failed = "server: " + err.Error()
		return cell
	}
	cell.BaselineRSS = base.rss

	hold := settle + 2*time.Second // settle, read, and keep a margin
	var out bytes.Buffer
	gen, err := startChild(h.bins.echoload, h.opts.LoadCPUs, nil, &out, "-addr", srv.Addr, "-framing", framing,
		"-idle", "-conns", strconv.Itoa(conns), "-hold", hold.String(), "-sources", sources, "-timeout", "10s",
		"-json", "-log-format", "json", "-log-level", "info")
	if err != nil {
		cell.Failed = err.Error()
		return cell
	}
	defer gen.stop(5 * time.Second)
	rec, err := gen.await(ctx, "holding", 2*time.Minute)
	if err != nil {
		cell.Failed = "load generator: " + err.Error()
		return cell
	}
	open, _ := rec["conns"].(float64)
	cell.Open = int(open)
	time.Sleep(settle)
	held, err := sampleProc(srv.pid())
	if err != nil {
		cell.Failed = "server: " + err.Error()
		return cell
	}
	cell.HeldRSS, cell.Threads = held.rss, held.threads
	cell.Goroutines = srv.goroutines()
	select {
	case <-gen.exited:
	case <-ctx.Done():
		cell.Failed = results.Interrupted
		return cell
	}
	var sum load.Summary
	if err := json.Unmarshal(out.Bytes(), &sum); err != nil {
		cell.Failed = fmt.Sprintf("load generator summary: %v (stderr: %s)", err, gen.tail)
		return cell
	}
	// The memory is that of the connections open when it was read: a
	// server too slow for the last round trip still held them all then.
	cell.Held = sum.ConnsHeld
	for _, e := range sum.Errors {
		if cell.Errors == nil {
			cell.Errors = make(map[string]uint64)
		}
		cell.Errors[string(e.Kind)] += e.Count
	}
	if cell.Open > 0 {
		cell.BytesPerConn = float64(cell.HeldRSS-cell.BaselineRSS) / float64(cell.Open)
	}
	return cell
}
