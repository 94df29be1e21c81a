package report

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"echoloop/bench/results"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	run := synthetic()
	const reading = "The event loop misses the CPU target at one connection, where the generator was the bottleneck."
	if err := Write(dir, run, reading); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, File))
	if err != nil {
		t.Fatal(err)
	}
	report := string(b)

	for _, s := range run.Servers {
		if !strings.Contains(report, s.Name) {
			t.Errorf("the report does not mention %s", s.Name)
		}
	}
	for _, want := range []string{
		"# echobench: synthetic, 2026-03-01",
		"Profile **full**: 5 server configurations, 57 load-cell runs and 18 idle-cell runs, 3 repetitions of each cell, interleaved across servers.",
		"Ranges are min–max over 3 repetitions, not confidence intervals.",
		"go run ./cmd/echobench -profile full",
		"| CPU | Test CPU 9000, 2 cores |",
		"servers on CPUs 0, load generator on CPUs 1",
		"abc1234 (dirty",
		"| duration | 1h32m5s |",
		"the fd limit capped the maximum at 19,000 connections",
		// Targets, met and missed, with the figures beside them.
		"eventloop-1 ÷ gnet-plain-1: met in 2 of 3 cells; worst at 1 connection, 64 B, pipeline 1: 1.20× against ≤ 1.10×: **missed**, 9% over",
		"| 100 | 1.06× (1.00–1.10) met<br>3.4 µs vs 3.2 µs |",
		"eventloop-2: not measured, the run has no reference server of the same width",
		"8.0× **missed, 20% short**<br>9.4 KiB vs 1.2 KiB",
		"12.0× met",
		"- **Zero mismatches**: **missed**, 2 mismatches in 57 load-cell runs; 1 connection error (listed below).",
		"| eventloop-2 | closed, 1 connection, 64 B, pipeline 1 | 1 | 2 | reset 1 | — |",
		// Failed repetitions, listed with their reasons.
		"| goroutine-1 | closed, 1 connection, 64 B, pipeline 1 | 2 | server exited: signal: killed |",
		"| gnet-plain-1 | idle, 10,000 connections | 3 | too many open files |",
		// Tables: medians with ranges, a dagger for a cell missing a
		// repetition, "failed" for a cell with none.
		"| 100 | 71.0k (70.0–72.0)<br>3.2 MB/s |",
		"20.0k<br>1.3 MB/s †",
		"| 100 | 30.0k<br>123 MB/s | failed |",
		"| 100 | 1.00× (0.50–2.00) | 0.85× (0.82–0.88) |",
		"load generator (2 of 3)",
		"n/a goroutines",
		"5 goroutines †",
		"| eventloop-1 | 75%: 37.5k/s | 37.5k/s | 135 µs | 150 µs | 225 µs | 900 µs | 5.0 ms |",
		"| 10,000 | 1.2 KiB | 9.4 KiB<br>9,000 held | 1000 B † |",
		"| 1,000 → 10,000 | 1.2 KiB | 9.1 KiB | 1011 B |",
		"9,005 goroutines",
		"## Reading\n\n" + reading,
		"in 1 of 14 closed-loop cells, where it used a median 0.90 cores of the 1 it was allowed (90%)",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	// A miss is a share of its target: the difference of two ratios is
	// not a ratio.
	if m := regexp.MustCompile(`missed by [0-9.]+×`).FindString(report); m != "" {
		t.Errorf("the report writes %q", m)
	}
	// No failed repetition's figures anywhere.
	for _, bad := range []string{"999", "1000.0", "1000k", "1.0M"} {
		if strings.Contains(report, bad) {
			t.Errorf("the report shows %q, a failed repetition's figure", bad)
		}
	}

	// Every chart the report shows exists and is SVG, and every chart
	// written is shown.
	shown := map[string]bool{}
	for _, m := range regexp.MustCompile(`!\[[^\]]*\]\(([^)]+)\)`).FindAllStringSubmatch(report, -1) {
		shown[m[1]] = true
		checkSVG(t, filepath.Join(dir, m[1]))
	}
	files, _ := filepath.Glob(filepath.Join(dir, "charts", "*.svg"))
	if len(files) != 9 || len(shown) != len(files) {
		t.Errorf("%d charts written, %d shown, want 9 of each", len(files), len(shown))
	}
	for _, f := range files {
		if rel := "charts/" + filepath.Base(f); !shown[rel] {
			t.Errorf("%s is written but not shown", rel)
		}
	}
	// Each line is labelled: the legend names its server, and a server
	// whose cells all failed is named as having no figures.
	svg, _ := os.ReadFile(filepath.Join(dir, "charts", "throughput-64b-p1.svg"))
	for _, s := range run.Servers {
		if !bytes.Contains(svg, []byte(">"+legendName(s)+"<")) {
			t.Errorf("the throughput chart's legend lacks %s", s.Name)
		}
	}
	svg, _ = os.ReadFile(filepath.Join(dir, "charts", "throughput-4096b-p16.svg"))
	if !bytes.Contains(svg, []byte("eventloop-2: no figures")) {
		t.Error("the 4 KiB chart does not say that eventloop-2 has no figures")
	}
}

