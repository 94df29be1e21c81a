package report

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"strconv"
	"strings"

	"echoloop/bench/results"
)

// group is one (payload size, pipeline) pair of the closed-loop matrix: the
// tables and charts come one per group, connections across.
type group struct{ Size, Pipeline int }

func (g group) String() string {
	return payload(g.Size) + ", pipeline " + strconv.Itoa(g.Pipeline)
}

// slug names the group in chart file names: "64b-p1".
func (g group) slug() string {
	return strconv.Itoa(g.Size) + "b-p" + strconv.Itoa(g.Pipeline)
}

// openGroup is one open-loop series: the offered rate varies within it.
type openGroup struct{ Conns, Size, Pipeline int }

func (g openGroup) String() string {
	return connections(g.Conns) + ", " + group{g.Size, g.Pipeline}.String()
}

func (g openGroup) slug() string {
	return "c" + strconv.Itoa(g.Conns) + "-" + group{g.Size, g.Pipeline}.slug()
}

type closedKey struct {
	group
	Conns int
}

type openKey struct {
	openGroup
	Fraction float64
}

// data indexes a run for the report: every repetition of a cell under its
// server and key, failed ones included (they are listed, and counted as
// planned repetitions), sorted by Rep.
type data struct {
	run     *results.Run
	servers []results.Server // display order; servers met only in cells come last
	closed  map[string]map[closedKey][]results.Cell
	open    map[string]map[openKey][]results.Cell
	idle    map[string]map[int][]results.Idle
}

func index(run *results.Run) *data {
	d := &data{
		run:     run,
		servers: slices.Clone(run.Servers),
		closed:  map[string]map[closedKey][]results.Cell{},
		open:    map[string]map[openKey][]results.Cell{},
		idle:    map[string]map[int][]results.Idle{},
	}
	known := map[string]bool{}
	for _, s := range d.servers {
		known[s.Name] = true
	}
	meet := func(name string) {
		if !known[name] {
			known[name] = true
			d.servers = append(d.servers, results.Server{Name: name, Model: modelOf(name)})
		}
	}
	for _, c := range run.Cells {
		switch c.Kind {
		case results.Closed:
			meet(c.Server)
			k := closedKey{group{c.Size, c.Pipeline}, c.Conns}
			add(d.closed, c.Server, k, c)
		case results.Open:
			meet(c.Server)
			k := openKey{openGroup{c.Conns, c.Size, c.Pipeline}, c.RateFraction}
			add(d.open, c.Server, k, c)
		}
	}
	for _, c := range run.Idle {
		meet(c.Server)
		add(d.idle, c.Server, c.Conns, c)
	}
	for _, m := range d.closed {
		for _, cs := range m {
			slices.SortStableFunc(cs, func(a, b results.Cell) int { return cmp.Compare(a.Rep, b.Rep) })
		}
	}
	for _, m := range d.open {
		for _, cs := range m {
			slices.SortStableFunc(cs, func(a, b results.Cell) int { return cmp.Compare(a.Rep, b.Rep) })
		}
	}
	for _, m := range d.idle {
		for _, cs := range m {
			slices.SortStableFunc(cs, func(a, b results.Idle) int { return cmp.Compare(a.Rep, b.Rep) })
		}
	}
	return d
}

func add[K comparable, V any](m map[string]map[K][]V, server string, k K, v V) {
	if m[server] == nil {
		m[server] = map[K][]V{}
	}
	m[server][k] = append(m[server][k], v)
}

// modelOf guesses the model of a server the run did not describe from its
// name ("goroutine-2" is "goroutine").
func modelOf(name string) string {
	if i := strings.LastIndexByte(name, '-'); i > 0 {
		if _, err := strconv.Atoi(name[i+1:]); err == nil {
			return name[:i]
		}
	}
	return name
}

// width is the CPU budget a server configuration was given: event loops
// for the gnet servers, GOMAXPROCS for the goroutine model, one for the
// textbook servers (Python runs one thread at a time), else the number its
// name ends in. Servers of equal width are compared with each other.
func width(s results.Server) int {
	if isTextbook(s) {
		return 1
	}
	n := s.Loops
	if s.Model == "goroutine" {
		n = s.GOMAXPROCS
	}
	if n == 0 {
		if i := strings.LastIndexByte(s.Name, '-'); i >= 0 {
			n, _ = strconv.Atoi(s.Name[i+1:])
		}
	}
	return n
}

func (d *data) groups() []group {
	set := map[group]bool{}
	for _, m := range d.closed {
		for k := range m {
			set[k.group] = true
		}
	}
	return slices.SortedFunc(maps.Keys(set), func(a, b group) int {
		return cmp.Or(cmp.Compare(a.Size, b.Size), cmp.Compare(a.Pipeline, b.Pipeline))
	})
}

