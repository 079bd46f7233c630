package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/toolbus-dev/toolbus/client"
	"github.com/toolbus-dev/toolbus/internal/natstest"
	"github.com/toolbus-dev/toolbus/internal/streams"
	"github.com/toolbus-dev/toolbus/subjects"
)

// A result that does not answer the call — another call id, agent, server
// or tool — is dropped, never returned; the true result that follows is.
// The "worker" here is a consumer on TOOL_CALLS that stores what the test
// says, so the forged results reach the client exactly as a worker's would.
func TestClientDropsResultsForOtherCalls(t *testing.T) {
	ns := natstest.Start(t)
	cl, err := client.New(ns.NC, client.WithAgent("alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if cl.Agent() != "alice" {
		t.Fatalf("agent %q", cl.Agent())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cons, err := ns.JS.Consumer(ctx, subjects.StreamCalls, subjects.ConsumerWorkers)
	if err != nil {
		t.Fatal(err)
	}
	type answer struct {
		res *subjects.Result
		err error
	}
	done := make(chan answer, 1)
	go func() {
		res, err := cl.Call(ctx, "demo", "add", map[string]int{"a": 1}, client.WithCallID("the-call"))
		done <- answer{res, err}
	}()
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var call jetstream.Msg
	for m := range batch.Messages() {
		call = m
	}
	if call == nil {
		t.Fatal("the call never reached TOOL_CALLS")
	}
	if call.Subject() != "tool.call.alice.demo.add" || call.Headers().Get(subjects.HeaderCallID) != "the-call" {
		t.Fatalf("call on %s with headers %v", call.Subject(), call.Headers())
	}
	store := func(r subjects.Result) {
		t.Helper()
		data, _ := json.Marshal(r)
		// Stored one after the other (each replaces the last), so the
		// client's subscription hears them all in this order.
		if _, err := ns.JS.Publish(ctx, subjects.ToolResult("alice", "the-call"), data); err != nil {
			t.Fatal(err)
		}
	}
	ok := json.RawMessage(`{"content":[{"type":"text","text":"2"}]}`)
	for _, forged := range []subjects.Result{
		{CallID: "other-call", Agent: "alice", Server: "demo", Tool: "add", Status: subjects.StatusOK, Result: ok},
		{CallID: "the-call", Agent: "bob", Server: "demo", Tool: "add", Status: subjects.StatusOK, Result: ok},
		{CallID: "the-call", Agent: "alice", Server: "demo", Tool: "destroy", Status: subjects.StatusOK, Result: ok},
		{CallID: "the-call", Agent: "alice", Server: "other", Tool: "add", Status: subjects.StatusOK, Result: ok},
	} {
		store(forged)
	}
	select {
	case a := <-done:
		t.Fatalf("the client returned a result that is not its call's: %+v %v", a.res, a.err)
	default:
	}
	store(subjects.Result{CallID: "the-call", Agent: "alice", Server: "demo", Tool: "add", Status: subjects.StatusOK, Result: json.RawMessage(`{"content":[{"type":"text","text":"1"}]}`)})
	a := <-done
	if a.err != nil || a.res.CallID != "the-call" || string(a.res.Result) != `{"content":[{"type":"text","text":"1"}]}` {
		t.Fatalf("got %+v %v; want the true result", a.res, a.err)
	}
	_ = call.Ack()

	// Result (a direct get of the stored result) checks it too: the
	// subject's last message is the true one now.
	res, err := cl.Result(ctx, "the-call")
	if err != nil || res.Agent != "alice" {
		t.Fatalf("Result: %+v %v", res, err)
	}
	if _, err := cl.Result(ctx, "never-sent"); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Fatalf("Result of an unknown id: %v, want ErrMsgNotFound", err)
	}
}

// The agent defaults to the connection's user name, else "default"; an
// invalid agent is refused.
func TestClientAgent(t *testing.T) {
	ns := natstest.Start(t)
	cl, err := client.New(ns.NC)
	if err != nil {
		t.Fatal(err)
	}
	if cl.Agent() != subjects.DefaultAgent {
		t.Fatalf("agent %q, want %q", cl.Agent(), subjects.DefaultAgent)
	}
	cl.Close()
	if _, err := client.New(ns.NC, client.WithAgent("a.b")); !errors.Is(err, subjects.ErrInvalidAgent) {
		t.Fatalf("agent a.b: %v, want ErrInvalidAgent", err)
	}
}

// Wakeups delivers what was published while nobody listened, in order; a
// handler error has the wake-up delivered again, and an acknowledged one is
// never delivered again.
func TestWakeups(t *testing.T) {
	ns := natstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := client.New(ns.NC, client.WithAgent("sleeper"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// Without authentication the client makes its consumer; the first
	// wake-ups must wait for it, so make it before publishing, as the
	// scheduler and the bridge do.
	if _, err := ns.JS.CreateConsumer(ctx, subjects.StreamEvents, streams.WakeConsumerConfig("sleeper")); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"one", "two", "three"} {
		if _, err := ns.JS.Publish(ctx, "agent.wake.sleeper", []byte(b)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ns.JS.Publish(ctx, "agent.wake.other", []byte("not mine")); err != nil {
		t.Fatal(err)
	}
	var got []string
	failedOnce := false
	run := func(stopAt int) {
		t.Helper()
		wctx, wcancel := context.WithCancel(ctx)
		defer wcancel()
		err := cl.Wakeups(wctx, func(_ context.Context, w client.Wakeup) error {
			if string(w.Data) == "two" && !failedOnce {
				failedOnce = true
				return errors.New("not now")
			}
			got = append(got, fmt.Sprintf("%s#%d", w.Data, w.Delivered))
			if len(got) == stopAt {
				wcancel()
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	run(2)
	if _, err := ns.JS.Publish(ctx, "agent.wake.sleeper", []byte("four")); err != nil {
		t.Fatal(err)
	}
	run(4)
	if want := "one#1 two#2 three#1 four#1"; strings.Join(got, " ") != want {
		t.Fatalf("got %v, want %s", got, want)
	}
}

// An agent that stops its Wakeups loop while it waits, and starts another,
// gets a wake-up published in between at once, delivered once: no pull
// request of the stopped loop takes it (the consumer hands out one
// wake-up at a time, so one taken by a loop nobody runs would hold every
// later one for the ack wait).
func TestWakeupsRestartedWhileIdle(t *testing.T) {
	ns := natstest.Start(t)
	cl, err := client.New(ns.NC, client.WithAgent("napper"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	if _, err := ns.JS.CreateConsumer(ctx, subjects.StreamEvents, streams.WakeConsumerConfig("napper")); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		// A loop that waits (its pull request out), then stops.
		idle, stopIdle := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- cl.Wakeups(idle, func(context.Context, client.Wakeup) error {
				return errors.New("the idle loop got a wake-up")
			})
		}()
		// Let its pull reach the server: a JetStream round trip after it.
		if _, err := ns.JS.AccountInfo(ctx); err != nil {
			t.Fatal(err)
		}
		stopIdle()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		data := fmt.Sprint("wake ", i)
		if _, err := ns.JS.Publish(ctx, "agent.wake.napper", []byte(data)); err != nil {
			t.Fatal(err)
		}
		// Well inside the consumer's 30 s ack wait.
		wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		var got client.Wakeup
		err := cl.Wakeups(wctx, func(_ context.Context, w client.Wakeup) error {
			got = w
			cancel()
			return nil
		})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if string(got.Data) != data || got.Delivered != 1 {
			t.Fatalf("round %d: got %q delivered %d, want %q delivered once (a stopped loop's pull took it)", i, got.Data, got.Delivered, data)
		}
	}
}
