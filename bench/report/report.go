// Package report turns the record of an echobench run into what a person
// would rather look at than read: REPORT.md, with the environment, every
// target's verdict beside the figures behind it, tables of medians with
// their ranges, SVG charts with one line per server configuration, and,
// when the run has them, the Python textbook servers set beside the Go
// servers of their shapes with what a learner should take from them.
//
// Figures are medians over the repetitions of a cell, with min–max.
// Comparisons between two servers are medians of same-run ratios: the
// harness interleaves repetitions across servers, so repetition k of one
// is divided by repetition k of the other, which ran close in time and
// shared whatever the machine was doing then. Failed repetitions have no
// figures: they are listed, and left out of every median and ratio.
//
// The charts, in charts/ beside REPORT.md, are SVG at 768 × 432 px, the
// legend under the plot:
//
//	throughput-<size>b-p<pipeline>.svg      frames/s against connections
//	cpu-per-frame-<size>b-p<pipeline>.svg   server CPU µs per frame
//	ctxsw-per-frame-<size>b-p<pipeline>.svg server context switches per frame
//	idle-memory.svg                         bytes per idle connection
//	latency-p50-c<conns>-<size>b-p<pipeline>.svg, latency-p99-...
//	                                        open-loop latency against offered load
//
// one per (payload size, pipeline) of the closed-loop matrix and one per
// open-loop series.
package report

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"echoloop/bench/results"
)

// Errors returned by Write.
var (
	// ErrNoRun is returned for a nil run.
	ErrNoRun = errors.New("report: no run")
	// ErrSchema is returned for a run of a results schema this package
	// does not read.
	ErrSchema = errors.New("report: unknown results schema")
)

// File is the report's name inside its folder.
const File = "REPORT.md"

// Write writes dir/REPORT.md and its charts (dir/charts/*.svg) for run,
// creating dir if needed. reading is markdown written by a person after
// the run, what the figures say and do not say; it gets a section of its
// own and may be empty.
//
// A chart that cannot be drawn does not stop the report: the rest is
// written and the error returned with the others. Charts already in
// dir/charts that this run does not draw are left alone.
func Write(dir string, run *results.Run, reading string) error {
	if run == nil {
		return ErrNoRun
	}
	if run.Schema != results.Schema {
		return fmt.Errorf("%w: %d, this build reads %d", ErrSchema, run.Schema, results.Schema)
	}
	if err := os.MkdirAll(filepath.Join(dir, "charts"), 0o755); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	d := index(run)
	look := styles(d.servers)
	var errs []error
	for _, c := range d.charts() {
		if err := c.draw(dir, look); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, File), []byte(d.markdown(reading)), 0o644); err != nil {
		errs = append(errs, fmt.Errorf("report: %w", err))
	}
	return errors.Join(errs...)
}

// Headline returns a short markdown summary of run for the README: closed
// loop, 64-byte payloads, pipeline 1 (else the first size and pipeline the
// run has), frames/s and server CPU per frame at each connection count for
// every server, the same-run ratios event loop ÷ goroutine, idle bytes per
// connection at the largest count, and links to the throughput, CPU and
// memory charts. base is the report folder as seen from the README
// ("bench/results/2026-03-01-full"); the links are base/charts/....
func Headline(run *results.Run, base string) string {
	if run == nil {
		return ""
	}
	d := index(run)
	var m md
	link := func(file string) string { return path.Join(base, file) }
	var charts []string

	if g, ok := d.headlineGroup(); ok {
		ss := d.columns(func(n string) bool { return d.has(n, g) })
		eg := d.pairs(isModel("eventloop"), isModel("goroutine"))
		head := header("connections", ss)
		for _, p := range eg {
			head = append(head, p.String())
		}
		var rows [][]string
		for _, n := range d.conns(g) {
			k := closedKey{g, n}
			row := []string{thousands(int64(n))}
			for _, s := range ss {
				row = append(row, figure(d.closed[s.Name][k], func(cs []results.Cell) string {
					return count.format(cellSpread(cs, framesPerS).Median) + "/s · " + micros.format(cellSpread(cs, cpuPerFrame).Median)
				}))
			}
			for _, p := range eg {
				a, b := d.closed[p.A.Name][k], d.closed[p.B.Name][k]
				row = append(row, times.spread(sameRun(byRep(a, framesPerS), byRep(b, framesPerS)))+" · "+
					times.spread(sameRun(byRep(a, cpuPerFrame), byRep(b, cpuPerFrame))))
			}
			rows = append(rows, row)
		}
		m.p("Closed loop, %s: frames per second · server CPU per frame, medians of the repetitions; ratios are same-run medians (frames/s · CPU per frame) with their range.", g)
		m.table(head, rows)
		charts = append(charts, "[throughput]("+link(throughputFile(g))+")", "[server CPU per frame]("+link(cpuFile(g))+")")
	}

	if ns := d.idleCounts(); len(ns) > 0 {
		n := ns[len(ns)-1]
		var parts []string
		for _, s := range d.servers {
			if is := d.idle[s.Name][n]; len(is) > 0 {
				v := none
				if sp := spread(idleByRep(is, bytesPerConn)); sp.N > 0 {
					v = bytesU.format(sp.Median)
				} else {
					v = "failed"
				}
				parts = append(parts, s.Name+" "+v)
			}
		}
		m.p("Idle memory per connection at %s connections: %s.", thousands(int64(n)), strings.Join(parts, ", "))
		charts = append(charts, "[memory per idle connection]("+link(idleFile)+")")
	}
	if len(charts) > 0 {
		m.p("Charts: %s.", strings.Join(charts, ", "))
	}
	return strings.TrimRight(m.String(), "\n") + "\n"
}

// headlineGroup is 64 B, pipeline 1 if the run has it, else the smallest
// payload at the smallest pipeline.
func (d *data) headlineGroup() (group, bool) {
	gs := d.groups()
	if len(gs) == 0 {
		return group{}, false
	}
	for _, g := range gs {
		if g == (group{64, 1}) {
			return g, true
		}
	}
	return gs[0], true
}
