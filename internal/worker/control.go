package worker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
)

// errPausedTooLong is why a call of a paused server ended unrun: its
// context ended while it waited for Resume.
var errPausedTooLong = errors.New("server paused")

// Pause stops starting calls of server on this worker. Its calls still
// taken wait, holding their lease (renewed) and no MCP session, until
// Resume or their deadline; they are neither lost nor counted as failed
// deliveries. They keep their slot meanwhile. Pausing twice is fine.
func (w *Worker) Pause(server string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.paused[server]; !ok {
		w.paused[server] = make(chan struct{})
		w.log.Info().Str("server", server).Msg("server paused: its calls wait")
	}
}

// Resume lets the waiting and later calls of server run. Resuming a server
// that is not paused is fine.
func (w *Worker) Resume(server string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ch, ok := w.paused[server]; ok {
		close(ch)
		delete(w.paused, server)
		w.log.Info().Str("server", server).Msg("server resumed")
	}
}

// Paused returns the paused servers, sorted.
func (w *Worker) Paused() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Sorted(maps.Keys(w.paused))
}

// Stats is a snapshot of a worker's load.
type Stats struct {
	// InFlight counts, per server, the calls this worker has taken and not
	// yet settled (running, or waiting on a paused server).
	InFlight map[string]int
	// Paused lists the paused servers, sorted.
	Paused []string
}

// Stats returns the worker's load now.
func (w *Worker) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return Stats{InFlight: maps.Clone(w.inflight), Paused: slices.Sorted(maps.Keys(w.paused))}
}

// waitUnpaused returns at once unless server is paused; then when it is
// resumed (nil) or ctx ends (errPausedTooLong, wrapping ctx's error).
func (w *Worker) waitUnpaused(ctx context.Context, server string) error {
	for {
		w.mu.Lock()
		ch, paused := w.paused[server]
		w.mu.Unlock()
		if !paused {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", errPausedTooLong, ctx.Err())
		}
	}
}

// isPaused reports whether server's calls wait now. A call that asked and
// heard no goes on, as one whose wait (waitUnpaused) ended a moment before
// the pause.
func (w *Worker) isPaused(server string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, paused := w.paused[server]
	return paused
}
