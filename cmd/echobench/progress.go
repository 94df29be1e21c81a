package main

import (
	"fmt"
	"io"
	"os"

	"github.com/mattn/go-isatty"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"echoloop/bench/harness"
)

// newProgress shows a run's progress on stderr: on a terminal, each cell's
// line scrolls above a bar with the cells done, the time taken and an
// estimate of the time left; otherwise a line per cell with the estimate
// in it (harness.Lines). Call stop before writing to stderr again.
func newProgress(stderr io.Writer) (p harness.Progress, stop func()) {
	if f, ok := stderr.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		b := &bar{w: f}
		return b, b.stop
	}
	return harness.Lines(stderr), func() {}
}

// bar is the terminal's Progress.
type bar struct {
	w    io.Writer
	cont *mpb.Progress // nil until Start
	bar  *mpb.Bar
}

func (b *bar) Note(msg string) { fmt.Fprintln(b.w, msg) }

func (b *bar) Start(cells int) {
	b.cont = mpb.New(mpb.WithOutput(b.w), mpb.WithWidth(40))
	b.bar = b.cont.AddBar(int64(cells),
		mpb.PrependDecorators(decor.CountersNoUnit("cells %d/%d")),
		mpb.AppendDecorators(decor.Elapsed(decor.ET_STYLE_GO), decor.Name(" taken, about "),
			decor.AverageETA(decor.ET_STYLE_GO), decor.Name(" left")),
	)
}

// Cell prints line above the bar and moves the bar on.
func (b *bar) Cell(line string) {
	fmt.Fprintln(b.cont, line)
	b.bar.Increment()
}

// stop leaves the bar where it got to (an interrupted run does not finish
// it) and waits until it is drawn.
func (b *bar) stop() {
	if b.cont == nil {
		return
	}
	b.bar.Abort(false)
	b.cont.Wait()
}
