package load

import (
	"math"
	"time"
)

// A Pacer is the schedule of an open-loop run.
type Pacer interface {
	// Offset is when the i-th frame of the run (0-based, counted over all
	// connections, warm-up included) is due, from the start of traffic.
	// It must not decrease as i grows. Frame i goes to connection i mod n
	// of the n connections open when traffic starts.
	Offset(i uint64) time.Duration
}

// PacerFunc adapts a function to Pacer.
type PacerFunc func(i uint64) time.Duration

// Offset implements Pacer.
func (f PacerFunc) Offset(i uint64) time.Duration { return f(i) }

// ConstantPacer sends Rate frames per second, evenly spaced.
type ConstantPacer struct {
	Rate float64 // frames per second, over all connections; must be > 0
}

// Offset implements Pacer.
func (p ConstantPacer) Offset(i uint64) time.Duration {
	return time.Duration(float64(i) * 1e9 / p.Rate)
}

var (
	_ Pacer = ConstantPacer{}
	_ Pacer = PacerFunc(nil)
)

// firstAtOrAfter returns the smallest i with p.Offset(i) >= d, searching
// only below limit (returned if no such i is smaller).
func firstAtOrAfter(p Pacer, d time.Duration, limit uint64) uint64 {
	if p.Offset(0) >= d {
		return 0
	}
	hi := uint64(1)
	for hi < limit && p.Offset(hi) < d {
		hi = min(hi*2, limit)
	}
	if hi >= limit && p.Offset(limit-1) < d {
		return limit
	}
	lo := hi / 2 // Offset(lo) < d <= Offset(hi)
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if p.Offset(mid) < d {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi
}

// noEnd is a time no run reaches.
const noEnd = math.MaxInt64
