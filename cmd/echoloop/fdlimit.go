package main

import (
	"os/exec"
	"strconv"
	"strings"
)

// softFDLimitAtStart is the soft RLIMIT_NOFILE this process was started
// with, or 0 if it cannot be told. Call it before anything sets the limit.
//
// The process itself cannot see it: on Linux the Go runtime raises the soft
// limit to one under the hard limit before main runs. The runtime keeps the
// original for the processes it starts, until the program sets the limit
// itself, so a child shell reports it.
func softFDLimitAtStart() uint64 {
	out, err := exec.Command("/bin/sh", "-c", "ulimit -Sn").Output()
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseUint(strings.TrimSpace(string(out)), 10, 64) // "unlimited": unknown
	return n
}
