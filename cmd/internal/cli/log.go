package cli

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"echoloop/eventloop/tracelog"
)

// LogFormats are the values -log-format accepts.
const LogFormats = "console, json"

// LogLevels are the values -log-level accepts: the levels the commands log
// at. (zerolog also knows trace, fatal and panic; nothing logs at trace, and
// a server that only logged fatal errors would say nothing at all.)
const LogLevels = "debug, info, warn, error"

var logLevels = map[string]zerolog.Level{
	"debug": zerolog.DebugLevel, "info": zerolog.InfoLevel,
	"warn": zerolog.WarnLevel, "error": zerolog.ErrorLevel,
}

// NewLogger builds the root logger for a command: level is one of
// LogLevels, format is "console", "json", or empty for console when w is a
// terminal and JSON otherwise. Console output is coloured only on a
// terminal, so a log file gets no escape codes.
func NewLogger(w io.Writer, level, format string) (zerolog.Logger, error) {
	lvl, ok := logLevels[level]
	if !ok {
		return zerolog.Logger{}, fmt.Errorf("invalid log level %q: want one of %s", level, LogLevels)
	}
	f, isFile := w.(*os.File)
	terminal := isFile && isatty.IsTerminal(f.Fd())
	if format == "" {
		format = "json"
		if terminal {
			format = "console"
		}
	}
	switch format {
	case "json":
	case "console":
		// Trace lines read in the order of what happened to the bytes; the
		// connection's fields lead in every other line too.
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly, NoColor: !terminal, FieldsOrder: tracelog.Fields}
	default:
		return zerolog.Logger{}, fmt.Errorf("invalid log format %q: want %s", format, LogFormats)
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}
