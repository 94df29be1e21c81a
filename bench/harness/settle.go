package harness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// tcpState is the kernel's TCP accounting from /proc/net/sockstat.
type tcpState struct {
	orphans int64 // closed sockets still draining their send queues
	mem     int64 // pages of memory TCP holds
}

func readTCPState() (tcpState, error) {
	f, err := os.Open("/proc/net/sockstat")
	if err != nil {
		return tcpState{}, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "TCP: ")
		if !ok {
			continue
		}
		var st tcpState
		fields := strings.Fields(rest)
		for i := 0; i+1 < len(fields); i += 2 {
			n, _ := strconv.ParseInt(fields[i+1], 10, 64)
			switch fields[i] {
			case "orphan":
				st.orphans = n
			case "mem":
				st.mem = n
			}
		}
		return st, nil
	}
	return tcpState{}, fmt.Errorf("harness: no TCP line in /proc/net/sockstat")
}

// settleLimit bounds the wait for the kernel to settle between cells.
const settleLimit = 60 * time.Second

// settleSlack is how many pages of TCP memory above the run's start still
// count as settled: a heavy cell holds tens of thousands (10,000
// connections with 64 KiB each in flight hold 160,000), and a few hundred
// linger after one and never come back.
const settleSlack = 2048

// settle waits until the kernel has finished with the previous cell's
// sockets: no orphaned socket still draining, and TCP memory back within
// settleSlack pages of what it was when the run began. Otherwise the next cell pays for the last
// one's teardown (the first server after a 10,000-connection cell measured
// up to 2.5 times the CPU per frame it does on a quiet kernel). It returns
// how long it waited, and false if it gave up.
func (h *harness) settle(ctx context.Context) (time.Duration, bool) {
	start := time.Now()
	for {
		st, err := readTCPState()
		if err != nil || st.orphans == 0 && st.mem <= h.baseTCPMem+settleSlack {
			return time.Since(start), err == nil
		}
		if time.Since(start) > settleLimit {
			return time.Since(start), false
		}
		select {
		case <-ctx.Done():
			return time.Since(start), false
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TCPCounters are the kernel's TCP extension counters of the whole machine
// (the TcpExt lines of /proc/net/netstat) by name: TCPMemoryPressuresChrono,
// the milliseconds TCP spent over its memory pressure threshold, during
// which receive queues are pruned and segments dropped; TCPTimeouts, the
// retransmission timeouts, each a stall of 200ms or more.
func TCPCounters() (map[string]int64, error) {
	b, err := os.ReadFile("/proc/net/netstat")
	if err != nil {
		return nil, err
	}
	// A line of names, then a line of values, both "TcpExt: ...".
	var names []string
	for line := range strings.SplitSeq(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "TcpExt: ")
		if !ok {
			continue
		}
		if names == nil {
			names = strings.Fields(rest)
			continue
		}
		counters := map[string]int64{}
		for i, v := range strings.Fields(rest) {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && i < len(names) {
				counters[names[i]] = n
			}
		}
		return counters, nil
	}
	return nil, errors.New("harness: no TcpExt counters in /proc/net/netstat")
}