// conns returns the connection counts measured in g, ascending.
func (d *data) conns(g group) []int {
	set := map[int]bool{}
	for _, m := range d.closed {
		for k := range m {
			if k.group == g {
				set[k.Conns] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(set))
}

func (d *data) openGroups() []openGroup {
	set := map[openGroup]bool{}
	for _, m := range d.open {
		for k := range m {
			set[k.openGroup] = true
		}
	}
	return slices.SortedFunc(maps.Keys(set), func(a, b openGroup) int {
		return cmp.Or(cmp.Compare(a.Size, b.Size), cmp.Compare(a.Pipeline, b.Pipeline), cmp.Compare(a.Conns, b.Conns))
	})
}

func (d *data) fractions(g openGroup) []float64 {
	set := map[float64]bool{}
	for _, m := range d.open {
		for k := range m {
			if k.openGroup == g {
				set[k.Fraction] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(set))
}

func (d *data) idleCounts() []int {
	set := map[int]bool{}
	for _, m := range d.idle {
		for n := range m {
			set[n] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// has reports whether any of server's closed cells of g succeeded.
func (d *data) has(server string, g group) bool {
	for k, cs := range d.closed[server] {
		if k.group == g && len(live(cs)) > 0 {
			return true
		}
	}
	return false
}

func (d *data) server(name string) (results.Server, bool) {
	for _, s := range d.servers {
		if s.Name == name {
			return s, true
		}
	}
	return results.Server{}, false
}

// live drops failed repetitions: they have no figures.
func live(cs []results.Cell) []results.Cell {
	return slices.DeleteFunc(slices.Clone(cs), func(c results.Cell) bool { return c.Failed != "" })
}

func liveIdle(is []results.Idle) []results.Idle {
	return slices.DeleteFunc(slices.Clone(is), func(c results.Idle) bool { return c.Failed != "" })
}

// byRep maps the repetitions that did not fail to f of each.
func byRep(cs []results.Cell, f func(results.Cell) float64) map[int]float64 {
	m := map[int]float64{}
	for _, c := range live(cs) {
		m[c.Rep] = f(c)
	}
	return m
}

func idleByRep(is []results.Idle, f func(results.Idle) float64) map[int]float64 {
	m := map[int]float64{}
	for _, c := range liveIdle(is) {
		m[c.Rep] = f(c)
	}
	return m
}

func spread(m map[int]float64) results.Spread {
	return results.SpreadOf(slices.Collect(maps.Values(m)))
}

func cellSpread(cs []results.Cell, f func(results.Cell) float64) results.Spread {
	return spread(byRep(cs, f))
}

// sameRun pairs a and b by repetition (rep k of every server ran close
// together in time) and summarises the ratios a/b. Repetitions missing on
// either side, or where b is zero, are left out.
func sameRun(a, b map[int]float64) results.Spread {
	var rs []float64
	for _, k := range slices.Sorted(maps.Keys(a)) {
		if v, ok := b[k]; ok && v != 0 {
			rs = append(rs, a[k]/v)
		}
	}
	return results.SpreadOf(rs)
}

// Per-repetition figures.
var (
	framesPerS  = func(c results.Cell) float64 { return c.FramesPerS }
	mbps        = func(c results.Cell) float64 { return c.MBPerS }
	cpuPerFrame = func(c results.Cell) float64 { return c.CPUPerFrameUS }
	serverCPU   = func(c results.Cell) float64 { return c.ServerCPU }
	loadCPU     = func(c results.Cell) float64 { return c.LoadCPU }
	p50         = func(c results.Cell) float64 { return c.Latency.P50 }
	p90         = func(c results.Cell) float64 { return c.Latency.P90 }
	p99         = func(c results.Cell) float64 { return c.Latency.P99 }
	p999        = func(c results.Cell) float64 { return c.Latency.P999 }
	maxLatency  = func(c results.Cell) float64 { return c.Latency.Max }
	rss         = func(c results.Cell) float64 { return float64(c.RSS) }
	threads     = func(c results.Cell) float64 { return float64(c.Threads) }
	offered     = func(c results.Cell) float64 { return c.RateOffered }
	ctxswPerS   = func(c results.Cell) float64 { return c.VolCtxSwPerS + c.InvolCtxSwPerS }
	// ctxswPerFrame is 0 for a window that moved no frames, rather than
	// an infinity that no table or chart can show.
	ctxswPerFrame = func(c results.Cell) float64 {
		if c.FramesPerS == 0 {
			return 0
		}
		return (c.VolCtxSwPerS + c.InvolCtxSwPerS) / c.FramesPerS
	}

	bytesPerConn = func(c results.Idle) float64 { return c.BytesPerConn }
	heldRSS      = func(c results.Idle) float64 { return float64(c.HeldRSS) }
	held         = func(c results.Idle) float64 { return float64(c.Held) }
	// opened is what was open when the memory was read; runs recorded
	// before Open was kept have only Held.
	opened = func(c results.Idle) float64 {
		if c.Open > 0 {
			return float64(c.Open)
		}
		return float64(c.Held)
	}
	idleThreads = func(c results.Idle) float64 { return float64(c.Threads) }
)

// goroutines summarises the goroutine counts the server reported; N is 0
// when it reported none (-1 in every repetition).
func goroutines(counts []int) results.Spread {
	var xs []float64
	for _, n := range counts {
		if n >= 0 {
			xs = append(xs, float64(n))
		}
	}
	return results.SpreadOf(xs)
}

// bottleneck is the most common Bottleneck over the repetitions that did
// not fail (ties go to the earliest repetition's), and how many of them
// agreed.
func bottleneck(cs []results.Cell) (side string, agree, of int) {
	cs = live(cs)
	n := map[string]int{}
	for _, c := range cs {
		n[c.Bottleneck]++
	}
	for _, c := range cs {
		if n[c.Bottleneck] > agree {
			side, agree = c.Bottleneck, n[c.Bottleneck]
		}
	}
	return side, agree, len(cs)
}

// marginal is the memory each further connection costs between two idle
// counts, from medians: (HeldRSS(n2)-HeldRSS(n1)) / (Open(n2)-Open(n1)).
// ok is false when either count has no figures or as many connections were
// held at both.
func marginal(lo, hi []results.Idle) (bytes float64, ok bool) {
	r1, r2 := spread(idleByRep(lo, heldRSS)), spread(idleByRep(hi, heldRSS))
	h1, h2 := spread(idleByRep(lo, opened)), spread(idleByRep(hi, opened))
	if r1.N == 0 || r2.N == 0 || h2.Median == h1.Median {
		return 0, false
	}
	return (r2.Median - r1.Median) / (h2.Median - h1.Median), true
}

// pair is two server configurations of equal width whose same-run ratio
// A/B the report shows.
type pair struct{ A, B results.Server }

func (p pair) String() string { return p.A.Name + " ÷ " + p.B.Name }

// pairs matches every server that is picked by a with the server of the
// same width picked by b, in display order.
func (d *data) pairs(a, b func(results.Server) bool) []pair {
	var ps []pair
	for _, x := range d.servers {
		if !a(x) {
			continue
		}
		for _, y := range d.servers {
			if b(y) && y.Name != x.Name && width(y) == width(x) {
				ps = append(ps, pair{x, y})
				break
			}
		}
	}
	return ps
}

func isModel(m string) func(results.Server) bool {
	return func(s results.Server) bool { return s.Model == m && !s.Reference }
}

func isReference(s results.Server) bool { return s.Reference }

// eventloops returns the event-loop servers, whether or not the run has
// anything to compare them with.
func (d *data) eventloops() []results.Server {
	var ss []results.Server
	for _, s := range d.servers {
		if isModel("eventloop")(s) {
			ss = append(ss, s)
		}
	}
	return ss
}

// failure is one failed repetition, for the list of failures.
type failure struct {
	Server, Cell string
	Rep          int
	Reason       string
}

func (d *data) failures() []failure {
	var fs []failure
	for _, c := range d.run.Cells {
		if c.Failed != "" {
			fs = append(fs, failure{c.Server, cellName(c), c.Rep, reason(c.Failed)})
		}
	}
	for _, c := range d.run.Idle {
		if c.Failed != "" {
			fs = append(fs, failure{c.Server, "idle, " + connections(c.Conns), c.Rep, reason(c.Failed)})
		}
	}
	return fs
}

// interrupted reports whether a repetition failed because the run was
// stopped. Runs recorded before the harness said so give the error of
// whichever step noticed the stop first ("load generator: context
// canceled").
func interrupted(failed string) bool {
	return failed == results.Interrupted || strings.HasSuffix(failed, context.Canceled.Error())
}

// reason is why a repetition failed, in the report's words.
func reason(failed string) string {
	if interrupted(failed) {
		return results.Interrupted
	}
	return failed
}

// cellName describes a load cell in words: "closed, 100 connections, 64 B,
// pipeline 1".
func cellName(c results.Cell) string {
	s := c.Kind + ", " + connections(c.Conns) + ", " + group{c.Size, c.Pipeline}.String()
	if c.Kind == results.Open {
		s += ", " + strconv.FormatFloat(c.RateFraction*100, 'f', -1, 64) + "% of capacity"
	}
	return s
}
