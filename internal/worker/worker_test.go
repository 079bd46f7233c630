package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/toolbus-dev/toolbus/client"
	"github.com/toolbus-dev/toolbus/internal/broker"
	"github.com/toolbus-dev/toolbus/internal/demo"
	"github.com/toolbus-dev/toolbus/internal/mcppool"
	"github.com/toolbus-dev/toolbus/internal/natstest"
	"github.com/toolbus-dev/toolbus/internal/registry"
	"github.com/toolbus-dev/toolbus/internal/streams"
	"github.com/toolbus-dev/toolbus/internal/testbin"
	"github.com/toolbus-dev/toolbus/internal/worker"
	"github.com/toolbus-dev/toolbus/subjects"
)

// rig is a real NATS server, real demo MCP servers over every transport, a
// pool and a running worker.
type rig struct {
	ns     *natstest.Server
	pool   *mcppool.Pool
	client *client.Client
}

func testLog(t testing.TB) zerolog.Logger {
	if testing.Verbose() {
		return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
	}
	return zerolog.Nop()
}

func servers(t testing.TB) []registry.Server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	httpURL, stopHTTP, err := demo.Serve(ctx, demo.TransportHTTP, "127.0.0.1:0", demo.Options{Faults: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopHTTP)
	sseURL, stopSSE, err := demo.Serve(ctx, demo.TransportSSE, "127.0.0.1:0", demo.Options{Faults: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopSSE)
	bin := testbin.Build(t, "github.com/toolbus-dev/toolbus/cmd/mcp-demo")
	return []registry.Server{
		{Name: "demo", Transport: registry.TransportStdio, Command: bin, ProtocolVersion: "2025-11-25"},
		{Name: "demo-http", Transport: registry.TransportHTTP, URL: httpURL},
		{Name: "demo-sse", Transport: registry.TransportSSE, URL: sseURL, ProtocolVersion: "2025-11-25"},
		{Name: "broken", Transport: registry.TransportStdio, Command: "/nonexistent/mcp-server"},
	}
}

func newRig(t *testing.T, cfg worker.Config, workers int) *rig {
	t.Helper()
	ns := natstest.Start(t)
	log := testLog(t)
	pool := mcppool.New(log)
	t.Cleanup(func() { pool.Close() })
	for _, s := range servers(t) {
		pool.Upsert(s)
	}
	for i := 0; i < workers; i++ {
		c := cfg
		c.Name = fmt.Sprintf("w%d", i+1)
		startWorker(t, ns.Conn(t), pool, c, log)
	}
	cl, err := client.New(ns.NC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return &rig{ns: ns, pool: pool, client: cl}
}

// startWorker runs a worker until the test ends and returns a stop func that
// shuts it down gracefully and waits.
func startWorker(t *testing.T, nc *nats.Conn, caller worker.Caller, cfg worker.Config, log zerolog.Logger, opts ...worker.Option) (stop func()) {
	t.Helper()
	_, stop = runWorker(t, nc, caller, cfg, log, opts...)
	return stop
}

// runWorker is startWorker that also returns the worker.
func runWorker(t *testing.T, nc *nats.Conn, caller worker.Caller, cfg worker.Config, log zerolog.Logger, opts ...worker.Option) (w *worker.Worker, stop func()) {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// As toolbus serve does: the consumer gets this configuration.
	pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer pcancel()
	if err := broker.Provision(pctx, js, streams.Options{}, cfg.ConsumerConfig()); err != nil {
		t.Fatal(err)
	}
	w = worker.New(nc, js, caller, cfg, log, opts...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once gosync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("worker: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("worker did not stop")
			}
		})
	}
	t.Cleanup(stop)
	return w, stop
}

func text(t testing.TB, res *subjects.Result) string {
	t.Helper()
	var r struct {
		Content []struct{ Text string } `json:"content"`
	}
	if err := json.Unmarshal(res.Result, &r); err != nil || len(r.Content) == 0 {
		t.Fatalf("result %s: no text content (%v)", res.Result, err)
	}
	return r.Content[0].Text
}

// callAsync runs a call on its own goroutine; its answer (or error) arrives
// on the channel, for the test goroutine to check.
func callAsync(c *client.Client, server, tool string, args any, opts ...client.CallOption) <-chan callAnswer {
	ch := make(chan callAnswer, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		res, err := c.Call(ctx, server, tool, args, opts...)
		ch <- callAnswer{res, err}
	}()
	return ch
}

