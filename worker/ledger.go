package worker

import (
	"context"
	"encoding/json"
	"errors"
	gosync "sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"toolbus/subjects"
)

// ledger is the call ledger's running state, in the KV bucket
// toolbus_ledger keyed by call id. The results half of the ledger is
// TOOL_RESULTS itself: one write-once message per call id, kept for the
// result max age. A "started" record is written only for calls that must
// not run twice (destructive, not idempotent), so the common call pays no
// extra write; a redelivery that finds it, and no result, ends
// outcome_unknown.
type ledger struct {
	kv jetstream.KeyValue
}

// ledgerEntry is the value stored under a call id.
type ledgerEntry struct {
	State   string    `json:"state"` // "started" or "cancelled"
	Worker  string    `json:"worker,omitempty"`
	Started time.Time `json:"started"`
}

func (l *ledger) start(ctx context.Context, id, worker string) error {
	b, _ := json.Marshal(ledgerEntry{State: "started", Worker: worker, Started: time.Now().UTC()})
	_, err := l.kv.Put(ctx, id, b)
	return err
}

// started reports whether an earlier attempt recorded a start. On a read
// error it says yes: running a destructive call twice is the worse mistake.
func (l *ledger) started(ctx context.Context, id string) bool {
	e, err := l.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false
	}
	if err != nil {
		return true
	}
	var le ledgerEntry
	return json.Unmarshal(e.Value(), &le) != nil || le.State == "started"
}

// cancelSet remembers call ids cancelled before any worker ran them. Every
// worker hears every tool.cancel.<id>, so each keeps its own set; entries
// expire after the duplicate window's worth of queueing.
type cancelSet struct {
	mu  gosync.Mutex
	ids map[string]time.Time
	ttl time.Duration
}

func (s *cancelSet) add(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ids == nil {
		s.ids = map[string]time.Time{}
	}
	now := time.Now()
	s.ids[id] = now.Add(s.ttl)
	if len(s.ids) > 1024 {
		for k, exp := range s.ids {
			if now.After(exp) {
				delete(s.ids, k)
			}
		}
	}
}

func (s *cancelSet) has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.ids[id]
	return ok && time.Now().Before(exp)
}

func openLedger(ctx context.Context, js jetstream.JetStream) (*ledger, error) {
	kv, err := js.KeyValue(ctx, subjects.BucketLedger)
	if err != nil {
		return nil, err
	}
	return &ledger{kv: kv}, nil
}
