package load

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// SchemaVersion is Summary.Schema. It changes only when a field is removed
// or changes meaning; new fields may appear without a change.
const SchemaVersion = 1

// Summary is the result of a run, and the -json output of echoload.
//
// Units are in the field names: _us is microseconds, _s seconds, _per_s per
// second; MB is 10^6 bytes. Every figure except the connection counts and
// the error and mismatch tallies covers the measured window only: from the
// end of the warm-up to the last reply of a frame sent within the window
// (for an idle run: the last round trip after the hold). Warm-up frames are
// verified but not counted.
type Summary struct {
	Schema   int    `json:"schema"`   // SchemaVersion
	Mode     string `json:"mode"`     // "load" or "idle"
	Client   string `json:"client"`   // "epoll" or "goroutine"
	Loops    int    `json:"loops"`    // epoll loops (1 for the goroutine client)
	Addr     string `json:"addr"`     // server address
	Framing  string `json:"framing"`  // as frame.Parse reads it
	Size     int    `json:"size"`     // payload bytes per frame
	Wire     int    `json:"wire"`     // bytes per frame on the wire, framing included
	Pipeline int    `json:"pipeline"` // frames in flight per connection, at most

	ConnsAsked       int    `json:"conns_asked"`       // connections asked for
	ConnsEstablished int    `json:"conns_established"` // TCP connections that opened
	ConnsHeld        int    `json:"conns_held"`        // open and error-free at the end (idle: passed the last round trip)
	Sources          int    `json:"sources"`           // source addresses used; 0 means the kernel chose
	FirstSource      string `json:"first_source"`      // the first of them ("" when Sources is 0)

	OpenLoop    bool    `json:"open_loop"`    // a rate schedule, latency from intended send times
	RateOffered float64 `json:"rate_offered"` // open loop: frames/s scheduled in the window; 0 closed loop

	ConnectS float64 `json:"connect_s"` // opening the connections and their first round trip, seconds
	WarmupS  float64 `json:"warmup_s"`  // warm-up before the window, seconds
	HoldS    float64 `json:"hold_s"`    // idle: the hold between the two round trips, seconds (gates not included)
	ElapsedS float64 `json:"elapsed_s"` // measured window, seconds

	FramesSent     uint64  `json:"frames_sent"`     // frames sent in the window
	FramesVerified uint64  `json:"frames_verified"` // of those, replies received and verified byte-exact
	BytesSent      uint64  `json:"bytes_sent"`      // wire bytes of FramesSent
	BytesReceived  uint64  `json:"bytes_received"`  // wire bytes of FramesVerified
	FramesPerS     float64 `json:"frames_per_s"`    // FramesVerified / ElapsedS: round trips per second
	MBPerS         float64 `json:"mb_per_s"`        // payload bytes verified per second / 10^6 (one direction)

	Latency Latency `json:"latency"` // round-trip time of the verified frames

	Mismatches      uint64       `json:"mismatches"`       // replies that were not what their connection sent
	MismatchSamples []Mismatch   `json:"mismatch_samples"` // the first few, described
	Errors          []ErrorCount `json:"errors"`           // failed connections by kind; only kinds that occurred
	ErrorsTotal     uint64       `json:"errors_total"`     // sum of Errors counts

	// Connections the server closed in order before the run ended: EOF
	// after whole, verified replies, once answered (as a server draining on
	// SIGTERM closes them). Not errors; their frames still in flight were
	// sent after the server stopped reading, and are not counted as lost.
	ConnsDrained     int    `json:"conns_drained"`
	FramesUnanswered uint64 `json:"frames_unanswered"` // measured frames in flight on them when they closed

	CPU CPU `json:"cpu"` // the generator's own CPU use over the window

	FDLimit uint64 `json:"fd_limit"` // the process's soft RLIMIT_NOFILE during the run
	OK      bool   `json:"ok"`       // no mismatch, no error, every connection asked for established and held
	Drained bool   `json:"drained"`  // not OK only because the server closed connections in order (ConnsDrained)
}

// Latency is a distribution in microseconds, from an HDR histogram (three
// significant digits; Max is exact, and no other figure is above it: a
// percentile whose bucket holds the maximum is reported as Max). Closed
// loop: from the frame's send to its reply. Open loop: from the frame's
// intended send time to its reply.
type Latency struct {
	Count  uint64  `json:"count"` // latencies recorded: FramesVerified
	MinUS  float64 `json:"min_us"`
	MeanUS float64 `json:"mean_us"`
	P50US  float64 `json:"p50_us"`
	P90US  float64 `json:"p90_us"`
	P99US  float64 `json:"p99_us"`
	P999US float64 `json:"p999_us"`
	MaxUS  float64 `json:"max_us"`
}

