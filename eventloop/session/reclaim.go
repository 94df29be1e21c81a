package session

import (
	"runtime"
	"runtime/debug"
	"sync"
	"time"
)

// Reclaimer gives memory back to the operating system once the memory held
// for clients has fallen well below its peak: after a burst of large
// partial frames or slow readers, say. Left alone, the Go runtime returns
// freed pages slowly, and the buffer pools keep theirs until two collections
// pass, which on a quiet server may be minutes apart; so the resident size
// would stay at the burst's level long after the connections are gone.
// A server calls Check from a timer (never from its hot path); Check is
// safe for concurrent use.
type Reclaimer struct {
	mu   sync.Mutex
	peak int64     // most memory held since the last reclaim
	last time.Time // when the last reclaim started
	busy bool      // a reclaim is running
}

// Thresholds for Reclaimer: reclaim only after at least reclaimMin was
// given back and the memory held is under half its peak, at most once per
// reclaimEvery.
const (
	reclaimMin   = 64 << 20
	reclaimEvery = 10 * time.Second
)

// Check notes that held bytes are held now and, when a reclaim is due,
// starts one on a goroutine of its own (it runs two full collections, which
// must not stall the caller) and reports true.
func (r *Reclaimer) Check(held int64, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.peak = max(r.peak, held)
	if r.busy || r.peak-held < reclaimMin || held > r.peak/2 || now.Sub(r.last) < reclaimEvery {
		return false
	}
	r.peak, r.last, r.busy = held, now, true
	go func() {
		// sync.Pool keeps what it holds through one collection (in its
		// victim cache) and drops it at the next: collect once so the
		// pooled buffers of the gone connections are unreachable, then
		// free, which collects again and returns the pages.
		runtime.GC()
		debug.FreeOSMemory()
		r.mu.Lock()
		r.busy = false
		r.mu.Unlock()
	}()
	return true
}
