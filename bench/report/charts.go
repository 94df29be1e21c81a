package report

import (
	"bytes"
	"cmp"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"

	"echoloop/bench/results"
	"echoloop/bench/textbook"
)

// Chart size: 8 × 4.5 in is 768 × 432 px, about the width of a README.
const (
	chartW = 8 * vg.Inch
	chartH = 4.5 * vg.Inch
)

// chart is one SVG line chart: a line per server configuration through the
// medians, with a bar from min to max at each point.
type chart struct {
	file           string // relative to the report folder
	title          string
	xLabel, yLabel string
	xTicks, yTicks unit // how tick labels are written
	logX, logY     bool
	// logOver, if set, turns logY on when the medians span more than this
	// factor, so that the lowest lines are not pressed flat.
	logOver float64
	// xAt, when set, puts the x ticks at these values (the connection
	// counts measured) rather than at round numbers.
	xAt    []float64
	series []series
}

// series is one server's line; a server with cells in the chart's
// selection but no figures (all failed) has no points, and the legend
// says so.
type series struct {
	server results.Server
	pts    []point
}

type point struct {
	X float64
	Y results.Spread
}

// Chart files, relative to the report folder.
func throughputFile(g group) string { return "charts/throughput-" + g.slug() + ".svg" }
func cpuFile(g group) string        { return "charts/cpu-per-frame-" + g.slug() + ".svg" }
func ctxswFile(g group) string      { return "charts/ctxsw-per-frame-" + g.slug() + ".svg" }
func latencyFile(g openGroup, pct string) string {
	return "charts/latency-" + pct + "-" + g.slug() + ".svg"
}

const idleFile = "charts/idle-memory.svg"

// charts lists every chart of the run.
func (d *data) charts() []chart {
	var cs []chart
	for _, g := range d.groups() {
		x := floats(d.conns(g))
		cs = append(cs,
			chart{
				file: throughputFile(g), title: "Throughput, closed loop, " + g.String(),
				xLabel: "connections", yLabel: "frames per second",
				xTicks: count, yTicks: count, logX: true, xAt: x, logOver: closedLogOver,
				series: d.closedSeries(g, framesPerS),
			},
			chart{
				file: cpuFile(g), title: "Server CPU per frame, closed loop, " + g.String(),
				xLabel: "connections", yLabel: "server CPU per frame (µs)",
				xTicks: count, yTicks: count, logX: true, xAt: x, logOver: closedLogOver,
				series: d.closedSeries(g, cpuPerFrame),
			},
			chart{
				file: ctxswFile(g), title: "Context switches per frame, closed loop, " + g.String(),
				xLabel: "connections", yLabel: "context switches per frame",
				xTicks: count, yTicks: count, logX: true, xAt: x, logOver: closedLogOver,
				series: d.closedSeries(g, ctxswPerFrame),
			})
	}
	if n := d.idleCounts(); len(n) > 0 {
		ss, st := d.idleSeries()
		cs = append(cs, chart{
			file: idleFile, title: "Memory per idle connection",
			xLabel: "idle connections", yLabel: "server RSS per connection (" + strings.TrimSpace(st.suffix) + ")",
			xTicks: count, yTicks: plain, logX: true, xAt: floats(n), logOver: 5,
			series: ss,
		})
	}
	for _, g := range d.openGroups() {
		for _, p := range []struct {
			name string
			f    func(results.Cell) float64
		}{{"p50", p50}, {"p99", p99}} {
			cs = append(cs, chart{
				file: latencyFile(g, p.name), title: p.name + " latency, open loop, " + g.String(),
				xLabel: "offered load (frames per second)", yLabel: p.name + " latency, from intended send time",
				xTicks: count, yTicks: micros, logY: true,
				series: d.openSeries(g, p.f),
			})
		}
	}
	return cs
}

func floats(ns []int) []float64 {
	xs := make([]float64, len(ns))
	for i, n := range ns {
		xs[i] = float64(n)
	}
	return xs
}

// closedSeries is f against connections in g, a series per server that
// has figures there.
func (d *data) closedSeries(g group, f func(results.Cell) float64) []series {
	var ss []series
	for _, s := range d.servers {
		var pts []point
		ran := false
		for _, n := range d.conns(g) {
			cs := d.closed[s.Name][closedKey{g, n}]
			ran = ran || len(cs) > 0
			if y := cellSpread(cs, f); y.N > 0 {
				pts = append(pts, point{float64(n), y})
			}
		}
		if ran {
			ss = append(ss, series{s, pts})
		}
	}
	return ss
}