type callAnswer struct {
	res *subjects.Result
	err error
}

// must returns the answer, failing the test on an error.
func (a callAnswer) must(t testing.TB) *subjects.Result {
	t.Helper()
	if a.err != nil {
		t.Fatalf("call: %v", a.err)
	}
	return a.res
}

func call(t testing.TB, c *client.Client, server, tool string, args any, opts ...client.CallOption) *subjects.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := c.Call(ctx, server, tool, args, opts...)
	if err != nil {
		t.Fatalf("call %s/%s: %v", server, tool, err)
	}
	return res
}

func TestCallsOverEveryTransport(t *testing.T) {
	r := newRig(t, worker.Config{}, 1)
	for _, server := range []string{"demo", "demo-http", "demo-sse"} {
		t.Run(server, func(t *testing.T) {
			res := call(t, r.client, server, "add", map[string]any{"a": 2, "b": 3})
			if res.Status != subjects.StatusOK || text(t, res) != "5" {
				t.Fatalf("add: %+v", res)
			}
			res = call(t, r.client, server, "echo", `{"message":"héllo"}`)
			if res.Status != subjects.StatusOK || text(t, res) != "héllo" || res.Server != server || res.Tool != "echo" || res.Agent != subjects.DefaultAgent {
				t.Fatalf("echo: %+v", res)
			}
			res = call(t, r.client, server, "fail", `{"message":"nope"}`)
			if res.Status != subjects.StatusToolError || !strings.Contains(text(t, res), "nope") {
				t.Fatalf("fail: %+v", res)
			}
			var mu gosync.Mutex
			var steps []subjects.Progress
			res = call(t, r.client, server, "sleep", `{"ms":200,"steps":4}`, client.WithProgress(func(p subjects.Progress) {
				mu.Lock()
				steps = append(steps, p)
				mu.Unlock()
			}))
			if res.Status != subjects.StatusOK {
				t.Fatalf("sleep: %+v", res)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(steps) == 0 || steps[len(steps)-1].Total != 4 {
				t.Fatalf("progress: %+v", steps)
			}
			// The stored copy matches what was sent.
			stored, err := r.client.Result(context.Background(), res.CallID)
			if err != nil || stored.CallID != res.CallID || stored.Status != subjects.StatusOK {
				t.Fatalf("stored result: %+v, %v", stored, err)
			}
		})
	}
}

// publishRaw sends a call message as any NATS client would, returning the
// decoded reply and its headers.
// publishRaw publishes a hand-made call and waits for its result on
// tool.reply.<agent>.<call_id>, as any-language clients do.
func publishRaw(t *testing.T, nc *nats.Conn, subject string, hdr nats.Header, body []byte) (*subjects.Result, nats.Header) {
	t.Helper()
	agent, _, _ := strings.Cut(strings.TrimPrefix(subject, subjects.ToolCallPrefix), ".")
	sub, err := nc.SubscribeSync(subjects.ToolReply(agent, hdr.Get(subjects.HeaderCallID)))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	msg := nats.NewMsg(subject)
	for k, v := range hdr {
		msg.Header[k] = v
	}
	msg.Data = body
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		t.Fatalf("publish: %v", err)
	}
	m, err := sub.NextMsg(15 * time.Second)
	if err != nil {
		t.Fatalf("no result for %s: %v", subject, err)
	}
	var res subjects.Result
	if err := json.Unmarshal(m.Data, &res); err != nil {
		t.Fatal(err)
	}
	return &res, m.Header
}

