package worker_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/toolbus-dev/toolbus/client"
	"github.com/toolbus-dev/toolbus/internal/mcppool"
	"github.com/toolbus-dev/toolbus/internal/natstest"
	"github.com/toolbus-dev/toolbus/internal/streams"
	"github.com/toolbus-dev/toolbus/internal/testutil"
	"github.com/toolbus-dev/toolbus/internal/worker"
	"github.com/toolbus-dev/toolbus/subjects"
)

// keepers counts the keeper messages in TOOL_CALLS.
func keepers(ctx context.Context, js jetstream.JetStream) (uint64, error) {
	s, err := js.Stream(ctx, subjects.StreamCalls)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subjects.CallsKeeper))
	if err != nil {
		return 0, err
	}
	return info.State.Subjects[subjects.CallsKeeper], nil
}

// While a worker acks calls it keeps a keeper message in TOOL_CALLS; the
// consumer never hands one to a worker (no dead letter, every call
// answered); an idle worker publishes none, and they expire.
func TestKeeperMessages(t *testing.T) {
	r := newRig(t, worker.Config{Name: "w1"}, 0)
	stop := startWorker(t, r.ns.Conn(t), r.pool, worker.Config{Name: "w1"}, testLog(t))
	for i := range 20 {
		res := call(t, r.client, "demo-http", "echo", fmt.Sprintf(`{"message":"call %d"}`, i))
		if res.Status != subjects.StatusOK {
			t.Fatalf("call %d: %+v", i, res)
		}
	}
	ctx := context.Background()
	natstest.CheckFor(t, 10*time.Second, func() error {
		n, err := keepers(ctx, r.ns.JS)
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("no keeper message in %s after 20 calls", subjects.StreamCalls)
		}
		return nil
	})
	s, err := r.ns.JS.Stream(ctx, subjects.StreamCalls)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := streams.CallsStored(ctx, s); err != nil || n != 0 {
		t.Fatalf("calls left in %s: %d (%v), want 0", subjects.StreamCalls, n, err)
	}
	if oldest, err := streams.OldestCall(ctx, s); err != nil || !oldest.IsZero() {
		t.Fatalf("oldest call %v (%v): a keeper counted as a call", oldest, err)
	}
	dead, err := r.ns.JS.Stream(ctx, subjects.StreamDead)
	if err != nil {
		t.Fatal(err)
	}
	if n := dead.CachedInfo().State.Msgs; n != 0 {
		t.Fatalf("%d dead letters: a keeper was delivered to the worker", n)
	}
	// Idle, the worker publishes none, and those it published expire.
	natstest.CheckFor(t, 20*time.Second, func() error {
		n, err := keepers(ctx, r.ns.JS)
		if err != nil {
			return err
		}
		if n != 0 {
			return fmt.Errorf("%d keeper messages left while the worker is idle; they must expire", n)
		}
		return nil
	})
	stop()
}

// A workers' consumer made by an older toolbus takes every subject of
// TOOL_CALLS: the worker then publishes no keeper (it would be handed
// its own keepers), says so, and runs calls as before.
func TestKeeperOffForUnfilteredConsumer(t *testing.T) {
	ns := natstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := streams.WorkerConsumer(0, 0, 0)
	cfg.FilterSubject = ""
	if _, err := ns.JS.CreateOrUpdateConsumer(ctx, subjects.StreamCalls, cfg); err != nil {
		t.Fatal(err)
	}
	var logs testutil.SyncBuffer
	log := zerolog.New(&logs)
	pool := mcppool.New(log)
	t.Cleanup(func() { pool.Close() })
	for _, s := range servers(t) {
		pool.Upsert(s)
	}
	w := worker.New(ns.Conn(t), ns.JS, pool, worker.Config{Name: "old"}, log)
	wctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	defer func() { stop(); <-done }()
	cl, err := client.New(ns.NC)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range 5 {
		if res := call(t, cl, "demo-http", "echo", `{"message":"hi"}`); res.Status != subjects.StatusOK {
			t.Fatalf("call %d: %+v", i, res)
		}
	}
	natstest.CheckFor(t, 10*time.Second, func() error {
		if !strings.Contains(logs.String(), "keeper messages are off") {
			return fmt.Errorf("the worker did not say keeper messages are off; log:\n%s", logs.String())
		}
		return nil
	})
	if n, err := keepers(ctx, ns.JS); err != nil || n != 0 {
		t.Fatalf("%d keeper messages (%v) with an unfiltered consumer, want 0", n, err)
	}
}

// A ledger filled faster than calls time out (here: 1 MiB of marks written
// at once) makes the worker warn that destructive calls could lose their
// start marks, and say what to raise.
func TestLedgerWindowWarning(t *testing.T) {
	worker.SetLedgerWindowEvery(t, 100*time.Millisecond)
	ns := natstest.StartWith(t, nil, streams.Options{LedgerMaxBytes: 1 << 20})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kv, err := ns.JS.KeyValue(ctx, subjects.BucketLedger)
	if err != nil {
		t.Fatal(err)
	}
	mark := []byte(`{"state":"started","worker":"w1","started":"2026-11-29T00:00:00Z","mark":"0123456789abcdefghijkl"}`)
	for i := range 12000 { // 12,000 marks of about 100 bytes fill 1 MiB
		if _, err := kv.Create(ctx, fmt.Sprintf("agent1.c%d", i), mark); err != nil {
			t.Fatal(err)
		}
	}
	var logs testutil.SyncBuffer
	log := zerolog.New(&logs)
	pool := mcppool.New(log)
	t.Cleanup(func() { pool.Close() })
	// Not startWorker: it provisions again, with the default ledger cap.
	w := worker.New(ns.Conn(t), ns.JS, pool, worker.Config{Name: "w1"}, log)
	wctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	defer func() { stop(); <-done }()
	natstest.CheckFor(t, 20*time.Second, func() error {
		if !strings.Contains(logs.String(), "nats.ledger_max_bytes") {
			return fmt.Errorf("no ledger warning yet; log:\n%s", logs.String())
		}
		return nil
	})
}
