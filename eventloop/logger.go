package eventloop

import (
	"fmt"

	"github.com/panjf2000/gnet/v2/pkg/logging"
	"github.com/rs/zerolog"
)

// gnetLogger hands gnet's printf-style logs to zerolog, under
// component=gnet. gnet's Info lines are start-up chatter that the server's
// own start-up line already covers, so they go to debug. gnet keeps one
// process-wide default logger: with several servers in one process the last
// one started receives gnet's global lines.
type gnetLogger struct{ log zerolog.Logger }

var _ logging.Logger = gnetLogger{}

func (l gnetLogger) emit(e *zerolog.Event, format string, args []any) {
	if e.Enabled() {
		e.Str("detail", fmt.Sprintf(format, args...)).Msg("gnet")
	}
}

func (l gnetLogger) Debugf(format string, args ...any) { l.emit(l.log.Debug(), format, args) }
func (l gnetLogger) Infof(format string, args ...any)  { l.emit(l.log.Debug(), format, args) }
func (l gnetLogger) Warnf(format string, args ...any)  { l.emit(l.log.Warn(), format, args) }
func (l gnetLogger) Errorf(format string, args ...any) { l.emit(l.log.Error(), format, args) }

// Fatalf logs at error level: a library must not exit the process.
func (l gnetLogger) Fatalf(format string, args ...any) { l.emit(l.log.Error(), format, args) }