// checkSVG fails t unless path holds well-formed XML with an svg root.
func checkSVG(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Error(err)
		return
	}
	dec := xml.NewDecoder(bytes.NewReader(b))
	root := ""
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Errorf("%s: %v", filepath.Base(path), err)
			return
		}
		if se, ok := tok.(xml.StartElement); ok && root == "" {
			root = se.Name.Local
		}
	}
	if root != "svg" {
		t.Errorf("%s: root element %q, want svg", filepath.Base(path), root)
	}
}

// TestWriteShapes writes reports for runs of every shape a profile or a
// bad night can produce; each must give a report and valid charts.
func TestWriteShapes(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(r *results.Run)
		charts int
		has    []string
	}{
		{"quick profile: one cell per kind, one repetition", func(r *results.Run) {
			r.Cells = keep(r.Cells, func(c results.Cell) bool {
				return c.Rep == 1 && c.Size == 64 && (c.Kind == results.Open && c.RateFraction == 0.5 || c.Kind == results.Closed && c.Conns == 100)
			})
			r.Idle = keepIdle(r.Idle, func(c results.Idle) bool { return c.Rep == 1 && c.Conns == 1000 })
		}, 6, []string{"| 100 | 70.0k<br>", "7 load-cell runs and 3 idle-cell runs, one repetition of each cell.", "Each cell ran once: every figure is a single measurement"}},
		{"interrupted in the last repetition", func(r *results.Run) {
			// Stopped in repetition 3 after the 1-connection cells: the
			// cell that was running says so in the words of a run
			// recorded before the harness named interruptions, and a
			// cell of another count had only begun.
			r.Cells = keep(r.Cells, func(c results.Cell) bool { return c.Rep < 3 || c.Kind == results.Closed && c.Conns == 1 })
			r.Idle = keepIdle(r.Idle, func(c results.Idle) bool { return c.Rep < 3 })
			for i := range r.Cells {
				if c := &r.Cells[i]; c.Server == "gnet-plain-1" && c.Rep == 3 && c.Size == 64 {
					c.Failed = "load generator: context canceled"
				}
			}
			r.Cells = append(r.Cells, results.Cell{Server: "goroutine-2", Kind: results.Closed, Conns: 1000, Size: 64, Pipeline: 1,
				Rep: 1, Goroutines: -1, Failed: results.Interrupted})
		}, 9, []string{"1 to 3 repetitions of each cell, interleaved across servers.", "Ranges are min–max over 1 to 3 repetitions",
			"3 repetitions failed and 2 repetitions did not finish because the run was stopped.",
			"| gnet-plain-1 | closed, 1 connection, 64 B, pipeline 1 | 3 | interrupted: the run was stopped during this cell |",
			"| 1,000 | — | — | — | interrupted | — |"}},
		{"every cell failed", func(r *results.Run) {
			for i := range r.Cells {
				r.Cells[i].Failed = "boom"
			}
			for i := range r.Idle {
				r.Idle[i].Failed = "boom"
			}
		}, 9, []string{"no cell where both have figures", "| 100 | failed | failed |"}},
		{"no idle or open cells", func(r *results.Run) {
			r.Idle = nil
			r.Cells = keep(r.Cells, func(c results.Cell) bool { return c.Kind == results.Closed })
		}, 6, []string{"not measured, the run has no idle cells"}},
		{"nothing measured", func(r *results.Run) {
			r.Cells, r.Idle, r.Notes = nil, nil, nil
			r.Env = results.Env{}
			r.Started, r.Finished = time.Time{}, time.Time{}
		}, 0, []string{"# echobench: synthetic\n", "| started | — |", "not measured, the run has no closed-loop cells", "None: the run recorded nothing unusual.", "_No reading was written for this run._", "Nothing was pinned"}},
		{"a server the run did not describe", func(r *results.Run) {
			r.Servers = r.Servers[:1]
		}, 9, []string{"goroutine-2", "gnet-plain-1"}},
		{"a latency of zero on a log axis", func(r *results.Run) {
			for i := range r.Cells {
				r.Cells[i].Latency = results.Latency{}
			}
		}, 9, []string{"p50 0 µs"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run := synthetic()
			tt.edit(run)
			dir := t.TempDir()
			if err := Write(dir, run, ""); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(filepath.Join(dir, File))
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range tt.has {
				if !strings.Contains(string(b), want) {
					t.Errorf("the report lacks %q", want)
				}
			}
			if m := regexp.MustCompile(`\b1 [a-z-]+(runs|repetitions)\b|up to 1 repetition|context canceled`).FindString(string(b)); m != "" {
				t.Errorf("the report writes %q", m)
			}
			files, _ := filepath.Glob(filepath.Join(dir, "charts", "*.svg"))
			if len(files) != tt.charts {
				t.Errorf("%d charts, want %d", len(files), tt.charts)
			}
			for _, f := range files {
				checkSVG(t, f)
			}
		})
	}
}

