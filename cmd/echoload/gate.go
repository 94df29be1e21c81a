package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"echoloop/bench/load"
)

// gateLine is what -gate writes to stdout at each gate, one JSON line: the
// run's counts at that moment. A driver tells it from the summary, which
// has no "gate" field.
type gateLine struct {
	Gate        string  `json:"gate"` // the phase that follows: holding or verifying
	Asked       int     `json:"conns_asked"`
	Established int     `json:"conns_established"`
	Open        int     `json:"conns_open"`
	Errors      uint64  `json:"errors_total"`
	Mismatches  uint64  `json:"mismatches"`
	ElapsedS    float64 `json:"elapsed_s"` // since the run started
}

// stdinGate is -gate: at each gate it writes a gateLine to out, then waits
// for a line on in, at most wait. The end of in opens every gate from then
// on, so a driver that dies does not leave the generator waiting.
type stdinGate struct {
	in   io.Reader
	out  io.Writer
	wait time.Duration
	log  zerolog.Logger
	l    *load.Load // set before the run starts

	once  sync.Once
	lines chan struct{} // one value per line of in; closed at its end
}

func (g *stdinGate) gate(ctx context.Context, next string) {
	g.once.Do(func() {
		g.lines = make(chan struct{}, 1)
		// The read cannot be cancelled: the goroutine ends with in.
		go func() {
			defer close(g.lines)
			sc := bufio.NewScanner(g.in)
			for sc.Scan() {
				g.lines <- struct{}{}
			}
		}()
	})
	p := g.l.Progress()
	err := json.NewEncoder(g.out).Encode(gateLine{Gate: next, Asked: p.Asked, Established: p.Established,
		Open: p.Open, Errors: p.Errors, Mismatches: p.Mismatches, ElapsedS: p.Elapsed.Seconds()})
	if err != nil {
		g.log.Warn().Err(err).Str("next", next).Msg("gate line not written; going on")
		return
	}
	t := time.NewTimer(g.wait)
	defer t.Stop()
	select {
	case <-g.lines:
	case <-t.C:
		g.log.Warn().Str("next", next).Stringer("waited", g.wait).Msg("gate not opened in time; going on")
	case <-ctx.Done():
	}
}
