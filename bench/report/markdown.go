package report

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"echoloop/bench/results"
)

// md builds GitHub-flavoured markdown.
type md struct{ strings.Builder }

func (m *md) p(format string, args ...any) {
	fmt.Fprintf(m, format, args...)
	m.WriteString("\n\n")
}

func (m *md) h(level int, title string) {
	m.WriteString(strings.Repeat("#", level) + " " + title + "\n\n")
}

// table writes a table with a header row; cells may hold <br>.
func (m *md) table(head []string, rows [][]string) {
	row := func(cs []string) {
		m.WriteString("|")
		for _, c := range cs {
			m.WriteString(" " + cellText(c) + " |")
		}
		m.WriteString("\n")
	}
	row(head)
	m.WriteString("|" + strings.Repeat("---|", len(head)) + "\n")
	for _, r := range rows {
		row(r)
	}
	m.WriteString("\n")
}

// cellText keeps text from outside (reasons, flags) from breaking a table.
func cellText(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.Join(strings.Fields(s), " ")
}

func (m *md) image(alt, file string) {
	fmt.Fprintf(m, "![%s](%s)\n\n", alt, file)
}

// markdown writes REPORT.md for d.
func (d *data) markdown(reading string) string {
	var m md
	d.title(&m)
	d.environment(&m)
	d.notes(&m)
	d.targets(&m)
	d.failed(&m)
	d.closedLoop(&m)
	d.openLoop(&m)
	d.idleMemory(&m)
	d.textbookSection(&m)
	m.h(2, "Reading")
	if r := strings.TrimSpace(reading); r != "" {
		m.WriteString(r + "\n\n")
	} else {
		m.p("_No reading was written for this run._")
	}
	d.limits(&m)
	return strings.TrimRight(m.String(), "\n") + "\n"
}

// reps returns the fewest and the most repetitions any cell of the run
// has, failed ones included; 0, 0 for a run with no cells.
func (d *data) reps() (lo, hi int) {
	var ns []int
	for _, m := range d.closed {
		for _, cs := range m {
			ns = append(ns, len(cs))
		}
	}
	for _, m := range d.open {
		for _, cs := range m {
			ns = append(ns, len(cs))
		}
	}
	for _, m := range d.idle {
		for _, is := range m {
			ns = append(ns, len(is))
		}
	}
	if len(ns) == 0 {
		return 0, 0
	}
	return slices.Min(ns), slices.Max(ns)
}

// repetitions says how many times each cell ran: "one repetition", "3
// repetitions", "1 to 3 repetitions".
func repetitions(lo, hi int) string {
	switch {
	case hi == 1:
		return "one repetition"
	case lo == hi:
		return strconv.Itoa(hi) + " repetitions"
	}
	return strconv.Itoa(lo) + " to " + strconv.Itoa(hi) + " repetitions"
}

func (d *data) title(m *md) {
	r := d.run
	t := "echobench"
	if r.Label != "" {
		t += ": " + r.Label
	}
	if !r.Started.IsZero() {
		t += ", " + r.Started.UTC().Format("2006-01-02")
	}
	m.h(1, t)
	prof := r.Profile
	if prof == "" {
		prof = "unnamed"
	}
	line := fmt.Sprintf("Profile **%s**: %d server configurations, %s and %s", prof, len(d.servers),
		plural(uint64(len(r.Cells)), "load-cell run"), plural(uint64(len(r.Idle)), "idle-cell run"))
	switch lo, hi := d.reps(); {
	case hi > 1:
		line += ", " + repetitions(lo, hi) + " of each cell, interleaved across servers"
	case hi == 1:
		line += ", " + repetitions(lo, hi) + " of each cell"
	}
	m.p("%s.", line)
	if r.Command != "" {
		m.WriteString("Reproduce with:\n\n```sh\n" + r.Command + "\n```\n\n")
	}
}

