package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/toolbus-dev/toolbus/client"
	"github.com/toolbus-dev/toolbus/internal/demo"
	"github.com/toolbus-dev/toolbus/internal/mcppool"
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

// Beyond the runners, a call waiting for its server over streamable HTTP
// waits on the pool's shallow goroutine (mcppool's waiting.await), not on a
// goroutine of the worker's: no goroutine is parked inside execute. Such a
// call still answers, streams its progress, ends on a cancel and on its
// deadline, and is delivered once.
func TestCallsWaitOffTheWorker(t *testing.T) {
	const sleeping = 300 // more than the 256 runners
	ns, pool, cl := demoRigWith(t, sleeping+20)
	w, _ := runWorker(t, ns.Conn(t), pool, worker.Config{Concurrency: sleeping + 20, MaxAckPending: sleeping + 20}, testLog(t))
	if res := (<-callAsync(cl, "demo", "echo", `{"message":"warm"}`)).must(t); res.Status != subjects.StatusOK {
		t.Fatalf("first call: %+v", res) // the session is open: calls go the shallow way
	}
	var sleeps []<-chan callAnswer
	for i := range sleeping - 2 {
		sleeps = append(sleeps, callAsync(cl, "demo", "sleep", `{"ms":60000}`, client.WithCallID(fmt.Sprintf("sleep-%d", i))))
	}
	progressed := make(chan struct{})
	var once sync.Once
	withProgress := callAsync(cl, "demo", "sleep", `{"ms":60000,"steps":600}`, client.WithCallID("progress"),
		client.WithProgress(func(subjects.Progress) { once.Do(func() { close(progressed) }) }))
	timedOut := callAsync(cl, "demo", "sleep", `{"ms":60000}`, client.WithTimeout(3*time.Second))

	waiting := func() (awaiting int, inWorker int) {
		buf := make([]byte, 16<<20)
		dump := string(buf[:runtime.Stack(buf, true)])
		for g := range strings.SplitSeq(dump, "\n\n") {
			switch {
			case strings.Contains(g, "mcppool.(*waiting).await"):
				awaiting++
			case strings.Contains(g, "worker.(*Worker).execute"):
				inWorker++
			}
		}
		return awaiting, inWorker
	}
	natstest.CheckFor(t, 30*time.Second, func() error {
		if got, _ := waiting(); got < sleeping {
			return fmt.Errorf("%d calls wait on the pool's goroutine, want %d", got, sleeping)
		}
		return nil
	})
	if _, inWorker := waiting(); inWorker != 0 {
		t.Fatalf("%d goroutines wait inside the worker's execute; calls in flight should wait on the pool's alone", inWorker)
	}
	if got := w.Stats().InFlight["demo"]; got != sleeping {
		t.Fatalf("%d calls in flight, want %d", got, sleeping)
	}
	// Calls beside the waiting ones are answered through the same way.
	for i := range 10 {
		msg := fmt.Sprintf("beside %d", i)
		if res := (<-callAsync(cl, "demo", "echo", fmt.Sprintf(`{"message":%q}`, msg))).must(t); res.Status != subjects.StatusOK || !strings.Contains(string(res.Result), msg) {
			t.Fatalf("echo beside waiting calls: %+v", res)
		}
	}
	select {
	case <-progressed:
	case <-time.After(30 * time.Second):
		t.Fatal("no progress from a call waiting on the pool's goroutine")
	}
	if res := (<-timedOut).must(t); res.Status != subjects.StatusError || res.Error.Code != subjects.CodeTimeout {
		t.Fatalf("call past its deadline: %+v", res)
	}
	for i := range sleeping - 2 {
		if err := cl.Cancel(fmt.Sprintf("sleep-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.Cancel("progress"); err != nil {
		t.Fatal(err)
	}
	for _, a := range append(sleeps, withProgress) {
		if res := (<-a).must(t); res.Status != subjects.StatusError || res.Error.Code != subjects.CodeCancelled {
			t.Fatalf("cancelled call: %+v", res)
		}
	}
	assertDeliveredOnce(t, ns, sleeping+1+10)
}

// Beyond the runners, a call answered before its request (here a
// destructive call whose start mark an earlier attempt left: outcome
// unknown, found by its claim) is settled by the runner that took it. A
// runner that waited for another runner to settle it would wait forever
// once every runner held such a call: a burst of them deadlocked the
// worker.
func TestRunnersSettleCallsAnsweredBeforeTheirRequest(t *testing.T) {
	const n = 400 // more than the 256 runners
	url, stopDemo, err := demo.Serve(context.Background(), demo.TransportHTTP, "127.0.0.1:0", demo.Options{Faults: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopDemo)
	ns, cat, pool := catalogParts(t, url)
	ctx := context.Background()
	kv, err := ns.JS.KeyValue(ctx, subjects.BucketLedger)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = client.NewCallID()
		if _, err := kv.Create(ctx, subjects.LedgerKey(subjects.DefaultAgent, ids[i]), []byte(`{"state":"started","worker":"gone"}`)); err != nil {
			t.Fatal(err)
		}
	}
	cl, err := client.New(ns.NC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	startWorker(t, ns.Conn(t), pool, worker.Config{Concurrency: n, MaxAckPending: n}, testLog(t), worker.WithCatalog(cat))
	var answers []<-chan callAnswer
	for i := range ids {
		answers = append(answers, callAsync(cl, "demo", "destroy", fmt.Sprintf(`{"key":"k%d"}`, i), client.WithCallID(ids[i])))
	}
	for _, a := range answers {
		if res := (<-a).must(t); res.Error == nil || res.Error.Code != subjects.CodeOutcomeUnknown {
			t.Fatalf("got %+v; want outcome_unknown", res)
		}
	}
	assertDeliveredOnce(t, ns, n)
}

// panickingCallThen is the pool, with a bug in CallThen for calls whose
// arguments say "boom": it panics before it hands the call on.
type panickingCallThen struct{ *mcppool.Pool }

func (p panickingCallThen) CallThen(ctx context.Context, server, tool string, args json.RawMessage, co mcppool.CallOptions, then func(json.RawMessage, bool, error)) {
	if bytes.Contains(args, []byte("boom")) {
		panic("injected boom in CallThen")
	}
	p.Pool.CallThen(ctx, server, tool, args, co, then)
}

// Beyond the runners, a call whose CallThen panics (a bug: then will not
// run) is answered internal and settled, as a panic anywhere else in a
// call's handling is; it was lost: no answer, its slot taken and its lease
// renewed until the worker stopped.
func TestPanicInCallThenIsAnsweredInternal(t *testing.T) {
	ns, pool, cl := demoRig(t)
	startWorker(t, ns.Conn(t), panickingCallThen{pool}, worker.Config{Concurrency: 300, MaxAckPending: 300}, testLog(t))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	res, err := cl.Call(ctx, "demo", "echo", `{"message":"boom"}`)
	if err != nil {
		t.Fatalf("the call whose CallThen panicked: %v", err)
	}
	if res.Status != subjects.StatusError || res.Error == nil || res.Error.Code != subjects.CodeInternal || !strings.Contains(res.Error.Message, "injected boom") {
		t.Fatalf("panicked call answered %+v (%+v)", res, res.Error)
	}
	if got := call(t, cl, "demo", "echo", `{"message":"after"}`); got.Status != subjects.StatusOK || text(t, got) != "after" {
		t.Fatalf("after the panic: %+v", got)
	}
	assertDeliveredOnce(t, ns, 2)
}
