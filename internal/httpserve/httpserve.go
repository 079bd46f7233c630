// Package httpserve runs an http.Server for the life of a context: the
// one way toolbus's listeners (webhook bridge, MCP front door, metrics)
// start and stop.
package httpserve

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"
)

// Run serves srv on ln until ctx ends, then shuts it down gracefully:
// requests in flight get up to grace to finish, and what is still open
// then (a long-lived stream, say) is closed. It returns nil once stopped,
// and the server's error when serving failed.
func Run(ctx context.Context, srv *http.Server, ln net.Listener, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	if srv.Shutdown(sctx) != nil {
		_ = srv.Close() // grace spent: cut what is left
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
