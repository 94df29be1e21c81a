package report

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"echoloop/bench/results"
)

// A unit formats numbers for people: it picks the largest step of its
// ladder that the value reaches (71234 frames/s is "71.2k") and rounds to
// about three significant digits.
type unit struct {
	steps []step // ascending by min; the first has min 0
	// decimals, if set, overrides the default rounding of a scaled value.
	decimals func(scaled float64) int
}

// A step of a unit's ladder: values of at least min are divided by div and
// followed by suffix (which carries its own leading space, if any).
type step struct {
	min, div float64
	suffix   string
}

var (
	count   = unit{steps: []step{{0, 1, ""}, {1e3, 1e3, "k"}, {1e6, 1e6, "M"}, {1e9, 1e9, "G"}}}
	micros  = unit{steps: []step{{0, 1, " µs"}, {1e3, 1e3, " ms"}, {1e6, 1e6, " s"}}}
	bytesU  = unit{steps: []step{{0, 1, " B"}, {1 << 10, 1 << 10, " KiB"}, {1 << 20, 1 << 20, " MiB"}, {1 << 30, 1 << 30, " GiB"}}}
	mbPerS  = unit{steps: []step{{0, 1, " MB/s"}, {1e3, 1e3, " GB/s"}}}
	plain   = unit{steps: []step{{0, 1, ""}}}
	times   = unit{steps: []step{{0, 1, "×"}}, decimals: ratioDecimals}
	perSecs = unit{steps: []step{{0, 1, "/s"}, {1e3, 1e3, "k/s"}, {1e6, 1e6, "M/s"}}}
)

// ratioDecimals shows ratios near 1 to the hundredth, since the targets
// (1.10×, 1.15×) sit there.
func ratioDecimals(v float64) int {
	if math.Abs(v) >= 2 {
		return 1
	}
	return 2
}

// decimals keeps about three significant digits above 1 (71.2, 3.40 is
// shown 3.4) and two below (0.17, 0.0031).
func decimals(v float64) int {
	a := math.Abs(v)
	switch {
	case a == 0 || a >= 100:
		return 0
	case a >= 1:
		return 1
	default:
		return int(-math.Floor(math.Log10(a))) + 1
	}
}

func (u unit) pick(v float64) step {
	s := u.steps[0]
	for _, t := range u.steps[1:] {
		if math.Abs(v) >= t.min {
			s = t
		}
	}
	return s
}

func (u unit) digits(scaled float64) int {
	if u.decimals != nil {
		return u.decimals(scaled)
	}
	return decimals(scaled)
}

// format formats v alone: "71.2k", "3.4 µs", "1.2 KiB".
func (u unit) format(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return none
	}
	s := u.pick(v)
	return strconv.FormatFloat(v/s.div, 'f', u.digits(v/s.div), 64) + s.suffix
}

// spread formats a median with its range in the median's scale:
// "71.2k (69.8–73.0)". The range is left out when there is one value or
// when it rounds to the median.
func (u unit) spread(s results.Spread) string {
	if s.N == 0 {
		return none
	}
	st := u.pick(s.Median)
	d := u.digits(s.Median / st.div)
	f := func(v float64) string { return strconv.FormatFloat(v/st.div, 'f', d, 64) }
	med, lo, hi := f(s.Median), f(s.Min), f(s.Max)
	if s.N == 1 || (lo == med && hi == med) {
		return med + st.suffix
	}
	return fmt.Sprintf("%s%s (%s–%s)", med, st.suffix, lo, hi)
}

// none stands for a figure that was not measured.
const none = "—"

// thousands writes n with thousands separators: 19000 is "19,000".
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// connections counts connections in words: "1 connection", "19,000
// connections".
func connections(n int) string {
	if n == 1 {
		return "1 connection"
	}
	return thousands(int64(n)) + " connections"
}

// plural counts things in words: "1 error", "3 errors", "2 mismatches".
func plural(n uint64, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	if strings.HasSuffix(thing, "ch") || strings.HasSuffix(thing, "s") {
		return thousands(int64(n)) + " " + thing + "es"
	}
	return thousands(int64(n)) + " " + thing + "s"
}

// num writes a median of whole counts (threads, goroutines) as a whole
// number when it is one: "6", "1,005", "6.5".
func num(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return thousands(int64(v))
	}
	return plain.format(v)
}

// threadCount writes a median thread count: "1 thread", "6,001 threads".
func threadCount(v float64) string {
	if v == 1 {
		return "1 thread"
	}
	return num(v) + " threads"
}

// payload names a payload size the way the tables head it: "64 B", "4 KiB".
func payload(size int) string {
	if size >= 1024 && size%1024 == 0 {
		return strconv.Itoa(size/1024) + " KiB"
	}
	return strconv.Itoa(size) + " B"
}

// tickLabel is a short axis label: 20000 is "20k", 2500 is "2.5k", 0.5 is
// "0.5".
func tickLabel(u unit, v float64) string {
	s := u.pick(v)
	t := strconv.FormatFloat(v/s.div, 'f', -1, 64)
	if len(t) > 4 { // 18,944 is 18.9k; binary scales leave long fractions
		t = strconv.FormatFloat(v/s.div, 'g', 3, 64)
	}
	return t + s.suffix
}