// idleSeries is bytes per idle connection against connections, scaled to
// the unit step its largest value reaches.
func (d *data) idleSeries() ([]series, step) {
	var ss []series
	var top float64
	for _, s := range d.servers {
		var pts []point
		for _, n := range d.idleCounts() {
			if y := spread(idleByRep(d.idle[s.Name][n], bytesPerConn)); y.N > 0 {
				pts = append(pts, point{float64(n), y})
				top = math.Max(top, math.Abs(y.Max))
			}
		}
		if len(d.idle[s.Name]) > 0 {
			ss = append(ss, series{s, pts})
		}
	}
	st := bytesU.pick(top)
	for _, s := range ss {
		for i := range s.pts {
			y := &s.pts[i].Y
			y.Median, y.Min, y.Max = y.Median/st.div, y.Min/st.div, y.Max/st.div
		}
	}
	return ss, st
}

// openSeries is f against the offered rate (its median over the
// repetitions) in g.
func (d *data) openSeries(g openGroup, f func(results.Cell) float64) []series {
	var ss []series
	for _, s := range d.servers {
		var pts []point
		ran := false
		for _, fr := range d.fractions(g) {
			cs := d.open[s.Name][openKey{g, fr}]
			ran = ran || len(cs) > 0
			x, y := cellSpread(cs, offered), cellSpread(cs, f)
			if y.N > 0 && x.N > 0 {
				pts = append(pts, point{x.Median, y})
			}
		}
		if ran {
			slices.SortFunc(pts, func(a, b point) int { return cmp.Compare(a.X, b.X) })
			ss = append(ss, series{s, pts})
		}
	}
	return ss
}

// style is how one server configuration is drawn in every chart: a colour
// family per model (blues for the event loop, oranges for goroutines,
// greys for the reference, green and purple for the textbook pair) so that
// widths of one model read as kin, and dashes for the reference floor.
type style struct {
	color  color.Color
	dashes []vg.Length
	shape  draw.GlyphDrawer
}

var (
	eventloopColors = []color.Color{rgb(0x00, 0x72, 0xb2), rgb(0x56, 0xb4, 0xe9), rgb(0x00, 0x3f, 0x63)}
	goroutineColors = []color.Color{rgb(0xd5, 0x5e, 0x00), rgb(0xe6, 0x9f, 0x00), rgb(0x8c, 0x3b, 0x00)}
	referenceColors = []color.Color{rgb(0x33, 0x33, 0x33), rgb(0x88, 0x88, 0x88)}
	textbookColors  = []color.Color{rgb(0x00, 0x9e, 0x73), rgb(0x9b, 0x4d, 0xca)}
	otherColors     = []color.Color{rgb(0xcc, 0x79, 0xa7), rgb(0x6a, 0x3d, 0x9a), rgb(0x99, 0x99, 0x33)}
	shapes          = []draw.GlyphDrawer{draw.CircleGlyph{}, draw.SquareGlyph{}, draw.TriangleGlyph{}, draw.PyramidGlyph{}, draw.RingGlyph{}, draw.BoxGlyph{}}
)

func rgb(r, g, b uint8) color.Color { return color.RGBA{r, g, b, 0xff} }

func styles(servers []results.Server) map[string]style {
	m := map[string]style{}
	seen := map[string]int{}
	for _, s := range servers {
		family, colors := s.Model, otherColors
		switch {
		case s.Reference:
			family, colors = "reference", referenceColors
		case textbook.IsModel(s.Model):
			family, colors = "textbook", textbookColors
		case s.Model == "eventloop":
			colors = eventloopColors
		case s.Model == "goroutine":
			colors = goroutineColors
		}
		i := seen[family]
		seen[family]++
		st := style{color: colors[i%len(colors)], shape: shapes[i%len(shapes)]}
		if s.Reference {
			st.dashes = []vg.Length{vg.Points(6), vg.Points(3)}
		}
		m[s.Name] = st
	}
	return m
}

