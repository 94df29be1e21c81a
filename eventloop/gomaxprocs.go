package eventloop

import (
	"os"
	"runtime"
)

// SpareP sets GOMAXPROCS to one more than it is (the CPUs the process may
// use), unless the GOMAXPROCS environment variable says otherwise, and
// returns the value in effect. Call it once, before starting a Server.
//
// Why: gnet's loops wait in epoll_wait as raw system calls. When every P is
// held by such a call, the runtime's sysmon takes the blocked loop's P back
// and starts another thread to run it, and when epoll_wait returns the two
// threads trade the CPU: thousands of context switches a second for nothing.
// With one P to spare, sysmon leaves the blocked loop alone. Measured here,
// one loop pinned to one CPU against 100 to 10,000 connections: 9-23% more
// round trips, 11-18% less CPU per frame, half the context switches (see
// README, benchmarks). The goroutine model blocks in Go's own netpoller and
// does not need it.
func SpareP() int {
	if os.Getenv("GOMAXPROCS") != "" {
		return runtime.GOMAXPROCS(0)
	}
	n := runtime.GOMAXPROCS(0) + 1
	runtime.GOMAXPROCS(n)
	return n
}
