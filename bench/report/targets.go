package report

import (
	"fmt"
	"math"

	"echoloop/bench/results"
)

// A target bounds the median of a same-run ratio.
type target struct {
	limit  float64
	atMost bool // the ratio must not exceed limit; otherwise it must reach it
}

// The project's targets.
var (
	// Event-loop server CPU per frame ÷ the plain gnet loop's.
	cpuTarget = target{limit: 1.10, atMost: true}
	// Event-loop idle bytes per connection ÷ the plain gnet loop's.
	memRefTarget = target{limit: 1.15, atMost: true}
	// Goroutine-model idle bytes per connection ÷ the event loop's.
	memGoTarget = target{limit: 10, atMost: false}
)

func (t target) String() string {
	if t.atMost {
		return "≤ " + times.format(t.limit)
	}
	return "≥ " + tickLabel(times, t.limit)
}

// A verdict is a target applied to a measured ratio.
type verdict struct {
	target
	Ratio results.Spread
}

// Met reports whether the median ratio is within the target.
func (v verdict) Met() bool {
	if v.atMost {
		return v.Ratio.Median <= v.limit
	}
	return v.Ratio.Median >= v.limit
}

// Off is how far the median lies from the limit, in ratio units, positive
// on the wrong side: 0.15 for 1.25× against ≤ 1.10×. It ranks verdicts;
// the report shows it as a share of the limit (Miss), since a difference
// of two ratios is not itself a ratio.
func (v verdict) Off() float64 {
	if v.atMost {
		return v.Ratio.Median - v.limit
	}
	return v.limit - v.Ratio.Median
}

// Miss is how far a missed median lies past the limit, as a share of the
// limit: "14% over" for 1.25× against ≤ 1.10×, "20% short" for 8.0×
// against ≥ 10×.
func (v verdict) Miss() string {
	side := "over"
	if !v.atMost {
		side = "short"
	}
	return percent(v.Off()/v.limit) + " " + side
}

// Short is the verdict in a table cell, whose header names the target:
// "1.07× (1.05–1.09) met" or "1.25× (1.22–1.30) **missed, 14% over**".
func (v verdict) Short() string {
	r := times.spread(v.Ratio)
	if v.Met() {
		return r + " met"
	}
	return r + " **missed, " + v.Miss() + "**"
}

// Long is the verdict in a sentence, with the target: "1.25× against
// ≤ 1.10×: **missed**, 14% over".
func (v verdict) Long() string {
	r := times.format(v.Ratio.Median) + " against " + v.target.String()
	if v.Met() {
		return fmt.Sprintf("%s: met, %s to spare", r, percent(-v.Off()/v.limit))
	}
	return r + ": **missed**, " + v.Miss()
}

func percent(f float64) string {
	p := math.Abs(f) * 100
	if p < 1 && p > 0 {
		return fmt.Sprintf("%.1f%%", p)
	}
	return fmt.Sprintf("%.0f%%", p)
}

// cpuCheck is the CPU-per-frame target at one closed-loop cell.
type cpuCheck struct {
	group
	Conns int
	A, B  results.Spread // CPU µs per frame of each server, for context
	verdict
}

// cpuChecks applies the CPU target to every closed-loop cell where both
// servers of p have figures.
func (d *data) cpuChecks(p pair) []cpuCheck {
	var cs []cpuCheck
	for _, g := range d.groups() {
		for _, n := range d.conns(g) {
			k := closedKey{g, n}
			a, b := d.closed[p.A.Name][k], d.closed[p.B.Name][k]
			r := sameRun(byRep(a, cpuPerFrame), byRep(b, cpuPerFrame))
			if r.N == 0 {
				continue
			}
			cs = append(cs, cpuCheck{g, n, cellSpread(a, cpuPerFrame), cellSpread(b, cpuPerFrame), verdict{cpuTarget, r}})
		}
	}
	return cs
}

// memCheck is a memory target at one idle count.
type memCheck struct {
	Conns int
	A, B  results.Spread // bytes per connection of each server
	verdict
}

func (d *data) memChecks(p pair, t target) []memCheck {
	var ms []memCheck
	for _, n := range d.idleCounts() {
		a, b := d.idle[p.A.Name][n], d.idle[p.B.Name][n]
		r := sameRun(idleByRep(a, bytesPerConn), idleByRep(b, bytesPerConn))
		if r.N == 0 {
			continue
		}
		ms = append(ms, memCheck{n, spread(idleByRep(a, bytesPerConn)), spread(idleByRep(b, bytesPerConn)), verdict{t, r}})
	}
	return ms
}

// worst returns the index of the verdict furthest on the wrong side of
// its limit (or closest to it when all are met), -1 for none.
func worst(vs []verdict) int {
	w := -1
	for i, v := range vs {
		if w < 0 || v.Off() > vs[w].Off() {
			w = i
		}
	}
	return w
}

func countMet(vs []verdict) int {
	n := 0
	for _, v := range vs {
		if v.Met() {
			n++
		}
	}
	return n
}

// troubled is a load-cell repetition with mismatches or errors.
type troubled struct {
	results.Cell
	Errors uint64
}

// integrity sums mismatches and errors over every load cell, failed ones
// included (a failure does not undo what was counted before it), and
// lists the repetitions that had any.
func (d *data) integrity() (mismatches, errs uint64, runs int, bad []troubled) {
	for _, c := range d.run.Cells {
		runs++
		var e uint64
		for _, n := range c.Errors {
			e += n
		}
		mismatches += c.Mismatches
		errs += e
		if c.Mismatches > 0 || e > 0 {
			bad = append(bad, troubled{c, e})
		}
	}
	return mismatches, errs, runs, bad
}