func legendName(s results.Server) string {
	if s.Reference {
		return s.Name + " (reference)"
	}
	return s.Name
}

// sans is the face of every text in the charts.
func sans(size vg.Length) font.Font {
	return font.From(font.Font{Typeface: "Liberation", Variant: "Sans"}, size)
}

// draw draws c and writes it as SVG to dir/c.file.
func (c chart) draw(dir string, look map[string]style) error {
	cv := vgsvg.New(chartW, chartH)
	if err := c.paint(draw.New(cv), look); err != nil {
		return err
	}
	var buf bytes.Buffer
	if _, err := cv.WriteTo(&buf); err != nil {
		return fmt.Errorf("report: %s: %w", c.file, err)
	}
	path := filepath.Join(dir, filepath.FromSlash(c.file))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// paint draws c on dc: the plot above, the legend under it so that it
// never hides a line and has the chart's whole width for its labels.
func (c chart) paint(dc draw.Canvas, look map[string]style) (err error) {
	// gonum/plot panics on data it cannot place (a log axis below zero):
	// a chart must not cost the report of an hour-long run.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("report: %s: %v", c.file, r)
		}
	}()
	c.logY = c.yLog()
	p := plot.New()
	p.Title.Text = c.title
	p.Title.TextStyle.Font = sans(13)
	p.Title.Padding = vg.Points(8)
	for _, a := range []*plot.Axis{&p.X, &p.Y} {
		a.Label.TextStyle.Font = sans(11)
		a.Tick.Label.Font = sans(10)
	}
	// The y label is drawn here rather than by gonum/plot, which places
	// its glyph box, on a log axis, at the arithmetic mean of the axis's
	// ends and shrinks the plot to fit that.
	p.X.Label.Text = c.xLabel

	var legend legend

	// Log axes take only positive values: leave out the points (and the
	// bars) that would have to be drawn at or below zero.
	var xs, ys []float64
	var ps []plot.Plotter
	for _, s := range c.series {
		var xy plotter.XYs
		var bars plotter.YErrors
		for _, pt := range s.pts {
			if (c.logX && pt.X <= 0) || (c.logY && pt.Y.Median <= 0) || !finite(pt.X, pt.Y.Median, pt.Y.Min, pt.Y.Max) {
				continue
			}
			xy = append(xy, plotter.XY{X: pt.X, Y: pt.Y.Median})
			lo, hi := pt.Y.Median-pt.Y.Min, pt.Y.Max-pt.Y.Median
			if c.logY && pt.Y.Min <= 0 {
				lo = 0
			}
			bars = append(bars, struct{ Low, High float64 }{lo, hi})
			xs = append(xs, pt.X)
			ys = append(ys, pt.Y.Median, pt.Y.Median-lo, pt.Y.Max)
		}
		if len(xy) == 0 {
			legend.add(legendName(s.server) + ": no figures")
			continue
		}
		st := look[s.server.Name]
		line, dots, err := plotter.NewLinePoints(xy)
		if err != nil {
			return fmt.Errorf("report: %s: %w", c.file, err)
		}
		line.LineStyle = draw.LineStyle{Color: st.color, Width: vg.Points(1.6), Dashes: st.dashes}
		dots.GlyphStyle = draw.GlyphStyle{Color: st.color, Radius: vg.Points(3), Shape: st.shape}
		ps = append(ps, line, dots)
		if slices.ContainsFunc(bars, func(b struct{ Low, High float64 }) bool { return b.Low > 0 || b.High > 0 }) {
			ps = append(ps, &plotter.YErrorBars{
				XYs: xy, YErrors: bars,
				LineStyle: draw.LineStyle{Color: st.color, Width: vg.Points(1)},
				CapWidth:  vg.Points(5),
			})
		}
		legend.add(legendName(s.server), line, dots)
	}

	if len(xs) == 0 {
		// Every cell failed: an empty frame that says so, not a missing file.
		p.Title.Text += " (no figures)"
		p.X.Min, p.X.Max, p.Y.Min, p.Y.Max = 0, 1, 0, 1
		p.X.Tick.Marker, p.Y.Tick.Marker = plot.ConstantTicks{}, plot.ConstantTicks{}
	} else {
		grid := plotter.NewGrid() // first, so that it is drawn under the lines
		grid.Vertical.Color = rgb(0xe4, 0xe4, 0xe4)
		grid.Horizontal.Color = rgb(0xe4, 0xe4, 0xe4)
		p.Add(grid)
		p.Add(ps...)
		axis(&p.X, xs, c.logX, false, c.xTicks, c.xAt)
		axis(&p.Y, ys, c.logY, true, c.yTicks, nil)
	}

	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	under := draw.Crop(dc, legendMargin, -legendMargin, legendMargin, 0)
	h := legend.height(under.Size().X)
	legend.draw(under)
	yLabel := draw.TextStyle{Color: color.Black, Font: sans(11), Handler: plot.DefaultTextHandler,
		Rotation: math.Pi / 2, XAlign: draw.XCenter, YAlign: draw.YTop}
	lw := yLabel.Height(c.yLabel) + vg.Points(6)
	area := draw.Crop(dc, lw, -2*legendMargin, h+legendMargin, 0)
	p.Draw(area)
	data := p.DataCanvas(area)
	dc.FillText(yLabel, vg.Point{X: dc.Min.X + vg.Points(2), Y: (data.Min.Y + data.Max.Y) / 2}, c.yLabel)
	return nil
}

