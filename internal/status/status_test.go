package status

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/toolbus-dev/toolbus/internal/control"
	"github.com/toolbus-dev/toolbus/internal/natstest"
	"github.com/toolbus-dev/toolbus/internal/registry"
	"github.com/toolbus-dev/toolbus/subjects"
)

// The report reads the real bus: calls queued and awaiting ack on the
// workers' consumer, dead letters in TOOL_DEAD, servers and their last
// sync from the servers bucket.
func TestGatherFromNATS(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := ns.JS.KeyValue(ctx, subjects.BucketServers)
	if err != nil {
		t.Fatal(err)
	}
	put := func(key string, v any) {
		t.Helper()
		b, _ := json.Marshal(v)
		if _, err := kv.Put(ctx, key, b); err != nil {
			t.Fatal(err)
		}
	}
	synced := time.Now().Add(-time.Minute).UTC()
	for _, s := range []registry.Server{
		{Name: "demo", Transport: registry.TransportHTTP, URL: "http://user:secret@127.0.0.1:1/mcp"},
		{Name: "flaky.one", Transport: registry.TransportStdio, Command: "flaky"},
		{Name: "fresh", Transport: registry.TransportSSE, URL: "http://127.0.0.1:2/sse"},
	} {
		key, _ := subjects.ServerKey(s.Name)
		put(key, s)
	}
	key, _ := subjects.SyncStatusKey("demo")
	put(key, subjects.SyncStatus{Server: "demo", OK: true, Tools: 5, At: synced, LastOK: synced})
	key, _ = subjects.SyncStatusKey("flaky.one")
	put(key, subjects.SyncStatus{Server: "flaky.one", OK: false, ErrorClass: subjects.SyncTimeout, Message: "no answer in 15s", At: synced})
	key, _ = subjects.SyncStatusKey("removed")
	put(key, subjects.SyncStatus{Server: "removed", OK: true})

	for i := 0; i < 3; i++ {
		subj, _ := subjects.ToolCall("agent1", "demo", "add")
		if _, err := ns.JS.Publish(ctx, subj, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	dead, _ := subjects.ToolDead("agent1", "demo", "add")
	if _, err := ns.JS.Publish(ctx, dead, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	// One call taken and not acked: awaiting ack.
	cons, err := ns.JS.Consumer(ctx, subjects.StreamCalls, subjects.ConsumerWorkers)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for range batch.Messages() {
	}

	r := Gather(ctx, ns.NC, ns.JS, Options{DiscoverWait: 200 * time.Millisecond})
	if len(r.Errors) != 0 {
		t.Fatalf("errors: %v", r.Errors)
	}
	if r.Calls.Queued != 2 || r.Calls.AwaitingAck != 1 || r.Calls.DeadLetters != 1 || r.Calls.InFlight != 0 || r.Calls.OldestAgeSeconds <= 0 {
		t.Fatalf("calls: %+v", r.Calls)
	}
	if len(r.Workers) != 0 {
		t.Fatalf("workers: %+v", r.Workers)
	}
	var names, healths []string
	for _, s := range r.Servers {
		names, healths = append(names, s.Name), append(healths, s.Health)
	}
	if !reflect.DeepEqual(names, []string{"demo", "flaky.one", "fresh"}) || !reflect.DeepEqual(healths, []string{"ok", "failing", "pending"}) {
		t.Fatalf("servers %v, health %v", names, healths)
	}

	var text bytes.Buffer
	if err := WriteText(&text, r); err != nil {
		t.Fatal(err)
	}
	out := text.String()
	for _, want := range []string{"queued 2", "awaiting ack 1", "dead letters 1", "none answered", "flaky.one", "timeout: no answer in 15s", " ago", "never"} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}
	var js bytes.Buffer
	if err := WriteJSON(&js, r); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out+js.String(), "secret") {
		t.Fatalf("a server's URL credentials reached the output:\n%s\n%s", out, js.String())
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.Calls != r.Calls || len(back.Servers) != 3 {
		t.Fatalf("JSON round trip: %v %+v", err, back)
	}
}

// A bus that was never provisioned gives a report with the reasons, not a
// failure.
func TestGatherUnprovisioned(t *testing.T) {
	t.Parallel()
	ns := natstest.StartBare(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r := Gather(ctx, ns.NC, ns.JS, Options{DiscoverWait: 100 * time.Millisecond})
	joined := strings.Join(r.Errors, "\n")
	for _, want := range []string{"calls: consumer workers on TOOL_CALLS", "dead letters:", "servers: KV bucket toolbus_servers"} {
		if !strings.Contains(joined, want) {
			t.Errorf("errors lack %q: %v", want, r.Errors)
		}
	}
	var text bytes.Buffer
	_ = WriteText(&text, r)
	if !strings.Contains(text.String(), "error: calls:") {
		t.Fatalf("text:\n%s", text.String())
	}
}

func TestMerge(t *testing.T) {
	t.Parallel()
	ws := func(name string, paused []string, servers ...subjects.WorkerServerStatus) Worker {
		return Worker{Instance: control.Instance{Name: name}, Status: &subjects.WorkerStatus{Name: name, Paused: paused, Servers: servers}}
	}
	ok := &subjects.SyncStatus{OK: true}
	servers := []Server{{Name: "a", Sync: ok}, {Name: "b", Sync: ok}, {Name: "c", Sync: ok}, {Name: "d"}}
	workers := []Worker{
		ws("w1", []string{"c"}, subjects.WorkerServerStatus{Server: "a", Breaker: "closed", Sessions: 1}, subjects.WorkerServerStatus{Server: "b", Breaker: "open"}),
		ws("w2", nil, subjects.WorkerServerStatus{Server: "a", Breaker: "closed", Sessions: 2}, subjects.WorkerServerStatus{Server: "b", Breaker: "closed", Sessions: 1}),
		{Instance: control.Instance{Name: "w3"}, Error: "timeout"},
	}
	got := merge(servers, workers)
	want := []Server{
		{Name: "a", Sync: ok, Health: "ok", Breakers: map[string]int{"closed": 2}, Sessions: 3},
		{Name: "b", Sync: ok, Health: "open", Breakers: map[string]int{"closed": 1, "open": 1}, Sessions: 1},
		{Name: "c", Sync: ok, Health: "paused", PausedOn: []string{"w1"}},
		{Name: "d", Health: "pending"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("merge:\n got %+v\nwant %+v", got, want)
	}
}

// Watch renders until its context ends, clearing before each report.
func TestWatch(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out bytes.Buffer
	n := 0
	err := Watch(ctx, &out, time.Millisecond, "<clear>",
		func(context.Context) *Report { return &Report{} },
		func(w io.Writer, r *Report) error {
			n++
			if n == 3 {
				cancel()
			}
			_, err := io.WriteString(w, "report\n")
			return err
		})
	if err != nil || n != 3 || out.String() != strings.Repeat("<clear>report\n", 3) {
		t.Fatalf("err %v, %d renders, output %q", err, n, out.String())
	}
}