func keep(cs []results.Cell, f func(results.Cell) bool) []results.Cell {
	var out []results.Cell
	for _, c := range cs {
		if f(c) {
			out = append(out, c)
		}
	}
	return out
}

func keepIdle(cs []results.Idle, f func(results.Idle) bool) []results.Idle {
	var out []results.Idle
	for _, c := range cs {
		if f(c) {
			out = append(out, c)
		}
	}
	return out
}

func TestWriteRefuses(t *testing.T) {
	other := synthetic()
	other.Schema = results.Schema + 1
	tests := []struct {
		name string
		run  *results.Run
		want error
	}{
		{"nil", nil, ErrNoRun},
		{"another schema", other, ErrSchema},
	}
	for _, tt := range tests {
		dir := t.TempDir()
		if err := Write(dir, tt.run, ""); !errors.Is(err, tt.want) {
			t.Errorf("%s: Write = %v, want %v", tt.name, err, tt.want)
		}
		if _, err := os.Stat(filepath.Join(dir, File)); err == nil {
			t.Errorf("%s: a report was written", tt.name)
		}
	}
}

func TestHeadline(t *testing.T) {
	h := Headline(synthetic(), "bench/results/synthetic")
	for _, want := range []string{
		"Closed loop, 64 B, pipeline 1",
		"| connections | eventloop-1 | eventloop-2 | goroutine-1 | goroutine-2 | gnet-plain-1 (reference) | eventloop-1 ÷ goroutine-1 | eventloop-2 ÷ goroutine-2 |",
		"| 100 | 71.0k/s · 3.4 µs |",
		"1.00× (0.50–2.00) · 0.85× (0.82–0.88)",
		"Idle memory per connection at 10,000 connections: eventloop-1 1.2 KiB, goroutine-1 9.4 KiB, gnet-plain-1 1000 B.",
		"[throughput](bench/results/synthetic/charts/throughput-64b-p1.svg)",
		"[server CPU per frame](bench/results/synthetic/charts/cpu-per-frame-64b-p1.svg)",
		"[memory per idle connection](bench/results/synthetic/charts/idle-memory.svg)",
	} {
		if !strings.Contains(h, want) {
			t.Errorf("the headline lacks %q:\n%s", want, h)
		}
	}
	// The 4 KiB group is for the report, not the headline.
	if strings.Contains(h, "pipeline 16") || strings.Contains(h, "30.0k") {
		t.Errorf("the headline shows another group:\n%s", h)
	}

	// Without 64 B, pipeline 1 it falls back to the group the run has.
	r := synthetic()
	r.Cells = keep(r.Cells, func(c results.Cell) bool { return c.Size == 4096 })
	r.Idle = nil
	h = Headline(r, ".")
	if !strings.Contains(h, "Closed loop, 4 KiB, pipeline 16") || !strings.Contains(h, "(charts/throughput-4096b-p16.svg)") || strings.Contains(h, "Idle") {
		t.Errorf("fallback headline:\n%s", h)
	}
	if Headline(nil, ".") != "" {
		t.Error("a headline for no run")
	}
}

