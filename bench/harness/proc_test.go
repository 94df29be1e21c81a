package harness

import (
	"os"
	"testing"
	"time"
)

func TestSampleProc(t *testing.T) {
	a, err := sampleProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Burn some CPU so the counters move.
	deadline := time.Now().Add(200 * time.Millisecond)
	x := 0
	for time.Now().Before(deadline) {
		x++
	}
	b, err := sampleProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	u := between(a, b)
	if u.cpu < 100*time.Millisecond || u.cores < 0.4 || u.cores > 4 {
		t.Errorf("burned 200ms of CPU, sampled %v (%.2f cores)", u.cpu, u.cores)
	}
	if b.rss < 1<<20 || b.threads < 1 || b.volCtxSw+b.involCtxSw == 0 {
		t.Errorf("implausible sample %+v", b)
	}
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