func (d *data) environment(m *md) {
	e := d.run.Env
	m.h(2, "Environment")
	cpu := e.CPUModel
	if cpu == "" {
		cpu = "unknown CPU"
	}
	pin := "not pinned: servers and load generator shared every core"
	if e.ServerCPUs != "" || e.LoadCPUs != "" {
		pin = "servers on " + cpus(e.ServerCPUs) + ", load generator on " + cpus(e.LoadCPUs)
	}
	commit := orNone(e.Commit)
	if e.Dirty {
		commit += " (dirty: the tree had uncommitted changes)"
	}
	rows := [][]string{
		{"CPU", fmt.Sprintf("%s, %d cores", cpu, e.Cores)},
		{"kernel", orNone(e.Kernel)},
		{"Go", orNone(e.GoVersion)},
	}
	if e.PythonVersion != "" {
		rows = append(rows, []string{"Python", e.PythonVersion + ", for the textbook servers"})
	}
	rows = append(rows, [][]string{
		{"file descriptors", "soft limit " + thousands(int64(e.FDLimit))},
		{"pinning", pin},
		{"commit", commit},
		{"started", stamp(d.run.Started)},
		{"finished", stamp(d.run.Finished)},
	}...)
	if !d.run.Started.IsZero() && !d.run.Finished.IsZero() {
		rows = append(rows, []string{"duration", d.run.Finished.Sub(d.run.Started).Round(time.Second).String()})
	}
	m.table([]string{"", ""}, rows)

	var ss [][]string
	for _, s := range d.servers {
		role := s.Model
		if s.Reference {
			role += " (reference floor)"
		}
		gmp := "default"
		if s.GOMAXPROCS > 0 {
			gmp = strconv.Itoa(s.GOMAXPROCS)
		}
		if isTextbook(s) {
			role += " (textbook, Python)"
			gmp = none
		}
		flags := none
		if len(s.Args) > 0 {
			flags = "`" + strings.Join(s.Args, " ") + "`"
		}
		loops := none
		if s.Loops > 0 {
			loops = strconv.Itoa(s.Loops)
		}
		ss = append(ss, []string{s.Name, role, loops, gmp, flags})
	}
	m.table([]string{"server", "model", "loops", "GOMAXPROCS", "flags"}, ss)
}

// cpus names a taskset CPU list: "CPUs 0-1", or "any CPU (not pinned)".
func cpus(list string) string {
	if list == "" {
		return "any CPU (not pinned)"
	}
	return "CPUs " + list
}

