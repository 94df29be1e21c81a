package cli

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
)

// LogFormats are the values -log-format accepts.
const LogFormats = "console, json"

// NewLogger builds the root logger for a command: level is a zerolog level
// name (debug, info, warn, error), format is "console", "json", or empty for
// console when w is a terminal and JSON otherwise.
func NewLogger(w io.Writer, level, format string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" || lvl == zerolog.NoLevel {
		return zerolog.Logger{}, fmt.Errorf("invalid log level %q: want trace, debug, info, warn or error", level)
	}
	if format == "" {
		format = "json"
		if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
			format = "console"
		}
	}
	switch format {
	case "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	default:
		return zerolog.Logger{}, fmt.Errorf("invalid log format %q: want %s", format, LogFormats)
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}
