package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/toolbus-dev/toolbus/client"
	"github.com/toolbus-dev/toolbus/internal/catalog"
	"github.com/toolbus-dev/toolbus/internal/catalogsync"
	"github.com/toolbus-dev/toolbus/internal/demo"
	"github.com/toolbus-dev/toolbus/internal/mcppool"
	"github.com/toolbus-dev/toolbus/internal/natstest"
	"github.com/toolbus-dev/toolbus/internal/registry"
	"github.com/toolbus-dev/toolbus/internal/streams"
	"github.com/toolbus-dev/toolbus/internal/testbin"
	"github.com/toolbus-dev/toolbus/internal/worker"
	"github.com/toolbus-dev/toolbus/subjects"
)

// A call id re-sent after JetStream's duplicate window is a new message, but
// the result is write-once: the caller gets the first result again and the
// tool does not run twice.
func TestResultIsWriteOncePerCallID(t *testing.T) {
	ns := natstest.Start(t)
	ctx := context.Background()
	execLog := t.TempDir() + "/exec.log"
	url, stop, err := demo.Serve(ctx, demo.TransportHTTP, "127.0.0.1:0", demo.Options{Faults: true, ExecLog: execLog})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	pool := mcppool.New(testLog(t))
	defer pool.Close()
	pool.Upsert(registry.Server{Name: "demo", Transport: registry.TransportHTTP, URL: url})
	startWorker(t, ns.Conn(t), pool, worker.Config{}, testLog(t))
	cl, _ := client.New(ns.NC)
	defer cl.Close()
	// A short duplicate window, so the re-send below is a new message.
	cfg := streams.Streams(streams.Options{})[0]
	cfg.Duplicates = 100 * time.Millisecond
	if _, err := ns.JS.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}

	id := client.NewCallID()
	first := call(t, cl, "demo", "count", map[string]string{"key": id}, client.WithCallID(id))
	time.Sleep(300 * time.Millisecond) // outlive the 100ms duplicate window
	second := call(t, cl, "demo", "count", map[string]string{"key": id}, client.WithCallID(id))
	if first.Status != subjects.StatusOK || text(t, first) != "1" || text(t, second) != "1" {
		t.Fatalf("first %s, second %s: want both to say 1 execution", first.Result, second.Result)
	}
	log, _ := os.ReadFile(execLog)
	if n := strings.Count(string(log), "count "+id); n != 1 {
		t.Fatalf("tool ran %d times", n)
	}
}

