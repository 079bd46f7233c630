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

// errFinal marks an error retrying will not change.
type errFinal struct{ error }

func (e errFinal) Unwrap() error { return e.error }

// final wraps err so tryFor returns it at once.
func final(err error) error { return errFinal{err} }

// tryFor runs op, each attempt under its own per-attempt timeout, until it
// succeeds, returns a final error, or budget (or ctx) runs out; then it
// returns op's last error. Waits between attempts back off from 100ms to 1s.
func tryFor(ctx context.Context, budget, per time.Duration, op func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	bo := backoff.NewExponentialBackOff(backoff.WithInitialInterval(100*time.Millisecond), backoff.WithMaxInterval(time.Second), backoff.WithMaxElapsedTime(0))
	for {
		actx, acancel := context.WithTimeout(ctx, per)
		err := op(actx)
		acancel()
		var f errFinal
		switch {
		case err == nil:
			return nil
		case errors.As(err, &f):
			return f.error
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(bo.NextBackOff()):
		}
	}
}