func TestBadInputGetsClearErrors(t *testing.T) {
	r := newRig(t, worker.Config{}, 1)
	id := func() nats.Header { return nats.Header{subjects.HeaderCallID: []string{client.NewCallID()}} }
	subj := func(s, tool string) string { x, _ := subjects.ToolCall("t1", s, tool); return x }
	cases := []struct {
		name    string
		subject string
		hdr     nats.Header
		body    string
		code    subjects.Code
		says    string
	}{
		{"malformed JSON", subj("demo", "add"), id(), `{"a":`, subjects.CodeInvalidRequest, "not valid JSON"},
		{"array arguments", subj("demo", "add"), id(), `[1,2]`, subjects.CodeInvalidArguments, "must be a JSON object, got an array"},
		{"unknown server", subj("nope", "add"), id(), `{}`, subjects.CodeUnknownServer, `no MCP server named "nope"`},
		{"unknown tool", subj("demo", "no_such_tool"), id(), `{}`, subjects.CodeUnknownTool, "no_such_tool"},
		{"missing tool name", "tool.call.t1.demo", id(), `{}`, subjects.CodeInvalidRequest, "has no tool name"},
		{"past deadline", subj("demo", "add"), func() nats.Header {
			h := id()
			h.Set(subjects.HeaderDeadline, subjects.FormatDeadline(time.Now().Add(-time.Second)))
			return h
		}(), `{"a":1,"b":2}`, subjects.CodeTimeout, "deadline"},
		{"bad deadline", subj("demo", "add"), func() nats.Header {
			h := id()
			h.Set(subjects.HeaderDeadline, "tomorrow")
			return h
		}(), `{}`, subjects.CodeInvalidRequest, "Toolbus-Deadline"},
		{"server cannot start", subj("broken", "anything"), id(), `{}`, subjects.CodeServerUnavailable, "/nonexistent/mcp-server"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, hdr := publishRaw(t, r.ns.NC, c.subject, c.hdr, []byte(c.body))
			if res.Status != subjects.StatusError || res.Error == nil || res.Error.Code != c.code {
				t.Fatalf("got %+v, want error %s", res, c.code)
			}
			if !strings.Contains(res.Error.Message, c.says) {
				t.Fatalf("message %q does not say %q", res.Error.Message, c.says)
			}
			if hdr.Get(subjects.HeaderServiceErrorCode) == "" || hdr.Get(subjects.HeaderServiceError) == "" {
				t.Fatalf("error headers missing: %v", hdr)
			}
		})
	}
	// A call that names no valid agent or call id has nowhere to be
	// answered: it settles at once, into TOOL_DEAD with the reason.
	js, _ := jetstream.New(r.ns.NC)
	unanswerable := []struct {
		subject, id, says string
	}{
		{subj("demo", "add"), "a.b", "invalid call id"},
		{subj("demo", "add"), "", "Nats-Msg-Id"},
		{subj("demo", "add"), "a b", "invalid call id"},
		{"tool.call.é.demo.add", "bad-agent-2", "invalid agent id"},
		{"tool.call.a=2E.demo.add", "bad-agent-1", "invalid agent id"},
	}
	for _, c := range unanswerable {
		msg := nats.NewMsg(c.subject)
		if c.id != "" {
			msg.Header.Set(subjects.HeaderCallID, c.id)
		}
		msg.Data = []byte(`{}`)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatalf("publish %s: %v", c.subject, err)
		}
		cancel()
	}
	natstest.CheckFor(t, 10*time.Second, func() error {
		dl, err := worker.ListDeadLetters(context.Background(), js, 0)
		if err != nil {
			return err
		}
		for _, c := range unanswerable {
			found := false
			for _, d := range dl {
				if d.Subject == c.subject && d.CallID == c.id && strings.Contains(d.Reason, c.says) {
					found = true
				}
			}
			if !found {
				return fmt.Errorf("no dead letter for %s id %q saying %q in %+v", c.subject, c.id, c.says, dl)
			}
		}
		return nil
	})
	// Nothing stays in the work queue: every bad call was acked.
	waitQueued(t, r.ns, 0)
}

func TestThreeWorkersShareOneConsumer(t *testing.T) {
	r := newRig(t, worker.Config{Concurrency: 16}, 3)
	const n = 1000
	results := make(chan *subjects.Result, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, 64)
	for i := 0; i < n; i++ {
		sem <- struct{}{}
		go func(i int) {
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			// count with a key of its own: a call run twice would say 2.
			res, err := r.client.Call(ctx, "demo-http", "count", map[string]string{"key": fmt.Sprintf("three-%d", i)})
			if err != nil {
				errs <- err
				return
			}
			results <- res
		}(i)
	}
	seen := map[string]int{}
	byWorker := map[string]int{}
	for i := 0; i < n; i++ {
		select {
		case err := <-errs:
			t.Fatalf("call failed: %v", err)
		case res := <-results:
			if res.Status != subjects.StatusOK || text(t, res) != "1" {
				t.Fatalf("result: %+v %s", res, res.Result)
			}
			seen[res.CallID]++
			byWorker[res.Worker]++
		case <-time.After(90 * time.Second):
			t.Fatalf("only %d of %d results", i, n)
		}
	}
	if len(seen) != n {
		t.Fatalf("%d distinct call ids, want %d", len(seen), n)
	}
	for id, k := range seen {
		if k != 1 {
			t.Fatalf("call %s answered %d times", id, k)
		}
	}
	if len(byWorker) < 2 {
		t.Fatalf("only %v did work", byWorker)
	}
	t.Logf("calls per worker: %v", byWorker)
}

