package harness

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is the unit of utime and stime in /proc/<pid>/stat: USER_HZ,
// 100 on Linux for every architecture Go supports.
const clockTicks = 100

// procSample is what /proc says of a process at one moment.
type procSample struct {
	at         time.Time
	cpu        time.Duration // user + system, all threads
	rss        int64         // bytes
	threads    int
	volCtxSw   int64 // voluntary context switches, summed over live threads
	involCtxSw int64
}

// sampleProc reads /proc/<pid>. Context switches are summed over the
// threads alive now (a thread that exited took its counts with it; the Go
// runtime and gnet keep their threads).
func sampleProc(pid int) (procSample, error) {
	s := procSample{at: time.Now()}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// The command name may hold spaces; the fields after it are fixed.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return s, fmt.Errorf("harness: /proc/%d/stat: unexpected format", pid)
	}
	fields := strings.Fields(string(stat[i+1:]))
	// fields[0] is the state (field 3); utime is field 14, stime field 15.
	if len(fields) < 13 {
		return s, fmt.Errorf("harness: /proc/%d/stat: %d fields", pid, len(fields))
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return s, fmt.Errorf("harness: /proc/%d/stat: bad utime or stime", pid)
	}
	s.cpu = time.Duration(utime+stime) * time.Second / clockTicks

	status, err := readStatus(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	s.rss = status["VmRSS"] * 1024 // reported in kB
	s.threads = int(status["Threads"])

	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil {
		return s, err
	}
	for _, t := range tasks {
		ts, err := readStatus(t)
		if err != nil {
			continue // the thread exited between the glob and the read
		}
		s.volCtxSw += ts["voluntary_ctxt_switches"]
		s.involCtxSw += ts["nonvoluntary_ctxt_switches"]
	}
	return s, nil
}

// readStatus parses the numeric fields of a /proc status file ("VmRSS:
// 1234 kB" gives VmRSS=1234).
func readStatus(path string) (map[string]int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := make(map[string]int64)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		num, _, _ := strings.Cut(strings.TrimSpace(val), " ")
		if n, err := strconv.ParseInt(num, 10, 64); err == nil {
			m[key] = n
		}
	}
	return m, sc.Err()
}

// usage is what a process did between two samples.
type usage struct {
	wall           time.Duration
	cpu            time.Duration
	vol, invol     int64
	rss            int64 // at the end
	threads        int   // at the end
	cores          float64
	volPS, involPS float64
}

func between(a, b procSample) usage {
	u := usage{
		wall: b.at.Sub(a.at), cpu: b.cpu - a.cpu,
		vol: b.volCtxSw - a.volCtxSw, invol: b.involCtxSw - a.involCtxSw,
		rss: b.rss, threads: b.threads,
	}
	if secs := u.wall.Seconds(); secs > 0 {
		u.cores = u.cpu.Seconds() / secs
		u.volPS, u.involPS = float64(u.vol)/secs, float64(u.invol)/secs
	}
	return u
}
