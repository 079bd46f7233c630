package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/toolbus-dev/toolbus/client"
	"github.com/toolbus-dev/toolbus/internal/demo"
	"github.com/toolbus-dev/toolbus/internal/mcppool"
	"github.com/toolbus-dev/toolbus/internal/natstest"
	"github.com/toolbus-dev/toolbus/internal/registry"
	"github.com/toolbus-dev/toolbus/internal/worker"
	"github.com/toolbus-dev/toolbus/subjects"
)

// demoRig is a real NATS server, the demo MCP server over streamable HTTP
// as "demo", and a client; the test starts the worker.
func demoRig(t *testing.T) (*natstest.Server, *mcppool.Pool, *client.Client) {
	t.Helper()
	return demoRigWith(t, 0)
}

// demoRigWith is demoRig with the demo server's max_concurrency (0: the
// default).
func demoRigWith(t *testing.T, maxConcurrency int) (*natstest.Server, *mcppool.Pool, *client.Client) {
	t.Helper()
	ns := natstest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	url, stopDemo, err := demo.Serve(ctx, demo.TransportHTTP, "127.0.0.1:0", demo.Options{Faults: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopDemo)
	pool := mcppool.New(testLog(t))
	t.Cleanup(func() { pool.Close() })
	pool.Upsert(registry.Server{Name: "demo", Transport: registry.TransportHTTP, URL: url, MaxConcurrency: maxConcurrency})
	cl, err := client.New(ns.NC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return ns, pool, cl
}

// assertDeliveredOnce checks, once every call is settled, that the
// consumer delivered each of n calls once: none was redelivered.
func assertDeliveredOnce(t *testing.T, ns *natstest.Server, n uint64) {
	t.Helper()
	waitQueued(t, ns, 0)
	cons, err := ns.JS.Consumer(context.Background(), subjects.StreamCalls, subjects.ConsumerWorkers)
	if err != nil {
		t.Fatal(err)
	}
	if ci := cons.CachedInfo(); ci.NumRedelivered != 0 || ci.Delivered.Consumer != n || ci.NumAckPending != 0 {
		t.Fatalf("consumer: %d deliveries (%d redelivered, %d pending), want %d each delivered once and acked", ci.Delivered.Consumer, ci.NumRedelivered, ci.NumAckPending, n)
	}
}

// A panicking call handler answers that call internal, acks it, and leaves
// the worker and its other calls running.
func TestPanickingCallIsAnsweredInternal(t *testing.T) {
	ns, pool, cl := demoRig(t)
	startWorker(t, ns.Conn(t), pool, worker.Config{}, testLog(t), worker.WithFault(func(_, _ string, args json.RawMessage) {
		if bytes.Contains(args, []byte("boom")) {
			panic("injected boom")
		}
	}))
	running := make(chan struct{})
	var once gosync.Once
	slow := callAsync(cl, "demo", "sleep", `{"ms":1500,"steps":15}`,
		client.WithProgress(func(subjects.Progress) { once.Do(func() { close(running) }) }))
	<-running

	res := call(t, cl, "demo", "echo", `{"message":"boom"}`)
	if res.Status != subjects.StatusError || res.Error == nil || res.Error.Code != subjects.CodeInternal ||
		!strings.Contains(res.Error.Message, "a bug") || !strings.Contains(res.Error.Message, "injected boom") || res.Attempt != 1 {
		t.Fatalf("panicked call answered %+v (%+v)", res, res.Error)
	}
	if got := (<-slow).must(t); got.Status != subjects.StatusOK {
		t.Fatalf("the call running beside the panic: %+v", got)
	}
	if got := call(t, cl, "demo", "echo", `{"message":"after"}`); got.Status != subjects.StatusOK || text(t, got) != "after" {
		t.Fatalf("after the panic: %+v", got)
	}
	assertDeliveredOnce(t, ns, 3)
}

// Calls of a paused server wait, holding their lease and no MCP session,
// until Resume or their deadline; they are not redelivered.
func TestPausedServerCallsWait(t *testing.T) {
	ns, pool, cl := demoRig(t)
	w, _ := runWorker(t, ns.Conn(t), pool, worker.Config{AckWait: time.Second}, testLog(t))
	w.Pause("demo")
	w.Pause("demo")
	if got := w.Paused(); !slices.Equal(got, []string{"demo"}) {
		t.Fatalf("Paused = %v", got)
	}
	held := callAsync(cl, "demo", "echo", `{"message":"held"}`)
	natstest.CheckFor(t, 10*time.Second, func() error {
		if n := w.Stats().InFlight["demo"]; n != 1 {
			return fmt.Errorf("%d calls of demo in flight, want 1", n)
		}
		return nil
	})
	// A call with a deadline past AckWait ends at its deadline, unrun; the
	// held call outlives AckWait meanwhile.
	late := call(t, cl, "demo", "echo", `{"message":"late"}`, client.WithTimeout(1500*time.Millisecond))
	if late.Error == nil || late.Error.Code != subjects.CodeTimeout || !strings.Contains(late.Error.Message, "paused") {
		t.Fatalf("call past its deadline on a paused server: %+v", late)
	}
	if st := pool.Health("demo").State; st != mcppool.StateIdle {
		t.Fatalf("a paused server's pool state is %s: a session was used", st)
	}
	select {
	case a := <-held:
		t.Fatalf("held call answered while paused: %+v %v", a.res, a.err)
	default:
	}
	w.Resume("demo")
	w.Resume("demo")
	if res := (<-held).must(t); res.Status != subjects.StatusOK || text(t, res) != "held" || res.Attempt != 1 {
		t.Fatalf("held call after Resume: %+v", res)
	}
	if got := w.Paused(); len(got) != 0 {
		t.Fatalf("Paused after Resume = %v", got)
	}
	assertDeliveredOnce(t, ns, 2)
	// A call leaves InFlight just after its settlement (the ack the
	// consumer counted above), on the worker's goroutine.
	natstest.CheckFor(t, 10*time.Second, func() error {
		if st := w.Stats(); len(st.InFlight) != 0 {
			return fmt.Errorf("in flight after all settled: %v", st.InFlight)
		}
		return nil
	})
}
