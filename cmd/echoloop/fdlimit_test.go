package main

import (
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
)

// TestFDLimitWas starts the server from a shell that lowered the soft file
// descriptor limit: the start-up line reports that limit as fd_limit_was,
// not the one the Go runtime raised it to before main ran.
func TestFDLimitWas(t *testing.T) {
	const soft = 1000
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if rl.Max < soft+2 {
		t.Skipf("hard fd limit %d leaves no room below it", rl.Max)
	}
	sh := exec.Command("/bin/sh", append([]string{"-c", "ulimit -Sn " + strconv.Itoa(soft) + ` && exec "$0" "$@"`, os.Args[0]},
		childArgs([]string{"-addr", "127.0.0.1:0"})...)...)
	c := startChildCmd(t, nil, sh)
	start := waitLog(t, c.lines, "listening")
	if got := start["fd_limit_was"]; got != float64(soft) {
		t.Errorf("fd_limit_was = %v, want %d (fd_limit %v, fd_limit_hard %v)", got, soft, start["fd_limit"], start["fd_limit_hard"])
	}
	if got := start["fd_limit"]; got != float64(rl.Max) {
		t.Errorf("fd_limit = %v, want the hard limit %d", got, rl.Max)
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	if err := c.wait(); err != nil {
		t.Fatalf("exit: %v", err)
	}
}
