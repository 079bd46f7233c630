package worker

import (
	"context"
	gosync "sync"
)

// slots bounds the calls a worker runs at once. The bound can change while
// the worker runs (SetConcurrency): lowered, no new call is taken until
// enough running ones end; raised, the free slots are taken at the next
// pull.
type slots struct {
	mu    gosync.Mutex
	limit int
	used  int
	// freed wakes a waiting puller after a release or a raise. One pending
	// wake-up is enough: whoever wakes takes every free slot.
	freed chan struct{}
}

func newSlots(limit int) *slots {
	return &slots{limit: limit, freed: make(chan struct{}, 1)}
}

// take waits for a free slot, then takes every free one, and returns how
// many it took (0 when ctx ended first).
func (s *slots) take(ctx context.Context) int {
	for {
		s.mu.Lock()
		if n := s.limit - s.used; n > 0 {
			s.used = s.limit
			s.mu.Unlock()
			return n
		}
		s.mu.Unlock()
		select {
		case <-s.freed:
		case <-ctx.Done():
			return 0
		}
	}
}

// release gives n slots back.
func (s *slots) release(n int) {
	if n <= 0 {
		return
	}
	s.mu.Lock()
	s.used -= n
	s.mu.Unlock()
	s.wake()
}

// setLimit changes the bound.
func (s *slots) setLimit(n int) {
	s.mu.Lock()
	s.limit = n
	s.mu.Unlock()
	s.wake()
}

func (s *slots) wake() {
	select {
	case s.freed <- struct{}{}:
	default:
	}
}

// SetConcurrency changes how many calls this worker runs at once, live
// (a configuration reload). Lowered, calls already taken (and those of a
// pull already out) run to the end, and no new one is taken until fewer
// than n are held; raised, more are taken at the next pull. n <= 0 is the
// default, 64.
func (w *Worker) SetConcurrency(n int) {
	if n <= 0 {
		n = 64
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cfg.Concurrency = n
	if w.slots == nil {
		return // not running: Run starts with n
	}
	// A runner per slot, up to maxRunners: start the missing ones first,
	// so a call handed over with its new slot finds one.
	if w.addRunners != nil {
		w.addRunners(n)
	}
	w.handOff.Store(n > maxRunners)
	w.slots.setLimit(n)
	w.log.Info().Int("concurrency", n).Msg("concurrency changed")
}