// fontSlack is how much wider than Liberation Sans, the face the layout
// measures with, the text of a chart may come out where it is shown: an
// SVG names its font, and a viewer without that one uses its own sans.
// DejaVu Sans, the usual Linux fallback, sets these labels 1.11–1.17× as
// wide; Verdana, the widest common sans, about as wide as DejaVu.
const fontSlack = 1.3

// Legend geometry: a row of entries under the plot, each a thumbnail of
// its line then its label.
const (
	legendMargin = vg.Length(8)  // from the chart's edges
	thumbWidth   = vg.Length(20) // a line with a glyph on it
	thumbGap     = vg.Length(4)  // between a thumbnail and its label
	entryGap     = vg.Length(14) // between entries
	legendRow    = vg.Length(14) // height of a row of entries
)

// legend is the chart's key, laid out under the plot in columns, as many
// as fit the width when every label is given fontSlack times its measured
// width, so that no viewer's font pushes a label off the chart or into
// its neighbour.
type legend struct {
	entries []legendEntry
}

type legendEntry struct {
	label  string
	thumbs []plot.Thumbnailer
}

func (l *legend) add(label string, thumbs ...plot.Thumbnailer) {
	l.entries = append(l.entries, legendEntry{label, thumbs})
}

var legendText = draw.TextStyle{Color: color.Black, Font: sans(10), Handler: plot.DefaultTextHandler, YAlign: draw.YCenter}

// room is the width an entry may take, gap to the next included.
func (e legendEntry) room() vg.Length {
	return thumbWidth + thumbGap + fontSlack*legendText.Width(e.label) + entryGap
}

// columns returns the widths of the most columns whose entries, placed
// row by row, fit in width (one column if none does).
func (l *legend) columns(width vg.Length) []vg.Length {
	for n := len(l.entries); n > 1; n-- {
		cols := make([]vg.Length, n)
		var sum vg.Length
		for i, e := range l.entries {
			cols[i%n] = max(cols[i%n], e.room())
		}
		for _, c := range cols {
			sum += c
		}
		if sum-entryGap <= width {
			return cols
		}
	}
	return []vg.Length{width}
}

// height is the height of the legend in a canvas width wide.
func (l *legend) height(width vg.Length) vg.Length {
	if len(l.entries) == 0 {
		return 0
	}
	n := len(l.columns(width))
	return vg.Length((len(l.entries)+n-1)/n) * legendRow
}

// draw draws the legend at the bottom of c, centred.
func (l *legend) draw(c draw.Canvas) {
	if len(l.entries) == 0 {
		return
	}
	cols := l.columns(c.Size().X)
	var total vg.Length
	for _, w := range cols {
		total += w
	}
	left := c.Min.X + max(c.Size().X-total+entryGap, 0)/2
	rows := (len(l.entries) + len(cols) - 1) / len(cols)
	for i, e := range l.entries {
		row, col := i/len(cols), i%len(cols)
		x := left
		for _, w := range cols[:col] {
			x += w
		}
		y := c.Min.Y + vg.Length(rows-1-row)*legendRow // bottom of the row
		thumb := &draw.Canvas{Canvas: c.Canvas, Rectangle: vg.Rectangle{
			Min: vg.Point{X: x, Y: y + 2}, Max: vg.Point{X: x + thumbWidth, Y: y + legendRow - 2},
		}}
		for _, t := range e.thumbs {
			t.Thumbnail(thumb)
		}
		c.FillText(legendText, vg.Point{X: x + thumbWidth + thumbGap, Y: y + legendRow/2}, e.label)
	}
}

