package worker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/toolbus-dev/toolbus/internal/natstest"
	"github.com/toolbus-dev/toolbus/internal/worker"
	"github.com/toolbus-dev/toolbus/subjects"
)

// SetConcurrency changes the calls a running worker takes at once: a
// paused server's calls hold their slots, so the slots taken are the calls
// in flight, and the rest wait undelivered in the consumer.
func TestSetConcurrencyLive(t *testing.T) {
	ns, pool, cl := demoRig(t)
	w, _ := runWorker(t, ns.Conn(t), pool, worker.Config{Concurrency: 1}, testLog(t))
	w.Pause("demo")
	var answers []<-chan callAnswer
	send := func(n int) {
		for i := range n {
			answers = append(answers, callAsync(cl, "demo", "echo", fmt.Sprintf(`{"message":"m%d"}`, len(answers)+i)))
		}
	}
	// taken waits until the worker holds want calls and the consumer
	// still has queued ones undelivered.
	taken := func(want int, queued uint64) {
		t.Helper()
		natstest.CheckFor(t, 10*time.Second, func() error {
			cons, err := ns.JS.Consumer(context.Background(), subjects.StreamCalls, subjects.ConsumerWorkers)
			if err != nil {
				return err
			}
			ci := cons.CachedInfo()
			if n := w.Stats().InFlight["demo"]; n != want || ci.NumPending != queued || ci.NumAckPending != want {
				return fmt.Errorf("%d in flight, consumer %d pending and %d awaiting ack; want %d, %d, %d", n, ci.NumPending, ci.NumAckPending, want, queued, want)
			}
			return nil
		})
	}
	send(4)
	taken(1, 3)
	w.SetConcurrency(3)
	taken(3, 1)
	w.SetConcurrency(4)
	taken(4, 0)
	w.SetConcurrency(2) // lowered: the four taken stay, no more are taken
	send(2)
	taken(4, 2)
	w.Resume("demo")
	for _, a := range answers[:4] {
		if res := (<-a).must(t); res.Status != subjects.StatusOK {
			t.Fatalf("call after Resume: %+v", res)
		}
	}
	answers = answers[4:]
	for _, a := range answers {
		if res := (<-a).must(t); res.Status != subjects.StatusOK {
			t.Fatalf("call after Resume: %+v", res)
		}
	}
	// Two slots now: paused again, two are taken and two wait.
	w.Pause("demo")
	answers = nil
	send(4)
	taken(2, 2)
	w.Resume("demo")
	for _, a := range answers {
		if res := (<-a).must(t); res.Status != subjects.StatusOK {
			t.Fatalf("call after Resume: %+v", res)
		}
	}
	assertDeliveredOnce(t, ns, 10)
}

// Beyond 256 slots (the runners) a runner takes a call only to its
// execution: calls waiting in execution (here, on a paused server) hold
// their slots, not runners, so more of them than there are runners are in
// flight at once, and each is answered once. The worker starts below the
// runners' number (calls run on their runner) and is raised past it live.
func TestMoreCallsInFlightThanRunners(t *testing.T) {
	const n = 300
	ns, pool, cl := demoRig(t)
	w, _ := runWorker(t, ns.Conn(t), pool, worker.Config{Concurrency: 2, MaxAckPending: n}, testLog(t))
	w.Pause("demo")
	var answers []<-chan callAnswer
	for i := range n {
		answers = append(answers, callAsync(cl, "demo", "echo", fmt.Sprintf(`{"message":"m%d"}`, i)))
	}
	inFlight := func(want int) {
		t.Helper()
		natstest.CheckFor(t, 30*time.Second, func() error {
			if got := w.Stats().InFlight["demo"]; got != want {
				return fmt.Errorf("%d calls in flight, want %d", got, want)
			}
			return nil
		})
	}
	inFlight(2)
	w.SetConcurrency(n)
	inFlight(n)
	w.Resume("demo")
	for _, a := range answers {
		if res := (<-a).must(t); res.Status != subjects.StatusOK {
			t.Fatalf("call after Resume: %+v", res)
		}
	}
	assertDeliveredOnce(t, ns, n)
}
