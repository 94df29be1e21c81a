package harness

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// statLine is /proc/<pid>/stat of a process whose command name holds spaces
// and a ") ", with utime 1234 and stime 567 ticks, cutime 89 and cstime 10
// (its children's, which are not its own CPU time).
const statLine = "4242 (echo) loop x) S 1 4242 4242 0 -1 4194560 3050 0 0 0 1234 567 89 10 20 0 9 0 58899 1245184000 5120 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n"

const statusText = `Name:	echo) loop x
Umask:	0022
State:	S (sleeping)
Tgid:	4242
VmPeak:	 1300000 kB
VmRSS:	   20480 kB
RssAnon:	   16384 kB
Threads:	9
Cpus_allowed_list:	0-1
voluntary_ctxt_switches:	7
nonvoluntary_ctxt_switches:	3
`

func TestParseStatCPU(t *testing.T) {
	tests := []struct {
		name, stat string
		want       time.Duration
		wantErr    bool
	}{
		{"name with spaces and parentheses", statLine, 18010 * time.Millisecond, false}, // (1234+567) ticks of 10ms
		{"zero", "1 (init) S 0 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 1 0 0", 0, false},
		{"one tick", "1 (a) R 0 1 1 0 -1 0 0 0 0 0 1 0 0 0", 10 * time.Millisecond, false},
		{"no command name", "4242 echo S 1 2 3", 0, true},
		{"cut short", "4242 (echo) S 1 4242 4242 0 -1 4194560 3050 0 0 0 1234", 0, true},
		{"not a number", "1 (a) R 0 1 1 0 -1 0 0 0 0 0 x 0 0 0", 0, true},
		{"negative", "1 (a) R 0 1 1 0 -1 0 0 0 0 0 -5 0 0 0", 0, true},
	}
	for _, tt := range tests {
		got, err := parseStatCPU([]byte(tt.stat))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("%s: got %v, %v; want %v, error %t", tt.name, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseStatus(t *testing.T) {
	m, err := parseStatus(strings.NewReader(statusText))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"Umask": 22, "Tgid": 4242, "VmPeak": 1300000, "VmRSS": 20480, "RssAnon": 16384,
		"Threads": 9, "voluntary_ctxt_switches": 7, "nonvoluntary_ctxt_switches": 3}
	if len(m) != len(want) {
		t.Errorf("parsed %v, want %v", m, want)
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %d, want %d", k, m[k], v)
		}
	}
}

// TestSampleProcIn reads a /proc tree written by the test: CPU from stat,
// RSS in bytes and threads from status, context switches summed over the
// tasks.
func TestSampleProcIn(t *testing.T) {
	root := t.TempDir()
	write := func(rel, text string) {
		t.Helper()
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("4242/stat", statLine)
	write("4242/status", statusText)
	write("4242/task/4242/status", "voluntary_ctxt_switches:\t5\nnonvoluntary_ctxt_switches:\t2\n")
	write("4242/task/4250/status", "voluntary_ctxt_switches:\t100\nnonvoluntary_ctxt_switches:\t40\n")

	s, err := sampleProcIn(root, 4242)
	if err != nil {
		t.Fatal(err)
	}
	if s.cpu != 18010*time.Millisecond || s.rss != 20480*1024 || s.threads != 9 || s.volCtxSw != 105 || s.involCtxSw != 42 ||
		s.tasks["4250"] != (ctxsw{100, 40}) {
		t.Errorf("sample %+v, want cpu 18.01s, rss 20971520, 9 threads, 105 and 42 context switches", s)
	}
	if s.at.IsZero() {
		t.Error("sample has no time")
	}

	write("4243/stat", "4243 (x) S 1")
	write("4243/status", statusText)
	if _, err := sampleProcIn(root, 4243); err == nil || !strings.Contains(err.Error(), "4243/stat") {
		t.Errorf("short stat: error %v, want one naming the file", err)
	}
	if _, err := sampleProcIn(root, 4244); err == nil {
		t.Error("no such process: no error")
	}
}

func TestBetween(t *testing.T) {
	at := time.Unix(1000, 0)
	a := procSample{at: at, cpu: 3 * time.Second, rss: 1 << 20, threads: 4, volCtxSw: 100, involCtxSw: 10}
	b := procSample{at: at.Add(2 * time.Second), cpu: 4500 * time.Millisecond, rss: 2 << 20, threads: 6, volCtxSw: 900, involCtxSw: 50}
	got := between(a, b)
	want := usage{wall: 2 * time.Second, cpu: 1500 * time.Millisecond, vol: 800, invol: 40,
		rss: 2 << 20, threads: 6, cores: 0.75, volPS: 400, involPS: 20}
	if got != want {
		t.Errorf("between = %+v, want %+v", got, want)
	}
	if u := between(a, a); u.cores != 0 || u.volPS != 0 || u.involPS != 0 {
		t.Errorf("no time passed: %+v, want no rates", u)
	}

	// Thread by thread: 10 exited (a thread per client whose connection
	// closed), 11 switched 5 more times, 12 was born, 13's id was reused.
	a.tasks = map[string]ctxsw{"10": {900, 90}, "11": {100, 10}, "13": {50, 5}}
	b.tasks = map[string]ctxsw{"11": {105, 11}, "12": {3, 1}, "13": {2, 0}}
	a.threads, b.threads = 3, 3
	a.volCtxSw, a.involCtxSw, b.volCtxSw, b.involCtxSw = 1050, 105, 110, 12
	if u := between(a, b); u.vol != 10 || u.invol != 2 {
		t.Errorf("thread by thread: %d and %d context switches, want 10 and 2", u.vol, u.invol)
	}
	b.threads = 1
	if u := between(a, b); u.threads != 3 {
		t.Errorf("threads %d, want the more of the two samples, 3", u.threads)
	}

	// Read shortly before the window's end, thread 10 had switched 30
	// more times, and 14 (born after a) 7 times; both exited before b.
	late := procSample{threads: 5, tasks: map[string]ctxsw{"10": {930, 90}, "11": {104, 11}, "14": {7, 0}}}
	b.remember(late)
	if u := between(a, b); u.vol != 10+30+7 || u.invol != 2 || u.threads != 5 {
		t.Errorf("with a late sample: %d and %d context switches, %d threads; want 47, 2 and 5", u.vol, u.invol, u.threads)
	}
}

// TestSampleProcSelf checks the live /proc against getrusage(RUSAGE_SELF),
// which the kernel computes from the same per-process counters. Each
// sample is bracketed by two rusage readings; /proc reports whole clock
// ticks (utime and stime each rounded down), getrusage microseconds. How
// much CPU the test gets and how long it takes do not matter.
func TestSampleProcSelf(t *testing.T) {
	const tick = time.Second / clockTicks
	sample := func() procSample {
		t.Helper()
		lo := selfCPU(t)
		s, err := sampleProc(os.Getpid())
		hi := selfCPU(t)
		if err != nil {
			t.Fatal(err)
		}
		if s.cpu <= lo-2*tick || s.cpu > hi+2*time.Microsecond {
			t.Fatalf("/proc says %v of CPU, getrusage %v before and %v after", s.cpu, lo, hi)
		}
		return s
	}
	a := sample()
	// Work until the process has used a few ticks more than /proc said,
	// so the sample below has something to see.
	x := uint64(1)
	for selfCPU(t) < a.cpu+5*tick {
		for range 1 << 16 {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
	b := sample()
	if u := between(a, b); u.cpu <= 0 || u.wall <= 0 || u.cores <= 0 {
		t.Errorf("/proc saw no CPU used: %+v (x %d)", u, x)
	}
	// Loose sanity: a Go test binary has a few MB resident, several
	// threads, and has been switched out at least once.
	if b.rss < 1<<20 || b.threads < 1 || b.volCtxSw+b.involCtxSw == 0 {
		t.Errorf("implausible sample %+v", b)
	}
}

// selfCPU is this process's user + system time from getrusage.
func selfCPU(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestReadTCPState(t *testing.T) {
	st, err := readTCPState()
	if err != nil {
		t.Fatal(err)
	}
	if st.mem < 0 || st.orphans < 0 {
		t.Errorf("implausible TCP state %+v", st)
	}
}
