package worker

import (
	"context"
	"errors"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Bounds of the JetStream round trips on the call path. Each attempt has its
// own timeout, so a request lost in a reconnect or a cluster leader change
// costs one attempt, not the whole budget.
const (
	attemptTimeout = 2 * time.Second  // one lookup, claim or store
	lookupBudget   = 10 * time.Second // then the call is handed back for later
	storeBudget    = time.Minute      // a finished result is kept trying this long (at least 2×AckWait)
)

// final marks an error retrying will not change: retry returns it at once.
func final(err error) error { return backoff.Permanent(err) }

// expBackOff is the backoff of every retry loop in the worker: from
// initial, doubling with jitter, to at most maxWait, never giving up by
// itself (budgets and contexts bound the loops).
func expBackOff(initial, maxWait time.Duration) *backoff.ExponentialBackOff {
	return backoff.NewExponentialBackOff(backoff.WithInitialInterval(initial), backoff.WithMaxInterval(maxWait), backoff.WithMaxElapsedTime(0))
}

// retry is the worker's one retry helper. It runs op until op succeeds or
// returns a final error, or the backoff says stop, or ctx ends; it then
// returns op's last error. Each attempt runs under its own timeout per
// when per > 0. notify, when set, hears each failure before its wait. The
// backoff is made (newBackOff) only after a first failure, so the common
// call pays for one attempt and nothing else.
func retry(ctx context.Context, newBackOff func() backoff.BackOff, per time.Duration, notify backoff.Notify, op func(ctx context.Context) error) error {
	return retryFailed(ctx, attemptOnce(ctx, per, op), newBackOff, per, notify, op)
}

// attemptOnce runs op once, under per when per > 0.
func attemptOnce(ctx context.Context, per time.Duration, op func(ctx context.Context) error) error {
	if per <= 0 {
		return op(ctx)
	}
	actx, cancel := context.WithTimeout(ctx, per)
	defer cancel()
	return op(actx)
}

// retryFailed is retry from after its first attempt, which returned
// first. A caller that makes the first attempt itself keeps retry's frames
// off its stack while that attempt waits (the MCP call: attempts.after).
func retryFailed(ctx context.Context, first error, newBackOff func() backoff.BackOff, per time.Duration, notify backoff.Notify, op func(ctx context.Context) error) error {
	var perm *backoff.PermanentError
	if first == nil || errors.As(first, &perm) {
		return unwrapPermanent(first)
	}
	last := first
	attempt := func() error {
		last = attemptOnce(ctx, per, op)
		return last
	}
	bo := backoff.WithContext(newBackOff(), ctx)
	// RetryNotify tries at once; the first failure waits its turn first.
	wait := bo.NextBackOff()
	if wait == backoff.Stop {
		return unwrapPermanent(last)
	}
	if notify != nil {
		notify(last, wait)
	}
	t := time.NewTimer(wait)
	select {
	case <-ctx.Done():
		t.Stop()
		return unwrapPermanent(last)
	case <-t.C:
	}
	if err := backoff.RetryNotify(attempt, bo, notify); err != nil {
		return unwrapPermanent(last)
	}
	return nil
}

func unwrapPermanent(err error) error {
	var perm *backoff.PermanentError
	if errors.As(err, &perm) {
		return perm.Err
	}
	return err
}

// tryFor retries op for at most budget (and while ctx lasts), each attempt
// under per, waiting 100ms doubling to 1s between attempts.
func tryFor(ctx context.Context, budget, per time.Duration, op func(ctx context.Context) error) error {
	until := time.Now().Add(budget)
	return retry(ctx, func() backoff.BackOff {
		return &deadlineBackOff{BackOff: expBackOff(100*time.Millisecond, time.Second), until: until}
	}, per, nil, op)
}

// deadlineBackOff stops when the next wait would end after until, and
// waits at least until floor.
type deadlineBackOff struct {
	backoff.BackOff
	until time.Time
	floor time.Time
}

func (b *deadlineBackOff) NextBackOff() time.Duration {
	d := b.BackOff.NextBackOff()
	if d == backoff.Stop {
		return d
	}
	d = max(d, time.Until(b.floor))
	if time.Now().Add(d).After(b.until) {
		return backoff.Stop
	}
	return d
}
