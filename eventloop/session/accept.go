package session

import "time"

// Accept back-off bounds: the pause after a failed accept(2) starts at
// acceptBackoffMin and doubles up to acceptBackoffMax, as net/http's does.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// AcceptBackoff is how long a server's accept loop pauses after accept(2)
// fails for want of resources (EMFILE, ENFILE, ENOBUFS): the connections
// it already has go on being served, and new ones wait in the kernel's
// listen backlog until descriptors are free again. The zero value is ready;
// it is not safe for concurrent use (one accept loop owns it).
type AcceptBackoff struct{ d time.Duration }

// Failed returns the pause before the next accept: twice the last one,
// within [5ms, 1s].
func (b *AcceptBackoff) Failed() time.Duration {
	b.d = min(max(2*b.d, acceptBackoffMin), acceptBackoffMax)
	return b.d
}

// Succeeded resets the pause after an accept that worked.
func (b *AcceptBackoff) Succeeded() { b.d = 0 }
