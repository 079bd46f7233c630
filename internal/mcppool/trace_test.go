package mcppool

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/rs/zerolog"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/toolbus-dev/toolbus/internal/demo"
	"github.com/toolbus-dev/toolbus/internal/registry"
)

// With tracing off and no trace in ctx, the call path spends nothing on
// tracing.
func TestTracingOffAllocatesNothing(t *testing.T) {
	p := &Pool{}
	ctx := context.Background()
	if n := testing.AllocsPerRun(100, func() {
		c, span := p.startSpan(ctx, "s", "echo")
		h, meta := traceContext(c, nil)
		endSpan(span, false, nil)
		if h != nil || meta != nil {
			t.Fatal("trace context from nothing")
		}
	}); n != 0 {
		t.Errorf("%v allocations per call with tracing off, want 0", n)
	}
}

// BenchmarkCallHTTP is one tools/call over streamable HTTP to the demo
// server, with tracing off and on (a sampled span per call, kept in memory).
func BenchmarkCallHTTP(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	url, stop, err := demo.Serve(ctx, demo.TransportHTTP, "127.0.0.1:0", demo.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer stop()
	args := json.RawMessage(`{"message":"hi"}`)
	for _, on := range []bool{false, true} {
		name := "off"
		var opts []Option
		if on {
			name = "on"
			opts = append(opts, WithTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracetest.NewNoopExporter()))))
		}
		b.Run(name, func(b *testing.B) {
			p := New(zerolog.Nop(), opts...)
			defer p.Close()
			p.Upsert(registry.Server{Name: "d", Transport: registry.TransportHTTP, URL: url})
			if _, _, err := p.Call(ctx, "d", "echo", args, CallOptions{}); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, _, err := p.Call(ctx, "d", "echo", args, CallOptions{AgentID: "a"}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
