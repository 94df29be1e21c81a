// Package gnetlog hands gnet's printf-style logs to zerolog, for every gnet
// server in the process (eventloop.Server and plain.Server).
package gnetlog

import (
	"fmt"
	"slices"
	"sync"

	"github.com/panjf2000/gnet/v2/pkg/logging"
	"github.com/rs/zerolog"
)

// Logger hands gnet's printf-style logs to the logger of the newest
// running server (see Attach). gnet's Info lines are start-up chatter that a
// server's own start-up line already covers, so they go to debug.
//
// gnet keeps one logger per process, replaced by every Run, and its engines
// all log through it. So every server passes the same Logger to
// gnet.WithLogger, which forwards to the logger of the newest server still
// running, and drops the lines when none is: a stopped server's logger (a
// finished test's, say) is never written to again.
type Logger struct{}

var _ logging.Logger = Logger{}

// running holds the loggers of the running servers, oldest first.
var running struct {
	mu   sync.Mutex
	logs []*zerolog.Logger
}

// Attach makes log, with component=gnet, the receiver of gnet's lines until
// detach is called; call it around gnet.Run.
func Attach(log zerolog.Logger) (detach func()) {
	l := log.With().Str("component", "gnet").Logger()
	running.mu.Lock()
	running.logs = append(running.logs, &l)
	running.mu.Unlock()
	return func() {
		running.mu.Lock()
		if i := slices.Index(running.logs, &l); i >= 0 {
			running.logs = slices.Delete(running.logs, i, i+1)
		}
		running.mu.Unlock()
	}
}

// emit writes one line to the newest running server's logger, holding the
// lock so that server cannot finish stopping in the middle.
func (Logger) emit(level zerolog.Level, format string, args []any) {
	running.mu.Lock()
	defer running.mu.Unlock()
	n := len(running.logs)
	if n == 0 {
		return
	}
	if e := running.logs[n-1].WithLevel(level); e.Enabled() {
		e.Str("detail", fmt.Sprintf(format, args...)).Msg("gnet")
	}
}

func (l Logger) Debugf(format string, args ...any) { l.emit(zerolog.DebugLevel, format, args) }
func (l Logger) Infof(format string, args ...any)  { l.emit(zerolog.DebugLevel, format, args) }
func (l Logger) Warnf(format string, args ...any)  { l.emit(zerolog.WarnLevel, format, args) }
func (l Logger) Errorf(format string, args ...any) { l.emit(zerolog.ErrorLevel, format, args) }

// Fatalf logs at error level: a library must not exit the process.
func (l Logger) Fatalf(format string, args ...any) { l.emit(zerolog.ErrorLevel, format, args) }
