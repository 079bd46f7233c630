package worker_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/toolbus-dev/toolbus/client"
	"github.com/toolbus-dev/toolbus/internal/demo"
	"github.com/toolbus-dev/toolbus/internal/mcppool"
	"github.com/toolbus-dev/toolbus/internal/natstest"
	"github.com/toolbus-dev/toolbus/internal/registry"
	"github.com/toolbus-dev/toolbus/internal/telemetry"
	"github.com/toolbus-dev/toolbus/internal/testutil"
	"github.com/toolbus-dev/toolbus/internal/worker"
	"github.com/toolbus-dev/toolbus/subjects"
)

// whoami calls the demo's whoami tool and returns what the server saw.
func whoami(t *testing.T, ctx context.Context, cl *client.Client, server string, opts ...client.CallOption) (*subjects.Result, demo.Whoami) {
	t.Helper()
	res, err := cl.Call(ctx, server, "whoami", nil, opts...)
	if err != nil {
		t.Fatalf("%s whoami: %v", server, err)
	}
	if res.Status != subjects.StatusOK {
		t.Fatalf("%s whoami: %+v", server, res)
	}
	var out struct {
		StructuredContent demo.Whoami `json:"structuredContent"`
	}
	if err := json.Unmarshal(res.Result, &out); err != nil {
		t.Fatalf("%s whoami result %s: %v", server, res.Result, err)
	}
	return res, out.StructuredContent
}

