package load

import (
	"sync"
	"sync/atomic"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in nanoseconds, from 1 ns to an hour, to three
// significant digits (a recorded value is within 0.1% of the true one).
const (
	histMin   = 1
	histMax   = int64(3600e9)
	histDigit = 3
	maxSample = 10 // mismatches described in a Summary
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histDigit) }

// errCount is one kind's tally inside stats.
type errCount struct {
	n       uint64
	example string
}

// stats are the figures of one epoll loop or one connection goroutine. They
// belong to that goroutine until the run ends; then they are merged.
type stats struct {
	sent, verified uint64 // measured frames
	lastReply      int64  // when the last measured reply arrived (run clock)
	maxLat         int64  // exact largest latency, ns
	hist           *hdrhistogram.Histogram
	batch          []int64     // goroutine client: latencies not yet in sink
	sink           *sharedHist // goroutine client: where batches go

	errs       [numKinds]errCount
	mismatches uint64
	samples    []Mismatch
	drained    uint64 // connections the server closed in order
	unanswered uint64 // measured frames in flight on them then

	liveFrames uint64 // frames verified since the last flushLive, warm-up included
	live       *liveCounters
}

const numKinds = 7

var kindIndex = map[Kind]int{Refused: 0, Reset: 1, Closed: 2, Timeout: 3, EMFILE: 4, EADDRNOTAVAIL: 5, Other: 6}

// record adds one measured latency in ns.
func (s *stats) record(ns int64) {
	ns = max(ns, histMin)
	s.maxLat = max(s.maxLat, ns)
	if s.sink == nil {
		_ = s.hist.RecordValue(min(ns, histMax))
		return
	}
	s.batch = append(s.batch, ns)
	if len(s.batch) == cap(s.batch) {
		s.sink.add(s.batch)
		s.batch = s.batch[:0]
	}
}

func (s *stats) fail(err error) {
	k := classify(err)
	e := &s.errs[kindIndex[k]]
	if e.n == 0 {
		e.example = err.Error()
	}
	e.n++
	s.live.errors.Add(1)
}

// drain counts a connection the server closed in order, with unanswered
// measured frames in flight.
func (s *stats) drain(unanswered uint64) {
	s.drained++
	s.unanswered += unanswered
}

func (s *stats) mismatch(m Mismatch) {
	s.mismatches++
	if len(s.samples) < maxSample {
		s.samples = append(s.samples, m)
	}
	s.live.mismatches.Add(1)
}

// flushLive publishes progress counters.
func (s *stats) flushLive() {
	if s.liveFrames > 0 {
		s.live.frames.Add(s.liveFrames)
		s.liveFrames = 0
	}
	if s.sink != nil && len(s.batch) > 0 {
		s.sink.add(s.batch)
		s.batch = s.batch[:0]
	}
}

// merge adds o into s (o's histogram too, when o has its own).
func (s *stats) merge(o *stats) {
	s.sent += o.sent
	s.verified += o.verified
	s.lastReply = max(s.lastReply, o.lastReply)
	s.maxLat = max(s.maxLat, o.maxLat)
	if o.hist != nil && o.hist != s.hist {
		s.hist.Merge(o.hist)
	}
	for i := range s.errs {
		if s.errs[i].n == 0 {
			s.errs[i].example = o.errs[i].example
		}
		s.errs[i].n += o.errs[i].n
	}
	s.mismatches += o.mismatches
	s.drained += o.drained
	s.unanswered += o.unanswered
	for _, m := range o.samples {
		if len(s.samples) < maxSample {
			s.samples = append(s.samples, m)
		}
	}
}

// sharedHist is the one histogram that goroutine-client connections add
// batches to. Safe for concurrent use.
type sharedHist struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
}

func (s *sharedHist) add(ns []int64) {
	s.mu.Lock()
	for _, v := range ns {
		_ = s.h.RecordValue(min(v, histMax))
	}
	s.mu.Unlock()
}

// liveCounters are read by Progress while a run goes on.
type liveCounters struct {
	phase       atomic.Value // string
	established atomic.Int64
	open        atomic.Int64
	frames      atomic.Uint64 // verified, warm-up included
	errors      atomic.Uint64
	mismatches  atomic.Uint64
}
