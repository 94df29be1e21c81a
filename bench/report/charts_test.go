package report

import (
	"bytes"
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/vg"

	"echoloop/bench/results"
)

// wideSans is how much wider than Liberation Sans, which the charts are
// laid out with, a viewer's fallback sans may set their text: DejaVu Sans
// measures 1.11–1.17× on these labels. It is the test's own figure, not
// the layout's.
const wideSans = 1.3

// svgText is one text element of a chart.
type svgText struct {
	x, y, size float64
	rotated    bool // drawn up the chart (a y-axis label)
	text       string
}

// readSVGText returns the chart's size and its texts.
func readSVGText(t *testing.T, path string) (w, h float64, texts []svgText) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(bytes.NewReader(b))
	var rotated []bool // per open <g>
	size := regexp.MustCompile(`font-size:([0-9.]+)px`)
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			attr := func(name string) string {
				for _, a := range el.Attr {
					if a.Name.Local == name {
						return a.Value
					}
				}
				return ""
			}
			switch el.Name.Local {
			case "svg":
				f := strings.Fields(attr("viewBox"))
				if len(f) != 4 {
					t.Fatalf("%s: viewBox %q", path, attr("viewBox"))
				}
				w, _ = strconv.ParseFloat(f[2], 64)
				h, _ = strconv.ParseFloat(f[3], 64)
			case "g":
				rotated = append(rotated, strings.Contains(attr("transform"), "rotate"))
			case "text":
				var txt struct {
					Text string `xml:",chardata"`
				}
				if err := dec.DecodeElement(&txt, &el); err != nil {
					t.Fatal(err)
				}
				x, _ := strconv.ParseFloat(attr("x"), 64)
				y, _ := strconv.ParseFloat(attr("y"), 64)
				m := size.FindStringSubmatch(attr("style"))
				if m == nil {
					t.Fatalf("%s: text %q has no font size", path, txt.Text)
				}
				s, _ := strconv.ParseFloat(m[1], 64)
				texts = append(texts, svgText{x, y, s, slices.Contains(rotated, true), txt.Text})
			}
		case xml.EndElement:
			if el.Name.Local == "g" {
				rotated = rotated[:len(rotated)-1]
			}
		}
	}
	return w, h, texts
}

// wide is how long text may come out in a wide fallback sans.
func wide(text string, size float64) float64 {
	face := font.DefaultCache.Lookup(font.Font{Typeface: "Liberation", Variant: "Sans"}, vg.Length(size))
	return wideSans * face.Width(text).Points()
}

// TestChartTextFits checks every text of every chart against the width it
// would take in a wide fallback sans: none may run off the chart, and no
// legend label into the next entry. A legend laid out with Liberation
// Sans's own widths lost the end of "gnet-plain-1 (reference)" in DejaVu
// Sans.
func TestChartTextFits(t *testing.T) {
	run := withTextbook(synthetic())
	// The longest name a profile has, and a server with no figures.
	run.Servers = append(run.Servers, results.Server{Name: "eventloop-1-gomaxprocs1", Model: "eventloop", Loops: 1, GOMAXPROCS: 1})
	for _, c := range slices.Clone(run.Cells) {
		if c.Server == "eventloop-1" {
			c.Server = "eventloop-1-gomaxprocs1"
			run.Cells = append(run.Cells, c)
		}
	}
	dir := t.TempDir()
	if err := Write(dir, run, ""); err != nil {
		t.Fatal(err)
	}
	labels := map[string]bool{}
	for _, s := range index(run).servers {
		labels[legendName(s)] = true
		labels[legendName(s)+": no figures"] = true
	}
	files, _ := filepath.Glob(filepath.Join(dir, "charts", "*.svg"))
	if len(files) == 0 {
		t.Fatal("no charts")
	}
	for _, f := range files {
		w, h, texts := readSVGText(t, f)
		name := filepath.Base(f)
		var legend []svgText
		for _, tx := range texts {
			room := w // a rotated text runs up the chart's height
			if tx.rotated {
				room = h
			}
			if end := tx.x + wide(tx.text, tx.size); tx.x < 0 || end > room {
				t.Errorf("%s: %q spans %.0f to %.0f in a wide sans, off a chart %.0f wide", name, tx.text, tx.x, end, room)
			}
			if labels[tx.text] && !tx.rotated {
				legend = append(legend, tx)
			}
		}
		if len(legend) == 0 {
			t.Errorf("%s: no legend", name)
		}
		// Labels on one row, left to right: each ends before the next
		// entry's thumbnail (20 points) begins.
		slices.SortFunc(legend, func(a, b svgText) int {
			if a.y != b.y {
				return int(a.y - b.y)
			}
			return int(a.x - b.x)
		})
		for i := 1; i < len(legend); i++ {
			a, b := legend[i-1], legend[i]
			if a.y == b.y && a.x+wide(a.text, a.size) > b.x-20 {
				t.Errorf("%s: legend label %q runs into %q in a wide sans", name, a.text, b.text)
			}
		}
	}
}

// TestChartLogY checks when a chart's y axis goes logarithmic: the
// closed-loop charts when a server collapses, as the thread per client
// does with thousands of busy threads, and not for the spread of the Go
// servers alone.
func TestChartLogY(t *testing.T) {
	logY := func(run *results.Run) map[string]bool {
		m := map[string]bool{}
		for _, c := range index(run).charts() {
			m[c.file] = c.yLog()
		}
		return m
	}
	if got := logY(synthetic()); got[throughputFile(group{64, 1})] || got[cpuFile(group{64, 1})] {
		t.Errorf("Go servers alone: log axes %v", got)
	}
	run := withTextbook(synthetic())
	for i := range run.Cells {
		if c := &run.Cells[i]; c.Server == "python-threads" && c.Conns == 100 && c.Size == 64 {
			c.FramesPerS, c.CPUPerFrameUS = 60, 16000
		}
	}
	if got := logY(run); !got[throughputFile(group{64, 1})] || !got[cpuFile(group{64, 1})] || got[throughputFile(group{4096, 16})] {
		t.Errorf("a collapsed server at 64 B: log axes %v", got)
	}
}