// A call delivered MaxDeliver times without an ack ends in TOOL_DEAD with
// its reason, out of the work queue, and its caller hears dead_letter —
// even though no worker was running when JetStream gave up on it.
func TestUndeliverableCallBecomesDeadLetter(t *testing.T) {
	ns := natstest.Start(t)
	ctx := context.Background()
	cc := streams.WorkerConsumer(0, time.Second, 2)
	cons, err := ns.JS.CreateOrUpdateConsumer(ctx, subjects.StreamCalls, cc)
	if err != nil {
		t.Fatal(err)
	}
	id := client.NewCallID()
	replies, _ := ns.NC.SubscribeSync(subjects.ToolReply("a1", id))
	m := nats.NewMsg("tool.call.a1.demo.add")
	m.Header.Set(subjects.HeaderCallID, id)
	m.Data = []byte(`{"a":1,"b":2}`)
	if _, err := ns.JS.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	// A "worker" that takes the call and dies without answering, twice.
	for i := 0; i < 2; i++ {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(20*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for range batch.Messages() {
			n++
		}
		if n != 1 {
			t.Fatalf("delivery %d: got %d messages", i+1, n)
		}
	}
	// JetStream gives up after the next AckWait; now a real worker starts.
	pool := mcppool.New(testLog(t))
	defer pool.Close()
	url, stop, err := demo.Serve(ctx, demo.TransportHTTP, "127.0.0.1:0", demo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	pool.Upsert(registry.Server{Name: "demo", Transport: registry.TransportHTTP, URL: url})
	startWorker(t, ns.Conn(t), pool, worker.Config{AckWait: time.Second, MaxDeliver: 2}, testLog(t))

	r, err := replies.NextMsg(20 * time.Second)
	if err != nil {
		t.Fatalf("caller heard nothing: %v", err)
	}
	var res subjects.Result
	_ = json.Unmarshal(r.Data, &res)
	if res.CallID != id || res.Error == nil || res.Error.Code != subjects.CodeDeadLetter {
		t.Fatalf("result %+v, want dead_letter", res)
	}
	dead, err := ns.JS.Stream(ctx, subjects.StreamDead)
	if err != nil {
		t.Fatal(err)
	}
	dm, err := dead.GetLastMsgForSubject(ctx, "tool.dead.a1.demo.add")
	if err != nil {
		t.Fatalf("no dead letter: %v", err)
	}
	if dm.Header.Get(subjects.HeaderDeadReason) == "" || string(dm.Data) != `{"a":1,"b":2}` || dm.Header.Get(subjects.HeaderOrigSubject) != "tool.call.a1.demo.add" {
		t.Fatalf("dead letter %v %s", dm.Header, dm.Data)
	}
	waitQueued(t, ns, 0)

	// `toolbus dlq list` / `replay`: the dead call runs again under a new id.
	dls, err := worker.ListDeadLetters(ctx, ns.JS, 0)
	if err != nil || len(dls) != 1 || dls[0].CallID != id || dls[0].Agent != "a1" || dls[0].Server != "demo" || dls[0].Tool != "add" {
		t.Fatalf("dead letters %+v, %v", dls, err)
	}
	newID, err := worker.ReplayDeadLetter(ctx, ns.JS, dls[0].Seq)
	if err != nil {
		t.Fatal(err)
	}
	cl, _ := client.New(ns.NC, client.WithAgent("a1")) // the replay calls as the same agent
	defer cl.Close()
	natstest.CheckFor(t, 20*time.Second, func() error {
		res, err := cl.Result(ctx, newID)
		if err != nil {
			return err
		}
		if res.Status != subjects.StatusOK || !strings.Contains(string(res.Result), `"3"`) {
			return fmt.Errorf("replayed result %+v", res)
		}
		return nil
	})
	if dls, _ := worker.ListDeadLetters(ctx, ns.JS, 0); len(dls) != 0 {
		t.Fatalf("replayed dead letter still listed: %+v", dls)
	}
}

// occupySlot starts a long call and returns once it runs, holding a slot
// until it is cancelled (by its id); its result arrives on the channel.
func occupySlot(ctx context.Context, r *rig) (id string, result <-chan *subjects.Result) {
	id = client.NewCallID()
	ch := make(chan *subjects.Result, 1)
	var progressed gosync.Once
	running := make(chan struct{})
	go func() {
		res, _ := r.client.Call(ctx, "demo-http", "sleep", `{"ms":50000,"steps":50}`, client.WithCallID(id),
			client.WithProgress(func(subjects.Progress) { progressed.Do(func() { close(running) }) }))
		ch <- res
	}()
	<-running
	return id, ch
}

// A call cancelled while it waits in the queue is answered "cancelled" at
// once — while the only slot is still busy — and never runs.
func TestCancelQueuedCall(t *testing.T) {
	r := newRig(t, worker.Config{Concurrency: 1}, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	blockerID, blocker := occupySlot(ctx, r)
	id, key := client.NewCallID(), "queued-"+client.NewCallID()
	done := make(chan *subjects.Result, 1)
	go func() {
		res, _ := r.client.Call(ctx, "demo-http", "count", map[string]string{"key": key}, client.WithCallID(id))
		done <- res
	}()
	waitQueued(t, r.ns, 2)
	if err := r.client.Cancel(id); err != nil {
		t.Fatal(err)
	}
	var res *subjects.Result
	select {
	case res = <-done:
	case b := <-blocker:
		t.Fatalf("the slot freed (%+v) before the queued call's cancel was answered", b)
	}
	if res == nil || res.Status != subjects.StatusError || res.Error.Code != subjects.CodeCancelled || res.Tool != "count" {
		t.Fatalf("got %+v, want cancelled", res)
	}
	if err := r.client.Cancel(blockerID); err != nil {
		t.Fatal(err)
	}
	if b := <-blocker; b == nil || b.Error == nil || b.Error.Code != subjects.CodeCancelled {
		t.Fatalf("blocker: %+v, want cancelled", b)
	}
	// The queued call, delivered now, finds its answer and does not run.
	waitQueued(t, r.ns, 0)
	if n := call(t, r.client, "demo-http", "executions", map[string]string{"key": key}); text(t, n) != fmt.Sprintf(`{%q:0}`, key) {
		t.Fatalf("the cancelled call ran: %s", text(t, n))
	}
}

// A deleted consumer is recreated and the worker keeps consuming.
func TestDeletedConsumerIsRecreated(t *testing.T) {
	r := newRig(t, worker.Config{}, 1)
	if res := call(t, r.client, "demo-http", "add", `{"a":1,"b":1}`); res.Status != subjects.StatusOK {
		t.Fatalf("before: %+v", res)
	}
	if err := r.ns.JS.DeleteConsumer(context.Background(), subjects.StreamCalls, subjects.ConsumerWorkers); err != nil {
		t.Fatal(err)
	}
	res := call(t, r.client, "demo-http", "add", `{"a":2,"b":2}`)
	if res.Status != subjects.StatusOK || text(t, res) != "4" {
		t.Fatalf("after the consumer was deleted: %+v", res)
	}
}

// Arguments over the NATS max payload are refused by the client with a
// clear error, before anything is published.
func TestOversizedArgumentsRefused(t *testing.T) {
	// Over the max payload (8 MiB here) arguments go through the object
	// store; over the client's cap for that they are refused before
	// anything is sent.
	r := newRig(t, worker.Config{}, 1)
	cl, err := client.New(r.ns.NC, client.WithAgent("big"), client.WithMaxClaimBytes(8<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	big := `{"message":"` + strings.Repeat("x", 9<<20) + `"}`
	_, err = cl.Call(context.Background(), "demo-http", "echo", big)
	if err == nil || !strings.Contains(err.Error(), "over the 8388608-byte limit of the object store path") {
		t.Fatalf("err = %v", err)
	}
}

// A call that runs longer than AckWait keeps its lease (InProgress) and is
// not redelivered to a second worker while the first is still on it.
func TestLongCallKeepsItsLease(t *testing.T) {
	r := newRig(t, worker.Config{AckWait: time.Second}, 2)
	id := client.NewCallID()
	res := call(t, r.client, "demo-http", "count", map[string]any{"key": id, "ms": 3500}, client.WithCallID(id))
	if res.Status != subjects.StatusOK || res.Attempt != 1 || text(t, res) != "1" {
		t.Fatalf("got %+v %s: want one execution on the first delivery", res, res.Result)
	}
	// Nothing was redelivered behind its back. A redelivery can only come
	// before the ack, and the ack removes the call from the work queue:
	// once it is gone, the consumer's count of deliveries is final.
	waitQueued(t, r.ns, 0)
	info, err := r.ns.JS.Consumer(context.Background(), subjects.StreamCalls, subjects.ConsumerWorkers)
	if err != nil {
		t.Fatal(err)
	}
	if ci := info.CachedInfo(); ci.NumRedelivered != 0 || ci.Delivered.Consumer != 1 {
		t.Fatalf("the long call was delivered %d times (%d redelivered), want once", ci.Delivered.Consumer, ci.NumRedelivered)
	}
}

// catalogRig runs a worker that checks calls against a synced catalog of
// the demo server over streamable HTTP; execLog records what the server
// ran.
func catalogRig(t *testing.T) (ns *natstest.Server, cl *client.Client, execLog string) {
	t.Helper()
	execLog = t.TempDir() + "/exec.log"
	url, stop, err := demo.Serve(context.Background(), demo.TransportHTTP, "127.0.0.1:0", demo.Options{Faults: true, ExecLog: execLog})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	ns, cl = catalogRigFor(t, url)
	return ns, cl, execLog
}

// catalogRigFor is catalogRig for a demo server already running at url.
func catalogRigFor(t *testing.T, url string) (ns *natstest.Server, cl *client.Client) {
	t.Helper()
	ns, catalog, pool := catalogParts(t, url)
	startWorker(t, ns.Conn(t), pool, worker.Config{}, testLog(t), worker.WithCatalog(catalog))
	cl, _ = client.New(ns.NC)
	t.Cleanup(func() { cl.Close() })
	return ns, cl
}

// catalogParts is catalogRigFor without a worker: a synced catalog of the
// demo server at url, and a pool holding it.
func catalogParts(t *testing.T, url string) (ns *natstest.Server, cat *catalog.Catalog, pool *mcppool.Pool) {
	t.Helper()
	ns = natstest.Start(t)
	ctx := context.Background()
	srv := registry.Server{Name: "demo", Transport: registry.TransportHTTP, URL: url, ProtocolVersion: "2025-11-25"}
	reg, err := registry.New(ctx, ns.JS, registry.WithoutResyncOnPut())
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Put(ctx, srv); err != nil {
		t.Fatal(err)
	}
	if _, err := catalogsync.New(ns.JS, reg, catalogsync.Config{NoListen: true}).SyncServer(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	cat, err = catalog.New(ctx, ns.JS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cat.Stop)
	pool = mcppool.New(testLog(t))
	t.Cleanup(func() { pool.Close() })
	pool.Upsert(srv)
	return ns, cat, pool
}

// A destructive call cancelled while queued never runs, even when the
// worker that takes it later did not hear the cancel (it started after):
// the cancel left a mark in the ledger, and the call's claim finds it.
func TestCancelledDestructiveCallNeverRuns(t *testing.T) {
	execLog := t.TempDir() + "/exec.log"
	url, stopDemo, err := demo.Serve(context.Background(), demo.TransportHTTP, "127.0.0.1:0", demo.Options{Faults: true, ExecLog: execLog})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopDemo)
	ns, catalog, pool := catalogParts(t, url)
	cl, _ := client.New(ns.NC)
	t.Cleanup(func() { cl.Close() })
	stopA := startWorker(t, ns.Conn(t), pool, worker.Config{Concurrency: 1, Grace: 50 * time.Millisecond}, testLog(t), worker.WithCatalog(catalog))

	// Worker A's only slot is busy; the destructive call queues.
	running := make(chan struct{})
	var once gosync.Once
	blocker := client.NewCallID()
	callAsync(cl, "demo", "sleep", `{"ms":50000,"steps":50}`, client.WithCallID(blocker),
		client.WithProgress(func(subjects.Progress) { once.Do(func() { close(running) }) }))
	<-running
	id := client.NewCallID()
	queued := callAsync(cl, "demo", "destroy", `{"key":"never"}`, client.WithCallID(id))
	waitQueued(t, ns, 2)
	if err := cl.Cancel(id); err != nil {
		t.Fatal(err)
	}
	if res := (<-queued).must(t); res.Error == nil || res.Error.Code != subjects.CodeCancelled {
		t.Fatalf("queued destructive call: %+v, want cancelled", res)
	}
	// A stops (handing the blocker back); B never heard the cancel.
	stopA()
	startWorker(t, ns.Conn(t), pool, worker.Config{Concurrency: 2}, testLog(t), worker.WithCatalog(catalog))
	natstest.CheckFor(t, 10*time.Second, func() error {
		s, err := ns.JS.Stream(context.Background(), subjects.StreamCalls)
		if err != nil {
			return err
		}
		n, err := streams.CallsStored(context.Background(), s)
		if err != nil {
			return err
		}
		if n != 1 {
			return fmt.Errorf("%d calls queued, want only the blocker", n)
		}
		return nil
	})
	if err := cl.Cancel(blocker); err != nil {
		t.Fatal(err)
	}
	waitQueued(t, ns, 0)
	if b, _ := os.ReadFile(execLog); strings.Contains(string(b), "destroy") {
		t.Fatalf("the cancelled destructive call ran: %q", b)
	}
	res, err := cl.Result(context.Background(), id)
	if err != nil || res.Error == nil || res.Error.Code != subjects.CodeCancelled {
		t.Fatalf("stored answer %+v %v, want the cancelled one", res, err)
	}
}

// With the catalog, an unknown tool and arguments that break the tool's
// schema are refused by the worker without reaching the MCP server.
func TestCatalogRefusesBeforeTheServer(t *testing.T) {
	_, cl, execLog := catalogRig(t)
	res := call(t, cl, "demo", "count", `{"key":7}`)
	if res.Error == nil || res.Error.Code != subjects.CodeInvalidArguments || !strings.Contains(res.Error.Message, `argument "key"`) {
		t.Fatalf("schema violation: %+v", res)
	}
	res = call(t, cl, "demo", "no_such_tool", `{}`)
	if res.Error == nil || res.Error.Code != subjects.CodeUnknownTool || !strings.Contains(res.Error.Message, "toolbus tools demo") {
		t.Fatalf("unknown tool: %+v", res)
	}
	res = call(t, cl, "demo", "count", `{"key":"ok"}`)
	if res.Status != subjects.StatusOK {
		t.Fatalf("valid call: %+v", res)
	}
	log, _ := os.ReadFile(execLog)
	if string(log) != "count ok\n" {
		t.Fatalf("the MCP server ran %q; want only the valid call", log)
	}
}

// A destructive, non-idempotent call whose start mark already exists — an
// earlier attempt started it and stored no result — is answered
// outcome_unknown and not run again, even when this delivery says it is the
// first (a NATS server killed -9 redelivers with the count reset).
func TestDestructiveCallStartedBeforeIsNotRunAgain(t *testing.T) {
	ns, cl, execLog := catalogRig(t)
	ctx := context.Background()

	// The mark an earlier attempt left, as the ledger writes it.
	kv, err := ns.JS.KeyValue(ctx, subjects.BucketLedger)
	if err != nil {
		t.Fatal(err)
	}
	id := client.NewCallID()
	if _, err := kv.Create(ctx, subjects.LedgerKey(subjects.DefaultAgent, id), []byte(`{"state":"started","worker":"gone"}`)); err != nil {
		t.Fatal(err)
	}
	res := call(t, cl, "demo", "destroy", `{"key":"once"}`, client.WithCallID(id))
	if res.Error == nil || res.Error.Code != subjects.CodeOutcomeUnknown || res.Attempt != 1 {
		t.Fatalf("got %+v; want outcome_unknown on the first delivery", res)
	}
	// A fresh call id runs, once, and leaves its mark.
	res = call(t, cl, "demo", "destroy", `{"key":"fresh"}`)
	if res.Status != subjects.StatusOK {
		t.Fatalf("fresh destroy: %+v", res)
	}
	if _, err := kv.Get(ctx, subjects.LedgerKey(subjects.DefaultAgent, res.CallID)); err != nil {
		t.Fatalf("no start mark for a destroy that ran: %v", err)
	}
	log, _ := os.ReadFile(execLog)
	if string(log) != "destroy fresh\n" {
		t.Fatalf("the MCP server ran %q; want only the fresh destroy", log)
	}
}

// A destructive, non-idempotent call whose HTTP MCP server dies after the
// request reached it ends outcome_unknown — it may have run — and is not
// run again; server_unavailable would invite a blind retry.
func TestDestructiveCallCutOffIsOutcomeUnknown(t *testing.T) {
	bin := testbin.Build(t, "github.com/toolbus-dev/toolbus/cmd/mcp-demo")
	execLog := t.TempDir() + "/exec.log"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	srvProc := exec.Command(bin, "--transport", "http", "--addr", addr, "--faults", "--exec-log", execLog)
	if err := srvProc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srvProc.Process.Kill(); _ = srvProc.Wait() })
	natstest.CheckFor(t, 10*time.Second, func() error {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	})
	_, cl := catalogRigFor(t, "http://"+addr+"/mcp")

	done := callAsync(cl, "demo", "destroy", `{"key":"cut","ms":30000}`)
	natstest.CheckFor(t, 10*time.Second, func() error {
		if b, _ := os.ReadFile(execLog); string(b) != "destroy cut\n" {
			return fmt.Errorf("destroy has not reached the server yet")
		}
		return nil
	})
	if err := srvProc.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	res := (<-done).must(t)
	if res.Error == nil || res.Error.Code != subjects.CodeOutcomeUnknown || !strings.Contains(res.Error.Message, "may have run") {
		t.Fatalf("got %+v; want outcome_unknown", res)
	}
}

// A call whose deadline passes while it waits in the queue is answered
// timeout at its deadline — while the only slot is still busy — not when a
// slot frees, and never runs.
func TestQueuedCallPastItsDeadlineIsAnswered(t *testing.T) {
	r := newRig(t, worker.Config{Concurrency: 1}, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	blockerID, blocker := occupySlot(ctx, r)
	key := "late-" + client.NewCallID()
	done := make(chan *subjects.Result, 1)
	go func() {
		res, _ := r.client.Call(ctx, "demo-http", "count", map[string]string{"key": key}, client.WithTimeout(time.Second))
		done <- res
	}()
	var res *subjects.Result
	select {
	case res = <-done:
	case b := <-blocker:
		t.Fatalf("the slot freed (%+v) before the queued call's deadline was answered", b)
	}
	if res == nil || res.Error == nil || res.Error.Code != subjects.CodeTimeout || res.Tool != "count" {
		t.Fatalf("got %+v, want timeout", res)
	}
	if err := r.client.Cancel(blockerID); err != nil {
		t.Fatal(err)
	}
	<-blocker
	waitQueued(t, r.ns, 0)
	if n := call(t, r.client, "demo-http", "executions", map[string]string{"key": key}); text(t, n) != fmt.Sprintf(`{%q:0}`, key) {
		t.Fatalf("the expired call ran: %s", text(t, n))
	}
}

// A re-sent call id of a tool safe to re-run (read-only) skips the lookup
// and may run again, but its caller hears the first, stored answer.
func TestResentSafeCallIDGetsTheStoredAnswer(t *testing.T) {
	ns, cl, _ := catalogRig(t)
	shrinkDuplicateWindow(t, ns, 100*time.Millisecond)
	id := client.NewCallID()
	first := call(t, cl, "demo", "echo", `{"message":"once"}`, client.WithCallID(id))
	if first.Status != subjects.StatusOK {
		t.Fatalf("first: %+v", first)
	}
	sub, err := ns.NC.SubscribeSync(subjects.ToolReply(subjects.DefaultAgent, id))
	if err != nil {
		t.Fatal(err)
	}
	resendAfterWindow(t, ns, "tool.call.default.demo.echo", id, []byte(`{"message":"twice"}`))
	m, err := sub.NextMsg(20 * time.Second)
	if err != nil {
		t.Fatalf("the re-sent call id was not answered: %v", err)
	}
	var again subjects.Result
	if err := json.Unmarshal(m.Data, &again); err != nil {
		t.Fatal(err)
	}
	if again.DurationMS != first.DurationMS || !strings.Contains(string(again.Result), "once") {
		t.Fatalf("re-sent: %+v %s; want the stored first answer", again, again.Result)
	}
}

// resendAfterWindow publishes a call with id until JetStream stores it
// rather than dropping it as a duplicate (the window must be short).
func resendAfterWindow(t *testing.T, ns *natstest.Server, subject, id string, body []byte) {
	t.Helper()
	natstest.CheckFor(t, 10*time.Second, func() error {
		msg := nats.NewMsg(subject)
		msg.Header.Set(subjects.HeaderCallID, id)
		msg.Data = body
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ack, err := ns.JS.PublishMsg(ctx, msg)
		if err != nil {
			return err
		}
		if ack.Duplicate {
			return fmt.Errorf("still inside the duplicate window")
		}
		return nil
	})
}

// A call with no deadline that waited in the queue longer than
// Config.QueueTimeout is answered timeout, naming the setting, and does not
// run; one with a deadline, queued as long, runs.
func TestQueueTimeoutAnswersOldCallsWithoutDeadline(t *testing.T) {
	const queueTimeout = 200 * time.Millisecond
	r := newRig(t, worker.Config{Concurrency: 1, QueueTimeout: queueTimeout}, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	blockerID, blocker := occupySlot(ctx, r)

	key := "queue-timeout-" + client.NewCallID()
	subj, _ := subjects.ToolCall("t1", "demo-http", "count")
	body, _ := json.Marshal(map[string]string{"key": key})
	type answer struct {
		res *subjects.Result
		err error
	}
	send := func(hdr nats.Header) <-chan answer {
		ch := make(chan answer, 1)
		sub, err := r.ns.NC.SubscribeSync(subjects.ToolReply("t1", hdr.Get(subjects.HeaderCallID)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
		msg := nats.NewMsg(subj)
		msg.Header, msg.Data = hdr, body
		if _, err := r.ns.JS.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
		go func() {
			m, err := sub.NextMsg(30 * time.Second)
			if err != nil {
				ch <- answer{err: err}
				return
			}
			var res subjects.Result
			ch <- answer{&res, json.Unmarshal(m.Data, &res)}
		}()
		return ch
	}
	sent := time.Now()
	noDeadline := send(nats.Header{subjects.HeaderCallID: []string{client.NewCallID()}})
	withDeadline := send(nats.Header{subjects.HeaderCallID: []string{client.NewCallID()},
		subjects.HeaderDeadline: []string{subjects.FormatDeadline(time.Now().Add(time.Minute))}})
	waitQueued(t, r.ns, 3)
	// Both wait behind the blocker for longer than the queue timeout (a
	// margin over it, as the stored timestamp and this clock are read apart).
	natstest.CheckFor(t, 10*time.Second, func() error {
		if d := time.Since(sent); d < 2*queueTimeout {
			return fmt.Errorf("queued for %v", d)
		}
		return nil
	})
	if err := r.client.Cancel(blockerID); err != nil {
		t.Fatal(err)
	}
	if b := <-blocker; b == nil || b.Error == nil || b.Error.Code != subjects.CodeCancelled {
		t.Fatalf("blocker: %+v, want cancelled", b)
	}
	a := <-noDeadline
	if a.err != nil || a.res.Status != subjects.StatusError || a.res.Error.Code != subjects.CodeTimeout ||
		!strings.Contains(a.res.Error.Message, "worker.queue_timeout") {
		t.Fatalf("no deadline: %+v (%v), want timeout naming worker.queue_timeout", a.res, a.err)
	}
	if a = <-withDeadline; a.err != nil || a.res.Status != subjects.StatusOK {
		t.Fatalf("with a deadline: %+v (%v), want ok", a.res, a.err)
	}
	// Only the call with a deadline ran.
	if n := call(t, r.client, "demo-http", "executions", map[string]string{"key": key}); text(t, n) != fmt.Sprintf(`{%q:1}`, key) {
		t.Fatalf("executions: %s, want 1", text(t, n))
	}
}

// The start mark of a destructive call expires with the call: it carries a
// per-message TTL reaching past the last moment a delivery could still run
// it (the deadline, or the queue timeout for a call without one), and none
// when a call without a deadline may wait forever.
func TestLedgerMarkExpiresWithItsCall(t *testing.T) {
	url, stopDemo, err := demo.Serve(context.Background(), demo.TransportHTTP, "127.0.0.1:0", demo.Options{Faults: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopDemo)
	ns, cat, pool := catalogParts(t, url)
	ledger, err := ns.JS.Stream(context.Background(), streams.KVStream(subjects.BucketLedger))
	if err != nil {
		t.Fatal(err)
	}
	subj, _ := subjects.ToolCall("t1", "demo", "destroy")
	// destroy runs a call whose raw headers are hdr and returns its mark's TTL
	// header ("" without one).
	destroy := func(hdr nats.Header) string {
		t.Helper()
		id := client.NewCallID()
		hdr.Set(subjects.HeaderCallID, id)
		if res, _ := publishRaw(t, ns.NC, subj, hdr, []byte(`{"key":"`+id+`"}`)); res.Status != subjects.StatusOK {
			t.Fatalf("destroy: %+v", res)
		}
		m, err := ledger.GetLastMsgForSubject(context.Background(), "$KV."+subjects.BucketLedger+"."+subjects.LedgerKey("t1", id))
		if err != nil {
			t.Fatalf("no start mark: %v", err)
		}
		return m.Header.Get(jetstream.MsgTTLHeader)
	}
	ttlIn := func(what, got string, lo, hi time.Duration) {
		t.Helper()
		d, err := time.ParseDuration(got)
		if err != nil || d <= lo || d > hi {
			t.Fatalf("%s: mark TTL %q, want in (%v, %v]", what, got, lo, hi)
		}
	}

	stop := startWorker(t, ns.Conn(t), pool, worker.Config{QueueTimeout: 5 * time.Minute, DefaultTimeout: time.Minute}, testLog(t), worker.WithCatalog(cat))
	// With a deadline 30s away: until it, plus the one-minute margin.
	ttlIn("deadline in 30s", destroy(nats.Header{subjects.HeaderDeadline: []string{subjects.FormatDeadline(time.Now().Add(30 * time.Second))}}),
		time.Minute, time.Minute+30*time.Second)
	// Without: a redelivery may start up to the queue timeout after the call
	// was stored and run its default timeout; plus the margin.
	ttlIn("no deadline", destroy(nats.Header{}), 2*time.Minute, 7*time.Minute)
	stop()

	// A call without a deadline that may wait forever keeps its mark.
	startWorker(t, ns.Conn(t), pool, worker.Config{QueueTimeout: -1}, testLog(t), worker.WithCatalog(cat))
	if got := destroy(nats.Header{}); got != "" {
		t.Fatalf("queue timeout off: mark TTL %q, want none", got)
	}
}