func TestDeadlineCancelsTheTool(t *testing.T) {
	r := newRig(t, worker.Config{}, 1)
	res := call(t, r.client, "demo", "sleep", `{"ms":5000}`, client.WithTimeout(400*time.Millisecond))
	if res.Status != subjects.StatusError || res.Error.Code != subjects.CodeTimeout {
		t.Fatalf("got %+v, want timeout", res)
	}
	// The worker answered before the 5s sleep could have ended: it
	// cancelled the tool rather than wait for it.
	if res.DurationMS >= 5000 {
		t.Fatalf("the worker waited for the tool: %vms", res.DurationMS)
	}
}

func TestCancelRunningCall(t *testing.T) {
	r := newRig(t, worker.Config{}, 1)
	id := client.NewCallID()
	started := make(chan struct{}, 1)
	done := callAsync(r.client, "demo-http", "sleep", `{"ms":10000,"steps":100}`, client.WithCallID(id),
		client.WithProgress(func(subjects.Progress) {
			select {
			case started <- struct{}{}:
			default:
			}
		}))
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("call never started")
	}
	if err := r.client.Cancel(id); err != nil {
		t.Fatal(err)
	}
	// An uncancelled call ends ok after its 10 s, which fails below.
	select {
	case a := <-done:
		if res := a.must(t); res.Status != subjects.StatusError || res.Error.Code != subjects.CodeCancelled {
			t.Fatalf("got %+v, want cancelled", res)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("cancel did not end the call")
	}
}

func TestResultTooLarge(t *testing.T) {
	r := newRig(t, worker.Config{MaxResultBytes: 4096, MaxClaimBytes: -1}, 1)
	res := call(t, r.client, "demo-http", "echo", map[string]string{"message": strings.Repeat("x", 8000)})
	if res.Status != subjects.StatusError || res.Error.Code != subjects.CodeTooLarge {
		t.Fatalf("got %+v, want too_large", res)
	}
}

