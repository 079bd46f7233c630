package worker

import (
	"context"
	"encoding/json"
	"errors"
	gosync "sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/toolbus-dev/toolbus/internal/streams"
	"github.com/toolbus-dev/toolbus/subjects"
)

// ledger is the call ledger's running state, in the KV bucket
// toolbus_ledger keyed by <agent>.<call_id>. The results half of the ledger
// is TOOL_RESULTS itself: one write-once message per call, kept for the
// result max age. An entry is created, once per call id, in two cases
// only, so the common call pays no extra write: "started" by the attempt
// that runs a call that must not run twice (destructive, not idempotent),
// and "cancelled" by the worker that answers a cancel of a call no worker
// has started. An attempt whose create finds a "started" entry and no
// result ends outcome_unknown; one that finds "cancelled" answers cancelled.
type ledger struct {
	kv jetstream.KeyValue
}

// Ledger entry states.
const (
	stateStarted   = "started"
	stateCancelled = "cancelled"
)

// ledgerEntry is the value stored under a call's ledger key.
type ledgerEntry struct {
	State   string    `json:"state"` // stateStarted or stateCancelled
	Worker  string    `json:"worker,omitempty"`
	Started time.Time `json:"started"` // when the entry was written
	// Mark is unique to the attempt that wrote the entry, so a retried
	// create whose first try succeeded (its answer lost) knows the entry
	// is its own.
	Mark string `json:"mark"`
}

var (
	errStartedBefore   = errors.New("an earlier attempt started this call")
	errCancelledBefore = errors.New("the call was cancelled before a worker started it")
)

// claim records that this attempt starts the call, atomically: a KV
// create, which fails with errStartedBefore when any earlier attempt of the
// call (another worker, a delivery a restarted NATS server counted as the
// first) already recorded its start, or errCancelledBefore when a cancel
// was answered first. One round trip both marks and checks, whatever the
// delivery count says.
//
// ttl > 0 makes the mark expire (a per-message TTL, KeyTTL) once no
// delivery of the call can run any more (see markTTL); 0 keeps it for the
// ledger's max age.
//
// Each try has its own timeout and tries go on while ctx allows, so a
// reconnect costs a try, not the call.
func (l *ledger) claim(ctx context.Context, key, worker string, ttl time.Duration) error {
	return l.create(ctx, key, stateStarted, worker, ttl)
}

// markMargin is kept past the last moment a delivery of the call could run,
// for the clocks of workers and NATS servers to disagree.
const markMargin = time.Minute

// markTTL is how long the start mark of j must live: until no delivery of
// the call can run any more, plus markMargin. A delivery after the call's
// deadline is answered timeout before it claims; one of a call without a
// deadline, after Config.QueueTimeout in the queue. A call without a
// deadline and without a queue timeout (or a stored time) may run any time:
// 0, the mark stays for the ledger's max age.
func (w *Worker) markTTL(j *job, now time.Time) time.Duration {
	last := j.deadline
	if j.call.deadline.IsZero() {
		if w.cfg.QueueTimeout <= 0 || j.sent.IsZero() {
			return 0
		}
		// A redelivery starts its own timeout after up to QueueTimeout
		// in the queue.
		if q := j.sent.Add(w.cfg.QueueTimeout).Add(j.deadline.Sub(j.start)); q.After(last) {
			last = q
		}
	}
	return max(last.Sub(now), 0) + markMargin
}

// cancel records that a call no worker has started is cancelled: later
// attempts' claims fail with errCancelledBefore. It fails with
// errStartedBefore when a worker started the call first (that worker
// answers the cancel). Cancelling twice is fine.
func (l *ledger) cancel(ctx context.Context, key, worker string) error {
	err := l.create(ctx, key, stateCancelled, worker, 0)
	if errors.Is(err, errCancelledBefore) {
		return nil
	}
	return err
}

func (l *ledger) create(ctx context.Context, key, state, worker string, ttl time.Duration) error {
	var opts []jetstream.KVCreateOpt
	if ttl > 0 {
		opts = append(opts, jetstream.KeyTTL(ttl))
	}
	mark := nuid.Next()
	b, _ := json.Marshal(ledgerEntry{State: state, Worker: worker, Started: time.Now().UTC(), Mark: mark})
	budget := time.Minute
	if d, ok := ctx.Deadline(); ok {
		budget = time.Until(d)
	}
	return tryFor(ctx, budget, attemptTimeout, func(ctx context.Context) error {
		_, err := l.kv.Create(ctx, key, b, opts...)
		if len(opts) > 0 && ttlDisabled(err) {
			// A ledger provisioned before marks expired (serve not yet
			// upgraded): keep the mark for the ledger's max age.
			opts = nil
			_, err = l.kv.Create(ctx, key, b)
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return err
		}
		e, gerr := l.kv.Get(ctx, key)
		if gerr != nil {
			return gerr // not knowing whose it is: try again
		}
		var le ledgerEntry
		switch {
		case json.Unmarshal(e.Value(), &le) != nil:
			return final(errStartedBefore) // unreadable: assume the worst
		case le.Mark == mark:
			return nil // our own create, whose answer was lost
		case le.State == stateCancelled:
			return final(errCancelledBefore)
		}
		return final(errStartedBefore)
	})
}

// ttlDisabled reports the server's refusal of a per-message TTL on a
// stream that does not allow them (JSMessageTTLDisabledErr).
func ttlDisabled(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == 10166
}

// cancelTTL is how long a worker remembers a cancel of a call it is not
// running. The cancel is also answered at once with a stored cancelled
// result (answerCancel); the set is what stops a delivery that skips the
// result lookup (the first delivery of a tool safe to re-run) and covers a
// store that failed. A call still queued after cancelTTL runs.
const cancelTTL = 10 * time.Minute

// cancelSet remembers call ids cancelled before any worker ran them. Every
// worker hears every tool.cancel.<agent>.<id>, so each keeps its own set;
// entries expire after cancelTTL, and are swept once the set holds more
// than 1024.
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

// ledgerWindowEvery is how often watchLedger looks at the ledger.
var ledgerWindowEvery = 30 * time.Second

// watchLedger warns when the ledger is full and its oldest mark is younger
// than a call's default timeout. A full ledger drops its oldest marks
// rather than refuse new calls, so a destructive call still running (or
// about to be redelivered) may have lost its mark, and a redelivery would
// run it a second time. It warns at most every ten minutes.
func (w *Worker) watchLedger(ctx context.Context) {
	t := time.NewTicker(ledgerWindowEvery)
	defer t.Stop()
	var warned time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s, err := w.js.Stream(ctx, streams.KVStream(subjects.BucketLedger))
		if err != nil {
			continue
		}
		cfg, st := s.CachedInfo().Config, s.CachedInfo().State
		if cfg.MaxBytes <= 0 || st.Msgs == 0 || st.Bytes < uint64(cfg.MaxBytes)/10*9 || time.Since(warned) < 10*time.Minute {
			continue
		}
		window := time.Since(st.FirstTime).Round(time.Second)
		if window >= w.cfg.DefaultTimeout {
			continue
		}
		warned = time.Now()
		w.log.Warn().Dur("window", window).Dur("call_timeout", w.cfg.DefaultTimeout).Int64("ledger_max_bytes", cfg.MaxBytes).
			Msg("the call ledger is full and keeps start marks only for the window: a destructive call redelivered after its mark was dropped could run twice. Raise nats.ledger_max_bytes to at least 235 bytes x such calls per second x their longest deadline")
	}
}