func finite(vs ...float64) bool {
	for _, v := range vs {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return false
		}
	}
	return true
}

// closedLogOver is the spread, largest ÷ smallest median, past which a
// closed-loop chart goes logarithmic: the Go servers stay within a few
// times of each other on a linear axis, and a server that collapses (the
// thread per client with thousands of busy threads moved tens of frames
// a second where the others moved tens of thousands) does not press them
// flat.
const closedLogOver = 20

// yLog reports whether c's y axis is logarithmic.
func (c chart) yLog() bool {
	return c.logY || c.logOver > 0 && c.span() > c.logOver
}

// span is the largest median ÷ the smallest, 0 when any is not positive.
func (c chart) span() float64 {
	lo, hi := math.Inf(1), 0.0
	for _, s := range c.series {
		for _, pt := range s.pts {
			if pt.Y.Min <= 0 {
				return 0
			}
			lo, hi = math.Min(lo, pt.Y.Median), math.Max(hi, pt.Y.Median)
		}
	}
	if hi == 0 {
		return 0
	}
	return hi / lo
}

// axis sets a's range around vs and its ticks. A linear axis of positive
// values starts at zero when fromZero is set, so that heights compare
// honestly.
func axis(a *plot.Axis, vs []float64, log, fromZero bool, u unit, at []float64) {
	lo, hi := slices.Min(vs), slices.Max(vs)
	switch {
	case log:
		// Room for the bars' caps, or for the glyphs at the ends of a
		// connections axis.
		f := 1.25
		if at != nil {
			f = 1.5
		}
		a.Scale = plot.LogScale{}
		a.Min, a.Max = lo/f, hi*f
	case at != nil || lo < 0 || !fromZero:
		margin := (hi - lo) * 0.08
		if margin == 0 {
			margin = math.Max(math.Abs(hi)*0.1, 1)
		}
		a.Min, a.Max = lo-margin, hi+margin
	default:
		a.Min, a.Max = 0, hi*1.08
		if hi == 0 {
			a.Max = 1
		}
	}
	switch {
	case at != nil:
		ts := make(plot.ConstantTicks, len(at))
		for i, v := range at {
			ts[i] = plot.Tick{Value: v, Label: tickLabel(u, v)}
		}
		a.Tick.Marker = ts
	case log:
		a.Tick.Marker = plot.TickerFunc(func(min, max float64) []plot.Tick { return logTicks(min, max, u) })
	default:
		a.Tick.Marker = plot.TickerFunc(func(min, max float64) []plot.Tick {
			ts := plot.DefaultTicks{}.Ticks(min, max)
			for i := range ts {
				if ts[i].Label != "" {
					ts[i].Label = tickLabel(u, ts[i].Value)
				}
			}
			return ts
		})
	}
}

// logTicks labels 1, 2 and 5 of each decade in [min, max] (only the
// powers of ten past three decades, every integer multiple if that leaves
// fewer than two labels) and marks the others.
func logTicks(min, max float64, u unit) []plot.Tick {
	var ts []plot.Tick
	wide := math.Log10(max/min) > 3
	labels := func(all bool) {
		ts = ts[:0]
		for e := math.Floor(math.Log10(min)); e <= math.Ceil(math.Log10(max)); e++ {
			for m := 1.0; m < 10; m++ {
				v := m * math.Pow(10, e)
				if v < min || v > max {
					continue
				}
				t := plot.Tick{Value: v}
				if all || m == 1 || !wide && (m == 2 || m == 5) {
					t.Label = tickLabel(u, v)
				}
				ts = append(ts, t)
			}
		}
	}
	labels(false)
	if n := len(slices.DeleteFunc(slices.Clone(ts), plot.Tick.IsMinor)); n < 2 {
		labels(true)
	}
	return ts
}
