package report

import (
	"fmt"
	"slices"
	"strings"

	"echoloop/bench/results"
	"echoloop/bench/textbook"
)

// kin is the Go model of each textbook server's shape: the select loop is
// an event loop, the thread per client a goroutine per connection.
var kin = map[string]string{textbook.Select: "eventloop", textbook.Threads: "goroutine"}

func isTextbook(s results.Server) bool { return textbook.IsModel(s.Model) }

// textbookPairs sets each textbook server beside the Go server of its
// shape and width.
func (d *data) textbookPairs() []pair {
	var ps []pair
	for _, model := range []string{textbook.Select, textbook.Threads} {
		ps = append(ps, d.pairs(isModel(model), isModel(kin[model]))...)
	}
	return ps
}

// textbookSection writes what the textbook pair measured beside the Go
// servers of their shapes, and what a learner should take from it; nothing
// when the run has neither.
func (d *data) textbookSection(m *md) {
	var tb []results.Server
	for _, s := range d.servers {
		if isTextbook(s) {
			tb = append(tb, s)
		}
	}
	if len(tb) == 0 {
		return
	}
	ps := d.textbookPairs()
	m.h(2, "The textbook servers")
	intro := "`python-select` and `python-threads` are the textbook pair this project grew from, in plain Python 3"
	if v := d.run.Env.PythonVersion; v != "" {
		intro += " (" + v + ")"
	}
	intro += ", in `" + textbook.Dir + "`: a `selectors` loop on one thread, and `socketserver`'s thread per client. They echo raw bytes, so the generator's frames come back intact whatever their framing, and they were started, pinned, loaded and verified like the Go servers."
	if len(ps) > 0 {
		var beside []string
		for _, p := range ps {
			beside = append(beside, "`"+p.A.Name+"` beside `"+p.B.Name+"`")
		}
		intro += " Each is set beside the Go server of its shape, same run: " + strings.Join(beside, ", ") + "."
	}
	m.p("%s", intro)

	g, closed := d.headlineGroup()
	if closed && len(ps) > 0 {
		m.h(3, "Python ÷ Go, closed loop, "+g.String())
		m.p("Same-run ratios, medians with their range. Below 1× in frames/s the Python server moved fewer frames; above 1× in CPU it spent more per frame.")
		head := []string{"connections"}
		for _, p := range ps {
			head = append(head, "frames/s "+p.String(), "CPU per frame "+p.String())
		}
		var rows [][]string
		for _, n := range d.conns(g) {
			k := closedKey{g, n}
			row := []string{thousands(int64(n))}
			for _, p := range ps {
				a, b := d.closed[p.A.Name][k], d.closed[p.B.Name][k]
				row = append(row, times.spread(sameRun(byRep(a, framesPerS), byRep(b, framesPerS))),
					times.spread(sameRun(byRep(a, cpuPerFrame), byRep(b, cpuPerFrame))))
			}
			rows = append(rows, row)
		}
		m.table(head, rows)
	}

	counts := d.idleCounts()
	var cols []results.Server
	for _, s := range tb {
		cols = append(cols, s)
		if i := slices.IndexFunc(ps, func(p pair) bool { return p.A.Name == s.Name }); i >= 0 {
			cols = append(cols, ps[i].B)
		}
	}
	if len(counts) > 0 {
		m.h(3, "Idle connections: memory and threads")
		m.p("Bytes per connection and OS threads while the connections were held, medians.")
		var rows [][]string
		for _, n := range counts {
			row := []string{thousands(int64(n))}
			for _, s := range cols {
				row = append(row, idleFigure(d.idle[s.Name][n], func(is []results.Idle) string {
					return bytesU.format(spread(idleByRep(is, bytesPerConn)).Median) + "<br>" +
						threadCount(spread(idleByRep(is, idleThreads)).Median) + idleCounts(is, n)
				}))
			}
			rows = append(rows, row)
		}
		m.table(header("connections", cols), rows)
	}

	m.h(3, "What a learner should take from them")
	var bs []string
	if gaps := d.textbookGaps(tb); len(gaps) > 0 {
		bs = append(bs, "**Not every cell ran in full:**\n  - "+strings.Join(gaps, "\n  - "))
	} else {
		bs = append(bs, "Both ran every cell of this run, at every connection count.")
	}
	bs = append(bs, d.textbookIntegrity(tb))
	if b := d.textbookMemory(tb, ps); b != "" {
		bs = append(bs, b)
	}
	if b := d.textbookCPU(ps, g, closed); b != "" {
		bs = append(bs, b)
	}
	if slices.ContainsFunc(tb, func(s results.Server) bool { return s.Model == textbook.Threads }) {
		b := "Python's threads take turns on one interpreter lock, so `python-threads` runs Python on one thread at a time however many CPUs it is given: the thread per client buys a Python server simple blocking code, not parallel work."
		if sw := d.textbookSwitches(ps, g, closed); sw != "" {
			b += " " + sw
		}
		bs = append(bs, b)
	}
	if slices.ContainsFunc(tb, func(s results.Server) bool { return s.Model == textbook.Select }) {
		bs = append(bs, "The select loop pays in code instead: `send()` may take only part of what it is given, so `select_echo.py` keeps the rest and stops reading that client until it is written, where the thread per client has a blocking `sendall()` do it. The `selectors` documentation's own example leaves this out; an echo of a few megabytes in one write shows what that costs.")
	}
	for _, b := range bs {
		m.WriteString("- " + b + "\n")
	}
	m.WriteString("\n")
}

