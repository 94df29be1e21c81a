package harness

import (
	"strings"
	"testing"
	"time"
)

// TestLines drives Lines on a made-up clock: each cell's line carries its
// count and the mean-based estimate of the time left, the last the time
// taken.
func TestLines(t *testing.T) {
	var out strings.Builder
	now := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	l := &lines{w: &out, now: func() time.Time { return now }}
	l.Note("building")
	l.Start(4)
	for _, step := range []struct {
		after time.Duration
		line  string
	}{{10 * time.Second, "a"}, {20 * time.Second, "b"}, {90 * time.Second, "c"}, {40 * time.Second, "d"}} {
		now = now.Add(step.after)
		l.Cell(step.line)
	}
	want := "building\n" +
		"[1/4, 30s left] a\n" + // 10s a cell so far
		"[2/4, 30s left] b\n" + // 15s
		"[3/4, 40s left] c\n" + // 40s
		"[4/4, took 2m40s] d\n"
	if got := out.String(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestLeft(t *testing.T) {
	for _, tt := range []struct {
		elapsed     time.Duration
		done, total int
		want        time.Duration
	}{
		{time.Minute, 1, 70, 69 * time.Minute},
		{21 * time.Minute, 70, 70, 0},
		{0, 0, 70, 0}, // nothing measured yet: no estimate
	} {
		if got := Left(tt.elapsed, tt.done, tt.total); got != tt.want {
			t.Errorf("Left(%v, %d, %d) = %v, want %v", tt.elapsed, tt.done, tt.total, got, tt.want)
		}
	}
}