// demoServers serves the demo over streamable HTTP, as two servers: the
// negotiated protocol (2026-07-28) and 2025-11-25.
func demoServers(t *testing.T, pool *mcppool.Pool) []string {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	url, stop, err := demo.Serve(ctx, demo.TransportHTTP, "127.0.0.1:0", demo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	pool.Upsert(registry.Server{Name: "demo-http", Transport: registry.TransportHTTP, URL: url})
	pool.Upsert(registry.Server{Name: "demo-http-old", Transport: registry.TransportHTTP, URL: url, ProtocolVersion: "2025-11-25"})
	return []string{"demo-http", "demo-http-old"}
}

// A traced call, end to end against real parts: the test's span calls
// through the client, a real worker runs the call against the demo server
// over streamable HTTP, and the real OTLP/HTTP exporter sends the spans to
// a receiver here. The span tree hangs off the caller's span in one trace,
// and the MCP server saw the trace in its traceparent header and _meta.
func TestTracesFollowTheCall(t *testing.T) {
	recv := &testutil.OTLPReceiver{}
	hs := httptest.NewServer(recv)
	t.Cleanup(hs.Close)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", hs.URL)
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	t.Setenv("OTEL_SERVICE_NAME", "")
	tp, shutdown, err := telemetry.Setup(context.Background(), "test-worker", testLog(t))
	if err != nil || tp == nil {
		t.Fatalf("Setup: %v, %v", tp, err)
	}
	t.Cleanup(func() { _ = shutdown(context.Background()) })
	flusher := tp.(interface{ ForceFlush(context.Context) error })

	ns := natstest.Start(t)
	pool := mcppool.New(testLog(t), mcppool.WithTracerProvider(tp))
	t.Cleanup(func() { pool.Close() })
	names := demoServers(t, pool)
	startWorker(t, ns.Conn(t), pool, worker.Config{Name: "w1"}, testLog(t), worker.WithTracerProvider(tp))
	cl, err := client.New(ns.NC, client.WithAgent("tracer"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	// spansOf waits until the trace has every named span.
	spansOf := func(traceID string, want ...string) map[string]*tracepb.Span {
		t.Helper()
		var got map[string]*tracepb.Span
		testutil.CheckFor(t, 20*time.Second, func() error {
			_ = flusher.ForceFlush(context.Background())
			got = recv.Trace(traceID)
			for _, n := range want {
				if got[n] == nil {
					return fmt.Errorf("trace %s: no span %q yet (have %d spans)", traceID, n, len(got))
				}
			}
			return nil
		})
		return got
	}

	for _, server := range names {
		t.Run(server, func(t *testing.T) {
			ctx, caller := tp.Tracer("test").Start(context.Background(), "caller")
			res, seen := whoami(t, ctx, cl, server)
			caller.End()
			tid := caller.SpanContext().TraceID().String()
			s := spansOf(tid, "caller", worker.SpanCall, worker.SpanQueue, worker.SpanExecute, worker.SpanSettle, "tools/call whoami")
			mcp := s["tools/call whoami"]
			parent := func(child, parent string) {
				t.Helper()
				if !bytes.Equal(s[child].ParentSpanId, s[parent].SpanId) {
					t.Errorf("%s's parent is %x, want %s %x", child, s[child].ParentSpanId, parent, s[parent].SpanId)
				}
			}
			parent(worker.SpanCall, "caller")
			parent(worker.SpanQueue, worker.SpanCall)
			parent(worker.SpanExecute, worker.SpanCall)
			parent(worker.SpanSettle, worker.SpanCall)
			parent("tools/call whoami", worker.SpanExecute)
			call := s[worker.SpanCall]
			for k, v := range map[string]string{"toolbus.server": server, "toolbus.tool": "whoami", "toolbus.agent": "tracer",
				"toolbus.call_id": res.CallID, "toolbus.attempt": "1", "toolbus.status": "ok"} {
				if got := testutil.SpanAttr(call, k); got != v {
					t.Errorf("%s %s = %q, want %q", worker.SpanCall, k, got, v)
				}
			}
			if call.Kind != tracepb.Span_SPAN_KIND_CONSUMER || mcp.Kind != tracepb.Span_SPAN_KIND_CLIENT {
				t.Errorf("kinds: call %v, tools/call %v", call.Kind, mcp.Kind)
			}
			q := s[worker.SpanQueue]
			if q.StartTimeUnixNano != call.StartTimeUnixNano || q.EndTimeUnixNano < q.StartTimeUnixNano {
				t.Errorf("queue span %d..%d, call starts %d: the queue wait starts at the publish", q.StartTimeUnixNano, q.EndTimeUnixNano, call.StartTimeUnixNano)
			}
			want := "00-" + tid + "-" + hex.EncodeToString(mcp.SpanId) + "-01"
			if seen.Traceparent != want || seen.MetaTraceparent != want {
				t.Errorf("the server saw traceparent %q and _meta.traceparent %q, want %q (the tools/call span)", seen.Traceparent, seen.MetaTraceparent, want)
			}
			if seen.Agent != "tracer" {
				t.Errorf("agent header %q", seen.Agent)
			}
		})
	}

	t.Run("new trace without a caller span", func(t *testing.T) {
		_, seen := whoami(t, context.Background(), cl, "demo-http")
		parts := strings.Split(seen.Traceparent, "-")
		if len(parts) != 4 || seen.MetaTraceparent != seen.Traceparent {
			t.Fatalf("the server saw traceparent %q, _meta %q", seen.Traceparent, seen.MetaTraceparent)
		}
		s := spansOf(parts[1], worker.SpanCall, "tools/call whoami")
		if len(s[worker.SpanCall].ParentSpanId) != 0 {
			t.Errorf("%s has parent %x; with no traceparent it starts the trace", worker.SpanCall, s[worker.SpanCall].ParentSpanId)
		}
	})

	t.Run("error result", func(t *testing.T) {
		ctx, caller := tp.Tracer("test").Start(context.Background(), "caller")
		res, err := cl.Call(ctx, "demo-http", "no-such-tool", nil)
		caller.End()
		if err != nil || res.Status != subjects.StatusError {
			t.Fatalf("call: %+v, %v", res, err)
		}
		s := spansOf(caller.SpanContext().TraceID().String(), worker.SpanCall, worker.SpanExecute)
		call := s[worker.SpanCall]
		if call.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR || testutil.SpanAttr(call, "toolbus.code") != string(res.Error.Code) {
			t.Errorf("%s status %v code %q, want error %s", worker.SpanCall, call.Status, testutil.SpanAttr(call, "toolbus.code"), res.Error.Code)
		}
	})

	if p := recv.Problems("toolbus"); len(p) > 0 {
		t.Errorf("receiver: %v", p)
	}
}

// With tracing off, a caller's well-formed traceparent still reaches the
// MCP server as it was sent, and a malformed one is dropped.
func TestTraceparentPassesThroughWhenTracingIsOff(t *testing.T) {
	ns := natstest.Start(t)
	pool := mcppool.New(testLog(t))
	t.Cleanup(func() { pool.Close() })
	names := demoServers(t, pool)
	startWorker(t, ns.Conn(t), pool, worker.Config{}, testLog(t))
	cl, err := client.New(ns.NC)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, server := range names {
		if _, seen := whoami(t, context.Background(), cl, server, client.WithTraceparent(tp)); seen.Traceparent != tp || seen.MetaTraceparent != tp {
			t.Errorf("%s saw traceparent %q, _meta %q; want %q", server, seen.Traceparent, seen.MetaTraceparent, tp)
		}
		for _, bad := range []string{"garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", tp + `","x":"y`} {
			if _, seen := whoami(t, context.Background(), cl, server, client.WithTraceparent(bad)); seen.Traceparent != "" || seen.MetaTraceparent != "" {
				t.Errorf("%s: malformed %q reached the server as %q, _meta %q", server, bad, seen.Traceparent, seen.MetaTraceparent)
			}
		}
	}
	// A caller's span in ctx is sent as the traceparent, with no SDK here.
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: [16]byte{1, 2, 3}, SpanID: [8]byte{4, 5}, TraceFlags: trace.FlagsSampled})
	_, seen := whoami(t, trace.ContextWithSpanContext(context.Background(), sc), cl, "demo-http")
	if want := subjects.FormatTraceparent(sc.TraceID(), sc.SpanID(), 1); seen.Traceparent != want {
		t.Errorf("the server saw %q, want the ctx span's %q", seen.Traceparent, want)
	}
}