// textbookGaps lists what the textbook servers could not do: repetitions
// that failed (by cell, with the first reason), load cells that opened
// fewer connections than asked, idle cells that held fewer.
func (d *data) textbookGaps(tb []results.Server) []string {
	var gaps []string
	for _, s := range tb {
		// Per cell, in the order the run met them: repetitions, failed
		// ones and the first reason, and load repetitions that opened
		// fewer connections than asked (the fewest).
		type tally struct {
			reps, failed, short, fewest int
			why                         string
			errs                        map[string]uint64 // connection errors by kind, over the repetitions
		}
		var order []string
		cells := map[string]*tally{}
		note := func(cell, failed string) *tally {
			t, ok := cells[cell]
			if !ok {
				t = &tally{fewest: -1, errs: map[string]uint64{}}
				cells[cell] = t
				order = append(order, cell)
			}
			t.reps++
			if failed != "" {
				t.failed++
				if t.why == "" {
					t.why = reason(failed)
				}
			}
			return t
		}
		asked := map[string]int{}
		for _, c := range d.run.Cells {
			if c.Server != s.Name {
				continue
			}
			t := note(cellName(c), c.Failed)
			for kind, k := range c.Errors {
				if c.Failed == "" && k > 0 {
					t.errs[kind] += k
				}
			}
			if c.Failed == "" && c.ConnsEstablished < c.Conns {
				t.short++
				if t.fewest < 0 || c.ConnsEstablished < t.fewest {
					t.fewest = c.ConnsEstablished
				}
				asked[cellName(c)] = c.Conns
			}
		}
		for _, c := range d.run.Idle {
			if c.Server == s.Name {
				note("idle, "+connections(c.Conns), c.Failed)
			}
		}
		for _, cell := range order {
			t := cells[cell]
			if t.failed > 0 {
				gaps = append(gaps, fmt.Sprintf("`%s` failed in %s in %d of %d repetitions: %s.", s.Name, cell, t.failed, t.reps, t.why))
			}
			if len(t.errs) > 0 {
				gaps = append(gaps, fmt.Sprintf("`%s` lost connections to errors in %s: %s over %s.", s.Name, cell, errorKinds(t.errs), plural(uint64(t.reps), "repetition")))
			}
			if t.short > 0 {
				gaps = append(gaps, fmt.Sprintf("`%s` opened as few as %s of the %s connections asked in %s, in %d of %d repetitions.",
					s.Name, thousands(int64(t.fewest)), thousands(int64(asked[cell])), cell, t.short, t.reps))
			}
		}
		for _, n := range d.idleCounts() {
			is := d.idle[s.Name][n]
			o, h := spread(idleByRep(is, opened)), spread(idleByRep(is, held))
			switch {
			case o.N == 0:
			case o.Median < float64(n):
				gaps = append(gaps, fmt.Sprintf("`%s` had %s of the %s idle connections asked for open.", s.Name, num(o.Median), thousands(int64(n))))
			case h.Median < o.Median:
				errs := map[string]uint64{}
				for _, c := range liveIdle(is) {
					for k, v := range c.Errors {
						errs[k] += v
					}
				}
				gaps = append(gaps, fmt.Sprintf("`%s` held all %s idle connections open, but only %s came through the round trip after the hold (median; errors over %s: %s).",
					s.Name, thousands(int64(n)), num(h.Median), plural(uint64(len(liveIdle(is))), "repetition"), errorKinds(errs)))
			}
		}
	}
	return gaps
}

// textbookIntegrity says whether every reply of the textbook servers
// matched.
func (d *data) textbookIntegrity(tb []results.Server) string {
	var runs int
	var bad []string
	for _, s := range tb {
		var mis uint64
		for _, c := range d.run.Cells {
			if c.Server == s.Name {
				runs++
				mis += c.Mismatches
			}
		}
		if mis > 0 {
			bad = append(bad, fmt.Sprintf("**`%s` sent back replies that did not match what was sent: %s**", s.Name, plural(mis, "mismatch")))
		}
	}
	if len(bad) > 0 {
		return strings.Join(bad, "; ") + "."
	}
	return fmt.Sprintf("A short plain script is a correct echo server: every reply in their %s matched what was sent.", plural(uint64(runs), "load-cell run"))
}

