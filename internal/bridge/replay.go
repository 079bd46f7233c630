package bridge

import (
	"context"
	"sync"
	"time"

	"github.com/toolbus-dev/toolbus/subjects"
)

// memoryCap bounds the accepted event ids one bridge remembers (about 15 MB
// when full). Only authenticated, published requests are remembered, so
// reaching it takes a burst of genuine events; the oldest are forgotten
// first, and a repeat of one of those still meets the stream's duplicate
// window.
const memoryCap = 100_000

// memory remembers accepted event ids until their replay window ends, so a
// repeat is answered as a duplicate without publishing, for as long as its
// signature is valid, even past the stream's duplicate window. It is one
// replica's: across replicas only the Nats-Msg-Id de-duplicates.
type memory struct {
	mu    sync.Mutex
	cap   int
	until map[string]time.Time
	// queue holds the ids in the order remembered; expired ids leave from
	// its front. Windows differ between hooks, so an expired id may wait
	// behind a live one: seen checks the time, and cap bounds the size.
	queue []memoryEntry
	head  int
}

type memoryEntry struct {
	id    string
	until time.Time
}

func newMemory(cap int) *memory {
	return &memory{cap: cap, until: map[string]time.Time{}}
}

// seen tells whether id was accepted and its window is still open.
func (m *memory) seen(id string, now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.until[id]
	return ok && now.Before(u)
}

// remember keeps id until the given time. An id already remembered keeps
// its first window.
func (m *memory) remember(id string, until, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for m.head < len(m.queue) && !now.Before(m.queue[m.head].until) {
		m.pop()
	}
	if u, ok := m.until[id]; ok && now.Before(u) {
		return
	}
	for len(m.until) >= m.cap && m.head < len(m.queue) {
		m.pop()
	}
	m.until[id] = until
	m.queue = append(m.queue, memoryEntry{id, until})
	if m.head > 1024 && m.head > len(m.queue)/2 {
		m.queue = append([]memoryEntry(nil), m.queue[m.head:]...)
		m.head = 0
	}
}

func (m *memory) pop() {
	e := m.queue[m.head]
	m.queue[m.head] = memoryEntry{}
	m.head++
	if u, ok := m.until[e.id]; ok && u.Equal(e.until) {
		delete(m.until, e.id)
	}
}

// len is the number of ids held, expired or not.
func (m *memory) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.until)
}

// checkDuplicateWindow notes when a stream's duplicate window is shorter
// than a hook's tolerance: a repeat reaching another replica after the
// window, its signature still valid, is stored again. It only logs; a
// stream it cannot read is skipped.
func (b *Bridge) checkDuplicateWindow(ctx context.Context) {
	if b.js == nil {
		return
	}
	need := map[string]time.Duration{}
	for _, h := range *b.hooks.Load() {
		stream := subjects.StreamEvents
		if h.Route == RouteTool {
			stream = subjects.StreamCalls
		}
		need[stream] = max(need[stream], h.Tolerance.D())
	}
	ctx, cancel := context.WithTimeout(ctx, b.pubTimeout)
	defer cancel()
	for name, tol := range need {
		st, err := b.js.Stream(ctx, name)
		if err != nil {
			b.log.Debug().Err(err).Str("stream", name).Msg("duplicate window not checked")
			continue
		}
		if w := st.CachedInfo().Config.Duplicates; w < tol {
			b.log.Info().Str("stream", name).Dur("duplicate_window", w).Dur("tolerance", tol).
				Msg("duplicate window shorter than a hook's tolerance: across bridge replicas, a repeat after the window is stored again")
		}
	}
}