func orNone(s string) string {
	if s == "" {
		return none
	}
	return s
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return none
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

func (d *data) notes(m *md) {
	m.h(2, "Notes")
	if len(d.run.Notes) == 0 {
		m.p("None: the run recorded nothing unusual.")
		return
	}
	for _, n := range d.run.Notes {
		m.WriteString("- " + strings.Join(strings.Fields(n), " ") + "\n")
	}
	m.WriteString("\n")
}

// targets writes every target's verdict, then the figures behind them.
func (d *data) targets(m *md) {
	m.h(2, "Targets")
	m.p("Each ratio is the median of same-run ratios: repetition k of one server against repetition k of the other, which ran close together in time; the range is min–max over the repetitions.")

	refs := d.pairs(isModel("eventloop"), isReference)
	gos := d.pairs(isModel("goroutine"), isModel("eventloop"))
	unpaired := func(ps []pair, what string) {
		for _, s := range d.eventloops() {
			if !slices.ContainsFunc(ps, func(p pair) bool { return p.A.Name == s.Name || p.B.Name == s.Name }) {
				m.WriteString("  - " + s.Name + ": not measured, the run has no " + what + " of the same width.\n")
			}
		}
	}

	cpu := make([][]cpuCheck, len(refs))
	m.WriteString("- **Event-loop server CPU per frame within " + times.format(cpuTarget.limit) + " of the plain gnet echo loop** (closed loop, every cell):")
	closed := len(d.groups()) > 0
	if !closed {
		m.WriteString(" not measured, the run has no closed-loop cells.")
	}
	m.WriteString("\n")
	for i, p := range refs {
		if !closed {
			break
		}
		cs := d.cpuChecks(p)
		cpu[i] = cs
		vs := make([]verdict, len(cs))
		for i, c := range cs {
			vs[i] = c.verdict
		}
		if len(cs) == 0 {
			m.WriteString("  - " + p.String() + ": no cell where both have figures.\n")
			continue
		}
		w := cs[worst(vs)]
		m.WriteString(fmt.Sprintf("  - %s: met in %d of %d cells; %s at %s, %s: %s.\n",
			p, countMet(vs), len(vs), worstWord(vs), connections(w.Conns), w.group, w.Long()))
	}
	if closed {
		unpaired(refs, "reference server")
	}

	memRef := make([][]memCheck, len(refs))
	memGo := make([][]memCheck, len(gos))
	memLine := func(title string, ps []pair, out [][]memCheck, t target, what string) {
		m.WriteString("- **" + title + "** (idle connections, every count):")
		if len(d.idleCounts()) == 0 {
			m.WriteString(" not measured, the run has no idle cells.\n")
			return
		}
		m.WriteString("\n")
		for i, p := range ps {
			out[i] = d.memChecks(p, t)
			vs := make([]verdict, len(out[i]))
			for j, c := range out[i] {
				vs[j] = c.verdict
			}
			if len(vs) == 0 {
				m.WriteString("  - " + p.String() + ": no idle count where both have figures.\n")
				continue
			}
			w := out[i][worst(vs)]
			m.WriteString(fmt.Sprintf("  - %s: met at %d of %d counts; %s at %s: %s.\n",
				p, countMet(vs), len(vs), worstWord(vs), connections(w.Conns), w.Long()))
		}
		unpaired(ps, what)
	}
	memLine("Event-loop memory per idle connection within "+times.format(memRefTarget.limit)+" of the plain gnet loop", refs, memRef, memRefTarget, "reference server")
	memLine("Goroutine model memory per idle connection at least "+tickLabel(times, memGoTarget.limit)+" the event loop's", gos, memGo, memGoTarget, "goroutine server")

	mis, errs, runs, bad := d.integrity()
	if mis == 0 {
		m.WriteString(fmt.Sprintf("- **Zero mismatches**: met, 0 mismatches in %s", plural(uint64(runs), "load-cell run")))
	} else {
		m.WriteString(fmt.Sprintf("- **Zero mismatches**: **missed**, %s in %s", plural(mis, "mismatch"), plural(uint64(runs), "load-cell run")))
	}
	if errs > 0 {
		m.WriteString("; " + plural(errs, "connection error"))
	}
	if len(bad) > 0 {
		m.WriteString(" (listed below)")
	}
	m.WriteString(".\n\n")

	for i, p := range refs {
		if len(cpu[i]) == 0 {
			continue
		}
		m.h(3, fmt.Sprintf("Server CPU per frame, %s (target %s)", p, cpuTarget))
		gs := d.groups()
		head := []string{"connections"}
		for _, g := range gs {
			head = append(head, g.String())
		}
		var rows [][]string
		for _, n := range d.allConns() {
			row := []string{thousands(int64(n))}
			any := false
			for _, g := range gs {
				cell := none
				for _, c := range cpu[i] {
					if c.group == g && c.Conns == n {
						cell = c.Short() + "<br>" + micros.format(c.A.Median) + " vs " + micros.format(c.B.Median)
						any = true
					}
				}
				row = append(row, cell)
			}
			if any {
				rows = append(rows, row)
			}
		}
		m.table(head, rows)
	}

	if slices.ContainsFunc(memRef, func(c []memCheck) bool { return len(c) > 0 }) ||
		slices.ContainsFunc(memGo, func(c []memCheck) bool { return len(c) > 0 }) {
		m.h(3, "Memory per idle connection")
		head := []string{"connections"}
		var cols [][]memCheck
		for i, p := range refs {
			head = append(head, fmt.Sprintf("%s (target %s)", p, memRefTarget))
			cols = append(cols, memRef[i])
		}
		for i, p := range gos {
			head = append(head, fmt.Sprintf("%s (target %s)", p, memGoTarget))
			cols = append(cols, memGo[i])
		}
		var rows [][]string
		for _, n := range d.idleCounts() {
			row := []string{thousands(int64(n))}
			for _, col := range cols {
				cell := none
				for _, c := range col {
					if c.Conns == n {
						cell = c.Short() + "<br>" + bytesU.format(c.A.Median) + " vs " + bytesU.format(c.B.Median)
					}
				}
				row = append(row, cell)
			}
			rows = append(rows, row)
		}
		m.table(head, rows)
	}

	if len(bad) > 0 {
		m.h(3, "Cells with mismatches or errors")
		var rows [][]string
		for _, b := range bad {
			rows = append(rows, []string{b.Server, cellName(b.Cell), strconv.Itoa(b.Rep),
				thousands(int64(b.Mismatches)), errorKinds(b.Cell.Errors), orNone(b.Failed)})
		}
		m.table([]string{"server", "cell", "rep", "mismatches", "errors", "failed"}, rows)
	}
}

func worstWord(vs []verdict) string {
	if countMet(vs) == len(vs) {
		return "closest to the limit"
	}
	return "worst"
}

// errorKinds writes errors by kind, in a fixed order: "reset 2, timeout 1".
func errorKinds(errs map[string]uint64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(errs)) {
		if errs[k] > 0 {
			parts = append(parts, k+" "+thousands(int64(errs[k])))
		}
	}
	if len(parts) == 0 {
		return "0"
	}
	return strings.Join(parts, ", ")
}