// ErrorCount is how many connections failed with one kind of error.
type ErrorCount struct {
	Kind    Kind   `json:"kind"`
	Count   uint64 `json:"count"`
	Example string `json:"example"` // the first such error's text
	Hint    string `json:"hint"`    // what to do about it; may be empty
}

// CPU is the generator process's CPU time over the measured window, from
// getrusage(RUSAGE_SELF), all threads. Utilization is (user+system)/elapsed:
// 1.0 is one core fully busy; near Cores means the generator, not the server,
// was the bottleneck.
type CPU struct {
	UserS       float64 `json:"user_s"`
	SystemS     float64 `json:"system_s"`
	Utilization float64 `json:"utilization"`
	Cores       int     `json:"cores"`      // CPUs the process may run on (its affinity mask)
	GOMAXPROCS  int     `json:"gomaxprocs"` // Go's parallelism
}

func us(ns int64) float64 { return float64(ns) / 1e3 }

// latencyOf summarizes h, whose largest recorded value is exactly maxNS.
// The histogram answers a quantile with the top of its bucket and a mean
// with bucket midpoints, either of which can lie above the exact maximum
// when the largest values share its bucket; such figures are clamped to
// maxNS, so that min <= p50 <= p90 <= p99 <= p99.9 <= max always holds.
func latencyOf(h *hdrhistogram.Histogram, maxNS int64) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	q := func(p float64) float64 { return us(min(h.ValueAtQuantile(p), maxNS)) }
	return Latency{
		Count: uint64(h.TotalCount()), MinUS: us(min(h.Min(), maxNS)), MeanUS: min(h.Mean(), float64(maxNS)) / 1e3,
		P50US: q(50), P90US: q(90), P99US: q(99), P999US: q(99.9), MaxUS: us(maxNS),
	}
}

func (s *Summary) fill(cfg *config, all []*stats, established int, winStart, winEnd int64, cpu0, cpu1 rusage) {
	tot := &stats{hist: newHist()}
	for _, st := range all {
		tot.merge(st)
	}
	*s = Summary{
		Schema: SchemaVersion, Mode: "load", Client: string(cfg.Client), Loops: cfg.Loops,
		Addr: cfg.Addr, Framing: cfg.Codec.String(), Size: cfg.Size, Wire: cfg.wire, Pipeline: cfg.Pipeline,
		ConnsAsked: cfg.Conns, ConnsEstablished: established, ConnsHeld: s.ConnsHeld, Sources: len(cfg.sources),
		OpenLoop: s.OpenLoop, RateOffered: s.RateOffered, ConnectS: s.ConnectS, WarmupS: cfg.Warmup.Seconds(), HoldS: s.HoldS,
		FramesSent: tot.sent, FramesVerified: tot.verified,
		BytesSent: tot.sent * uint64(cfg.wire), BytesReceived: tot.verified * uint64(cfg.wire),
		Mismatches: tot.mismatches, MismatchSamples: tot.samples, Errors: []ErrorCount{},
		ConnsDrained: int(tot.drained), FramesUnanswered: tot.unanswered,
		FDLimit: cfg.fdLimit.Cur,
	}
	if cfg.Idle {
		s.Mode = "idle"
	}
	if len(cfg.sources) > 0 {
		s.FirstSource = cfg.sources[0].String()
	}
	if s.MismatchSamples == nil {
		s.MismatchSamples = []Mismatch{}
	}
	end := winEnd
	if tot.verified > 0 && !cfg.Idle {
		end = tot.lastReply
	}
	elapsed := time.Duration(max(end-winStart, 0))
	s.ElapsedS = elapsed.Seconds()
	if elapsed > 0 {
		s.FramesPerS = float64(tot.verified) / elapsed.Seconds()
		s.MBPerS = float64(tot.verified) * float64(cfg.Size) / elapsed.Seconds() / 1e6
	}
	s.Latency = latencyOf(tot.hist, tot.maxLat)
	for _, k := range Kinds {
		if e := tot.errs[kindIndex[k]]; e.n > 0 {
			s.Errors = append(s.Errors, ErrorCount{Kind: k, Count: e.n, Example: e.example, Hint: k.Hint()})
			s.ErrorsTotal += e.n
		}
	}
	cpuWin := time.Duration(max(winEnd-winStart, 0))
	s.CPU = CPU{UserS: (cpu1.user - cpu0.user).Seconds(), SystemS: (cpu1.sys - cpu0.sys).Seconds(),
		Cores: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0)}
	if cpuWin > 0 {
		s.CPU.Utilization = (s.CPU.UserS + s.CPU.SystemS) / cpuWin.Seconds()
	}
	clean := s.Mismatches == 0 && s.ErrorsTotal == 0 && s.ConnsEstablished == s.ConnsAsked
	s.OK = clean && s.ConnsHeld == s.ConnsAsked
	s.Drained = clean && s.ConnsDrained > 0 && s.ConnsHeld+s.ConnsDrained == s.ConnsAsked
}

