package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rs/zerolog"

	"github.com/toolbus-dev/toolbus/client"
	"github.com/toolbus-dev/toolbus/internal/bridge"
	"github.com/toolbus-dev/toolbus/internal/demo"
	"github.com/toolbus-dev/toolbus/internal/mcppool"
	"github.com/toolbus-dev/toolbus/internal/natstest"
	"github.com/toolbus-dev/toolbus/internal/registry"
	"github.com/toolbus-dev/toolbus/internal/telemetry"
	"github.com/toolbus-dev/toolbus/internal/testutil"
	"github.com/toolbus-dev/toolbus/internal/worker"
	"github.com/toolbus-dev/toolbus/subjects"
)

// scrape GETs url's /metrics and parses it.
func scrape(t *testing.T, url string) families {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return mf
}

type families map[string]*dto.MetricFamily

// find returns the sample of name whose labels include labels ("k=v").
func (f families) find(name string, labels ...string) *dto.Metric {
	mf := f[name]
	if mf == nil {
		return nil
	}
next:
	for _, m := range mf.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for _, kv := range labels {
			k, v, _ := strings.Cut(kv, "=")
			if have[k] != v {
				continue next
			}
		}
		return m
	}
	return nil
}

// value is a counter's or gauge's value, a histogram's count; 0 if absent.
func (f families) value(name string, labels ...string) float64 {
	m := f.find(name, labels...)
	switch {
	case m == nil:
		return 0
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

func serveMetrics(t *testing.T, m *telemetry.Metrics, h *telemetry.Health) string {
	mux := http.NewServeMux()
	telemetry.Mount(mux, m, h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// Known calls through a real worker, a real demo MCP server over streamable
// HTTP and a real NATS move the counters and histograms by exactly as much.
func TestWorkerCallsMoveMetrics(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	url, stop, err := demo.Serve(ctx, demo.TransportHTTP, "127.0.0.1:0", demo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	pool := mcppool.New(zerolog.Nop())
	t.Cleanup(func() { pool.Close() })
	pool.Upsert(registry.Server{Name: "demo", Transport: registry.TransportHTTP, URL: url})

	tools := map[string]bool{"add": true, "fail": true, "echo": true}
	m := telemetry.New(telemetry.Config{
		KnownServer: func(s string) bool { return s == "demo" },
		KnownTool:   func(s, tool string) bool { return s == "demo" && tools[tool] },
	})
	base := serveMetrics(t, m, nil)

	w := worker.New(ns.Conn(t), ns.JS, pool, worker.Config{Name: "w1"}, zerolog.Nop(), worker.WithObserver(m))
	wctx, wcancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	t.Cleanup(func() { wcancel(); <-done })

	cl, err := client.New(ns.NC)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	before := scrape(t, base)
	if before["go_goroutines"] == nil || before["process_cpu_seconds_total"] == nil {
		t.Fatal("Go and process collectors missing")
	}
	call := func(server, tool string, args any, want subjects.Status) {
		t.Helper()
		cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
		defer ccancel()
		res, err := cl.Call(cctx, server, tool, args)
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != want {
			t.Fatalf("%s/%s: %s %+v", server, tool, res.Status, res.Error)
		}
	}
	for i := range 3 {
		call("demo", "add", map[string]any{"a": i, "b": 1}, subjects.StatusOK)
	}
	for range 2 {
		call("demo", "fail", map[string]any{"message": "no"}, subjects.StatusToolError)
	}
	// A name the caller made up is not a label of its own.
	call("ghost-"+subjects.NewCallID(), "anything", map[string]any{}, subjects.StatusError)

	// A call is counted once it is acked, which follows its reply: wait
	// for the six answers to be counted, nothing to be in flight, and the
	// five demo calls' timings (observed just after the count) to be in.
	var after families
	delta := func(name string, labels ...string) float64 {
		return after.value(name, labels...) - before.value(name, labels...)
	}
	counted := func() float64 {
		return delta("toolbus_calls_total", "server=demo", "tool=add", "status=ok", "code=") +
			delta("toolbus_calls_total", "server=demo", "tool=fail", "status=tool_error", "code=") +
			delta("toolbus_calls_total", "server=_unknown", "tool=_unknown", "status=error", "code=unknown_server")
	}
	testutil.CheckFor(t, 30*time.Second, func() error {
		after = scrape(t, base)
		if n := counted(); n < 6 || after.value("toolbus_calls_in_flight") != 0 {
			return fmt.Errorf("%v of 6 calls counted, %v in flight", n, after.value("toolbus_calls_in_flight"))
		}
		for _, h := range []string{"toolbus_call_exec_seconds", "toolbus_call_queue_wait_seconds", "toolbus_call_duration_seconds"} {
			if n := delta(h, "server=demo"); n < 5 {
				return fmt.Errorf("%s has %v of 5 demo calls", h, n)
			}
		}
		return nil
	})
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"toolbus_calls_total", []string{"server=demo", "tool=add", "status=ok", "code="}, 3},
		{"toolbus_calls_total", []string{"server=demo", "tool=fail", "status=tool_error", "code="}, 2},
		{"toolbus_calls_total", []string{"server=_unknown", "tool=_unknown", "status=error", "code=unknown_server"}, 1},
		{"toolbus_call_exec_seconds", []string{"server=demo"}, 5},
		{"toolbus_call_queue_wait_seconds", []string{"server=demo"}, 5},
		{"toolbus_call_duration_seconds", []string{"server=demo"}, 5},
		{"toolbus_call_redeliveries_total", []string{"server=demo"}, 0},
	} {
		if got := delta(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v moved by %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if n := after.value("toolbus_calls_in_flight"); n != 0 {
		t.Errorf("in flight after all answered: %v", n)
	}
	for _, mf := range after {
		for _, s := range mf.Metric {
			for _, l := range s.Label {
				if strings.HasPrefix(l.GetValue(), "ghost-") {
					t.Errorf("%s has a caller-chosen label value %q", mf.GetName(), l.GetValue())
				}
			}
		}
	}
}

// The observer's own arithmetic, for events a test cannot easily provoke
// through a worker (dead letters, outcome_unknown, redeliveries).
func TestObserverCountsDeadLettersAndRedeliveries(t *testing.T) {
	t.Parallel()
	m := telemetry.New(telemetry.Config{KnownServer: func(s string) bool { return s == "demo" }})
	base := serveMetrics(t, m, nil)
	m.CallStarted("demo", "destroy")
	mid := scrape(t, base)
	if v := mid.value("toolbus_calls_in_flight"); v != 1 {
		t.Fatalf("in flight after start: %v", v)
	}
	m.CallFinished(worker.CallEvent{Server: "demo", Tool: "destroy", Status: "error", Code: "outcome_unknown", Attempt: 2, Ran: true, Exec: time.Millisecond, Total: 3 * time.Millisecond})
	m.CallFinished(worker.CallEvent{Server: "demo", Tool: "destroy", Status: "error", Code: "made-up code", Attempt: 1})
	m.DeadLettered("demo", "destroy", "delivered 5 times without an answer")
	m.DeadLettered("demo", "destroy", "terminated: poison")
	m.DeadLettered("other", "x", "something else")
	f := scrape(t, base)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"toolbus_calls_in_flight", nil, 0},
		{"toolbus_outcome_unknown_total", []string{"server=demo", "tool=destroy"}, 1},
		{"toolbus_call_redeliveries_total", []string{"server=demo"}, 1},
		{"toolbus_calls_total", []string{"server=demo", "code=_unknown"}, 1},
		{"toolbus_dead_letters_total", []string{"server=demo", "reason=max_deliveries"}, 1},
		{"toolbus_dead_letters_total", []string{"server=demo", "reason=terminated"}, 1},
		{"toolbus_dead_letters_total", []string{"server=_unknown", "tool=_unknown", "reason=other"}, 1},
		{"toolbus_call_exec_seconds", []string{"server=demo"}, 1},
		{"toolbus_call_queue_wait_seconds", []string{"server=demo"}, 0},
	} {
		if got := f.value(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

// Pool sessions and breaker state are read from the pool at each scrape.
func TestPoolCollector(t *testing.T) {
	t.Parallel()
	stats := []telemetry.PoolServerStats{{Server: "demo", Sessions: 2, Breaker: "open", InFlight: 3}}
	m := telemetry.New(telemetry.Config{PoolStats: func() []telemetry.PoolServerStats { return stats }})
	base := serveMetrics(t, m, nil)
	f := scrape(t, base)
	if f.value("toolbus_pool_sessions", "server=demo") != 2 || f.value("toolbus_pool_in_flight", "server=demo") != 3 ||
		f.value("toolbus_breaker_state", "server=demo", "state=open") != 1 || f.value("toolbus_breaker_state", "server=demo", "state=closed") != 0 ||
		f.find("toolbus_breaker_state", "server=demo", "state=closed") == nil {
		t.Fatalf("pool metrics: %v", f["toolbus_breaker_state"])
	}
}

// Sync metrics follow the sync status entries in the servers bucket: the
// entries present at start set the gauges, each later one counts as a run.
func TestSyncMetricsFollowStatus(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := ns.JS.KeyValue(ctx, subjects.BucketServers)
	if err != nil {
		t.Fatal(err)
	}
	put := func(st subjects.SyncStatus) {
		t.Helper()
		key, err := subjects.SyncStatusKey(st.Server)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(st)
		if _, err := kv.Put(ctx, key, b); err != nil {
			t.Fatal(err)
		}
	}
	lastOK := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	put(subjects.SyncStatus{Server: "my.server", OK: true, Tools: 3, LastOK: lastOK, At: lastOK})

	m := telemetry.New(telemetry.Config{})
	base := serveMetrics(t, m, nil)
	wctx, wcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.WatchSync(wctx, ns.JS) }()
	defer func() { wcancel(); <-done }()

	waitFor := func(what string, cond func(families) bool) families {
		t.Helper()
		var f families
		natstest.CheckFor(t, 10*time.Second, func() error {
			resp, err := http.Get(base + "/metrics")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			p := expfmt.NewTextParser(model.UTF8Validation)
			if f, err = p.TextToMetricFamilies(resp.Body); err != nil {
				return err
			}
			if !cond(f) {
				return fmt.Errorf("%s: not yet", what)
			}
			return nil
		})
		return f
	}
	f := waitFor("replayed status", func(f families) bool { return f.value("toolbus_catalog_tools", "server=my.server") == 3 })
	if f.value("toolbus_sync_runs_total", "server=my.server") != 0 || f.value("toolbus_sync_ok", "server=my.server") != 1 ||
		f.value("toolbus_sync_last_success_timestamp_seconds", "server=my.server") != float64(lastOK.Unix()) {
		t.Fatalf("after replay: runs %v ok %v last %v", f.value("toolbus_sync_runs_total", "server=my.server"),
			f.value("toolbus_sync_ok", "server=my.server"), f.value("toolbus_sync_last_success_timestamp_seconds", "server=my.server"))
	}
	put(subjects.SyncStatus{Server: "my.server", OK: false, ErrorClass: subjects.SyncTimeout, Tools: 3, LastOK: lastOK})
	put(subjects.SyncStatus{Server: "my.server", OK: true, Tools: 4, LastOK: lastOK.Add(time.Minute)})
	f = waitFor("two runs", func(f families) bool { return f.value("toolbus_sync_runs_total", "server=my.server") == 2 })
	if f.value("toolbus_sync_failures_total", "server=my.server", "class=timeout") != 1 || f.value("toolbus_catalog_tools", "server=my.server") != 4 {
		t.Fatalf("after two runs: failures %v tools %v", f.value("toolbus_sync_failures_total", "server=my.server", "class=timeout"), f.value("toolbus_catalog_tools", "server=my.server"))
	}
	key, _ := subjects.SyncStatusKey("my.server")
	if err := kv.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	waitFor("removed server's gauges gone", func(f families) bool { return f.find("toolbus_catalog_tools", "server=my.server") == nil })
}

// Webhook requests are counted by hook and status on the bridge's own
// listener, which also serves /metrics and /healthz; an unknown path's
// name is never a label.
func TestWebhookMetricsOnBridgeListener(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	m := telemetry.New(telemetry.Config{})
	mux := http.NewServeMux()
	telemetry.Mount(mux, m, nil)
	b, err := bridge.New(ns.JS, []bridge.Hook{{Name: "deploys", Auth: bridge.AuthBearer, Token: "tok"}}, zerolog.Nop(),
		bridge.WithOnRequest(m.WebhookRequest), bridge.WithOther(mux))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()
	base := "http://" + ln.Addr().String()

	post := func(path, token string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, base+path, bytes.NewReader([]byte(`{"x":1}`)))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := post("/hooks/deploys", "tok"); s != http.StatusAccepted {
		t.Fatalf("good request: %d", s)
	}
	if s := post("/hooks/deploys", "wrong"); s != http.StatusUnauthorized {
		t.Fatalf("bad token: %d", s)
	}
	if s := post("/hooks/made-up-"+subjects.NewCallID(), ""); s != http.StatusNotFound {
		t.Fatalf("unknown hook: %d", s)
	}
	resp, err := http.Get(base + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz on the bridge listener: %v %v", resp, err)
	}
	resp.Body.Close()
	f := scrape(t, base)
	for _, c := range []struct {
		labels []string
		want   float64
	}{
		{[]string{"hook=deploys", "status=202"}, 1},
		{[]string{"hook=deploys", "status=401"}, 1},
		{[]string{"hook=_unknown", "status=404"}, 1},
	} {
		if got := f.value("toolbus_webhook_requests_total", c.labels...); got != c.want {
			t.Errorf("webhooks%v = %v, want %v", c.labels, got, c.want)
		}
	}
	if n := len(f["toolbus_webhook_requests_total"].GetMetric()); n != 3 {
		t.Errorf("%d webhook series, want 3", n)
	}
}

// The queue gauges read the real consumer and streams at scrape time.
func TestQueueGauges(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	m := telemetry.New(telemetry.Config{})
	m.WatchQueue(ns.JS)
	base := serveMetrics(t, m, nil)
	f := scrape(t, base)
	if f.find("toolbus_queue_pending") == nil || f.value("toolbus_queue_pending") != 0 || f.value("toolbus_queue_oldest_age_seconds") != 0 {
		t.Fatalf("empty queue: pending %v oldest %v", f.value("toolbus_queue_pending"), f.value("toolbus_queue_oldest_age_seconds"))
	}
	for range 2 {
		subj, _ := subjects.ToolCall("agent1", "demo", "add")
		if _, err := ns.JS.Publish(ctx, subj, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	dead, _ := subjects.ToolDead("agent1", "demo", "add")
	if _, err := ns.JS.Publish(ctx, dead, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	f = scrape(t, base)
	if f.value("toolbus_queue_pending") != 2 || f.value("toolbus_queue_awaiting_ack") != 0 || f.value("toolbus_dead_letters_stored") != 1 ||
		f.value("toolbus_queue_oldest_age_seconds") <= 0 {
		t.Fatalf("after 2 calls and a dead letter: pending %v awaiting %v dead %v oldest %v", f.value("toolbus_queue_pending"),
			f.value("toolbus_queue_awaiting_ack"), f.value("toolbus_dead_letters_stored"), f.value("toolbus_queue_oldest_age_seconds"))
	}
}