// allConns lists every closed-loop connection count of the run.
func (d *data) allConns() []int {
	var ns []int
	for _, g := range d.groups() {
		ns = append(ns, d.conns(g)...)
	}
	slices.Sort(ns)
	return slices.Compact(ns)
}

func (d *data) failed(m *md) {
	fs := d.failures()
	if len(fs) == 0 {
		return
	}
	cut := 0
	for _, f := range fs {
		if f.Reason == results.Interrupted {
			cut++
		}
	}
	m.h(2, "Failed cells")
	var what []string
	if n := len(fs) - cut; n > 0 {
		what = append(what, plural(uint64(n), "repetition")+" failed")
	}
	if cut > 0 {
		what = append(what, plural(uint64(cut), "repetition")+" did not finish because the run was stopped")
	}
	m.p("%s. A repetition without figures is left out of every median, range and ratio.", strings.Join(what, " and "))
	var rows [][]string
	for _, f := range fs {
		rows = append(rows, []string{f.Server, f.Cell, strconv.Itoa(f.Rep), f.Reason})
	}
	m.table([]string{"server", "cell", "rep", "reason"}, rows)
}

// columns returns the servers that have cells of any kind picked by has.
func (d *data) columns(has func(name string) bool) []results.Server {
	var ss []results.Server
	for _, s := range d.servers {
		if has(s.Name) {
			ss = append(ss, s)
		}
	}
	return ss
}

func header(first string, ss []results.Server) []string {
	h := []string{first}
	for _, s := range ss {
		h = append(h, legendName(s))
	}
	return h
}

// figure writes one table cell from the repetitions of a cell: "failed"
// (or "interrupted") when none has figures, a dagger when some have none.
func figure(cs []results.Cell, f func(cs []results.Cell) string) string {
	var why []string
	for _, c := range cs {
		why = append(why, c.Failed)
	}
	return mark(why, func() string { return f(cs) })
}

// idleFigure is figure for the repetitions of an idle cell.
func idleFigure(is []results.Idle, f func([]results.Idle) string) string {
	var why []string
	for _, c := range is {
		why = append(why, c.Failed)
	}
	return mark(why, func() string { return f(is) })
}

// mark finishes a table cell from why each repetition failed ("" for one
// that did not) and the figure text.
func mark(why []string, text func() string) string {
	alive, cut := 0, 0
	for _, w := range why {
		switch {
		case w == "":
			alive++
		case interrupted(w):
			cut++
		}
	}
	switch {
	case len(why) == 0:
		return none
	case alive == 0 && cut == len(why):
		return "interrupted"
	case alive == 0:
		return "failed"
	case alive < len(why):
		return text() + " †"
	}
	return text()
}

