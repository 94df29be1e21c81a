//go:build !linux

package harness

import "syscall"

// childAttr puts a child in a process group of its own. There is no death
// signal here: a benchmark killed before its cleanups run leaves its
// server running.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