// TestTextbookSection checks the textbook servers' section: ratios against
// the Go server of each one's shape, idle memory and threads, what did not
// run, and a reading drawn from the figures.
func TestTextbookSection(t *testing.T) {
	write := func(run *results.Run) string {
		t.Helper()
		dir := t.TempDir()
		if err := Write(dir, run, ""); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dir, File))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	run := withTextbook(synthetic())
	for i := range run.Cells {
		if c := &run.Cells[i]; c.Server == "python-select" && c.Kind == results.Closed && c.Conns == 100 && c.Size == 64 && c.Rep == 3 {
			c.ConnsEstablished = 97
		}
		if c := &run.Cells[i]; c.Server == "python-threads" && c.Conns == 100 && c.Size == 64 && c.Rep == 1 {
			c.Errors = map[string]uint64{"timeout": 40}
		}
	}
	report := write(run)
	for _, want := range []string{
		"| Python | 3.11.7, for the textbook servers |",
		"| python-threads | python-threads (textbook, Python) | — | — | — |",
		"## The textbook servers",
		"Each is set beside the Go server of its shape, same run: `python-select` beside `eventloop-1`, `python-threads` beside `goroutine-1`.",
		"| 1 | 0.50× | 2.0× | 0.25× | 3.0× |",
		"| 100 | 0.50× | 2.0× | 0.20× | 3.0× |",
		"| 10,000 | 400 B<br>1 thread | 1.2 KiB<br>5 threads | 23.4 KiB<br>10,001 threads<br>10,000 open, 6,000 through the last round trip | 9.4 KiB<br>5 threads<br>9,000 held |",
		"- **Not every cell ran in full:**\n",
		"  - `python-threads` failed in closed, 100 connections, 4 KiB, pipeline 16 in 3 of 3 repetitions: server python-threads: exited before logging",
		"  - `python-threads` held all 10,000 idle connections open, but only 6,000 came through the round trip after the hold (median; errors over 3 repetitions: timeout 12,000).",
		"  - `python-select` opened as few as 97 of the 100 connections asked in closed, 100 connections, 64 B, pipeline 1, in 1 of 3 repetitions.",
		"  - `python-threads` lost connections to errors in closed, 100 connections, 64 B, pipeline 1: timeout 40 over 3 repetitions.",
		"every reply in their 24 load-cell runs matched what was sent",
		"The shape decides what a waiting client costs: `python-select` 400 B per connection, 1 thread, with 10,000 open; `python-threads` 23.4 KiB per connection, 10,001 threads, with 10,000 open.",
		"`python-select` spent 2.0× the CPU per frame of `eventloop-1` and moved 0.50× its frames per second; `python-threads` spent 3.0× the CPU per frame of `goroutine-1` and moved 0.20–0.25× its frames per second",
		"one interpreter lock",
		"At 100 connections (64 B, pipeline 1) its server switched context 2.0 times per frame, `goroutine-1` 0.14.",
		// Rows and lines beside the Go servers.
		"| connections | eventloop-1 | eventloop-2 | goroutine-1 | goroutine-2 | gnet-plain-1 (reference) | python-select | python-threads |",
		"| python-select | 50%: 12.5k/s | 12.5k/s |",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	// The textbook servers are not contenders for the targets.
	if strings.Contains(report, "python-select ÷ gnet-plain-1") || strings.Contains(report, "eventloop-1 ÷ python") {
		t.Error("a textbook server is paired for a target")
	}

	// Everything ran, and replies went wrong.
	run = withTextbook(synthetic())
	run.Cells = keep(run.Cells, func(c results.Cell) bool { return c.Server != "python-threads" || c.Failed == "" })
	for i := range run.Cells {
		if c := &run.Cells[i]; c.Server == "python-select" && c.Kind == results.Closed && c.Conns == 100 && c.Size == 64 && c.Rep == 1 {
			c.Mismatches = 2
		}
	}
	run.Idle = keepIdle(run.Idle, func(c results.Idle) bool { return c.Server != "python-threads" || c.Conns == 1000 })
	report = write(run)
	for _, want := range []string{"- Both ran every cell of this run, at every connection count.", "**`python-select` sent back replies that did not match what was sent: 2 mismatches**"} {
		if !strings.Contains(report, want) {
			t.Errorf("the report lacks %q", want)
		}
	}

	if report := write(synthetic()); strings.Contains(report, "textbook") {
		t.Error("a run without the textbook servers has a section on them")
	}
}