func (d *data) closedLoop(m *md) {
	gs := d.groups()
	if len(gs) == 0 {
		return
	}
	m.h(2, "Closed loop")
	m.p("Each connection sends its next frame when the reply to its last one arrives. Figures are medians over the repetitions with min–max in brackets; † marks a figure from fewer repetitions than were run (see Failed cells), and “failed” or “interrupted” a cell with none.")
	eg := d.pairs(isModel("eventloop"), isModel("goroutine"))
	for _, g := range gs {
		ss := d.columns(func(n string) bool {
			for k := range d.closed[n] {
				if k.group == g {
					return true
				}
			}
			return false
		})
		cell := func(s results.Server, n int, f func(cs []results.Cell) string) string {
			return figure(d.closed[s.Name][closedKey{g, n}], f)
		}
		grid := func(f func(cs []results.Cell) string) [][]string {
			var rows [][]string
			for _, n := range d.conns(g) {
				row := []string{thousands(int64(n))}
				for _, s := range ss {
					row = append(row, cell(s, n, f))
				}
				rows = append(rows, row)
			}
			return rows
		}

		m.h(3, g.String())
		m.image("Throughput, "+g.String(), throughputFile(g))
		m.image("Server CPU per frame, "+g.String(), cpuFile(g))

		m.h(4, "Throughput: frames/s, and MB/s of payload each way")
		m.table(header("connections", ss), grid(func(cs []results.Cell) string {
			return count.spread(cellSpread(cs, framesPerS)) + "<br>" + mbPerS.format(cellSpread(cs, mbps).Median)
		}))

		m.h(4, "Server CPU per frame")
		m.table(header("connections", ss), grid(func(cs []results.Cell) string {
			return micros.spread(cellSpread(cs, cpuPerFrame))
		}))

		if len(eg) > 0 {
			m.h(4, "Event loop ÷ goroutine, same run")
			m.p("Above 1× the event loop moved more frames per second; below 1× it spent less CPU per frame.")
			head := []string{"connections"}
			for _, p := range eg {
				head = append(head, "frames/s "+p.String(), "CPU per frame "+p.String())
			}
			var rows [][]string
			for _, n := range d.conns(g) {
				row := []string{thousands(int64(n))}
				k := closedKey{g, n}
				for _, p := range eg {
					a, b := d.closed[p.A.Name][k], d.closed[p.B.Name][k]
					row = append(row,
						times.spread(sameRun(byRep(a, framesPerS), byRep(b, framesPerS))),
						times.spread(sameRun(byRep(a, cpuPerFrame), byRep(b, cpuPerFrame))))
				}
				rows = append(rows, row)
			}
			m.table(head, rows)
		}

		m.h(4, "Latency, p50 and p99")
		m.table(header("connections", ss), grid(func(cs []results.Cell) string {
			return "p50 " + micros.spread(cellSpread(cs, p50)) + "<br>p99 " + micros.spread(cellSpread(cs, p99))
		}))

		m.h(4, "CPU used, in cores, and the bottleneck")
		m.p("Medians. The bottleneck is the side that ran out of CPU in most repetitions (how many agreed, if not all).")
		m.table(header("connections", ss), grid(func(cs []results.Cell) string {
			side, agree, of := bottleneck(cs)
			b := orNone(side)
			if agree < of {
				b += fmt.Sprintf(" (%d of %d)", agree, of)
			}
			return "server " + plain.format(cellSpread(cs, serverCPU).Median) +
				"<br>generator " + plain.format(cellSpread(cs, loadCPU).Median) + "<br>" + b
		}))

		m.image("Context switches per frame, "+g.String(), ctxswFile(g))
		m.h(4, "Server context switches, voluntary and involuntary")
		m.p("Medians, per second and per frame.")
		m.table(header("connections", ss), grid(func(cs []results.Cell) string {
			return perSecs.format(cellSpread(cs, ctxswPerS).Median) + "<br>" + plain.format(cellSpread(cs, ctxswPerFrame).Median) + " per frame"
		}))

		m.h(4, "Server memory, threads and goroutines")
		m.p("Medians at the end of the measured window.")
		m.table(header("connections", ss), grid(func(cs []results.Cell) string {
			var gs []int
			for _, c := range live(cs) {
				gs = append(gs, c.Goroutines)
			}
			return bytesU.format(cellSpread(cs, rss).Median) + " RSS<br>" +
				threadCount(cellSpread(cs, threads).Median) + "<br>" +
				goroutineText(goroutines(gs)) + " goroutines"
		}))
	}
}

// goroutineText is the median goroutine count, or n/a when the server does
// not report it.
func goroutineText(s results.Spread) string {
	if s.N == 0 {
		return "n/a"
	}
	return num(s.Median)
}