// WriteJSON writes s as one line of JSON.
func (s *Summary) WriteJSON(w io.Writer) error {
	return json.NewEncoder(w).Encode(s)
}

// WriteText writes s for a person: figures, then errors with hints, then
// mismatches.
func (s *Summary) WriteText(w io.Writer) error {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, a...)...) }
	row("target", "%s  %s framing, %d-byte payloads, pipeline %d, %s client", s.Addr, s.Framing, s.Size, s.Pipeline, s.Client)
	conns := fmt.Sprintf("%d established of %d asked, %d held", s.ConnsEstablished, s.ConnsAsked, s.ConnsHeld)
	if s.Sources > 0 {
		conns += fmt.Sprintf(", over %d source addresses from %s", s.Sources, s.FirstSource)
	}
	row("connections", "%s", conns)
	if s.Mode == "idle" {
		row("idle", "%d of %d connections held %s and verified after the hold; connecting took %s",
			s.ConnsHeld, s.ConnsEstablished, fmtSeconds(s.HoldS), fmtSeconds(s.ConnectS))
	} else {
		mode := "closed loop"
		if s.OpenLoop {
			mode = fmt.Sprintf("open loop at %.0f frames/s offered", s.RateOffered)
		}
		row("load", "%s, %s measured after %s warm-up", mode, fmtSeconds(s.ElapsedS), fmtSeconds(s.WarmupS))
		row("frames", "%d sent, %d verified", s.FramesSent, s.FramesVerified)
		row("throughput", "%.0f frames/s, %.2f MB/s of payload each way", s.FramesPerS, s.MBPerS)
	}
	if l := s.Latency; l.Count > 0 {
		from := "from send"
		if s.OpenLoop {
			from = "from intended send time"
		}
		row("latency", "p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (%s)", fmtUS(l.P50US), fmtUS(l.P90US),
			fmtUS(l.P99US), fmtUS(l.P999US), fmtUS(l.MaxUS), from)
	}
	row("cpu", "%.0f%% of a core (user %.2fs, system %.2fs; %d CPUs allowed)", s.CPU.Utilization*100, s.CPU.UserS, s.CPU.SystemS, s.CPU.Cores)
	row("mismatches", "%d", s.Mismatches)
	row("errors", "%d", s.ErrorsTotal)
	for _, e := range s.Errors {
		row("  "+string(e.Kind), "%d  e.g. %s", e.Count, e.Example)
		if e.Hint != "" {
			row("", "hint: %s", e.Hint)
		}
	}
	for _, m := range s.MismatchSamples {
		row("  mismatch", "%s", m)
	}
	if s.Mismatches > 0 {
		row("", "hint: echoload verifies echoes: is the server's handler echo, and its framing %s?", s.Framing)
	}
	if s.ConnsDrained > 0 {
		row("drained", "%d connections closed in order by the server, %d frames sent after that unanswered", s.ConnsDrained, s.FramesUnanswered)
		row("", "hint: the server closed them after whole, verified replies, as a drain (SIGTERM) or an idle timeout does; not counted as errors")
	}
	verdict := "ok"
	switch {
	case s.Drained:
		verdict = "drained: nothing failed, but the server closed connections before the run ended"
	case !s.OK:
		verdict = "FAILED"
	}
	row("result", "%s", verdict)
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func fmtUS(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fs", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.2fms", v/1e3)
	}
	return fmt.Sprintf("%.0fµs", v)
}

// fmtSeconds writes a span given in seconds as a time.Duration rounded to
// three significant digits: 37.2µs, 150ms, 10s, 2m3s.
func fmtSeconds(secs float64) string {
	d := time.Duration(secs * float64(time.Second))
	unit := time.Duration(1)
	for lim := 1000 * time.Nanosecond; d >= lim && lim < math.MaxInt64/10; lim *= 10 {
		unit *= 10
	}
	return d.Round(unit).String()
}
