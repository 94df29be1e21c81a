package harness

import "syscall"

// childAttr puts a child (a server under test) in a process group of its
// own, so that stopping it reaches everything it started, and has the
// kernel send it SIGTERM if this process dies first: a benchmark killed
// before its cleanups run must not leave a server running, pinned to a
// CPU the next run will measure.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
