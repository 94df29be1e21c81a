package load

import (
	"slices"
	"strings"
	"testing"
	"time"

	"echoloop/eventloop/frame"
)

// TestPercentilesNeverAboveMax records latencies whose largest value lies
// below the top of its histogram bucket: the histogram's p99 is that top,
// above the exact maximum. The summary must not report it.
func TestPercentilesNeverAboveMax(t *testing.T) {
	tests := []struct {
		name     string
		ns       []int64
		aboveMax bool // the histogram's own p99 is above the exact max
	}{
		// The CI failure: p99 5,521,407 ns against a max of 5,519,682 ns.
		{"one value", []int64{5_519_682}, true},
		{"tail in the max's bucket", append(repeat(100_000, 98), 5_519_500, 5_519_682), true},
		{"all in one bucket", []int64{5_519_400, 5_519_500, 5_519_600, 5_519_682}, true},
		// Bucket [5,517,312, 5,521,407]: its midpoint, the histogram's mean, is above the max too.
		{"mean above max", []int64{5_518_000}, true},
		{"small values", []int64{1, 2, 3, 1001, 1002}, false},
		{"above the histogram's range", []int64{1000, 2 * histMax}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &stats{hist: newHist()}
			for _, v := range tt.ns {
				st.record(v)
			}
			maxNS := st.maxLat
			if p99 := st.hist.ValueAtQuantile(99); (p99 > maxNS) != tt.aboveMax {
				t.Fatalf("histogram p99 %d, max %d: fixture does not reproduce its case", p99, maxNS)
			}
			var s Summary
			s.fill(&config{Options: Options{Codec: frame.Length{}}}, []*stats{st}, 1, 0, 1e9, rusage{}, rusage{})
			l := s.Latency
			if l.Count != uint64(len(tt.ns)) || l.MaxUS != us(maxNS) {
				t.Fatalf("count %d max %vµs, want %d and %vµs", l.Count, l.MaxUS, len(tt.ns), us(maxNS))
			}
			order := []float64{l.MinUS, l.P50US, l.P90US, l.P99US, l.P999US, l.MaxUS}
			if !slices.IsSorted(order) {
				t.Errorf("min, p50, p90, p99, p99.9, max = %v: not in order", order)
			}
			if l.MeanUS > l.MaxUS || l.MeanUS < l.MinUS {
				t.Errorf("mean %vµs outside [%v, %v]", l.MeanUS, l.MinUS, l.MaxUS)
			}
			if tt.name == "one value" && (l.P99US != l.MaxUS || l.P50US != l.MaxUS) {
				t.Errorf("one value: p50 %v p99 %v, want both %v", l.P50US, l.P99US, l.MaxUS)
			}
		})
	}
}

// TestPercentilesBelowMaxUnchanged checks that clamping leaves alone
// percentiles whose bucket lies below the maximum.
func TestPercentilesBelowMaxUnchanged(t *testing.T) {
	st := &stats{hist: newHist()}
	for _, v := range append(repeat(100_000, 999), 5_519_682) {
		st.record(v)
	}
	l := latencyOf(st.hist, st.maxLat)
	if want := us(st.hist.ValueAtQuantile(99)); l.P99US != want || l.P99US >= 101 {
		t.Errorf("p99 %vµs, want the histogram's %vµs (about 100µs)", l.P99US, want)
	}
	if l.MaxUS != 5519.682 {
		t.Errorf("max %vµs, want 5519.682µs", l.MaxUS)
	}
	if (latencyOf(newHist(), 0) != Latency{}) {
		t.Error("an empty histogram gives a non-zero latency")
	}
}

func TestFmtSeconds(t *testing.T) {
	tests := []struct {
		secs float64
		want string
	}{
		{0, "0s"},
		{3.72e-05, "37.2µs"},
		{3.7249e-05, "37.2µs"},
		{1e-9, "1ns"},
		{0.000999, "999µs"},
		{0.15, "150ms"},
		{0.1504, "150ms"},
		{1, "1s"},
		{10.0012, "10s"},
		{123.4, "2m3s"},
		{(2 * time.Hour).Seconds(), "2h0m0s"},
	}
	for _, tt := range tests {
		if got := fmtSeconds(tt.secs); got != tt.want {
			t.Errorf("fmtSeconds(%v) = %q, want %q", tt.secs, got, tt.want)
		}
	}
}

// TestWriteTextDurations checks the load line of a run in which nothing
// connected: no exponent notation.
func TestWriteTextDurations(t *testing.T) {
	s := Summary{Mode: "load", ElapsedS: 3.72e-05, WarmupS: 0}
	var b strings.Builder
	if err := s.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if want := "closed loop, 37.2µs measured after 0s warm-up"; !strings.Contains(b.String(), want) {
		t.Errorf("text summary lacks %q:\n%s", want, b.String())
	}
	if strings.Contains(b.String(), "e-0") {
		t.Errorf("text summary has exponent notation:\n%s", b.String())
	}
}

func repeat(v int64, n int) []int64 {
	s := make([]int64, n)
	for i := range s {
		s[i] = v
	}
	return s
}
