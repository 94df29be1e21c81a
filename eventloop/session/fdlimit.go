package session

import (
	"fmt"
	"syscall"
)

// FDReserve is how many file descriptors DefaultMaxConns keeps free for the
// listener, the poller, log files and the like, so that the connection cap is
// reached before accept(2) can fail with EMFILE (which stops a gnet engine).
// Under a small limit it keeps a quarter instead.
const FDReserve = 256

// fdReserve is the reserve kept under limit.
func fdReserve(limit uint64) uint64 { return min(FDReserve, limit/4) }

// FDLimit is the process's RLIMIT_NOFILE.
type FDLimit struct {
	Was uint64 // soft limit before RaiseFDLimit (on Linux, already raised by the Go runtime to Max-1 if it was lower)
	Cur uint64 // soft limit now
	Max uint64 // hard limit
}

// RaiseFDLimit raises the soft RLIMIT_NOFILE to the hard limit. (The Go
// runtime already does this at start on Linux; doing it here as well makes
// the limit explicit, and correct where the runtime does not.)
func RaiseFDLimit() (FDLimit, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return FDLimit{}, fmt.Errorf("session: getrlimit: %w", err)
	}
	lim := FDLimit{Was: rl.Cur, Cur: rl.Cur, Max: rl.Max}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			return lim, fmt.Errorf("session: setrlimit: %w", err)
		}
		lim.Cur = rl.Max
	}
	return lim, nil
}

// DefaultMaxConns is the connection cap for a soft fd limit: the limit less
// its reserve (FDReserve, or a quarter of a small limit), and at least 1.
// Each connection holds one descriptor.
func DefaultMaxConns(limit uint64) int {
	limit = min(limit, 1<<30)
	return int(max(limit-fdReserve(limit), 1))
}