func (d *data) openLoop(m *md) {
	gs := d.openGroups()
	if len(gs) == 0 {
		return
	}
	m.h(2, "Open loop")
	m.p("Frames are sent on a fixed schedule at a share of the measured closed-loop capacity, and latency is taken from each frame's intended send time, so a stall counts against every frame it delays. Medians over the repetitions; the p99 range is in brackets.")
	for _, g := range gs {
		m.h(3, g.String())
		m.image("p50 latency, "+g.String(), latencyFile(g, "p50"))
		m.image("p99 latency, "+g.String(), latencyFile(g, "p99"))
		var rows [][]string
		for _, s := range d.servers {
			for _, fr := range d.fractions(g) {
				cs, ok := d.open[s.Name][openKey{g, fr}]
				if !ok {
					continue
				}
				load := strconv.FormatFloat(fr*100, 'f', -1, 64) + "%"
				if o := cellSpread(cs, offered); o.N > 0 {
					load += ": " + perSecs.format(o.Median)
				}
				med := func(f func(results.Cell) float64) string {
					return figure(cs, func(cs []results.Cell) string { return micros.format(cellSpread(cs, f).Median) })
				}
				rows = append(rows, []string{legendName(s), load,
					figure(cs, func(cs []results.Cell) string { return perSecs.format(cellSpread(cs, framesPerS).Median) }),
					med(p50), med(p90),
					figure(cs, func(cs []results.Cell) string { return micros.spread(cellSpread(cs, p99)) }),
					med(p999), med(maxLatency)})
			}
		}
		m.table([]string{"server", "offered", "achieved", "p50", "p90", "p99", "p99.9", "max"}, rows)
	}
}

// idleCounts notes, for a table cell, the median connections open when
// fewer than the n asked, and those through the last round trip when
// fewer than were open: "<br>9,000 held" in runs that kept only the
// latter, "<br>19,000 open, 3,851 through the last round trip".
func idleCounts(is []results.Idle, n int) string {
	o, h := spread(idleByRep(is, opened)).Median, spread(idleByRep(is, held)).Median
	if !slices.ContainsFunc(liveIdle(is), func(c results.Idle) bool { return c.Open > 0 }) {
		if h != float64(n) {
			return "<br>" + num(h) + " held"
		}
		return ""
	}
	var t string
	if o != float64(n) || h < o {
		t += "<br>" + num(o) + " open"
	}
	if h < o {
		t += ", " + num(h) + " through the last round trip"
	}
	return t
}

func (d *data) idleMemory(m *md) {
	ns := d.idleCounts()
	if len(ns) == 0 {
		return
	}
	m.h(2, "Idle memory")
	m.p("Connections opened, one verified round trip on each, then held while the server's resident memory is read, then one more verified round trip on each. Bytes per connection is (held RSS − RSS before) ÷ connections open; medians with min–max. A cell notes how many were open when fewer than asked, and how many came through the last round trip when fewer than were open.")
	m.image("Memory per idle connection", idleFile)
	ss := d.columns(func(n string) bool { return len(d.idle[n]) > 0 })
	var rows [][]string
	for _, n := range ns {
		row := []string{thousands(int64(n))}
		for _, s := range ss {
			row = append(row, idleFigure(d.idle[s.Name][n], func(is []results.Idle) string {
				return bytesU.spread(spread(idleByRep(is, bytesPerConn))) + idleCounts(is, n)
			}))
		}
		rows = append(rows, row)
	}
	m.h(4, "Bytes per connection")
	m.table(header("connections", ss), rows)

	if len(ns) > 1 {
		m.h(4, "Marginal bytes per connection")
		m.p("What each further connection cost between two counts: (held RSS at the larger − at the smaller) ÷ (connections open at the larger − at the smaller), from medians. It leaves out the fixed cost that the first connections pay.")
		rows = nil
		for i := 1; i < len(ns); i++ {
			row := []string{thousands(int64(ns[i-1])) + " → " + thousands(int64(ns[i]))}
			for _, s := range ss {
				b, ok := marginal(d.idle[s.Name][ns[i-1]], d.idle[s.Name][ns[i]])
				t := none
				if ok {
					t = bytesU.format(b)
				}
				row = append(row, t)
			}
			rows = append(rows, row)
		}
		m.table(header("connections", ss), rows)
	}

	m.h(4, "Threads and goroutines held")
	rows = nil
	for _, n := range ns {
		row := []string{thousands(int64(n))}
		for _, s := range ss {
			row = append(row, idleFigure(d.idle[s.Name][n], func(is []results.Idle) string {
				var gs []int
				for _, c := range liveIdle(is) {
					gs = append(gs, c.Goroutines)
				}
				return threadCount(spread(idleByRep(is, idleThreads)).Median) + "<br>" + goroutineText(goroutines(gs)) + " goroutines"
			}))
		}
		rows = append(rows, row)
	}
	m.table(header("connections", ss), rows)
}

