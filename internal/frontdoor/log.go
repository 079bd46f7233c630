package frontdoor

import (
	"log"
	"strings"

	"github.com/rs/zerolog"
)

// stdLogger adapts zerolog for mcp-go's stdio error logger.
func stdLogger(l zerolog.Logger) *log.Logger {
	return log.New(zlWriter{l}, "", 0)
}

type zlWriter struct{ l zerolog.Logger }

func (w zlWriter) Write(b []byte) (int, error) {
	w.l.Warn().Msg("mcp stdio: " + strings.TrimSpace(string(b)))
	return len(b), nil
}