func TestGracefulShutdownFinishesInFlight(t *testing.T) {
	ns := natstest.Start(t)
	log := testLog(t)
	pool := mcppool.New(log)
	t.Cleanup(func() { pool.Close() })
	for _, s := range servers(t) {
		pool.Upsert(s)
	}
	stop := startWorker(t, ns.Conn(t), pool, worker.Config{Grace: 10 * time.Second}, log)
	cl, _ := client.New(ns.NC)
	defer cl.Close()
	started := make(chan struct{}, 1)
	done := callAsync(cl, "demo-http", "sleep", `{"ms":600,"steps":6}`, client.WithProgress(func(subjects.Progress) {
		select {
		case started <- struct{}{}:
		default:
		}
	}))
	<-started
	stop() // returns once drained
	select {
	case a := <-done:
		if res := a.must(t); res.Status != subjects.StatusOK {
			t.Fatalf("in-flight call during shutdown: %+v", res)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("in-flight call lost in shutdown")
	}
}

// A call id is scoped to its agent. Another agent that sends the same id
// inside the duplicate window is dropped as a duplicate (and can read
// nothing of the first agent's); after the window it gets a call of its own
// — the tool runs for it — and never the first agent's stored result.
func TestCallIDsAreScopedToTheirAgent(t *testing.T) {
	r := newRig(t, worker.Config{}, 1)
	// A window the in-window check below fits in, set before the first
	// call (the server keeps the purge timer of the window it started with).
	shrinkDuplicateWindow(t, r.ns, time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice, err := client.New(r.ns.NC, client.WithAgent("alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	bob, err := client.New(r.ns.NC, client.WithAgent("bob"))
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()

	id, key := client.NewCallID(), "scoped-"+client.NewCallID()
	res, err := alice.Call(ctx, "demo-http", "count", map[string]string{"key": key}, client.WithCallID(id))
	if err != nil || res.Status != subjects.StatusOK || text(t, res) != "1" || res.Agent != "alice" {
		t.Fatalf("alice: %+v %v", res, err)
	}
	publish := func() *jetstream.PubAck {
		msg := nats.NewMsg("tool.call.bob.demo-http.count")
		msg.Header.Set(subjects.HeaderCallID, id)
		msg.Data = fmt.Appendf(nil, `{"key":%q}`, key)
		ack, err := r.ns.JS.PublishMsg(ctx, msg)
		if err != nil {
			t.Fatal(err)
		}
		return ack
	}
	if ack := publish(); !ack.Duplicate {
		t.Fatalf("bob's re-use of alice's id inside the window was stored: %+v", ack)
	}
	if _, err := bob.Result(ctx, id); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Fatalf("bob reads a result for alice's id: %v", err)
	}
	natstest.CheckFor(t, 10*time.Second, func() error {
		if publish().Duplicate {
			return fmt.Errorf("still inside the duplicate window")
		}
		return nil
	})
	natstest.CheckFor(t, 20*time.Second, func() error {
		res, err := bob.Result(ctx, id)
		if err != nil {
			return err
		}
		if res.Agent != "bob" || text(t, res) != "2" {
			return fmt.Errorf("bob got %+v; want his own call's result (count 2)", res)
		}
		return nil
	})
	if res, err := alice.Result(ctx, id); err != nil || text(t, res) != "1" || res.Agent != "alice" {
		t.Fatalf("alice's stored result changed: %+v %v", res, err)
	}
}

// shrinkDuplicateWindow sets TOOL_CALLS' duplicate window to d, so "after
// the window" comes soon.
func shrinkDuplicateWindow(t *testing.T, ns *natstest.Server, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := ns.JS.Stream(ctx, subjects.StreamCalls)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.Duplicates = d
	if _, err := ns.JS.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
}

// A re-sent call id (after the duplicate window) gets its stored answer on
// tool.reply.<agent>.<call_id> again, and the tool does not run again.
func TestResentCallIDIsAnsweredAgain(t *testing.T) {
	r := newRig(t, worker.Config{}, 1)
	shrinkDuplicateWindow(t, r.ns, 100*time.Millisecond) // before the first call: the server keeps its purge timer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	id, key := client.NewCallID(), "resent-"+client.NewCallID()
	res, err := r.client.Call(ctx, "demo-http", "destroy", map[string]string{"key": key}, client.WithCallID(id))
	if err != nil || res.Status != subjects.StatusOK {
		t.Fatalf("first: %+v %v", res, err)
	}
	sub, err := r.ns.NC.SubscribeSync(subjects.ToolReply(subjects.DefaultAgent, id))
	if err != nil {
		t.Fatal(err)
	}
	resendAfterWindow(t, r.ns, "tool.call.default.demo-http.destroy", id, fmt.Appendf(nil, `{"key":%q}`, key))
	m, err := sub.NextMsg(20 * time.Second)
	if err != nil {
		t.Fatalf("the re-sent call id was not answered: %v", err)
	}
	var again subjects.Result
	if err := json.Unmarshal(m.Data, &again); err != nil {
		t.Fatal(err)
	}
	if again.Status != subjects.StatusOK || again.Worker != res.Worker || again.DurationMS != res.DurationMS {
		t.Fatalf("re-sent: %+v; want the stored %+v", again, res)
	}
	n := call(t, r.client, "demo-http", "executions", map[string]string{"key": key})
	if text(t, n) != fmt.Sprintf(`{%q:1}`, key) {
		t.Fatalf("destroy ran %s times", text(t, n))
	}
}

// waitQueued waits until TOOL_CALLS holds exactly n calls (0: every call
// was settled).
func waitQueued(t *testing.T, ns *natstest.Server, n uint64) {
	t.Helper()
	natstest.CheckFor(t, 10*time.Second, func() error {
		s, err := ns.JS.Stream(context.Background(), subjects.StreamCalls)
		if err != nil {
			return err
		}
		got, err := streams.CallsStored(context.Background(), s)
		if err != nil {
			return err
		}
		if got != n {
			return fmt.Errorf("%d calls in TOOL_CALLS, want %d", got, n)
		}
		return nil
	})
}
