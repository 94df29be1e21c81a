package report

import (
	"math"
	"testing"

	"echoloop/bench/results"
)

func TestFormat(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{count.format(71234), "71.2k"},
		{count.format(812), "812"},
		{count.format(1.5e6), "1.5M"},
		{count.spread(results.Spread{Median: 71200, Min: 69800, Max: 73000, N: 3}), "71.2k (69.8–73.0)"},
		{count.spread(results.Spread{Median: 71200, Min: 71180, Max: 71220, N: 3}), "71.2k"}, // range rounds away
		{count.spread(results.Spread{Median: 5, Min: 5, Max: 5, N: 1}), "5.0"},
		{count.spread(results.Spread{}), none},
		{micros.format(3.4), "3.4 µs"},
		{micros.format(1900), "1.9 ms"},
		{micros.spread(results.Spread{Median: 412, Min: 400, Max: 430, N: 3}), "412 µs (400–430)"},
		{bytesU.format(1228.8), "1.2 KiB"},
		{bytesU.format(900), "900 B"},
		{bytesU.format(40 << 20), "40.0 MiB"},
		{times.format(1.0625), "1.06×"},
		{times.format(12), "12.0×"},
		{plain.format(0.17), "0.17"},
		{plain.format(0.0031), "0.0031"},
		{plain.format(math.NaN()), none},
		{thousands(19000), "19,000"},
		{thousands(-1234567), "-1,234,567"},
		{thousands(999), "999"},
		{num(6), "6"},
		{num(1005), "1,005"},
		{num(6.5), "6.5"},
		{connections(1), "1 connection"},
		{plural(2, "mismatch"), "2 mismatches"},
		{plural(1, "mismatch"), "1 mismatch"},
		{plural(1200, "repetition"), "1,200 repetitions"},
		{connections(10000), "10,000 connections"},
		{payload(64), "64 B"},
		{payload(4096), "4 KiB"},
		{tickLabel(count, 20000), "20k"},
		{tickLabel(count, 2500), "2.5k"},
		{tickLabel(micros, 1000), "1 ms"},
		{percent(0.136), "14%"},
		{percent(-0.004), "0.4%"},
	}
	for i, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%d: got %q, want %q", i, tt.got, tt.want)
		}
	}
}

