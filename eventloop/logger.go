package eventloop

import (
	"fmt"
	"slices"
	"sync"

	"github.com/panjf2000/gnet/v2/pkg/logging"
	"github.com/rs/zerolog"
)

// gnetLogger hands gnet's printf-style logs to zerolog, under
// component=gnet. gnet's Info lines are start-up chatter that the server's
// own start-up line already covers, so they go to debug.
//
// gnet keeps one logger per process, replaced by every Run, and its engines
// all log through it. So every server passes the same gnetLogger, which
// forwards to the logger of the newest server still running, and drops the
// lines when none is: a stopped server's logger (a finished test's, say) is
// never written to again.
type gnetLogger struct{}

var _ logging.Logger = gnetLogger{}

// gnetLogs holds the gnet loggers of the running servers, oldest first.
var gnetLogs struct {
	mu      sync.Mutex
	running []*zerolog.Logger
}

// addGnetLog makes log the receiver of gnet's lines until removeGnetLog.
func addGnetLog(log *zerolog.Logger) {
	gnetLogs.mu.Lock()
	gnetLogs.running = append(gnetLogs.running, log)
	gnetLogs.mu.Unlock()
}

func removeGnetLog(log *zerolog.Logger) {
	gnetLogs.mu.Lock()
	if i := slices.Index(gnetLogs.running, log); i >= 0 {
		gnetLogs.running = slices.Delete(gnetLogs.running, i, i+1)
	}
	gnetLogs.mu.Unlock()
}

// emit writes one line to the newest running server's logger, holding the
// lock so that server cannot finish stopping in the middle.
func (gnetLogger) emit(level zerolog.Level, format string, args []any) {
	gnetLogs.mu.Lock()
	defer gnetLogs.mu.Unlock()
	n := len(gnetLogs.running)
	if n == 0 {
		return
	}
	if e := gnetLogs.running[n-1].WithLevel(level); e.Enabled() {
		e.Str("detail", fmt.Sprintf(format, args...)).Msg("gnet")
	}
}

func (l gnetLogger) Debugf(format string, args ...any) { l.emit(zerolog.DebugLevel, format, args) }
func (l gnetLogger) Infof(format string, args ...any)  { l.emit(zerolog.DebugLevel, format, args) }
func (l gnetLogger) Warnf(format string, args ...any)  { l.emit(zerolog.WarnLevel, format, args) }
func (l gnetLogger) Errorf(format string, args ...any) { l.emit(zerolog.ErrorLevel, format, args) }

// Fatalf logs at error level: a library must not exit the process.
func (l gnetLogger) Fatalf(format string, args ...any) { l.emit(zerolog.ErrorLevel, format, args) }
