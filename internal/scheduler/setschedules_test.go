package scheduler

import (
	"fmt"
	"testing"
	"time"

	"github.com/toolbus-dev/toolbus/internal/natstest"
	"github.com/toolbus-dev/toolbus/internal/testutil"
)

// TestSetSchedules: a reload of the config schedules starts the added one,
// stops the removed one, and a bad set changes nothing.
func TestSetSchedules(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	t0 := time.Date(2026, 3, 1, 12, 0, 3, 0, time.UTC)
	clock := newFakeClock(t0)
	rec := &recorder{}
	r := startReplica(t, srv, WithClock(clock), WithOnFire(rec.add),
		WithSchedules([]Schedule{{Name: "old", Spec: "@every 10s", Kind: KindResync}}))
	testutil.CheckFor(t, 10*time.Second, func() error {
		if at := t0.Add(7 * time.Second); !clock.HasTimerAt(at) || clock.Waiters() != 2 {
			return fmt.Errorf("timers at %v, want the lease's and %v", clock.Pending(), at)
		}
		return nil
	})

	if err := r.s.SetSchedules([]Schedule{{Name: "new", Spec: "@every 1m", Kind: KindResync}}); err != nil {
		t.Fatal(err)
	}
	minute := time.Date(2026, 3, 1, 12, 1, 0, 0, time.UTC)
	testutil.CheckFor(t, 10*time.Second, func() error {
		if clock.HasTimerAt(t0.Add(7*time.Second)) || !clock.HasTimerAt(minute) || clock.Waiters() != 2 {
			return fmt.Errorf("timers at %v, want the lease's and %v only", clock.Pending(), minute)
		}
		return nil
	})

	if err := r.s.SetSchedules([]Schedule{{Name: "bad", Spec: "every so often", Kind: KindResync}}); err == nil {
		t.Fatal("an invalid spec was accepted")
	}
	clock.Set(minute)
	testutil.CheckFor(t, 10*time.Second, func() error {
		if n := rec.count(func(f Fire) bool { return f.Name == "new" && f.Err == nil }); n != 1 {
			return fmt.Errorf("%d fires of the added schedule", n)
		}
		return nil
	})
	if n := rec.count(func(f Fire) bool { return f.Name != "new" }); n != 0 {
		t.Fatalf("%d fires of other schedules", n)
	}

	if err := r.s.SetSchedules(nil); err != nil {
		t.Fatal(err)
	}
	waitWaiters(t, clock, 1)
}