func TestSpreads(t *testing.T) {
	d := index(synthetic())
	k := func(conns, size, pipe int) closedKey { return closedKey{group{size, pipe}, conns} }
	tests := []struct {
		name   string
		server string
		key    closedKey
		f      func(results.Cell) float64
		want   results.Spread
	}{
		{"median and range", "eventloop-1", k(100, 64, 1), framesPerS, results.Spread{Median: 71000, Min: 70000, Max: 72000, N: 3}},
		{"cpu per frame", "gnet-plain-1", k(100, 64, 1), cpuPerFrame, results.Spread{Median: 3.2, Min: 3.0, Max: 3.5, N: 3}},
		// Repetition 2 failed with 999999 frames/s: out of median and max.
		{"failed repetition left out", "goroutine-1", k(1, 64, 1), framesPerS, results.Spread{Median: 20000, Min: 20000, Max: 20000, N: 2}},
		{"failed repetition left out, cpu", "goroutine-1", k(1, 64, 1), cpuPerFrame, results.Spread{Median: 5, Min: 5, Max: 5, N: 2}},
		{"every repetition failed", "eventloop-2", k(100, 4096, 16), framesPerS, results.Spread{}},
		{"not in the matrix", "eventloop-1", k(7, 64, 1), framesPerS, results.Spread{}},
		{"context switches per frame", "eventloop-1", k(1, 64, 1), ctxswPerFrame, results.Spread{Median: 0.2, Min: 0.2, Max: 0.2, N: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := cellSpread(d.closed[tt.server][tt.key], tt.f)
			if !near(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func near(a, b results.Spread) bool {
	eq := func(x, y float64) bool { return math.Abs(x-y) < 1e-9*math.Max(1, math.Abs(y)) }
	return a.N == b.N && eq(a.Median, b.Median) && eq(a.Min, b.Min) && eq(a.Max, b.Max)
}

func TestSameRun(t *testing.T) {
	tests := []struct {
		name string
		a, b map[int]float64
		want results.Spread
	}{
		// The median of ratios, 1, not the ratio of medians, 20/10.
		{"pairs by repetition", map[int]float64{1: 10, 2: 20, 3: 30}, map[int]float64{1: 10, 2: 10, 3: 60}, results.Spread{Median: 1, Min: 0.5, Max: 2, N: 3}},
		{"a repetition missing on one side", map[int]float64{1: 10, 3: 30}, map[int]float64{1: 5, 2: 7, 3: 10}, results.Spread{Median: 2.5, Min: 2, Max: 3, N: 2}},
		{"zero divisor left out", map[int]float64{1: 10, 2: 20}, map[int]float64{1: 0, 2: 10}, results.Spread{Median: 2, Min: 2, Max: 2, N: 1}},
		{"no common repetition", map[int]float64{1: 10}, map[int]float64{2: 10}, results.Spread{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sameRun(tt.a, tt.b); !near(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}

	// From the run: eventloop-1 ÷ goroutine-1, 100 conns, 64 B: 1, 2, 0.5.
	d := index(synthetic())
	k := closedKey{group{64, 1}, 100}
	got := sameRun(byRep(d.closed["eventloop-1"][k], framesPerS), byRep(d.closed["goroutine-1"][k], framesPerS))
	if want := (results.Spread{Median: 1, Min: 0.5, Max: 2, N: 3}); !near(got, want) {
		t.Errorf("eventloop-1 ÷ goroutine-1 = %+v, want %+v", got, want)
	}
	// At 1 conn goroutine-1's repetition 2 failed: two pairs remain.
	k = closedKey{group{64, 1}, 1}
	if got := sameRun(byRep(d.closed["eventloop-1"][k], cpuPerFrame), byRep(d.closed["goroutine-1"][k], cpuPerFrame)); got.N != 2 || got.Median != 1.2 {
		t.Errorf("with a failed repetition: %+v, want 2 pairs of 1.2", got)
	}
}

func TestVerdict(t *testing.T) {
	r := func(m float64) results.Spread { return results.Spread{Median: m, Min: m, Max: m, N: 3} }
	tests := []struct {
		name  string
		v     verdict
		met   bool
		off   float64
		short string
	}{
		{"at most, met", verdict{cpuTarget, r(1.06)}, true, -0.04, "1.06× met"},
		{"at most, on the limit", verdict{cpuTarget, r(1.10)}, true, 0, "1.10× met"},
		{"at most, missed", verdict{cpuTarget, r(1.25)}, false, 0.15, "1.25× **missed, 14% over**"},
		{"at least, met", verdict{memGoTarget, r(12)}, true, -2, "12.0× met"},
		{"at least, missed", verdict{memGoTarget, r(8)}, false, 2, "8.0× **missed, 20% short**"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.v.Met() != tt.met || math.Abs(tt.v.Off()-tt.off) > 1e-9 || tt.v.Short() != tt.short {
				t.Errorf("met %v off %v %q, want %v %v %q", tt.v.Met(), tt.v.Off(), tt.v.Short(), tt.met, tt.off, tt.short)
			}
		})
	}
}

func TestTargetsOnRun(t *testing.T) {
	d := index(synthetic())
	el1, _ := d.server("eventloop-1")
	go1, _ := d.server("goroutine-1")
	gp1, _ := d.server("gnet-plain-1")

	type want struct {
		where string
		ratio float64
		met   bool
	}
	var got []want
	for _, c := range d.cpuChecks(pair{el1, gp1}) {
		got = append(got, want{"cpu " + connections(c.Conns) + ", " + c.group.String(), c.Ratio.Median, c.Met()})
	}
	for _, c := range d.memChecks(pair{el1, gp1}, memRefTarget) {
		got = append(got, want{"ref " + connections(c.Conns), c.Ratio.Median, c.Met()})
	}
	for _, c := range d.memChecks(pair{go1, el1}, memGoTarget) {
		got = append(got, want{"go " + connections(c.Conns), c.Ratio.Median, c.Met()})
	}
	wants := []want{
		{"cpu 1 connection, 64 B, pipeline 1", 1.2, false},
		{"cpu 100 connections, 64 B, pipeline 1", 1.0625, true},
		{"cpu 100 connections, 4 KiB, pipeline 16", 1, true},
		{"ref 1,000 connections", 1000.0 / 900, true},
		{"ref 10,000 connections", 1.2, false}, // two pairs: gnet-plain-1's rep 3 failed
		{"go 1,000 connections", 12, true},
		{"go 10,000 connections", 8, false},
	}
	if len(got) != len(wants) {
		t.Fatalf("got %d checks %+v, want %d", len(got), got, len(wants))
	}
	for i, w := range wants {
		if g := got[i]; g.where != w.where || math.Abs(g.ratio-w.ratio) > 1e-9 || g.met != w.met {
			t.Errorf("check %d: got %+v, want %+v", i, g, w)
		}
	}
}

func TestPairs(t *testing.T) {
	d := index(synthetic())
	tests := []struct {
		name string
		got  []pair
		want []string
	}{
		{"event loop against reference", d.pairs(isModel("eventloop"), isReference), []string{"eventloop-1 ÷ gnet-plain-1"}},
		{"event loop against goroutine", d.pairs(isModel("eventloop"), isModel("goroutine")), []string{"eventloop-1 ÷ goroutine-1", "eventloop-2 ÷ goroutine-2"}},
		{"goroutine against event loop", d.pairs(isModel("goroutine"), isModel("eventloop")), []string{"goroutine-1 ÷ eventloop-1", "goroutine-2 ÷ eventloop-2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, p := range tt.got {
				got = append(got, p.String())
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("got %q, want %q", got, tt.want)
				}
			}
		})
	}
}

func TestWidth(t *testing.T) {
	tests := []struct {
		s    results.Server
		want int
	}{
		{results.Server{Name: "eventloop-2", Model: "eventloop", Loops: 2}, 2},
		{results.Server{Name: "goroutine-1", Model: "goroutine", GOMAXPROCS: 1, Loops: 7}, 1},
		{results.Server{Name: "goroutine-2", Model: "goroutine"}, 2}, // GOMAXPROCS default: from the name
		{results.Server{Name: "custom", Model: "goroutine"}, 0},
	}
	for _, tt := range tests {
		if got := width(tt.s); got != tt.want {
			t.Errorf("width(%+v) = %d, want %d", tt.s, got, tt.want)
		}
	}
}

func TestMarginal(t *testing.T) {
	d := index(synthetic())
	tests := []struct {
		server string
		want   float64
		ok     bool
	}{
		// (10e6+1200·10000 − (10e6+1000·1000)) / (10000−1000)
		{"eventloop-1", 11e6 / 9000, true},
		// Held 9,000 of 10,000 asked: (9600·9000 − 12000·1000) / 8000.
		{"goroutine-1", (9600.0*9000 - 12000*1000) / 8000, true},
		// Repetition 3 at 10,000 failed; the medians of the other two.
		{"gnet-plain-1", (1000.0*10000 - 900*1000) / 9000, true},
		{"eventloop-2", 0, false}, // no idle cells
	}
	for _, tt := range tests {
		got, ok := marginal(d.idle[tt.server][1000], d.idle[tt.server][10000])
		if ok != tt.ok || math.Abs(got-tt.want) > 1e-6 {
			t.Errorf("%s: marginal = %v, %v; want %v, %v", tt.server, got, ok, tt.want, tt.ok)
		}
	}
}

func TestBottleneck(t *testing.T) {
	c := func(side, failed string) results.Cell { return results.Cell{Bottleneck: side, Failed: failed} }
	tests := []struct {
		name      string
		cs        []results.Cell
		side      string
		agree, of int
	}{
		{"unanimous", []results.Cell{c("server", ""), c("server", ""), c("server", "")}, "server", 3, 3},
		{"majority", []results.Cell{c("server", ""), c("load generator", ""), c("load generator", "")}, "load generator", 2, 3},
		{"tie goes to the earliest", []results.Cell{c("both", ""), c("server", "")}, "both", 1, 2},
		{"failed repetitions do not vote", []results.Cell{c("server", "x"), c("server", "x"), c("neither", "")}, "neither", 1, 1},
		{"none", nil, "", 0, 0},
	}
	for _, tt := range tests {
		side, agree, of := bottleneck(tt.cs)
		if side != tt.side || agree != tt.agree || of != tt.of {
			t.Errorf("%s: got %q %d/%d, want %q %d/%d", tt.name, side, agree, of, tt.side, tt.agree, tt.of)
		}
	}
}

func TestCPUList(t *testing.T) {
	tests := []struct {
		a, b    string
		n       int
		overlap bool
	}{
		{"0", "1", 1, false},
		{"0-1", "1", 2, true},
		{"0,2-3", "1", 3, false},
		{"", "1", 0, true}, // unpinned runs anywhere
		{"x", "1", 0, false},
	}
	for _, tt := range tests {
		if n, o := cpuCount(tt.a), overlap(tt.a, tt.b); n != tt.n || o != tt.overlap {
			t.Errorf("%q, %q: count %d overlap %v, want %d %v", tt.a, tt.b, n, o, tt.n, tt.overlap)
		}
	}
}

func TestIntegrity(t *testing.T) {
	d := index(synthetic())
	mis, errs, runs, bad := d.integrity()
	if mis != 2 || errs != 1 || runs != len(d.run.Cells) || len(bad) != 1 || bad[0].Server != "eventloop-2" || bad[0].Rep != 1 {
		t.Errorf("integrity = %d mismatches, %d errors, %d runs, %+v", mis, errs, runs, bad)
	}
}
