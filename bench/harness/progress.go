package harness

import (
	"fmt"
	"io"
	"time"
)

// Progress is told how a run goes, by the goroutine that called Run and in
// this order: Note for each step before the measurements, Start once, then
// Cell after each cell.
type Progress interface {
	Note(msg string)  // a step such as building the binaries
	Start(cells int)  // the measurements begin: this many cells
	Cell(line string) // one more cell is measured; line says which and what it measured
}

// Lines is a Progress for a log or a pipe: a line per note and per cell,
// each cell's as "[k/N, 12m30s left] line" (the last "[N/N, took 21m4s]").
func Lines(w io.Writer) Progress { return &lines{w: w, now: time.Now} }

type lines struct {
	w           io.Writer
	now         func() time.Time
	start       time.Time
	done, total int
}

func (l *lines) Note(msg string) { fmt.Fprintln(l.w, msg) }

func (l *lines) Start(cells int) { l.start, l.total = l.now(), cells }

func (l *lines) Cell(line string) {
	l.done++
	took := l.now().Sub(l.start)
	if l.done >= l.total {
		fmt.Fprintf(l.w, "[%d/%d, took %v] %s\n", l.done, l.total, took.Round(time.Second), line)
		return
	}
	fmt.Fprintf(l.w, "[%d/%d, %v left] %s\n", l.done, l.total, Left(took, l.done, l.total).Round(time.Second), line)
}

// Left estimates the time the cells not yet measured will take, when the
// first done of total took elapsed: as long each as the mean so far. Cells
// differ (an idle cell holds its connections longer than a load cell
// measures), so it is a guide that steadies as the run goes on.
func Left(elapsed time.Duration, done, total int) time.Duration {
	if done <= 0 || done >= total {
		return 0
	}
	return elapsed / time.Duration(done) * time.Duration(total-done)
}