// textbookMemory sets what an idle connection cost each textbook server at
// the largest count it has figures for beside its Go kin.
func (d *data) textbookMemory(tb []results.Server, ps []pair) string {
	ns := d.idleCounts()
	if len(ns) == 0 {
		return ""
	}
	fig := func(name string) (n int, perConn, threads float64, ok bool) {
		for i := len(ns) - 1; i >= 0; i-- {
			is := d.idle[name][ns[i]]
			if b := spread(idleByRep(is, bytesPerConn)); b.N > 0 {
				return int(spread(idleByRep(is, opened)).Median), b.Median, spread(idleByRep(is, idleThreads)).Median, true
			}
		}
		return 0, 0, 0, false
	}
	var parts []string
	per := map[string]float64{} // bytes per connection by model
	for _, s := range tb {
		n, b, th, ok := fig(s.Name)
		if !ok {
			continue
		}
		parts = append(parts, fmt.Sprintf("`%s` %s per connection, %s, with %s open", s.Name, bytesU.format(b), threadCount(th), thousands(int64(n))))
		per[s.Model] = b
	}
	if len(parts) == 0 {
		return ""
	}
	out := "What a waiting client cost: " + strings.Join(parts, "; ") + "."
	if t, ok := per[textbook.Threads]; ok && t > per[textbook.Select] && per[textbook.Select] > 0 {
		out = "The shape decides what a waiting client costs: " + strings.Join(parts, "; ") +
			". A thread per client keeps a thread, and its stack, for every connection, busy or not; a select loop keeps a socket and a selector entry."
	}
	var goParts []string
	for _, p := range ps {
		if _, b, _, ok := fig(p.B.Name); ok {
			goParts = append(goParts, fmt.Sprintf("`%s` %s", p.B.Name, bytesU.format(b)))
		}
	}
	if len(goParts) > 0 {
		out += " The Go servers of the same shapes, at their largest count: " + strings.Join(goParts, ", ") + " per connection."
	}
	return out
}

// textbookCPU gives the range, over the connection counts of g, of the
// median same-run ratios of each pair: what the interpreter costs per
// frame against Go in the same shape.
func (d *data) textbookCPU(ps []pair, g group, closed bool) string {
	if !closed || len(ps) == 0 {
		return ""
	}
	var parts []string
	for _, p := range ps {
		var cpu, fps []float64
		for _, n := range d.conns(g) {
			k := closedKey{g, n}
			a, b := d.closed[p.A.Name][k], d.closed[p.B.Name][k]
			if r := sameRun(byRep(a, cpuPerFrame), byRep(b, cpuPerFrame)); r.N > 0 {
				cpu = append(cpu, r.Median)
			}
			if r := sameRun(byRep(a, framesPerS), byRep(b, framesPerS)); r.N > 0 {
				fps = append(fps, r.Median)
			}
		}
		if len(cpu) == 0 {
			continue
		}
		parts = append(parts, fmt.Sprintf("`%s` spent %s the CPU per frame of `%s` and moved %s its frames per second", p.A.Name, ratioRange(cpu), p.B.Name, ratioRange(fps)))
	}
	if len(parts) == 0 {
		return ""
	}
	return "Same shape, another language: " + strings.Join(parts, "; ") + " (closed loop, " + g.String() + ", the range of the medians over the connection counts)."
}

// textbookSwitches compares the thread per client's context switches per
// frame with its Go kin's at the largest connection count of g where both
// have figures: threads handing the interpreter lock to each other show
// there.
func (d *data) textbookSwitches(ps []pair, g group, closed bool) string {
	i := slices.IndexFunc(ps, func(p pair) bool { return p.A.Model == textbook.Threads })
	if !closed || i < 0 {
		return ""
	}
	p, ns := ps[i], d.conns(g)
	for j := len(ns) - 1; j >= 0; j-- {
		k := closedKey{g, ns[j]}
		a, b := cellSpread(d.closed[p.A.Name][k], ctxswPerFrame), cellSpread(d.closed[p.B.Name][k], ctxswPerFrame)
		if a.N > 0 && b.N > 0 {
			return fmt.Sprintf("At %s (%s) its server switched context %s times per frame, `%s` %s.",
				connections(ns[j]), g, plain.format(a.Median), p.B.Name, plain.format(b.Median))
		}
	}
	return ""
}

// ratioRange writes the range of some ratios: "2.0×", "0.35–0.50×".
func ratioRange(rs []float64) string {
	if len(rs) == 0 {
		return none
	}
	lo, hi := times.format(slices.Min(rs)), times.format(slices.Max(rs))
	if lo == hi {
		return lo
	}
	return strings.TrimSuffix(lo, "×") + "–" + hi
}
