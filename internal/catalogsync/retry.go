package catalogsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/toolbus-dev/toolbus/internal/registry"
	"github.com/toolbus-dev/toolbus/subjects"
)

// Until a server has synced once, the catalog refuses calls to it, so a
// failed first sync must not wait for the next scheduled resync. Each
// failed sync of a server that never synced queues a retry on
// CATALOG_RESYNC, held back by the backoff (2s doubling to 60s, with
// jitter): the retry survives the replica that queued it, and whichever
// replica is free takes it. Retries do not multiply across replicas: a
// retry runs only if no sync of the server was tried since the failure it
// follows — one that was queued its own retry, or succeeded — so the fleet
// keeps one chain per server whatever triggered the syncs.

// retryRequest is the body of a resync request that retries a failed first
// sync; plain requests have none.
type retryRequest struct {
	// Attempt numbers the retry (1 for the first) and sets its delay.
	Attempt int `json:"attempt"`
	// ServerID is the registration it retries: a server removed and added
	// again starts afresh.
	ServerID string `json:"server_id"`
	// After is the time of the failed sync it follows (SyncStatus.At); a
	// sync tried after it makes this retry redundant.
	After time.Time `json:"after"`
	// Delay holds the request back on its first delivery.
	Delay subjects.Duration `json:"delay"`
}

// queueRetry queues the retry that follows the failed first sync recorded
// in st. Failing to queue it is logged: the scheduled resync still comes.
func (s *Syncer) queueRetry(ctx context.Context, st subjects.SyncStatus, attempt int) {
	subj, err := subjects.CatalogResync(st.Server)
	if err != nil {
		return
	}
	delay := s.retryDelay(attempt)
	body, _ := json.Marshal(retryRequest{Attempt: attempt, ServerID: st.ServerID, After: st.At, Delay: subjects.Duration(delay)})
	msg := nats.NewMsg(subj)
	msg.Data = body
	// Queued twice for the same failure (a publish retried), it is kept once.
	msg.Header.Set(nats.MsgIdHdr, fmt.Sprintf("first-sync-retry-%s-%s-%d", subj, st.ServerID, st.At.UnixNano()))
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := s.js.PublishMsg(pctx, msg); err != nil {
		s.log.Warn().Err(err).Str("server", st.Server).Msg("could not queue the retry of a failed first sync; the scheduled resync will try again")
		return
	}
	s.log.Debug().Str("server", st.Server).Int("attempt", attempt).Dur("retry_in", delay).Msg("first sync failed; retry queued")
}

// retryDelay is the wait before retry number attempt (1-based): the
// backoff from RetryInitial, doubling with ±25% jitter, at most RetryMax.
func (s *Syncer) retryDelay(attempt int) time.Duration {
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(s.cfg.RetryInitial),
		backoff.WithMaxInterval(s.cfg.RetryMax),
		backoff.WithMultiplier(2),
		backoff.WithRandomizationFactor(0.25),
		backoff.WithMaxElapsedTime(0),
	)
	d := b.NextBackOff()
	for i := 1; i < attempt && i < 64; i++ {
		d = b.NextBackOff()
	}
	return min(d, s.cfg.RetryMax)
}

// settleRetry holds a retry back for its delay on its first delivery and
// drops one that is no longer due; it reports whether it settled msg (else
// the retry runs).
func (s *Syncer) settleRetry(ctx context.Context, msg jetstream.Msg, name string, rt retryRequest) bool {
	if md, err := msg.Metadata(); err == nil && md.NumDelivered == 1 && rt.Delay > 0 {
		_ = msg.NakWithDelay(rt.Delay.D())
		return true
	}
	due, err := s.retryDue(ctx, name, rt)
	switch {
	case errors.Is(err, registry.ErrNotFound):
		_ = msg.TermWithReason("server not registered")
	case err != nil:
		_ = msg.NakWithDelay(5 * time.Second)
	case !due:
		_ = msg.Ack()
	default:
		return false
	}
	return true
}

// retryDue reports whether the retry rt of server name should still run:
// the same registration has not synced since, and no sync was tried after
// the failure rt follows (that one queued its own retry). registry.ErrNotFound: the
// server is gone.
func (s *Syncer) retryDue(ctx context.Context, name string, rt retryRequest) (bool, error) {
	st, err := s.reg.Status(ctx, name)
	if err != nil {
		return false, err
	}
	return st.ServerID == rt.ServerID && !st.OK && st.LastOK.IsZero() && !st.At.After(rt.After), nil
}
