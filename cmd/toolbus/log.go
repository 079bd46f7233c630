package main

import (
	"io"
	"os"

	"github.com/rs/zerolog"
)

// newLogger writes human-readable logs to w when it is a terminal, JSON
// otherwise, at level (debug, info, warn, error; anything else: info).
func newLogger(w io.Writer, level string) zerolog.Logger {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		lvl = zerolog.InfoLevel
	}
	l := zerolog.New(w)
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			l = zerolog.New(zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000"})
		}
	}
	return l.Level(lvl).With().Timestamp().Logger()
}

// checkLogLevel refuses a --log-level zerolog does not know.
func checkLogLevel(level string) error {
	switch level {
	case "debug", "info", "warn", "error":
		return nil
	}
	return usagef("--log-level %q: want debug, info, warn or error", level)
}
