package mcppool

import (
	"context"
	"encoding/json"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/toolbus-dev/toolbus/subjects"
)

const tracerName = "github.com/toolbus-dev/toolbus/internal/mcppool"

// WithTracerProvider makes the pool trace each tools/call as a client span
// "tools/call <tool>" (OpenTelemetry's MCP conventions). Default: none (a
// nil tp too); the W3C trace context of the call's ctx still reaches the
// server either way.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(p *Pool) {
		if tp != nil {
			p.tracer = tp.Tracer(tracerName)
		}
	}
}

// startSpan starts the span of one tools/call, when tracing is on.
func (p *Pool) startSpan(ctx context.Context, server, tool string) (context.Context, trace.Span) {
	if p.tracer == nil {
		return ctx, nil
	}
	return p.tracer.Start(ctx, "tools/call "+tool, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		attribute.String("mcp.method.name", "tools/call"),
		attribute.String("gen_ai.operation.name", "execute_tool"),
		attribute.String("gen_ai.tool.name", tool),
		attribute.String("toolbus.server", server),
	))
}

// endSpan ends a tools/call span with its outcome: an error, or a tool
// error (isError), marks it failed.
func endSpan(span trace.Span, isErr bool, err error) {
	if span == nil {
		return
	}
	switch {
	case err != nil:
		span.SetAttributes(attribute.String("error.type", string(ClassOf(err))))
		span.SetStatus(codes.Error, err.Error())
	case isErr:
		span.SetAttributes(attribute.String("error.type", "tool_error"))
		span.SetStatus(codes.Error, "the tool reported an error (isError)")
	}
	span.End()
}

// traceContext is the W3C trace context of ctx's span, for the request:
// set as the traceparent (and tracestate) HTTP headers on header, when
// there is one, and returned as _meta members (SEP-414 reserves the
// unprefixed keys traceparent and tracestate on every protocol version).
// With no span in ctx it does nothing and allocates nothing.
func traceContext(ctx context.Context, header http.Header) (http.Header, []byte) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return header, nil
	}
	tp := subjects.FormatTraceparent(sc.TraceID(), sc.SpanID(), byte(sc.TraceFlags()))
	ts := sc.TraceState().String()
	meta := make([]byte, 0, 80+len(ts))
	meta = append(meta, `"traceparent":"`...)
	meta = append(meta, tp...)
	meta = append(meta, '"')
	if ts != "" {
		v, _ := json.Marshal(ts)
		meta = append(meta, `,"tracestate":`...)
		meta = append(meta, v...)
	}
	if header != nil {
		header.Set(subjects.HeaderTraceparent, tp)
		if ts != "" {
			header.Set(subjects.HeaderTracestate, ts)
		}
	}
	return header, meta
}
