package harness

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
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
	tasks      map[string]ctxsw // the same, by thread id
}

// ctxsw is one thread's voluntary and involuntary context switches.
type ctxsw struct{ vol, invol int64 }

// sampleProc reads /proc/<pid>. Context switches are summed over the
// threads alive now (a thread that exited took its counts with it; the Go
// runtime and gnet keep their threads, a thread per client does not).
func sampleProc(pid int) (procSample, error) { return sampleProcIn("/proc", pid) }

// sampleProcIn is sampleProc with /proc mounted at root.
func sampleProcIn(root string, pid int) (procSample, error) {
	s := procSample{at: time.Now()}
	dir := filepath.Join(root, strconv.Itoa(pid))
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return s, err
	}
	if s.cpu, err = parseStatCPU(stat); err != nil {
		return s, fmt.Errorf("harness: %s: %w", filepath.Join(dir, "stat"), err)
	}

	status, err := readStatus(filepath.Join(dir, "status"))
	if err != nil {
		return s, err
	}
	s.rss = status["VmRSS"] * 1024 // reported in kB
	s.threads = int(status["Threads"])

	tasks, err := filepath.Glob(filepath.Join(dir, "task", "*", "status"))
	if err != nil {
		return s, err
	}
	s.tasks = make(map[string]ctxsw, len(tasks))
	for _, t := range tasks {
		ts, err := readStatus(t)
		if err != nil {
			continue // the thread exited between the glob and the read
		}
		c := ctxsw{ts["voluntary_ctxt_switches"], ts["nonvoluntary_ctxt_switches"]}
		s.tasks[filepath.Base(filepath.Dir(t))] = c
		s.volCtxSw += c.vol
		s.involCtxSw += c.invol
	}
	return s, nil
}

// parseStatCPU returns utime + stime from the text of /proc/<pid>/stat: the
// CPU time of all the process's threads, live and exited.
func parseStatCPU(stat []byte) (time.Duration, error) {
	// The command name may hold spaces and parentheses; the fields after
	// its last ')' are fixed.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("no command name")
	}
	fields := strings.Fields(string(stat[i+1:]))
	// fields[0] is the state (field 3); utime is field 14, stime field 15.
	if len(fields) < 13 {
		return 0, fmt.Errorf("%d fields after the command name, want at least 13", len(fields))
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil || utime < 0 || stime < 0 {
		return 0, fmt.Errorf("bad utime %q or stime %q", fields[11], fields[12])
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// readStatus reads a /proc status file with parseStatus.
func readStatus(path string) (map[string]int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseStatus(f)
}

// parseStatus parses the numeric fields of a /proc status file ("VmRSS:
// 1234 kB" gives VmRSS=1234); other fields are left out.
func parseStatus(r io.Reader) (map[string]int64, error) {
	m := make(map[string]int64)
	sc := bufio.NewScanner(r)
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

// remember keeps, from an earlier sample, the threads that have exited
// since, so that their context switches up to then still count, and the
// more threads of the two.
func (s *procSample) remember(earlier procSample) {
	for tid, c := range earlier.tasks {
		if _, ok := s.tasks[tid]; !ok && s.tasks != nil {
			s.tasks[tid] = c
		}
	}
	s.threads = max(s.threads, earlier.threads)
}

// usage is what a process did between two samples.
type usage struct {
	wall       time.Duration
	cpu        time.Duration
	vol, invol int64
	rss        int64 // at the end
	// threads is the more of the two samples': a thread per client ends
	// with its connection, and the generator closes its connections as it
	// logs the end of the window.
	threads        int
	cores          float64
	volPS, involPS float64
}

// between is what the process did from a to b. Context switches are
// counted thread by thread, so that threads which exited in between (their
// counts gone with them) make the figure smaller, never negative.
func between(a, b procSample) usage {
	u := usage{
		wall: b.at.Sub(a.at), cpu: b.cpu - a.cpu,
		vol: b.volCtxSw - a.volCtxSw, invol: b.involCtxSw - a.involCtxSw,
		rss: b.rss, threads: max(a.threads, b.threads),
	}
	if a.tasks != nil && b.tasks != nil {
		u.vol, u.invol = 0, 0
		for tid, now := range b.tasks {
			was := a.tasks[tid] // zero for a thread born in between
			if now.vol < was.vol || now.invol < was.invol {
				was = ctxsw{} // the id was reused by a new thread
			}
			u.vol += now.vol - was.vol
			u.invol += now.invol - was.invol
		}
	}
	if secs := u.wall.Seconds(); secs > 0 {
		u.cores = u.cpu.Seconds() / secs
		u.volPS, u.involPS = float64(u.vol)/secs, float64(u.invol)/secs
	}
	return u
}

// RunQueueWait is how long the threads of process pid alive now have spent
// runnable but waiting for a CPU, from /proc/<pid>/task/*/schedstat: for a
// process pinned to a CPU of its own, the time other processes (or its own
// other threads) held that CPU when it had work.
func RunQueueWait(pid int) (time.Duration, error) {
	stats, err := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "schedstat"))
	if err != nil || len(stats) == 0 {
		return 0, fmt.Errorf("harness: no schedstat for process %d: %v", pid, err)
	}
	var wait time.Duration
	for _, st := range stats {
		b, err := os.ReadFile(st)
		if err != nil {
			continue // the thread exited
		}
		// Time on the CPU, time waiting on a run queue (both ns), slices.
		f := strings.Fields(string(b))
		if len(f) < 2 {
			return 0, fmt.Errorf("harness: %s: %q", st, b)
		}
		ns, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("harness: %s: %w", st, err)
		}
		wait += time.Duration(ns)
	}
	return wait, nil
}

// CPUTime is the CPU time, user and system, that process pid has used: all
// its threads', live and exited.
func CPUTime(pid int) (time.Duration, error) {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(stat)
}
