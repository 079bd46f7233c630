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
// toolbus_ledger keyed by <agent>.<call_id>. The results half of the ledger
// is TOOL_RESULTS itself: one write-once message per call, kept for the
// result max age. A "started" record is created only for calls that must
// not run twice (destructive, not idempotent), so the common call pays no
// extra write; any attempt whose create finds one, and no result, ends
// outcome_unknown.
type ledger struct {
	kv jetstream.KeyValue
}

// ledgerEntry is the value stored under a call's ledger key.
type ledgerEntry struct {
	State   string    `json:"state"` // "started"
	Worker  string    `json:"worker,omitempty"`
	Started time.Time `json:"started"`
}

// claim records that this attempt starts the call, atomically: a KV
// create, which fails with errStartedBefore when any earlier attempt of the
// call (another worker, a delivery a restarted NATS server counted as the
// first) already recorded its start. One round trip both marks and checks,
// whatever the delivery count says.
func (l *ledger) claim(ctx context.Context, key, worker string) error {
	b, _ := json.Marshal(ledgerEntry{State: "started", Worker: worker, Started: time.Now().UTC()})
	_, err := l.kv.Create(ctx, key, b)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return errStartedBefore
	}
	return err
}

var errStartedBefore = errors.New("an earlier attempt started this call")

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