// limits writes what the figures do not say, from the facts of the run.
func (d *data) limits(m *md) {
	m.h(2, "What these figures do not say")
	e := d.run.Env
	var b strings.Builder
	fmt.Fprintf(&b, "Every byte went over loopback on one machine (%s, %d cores): no network card, no wire, no interrupt moderation, and the load generator shared the server's kernel, caches and memory bandwidth. ",
		orNone(e.CPUModel), e.Cores)
	switch {
	case e.ServerCPUs == "" && e.LoadCPUs == "":
		b.WriteString("Nothing was pinned: server and generator competed for the same cores. ")
	case overlap(e.ServerCPUs, e.LoadCPUs):
		fmt.Fprintf(&b, "The servers ran on %s and the generator on %s: they competed for CPU. ", cpus(e.ServerCPUs), cpus(e.LoadCPUs))
	default:
		fmt.Fprintf(&b, "The servers ran on %s and the generator on %s, apart; a server given more CPUs than that could scale differently. ", cpus(e.ServerCPUs), cpus(e.LoadCPUs))
	}

	bound, cells := 0, 0
	var share []float64
	allowed := cpuCount(e.LoadCPUs)
	for _, s := range d.servers {
		for _, cs := range d.closed[s.Name] {
			side, _, of := bottleneck(cs)
			if of == 0 {
				continue
			}
			cells++
			if side != "load generator" && side != "both" {
				continue
			}
			bound++
			for _, c := range live(cs) {
				share = append(share, c.LoadCPU)
			}
		}
	}
	switch {
	case cells == 0:
	case bound == 0:
		fmt.Fprintf(&b, "The load generator was not the bottleneck in any of the %d closed-loop cells. ", cells)
	default:
		fmt.Fprintf(&b, "The load generator was the bottleneck, alone or with the server, in %d of %d closed-loop cells", bound, cells)
		u := results.SpreadOf(share)
		if allowed > 0 {
			fmt.Fprintf(&b, ", where it used a median %s cores of the %d it was allowed (%s)", plain.format(u.Median), allowed, percent(u.Median/float64(allowed)))
		} else {
			fmt.Fprintf(&b, ", where it used a median %s cores", plain.format(u.Median))
		}
		b.WriteString(": there the throughput is what the generator could drive, a floor under the server's capacity rather than a measure of it. ")
	}
	switch lo, hi := d.reps(); {
	case hi == 1:
		b.WriteString("Each cell ran once: every figure is a single measurement, with no range and nothing to say how far it would move on another run. ")
	case hi > 1:
		fmt.Fprintf(&b, "Ranges are min–max over %s, not confidence intervals. ", repetitions(lo, hi))
	}
	b.WriteString("The handler is echo, so the servers do almost nothing per frame: a handler with real work would shrink the differences between the models. Memory is resident set size, which counts pages touched rather than bytes in use, and Go returns freed memory to the system lazily.")
	m.p("%s", b.String())
}

// cpuCount counts the CPUs of a taskset list such as "0", "1-3" or
// "0,2-3"; 0 when the list is empty or unreadable.
func cpuCount(list string) int {
	return len(cpuSet(list))
}

func cpuSet(list string) map[int]bool {
	set := map[int]bool{}
	for _, part := range strings.Split(list, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, found := strings.Cut(part, "-")
		a, err1 := strconv.Atoi(lo)
		b, err2 := a, error(nil)
		if found {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || b < a {
			return nil
		}
		for i := a; i <= b; i++ {
			set[i] = true
		}
	}
	return set
}

func overlap(a, b string) bool {
	sa, sb := cpuSet(a), cpuSet(b)
	if len(sa) == 0 || len(sb) == 0 {
		return a == "" || b == "" // one side unpinned runs anywhere
	}
	for c := range sa {
		if sb[c] {
			return true
		}
	}
	return false
}
