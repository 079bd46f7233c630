package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/toolbus-dev/toolbus/internal/telemetry"
	"github.com/toolbus-dev/toolbus/subjects"
)

// flushWait bounds how long a stopping command sends the spans it still
// holds.
const flushWait = 5 * time.Second

// startTracing sets up tracing from the OTEL_* environment for a command
// (telemetry.Setup); tp is nil when it is off. stop flushes within
// flushWait.
func startTracing(ctx context.Context, instance string, log zerolog.Logger) (tp trace.TracerProvider, stop func(), err error) {
	if instance == "" {
		host, _ := os.Hostname()
		instance = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	tp, shutdown, err := telemetry.Setup(ctx, instance, log)
	if err != nil {
		return nil, func() {}, err
	}
	return tp, func() {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushWait)
		defer cancel()
		if err := shutdown(fctx); err != nil {
			log.Warn().Err(err).Msg("tracing: spans not flushed")
		}
	}, nil
}

// envCarrier reads TRACEPARENT and TRACESTATE from the environment, as
// OpenTelemetry specifies for processes started inside a trace.
type envCarrier func(string) string

func (e envCarrier) Get(key string) string {
	switch key {
	case subjects.HeaderTraceparent:
		return e("TRACEPARENT")
	case subjects.HeaderTracestate:
		return e("TRACESTATE")
	}
	return ""
}
func (envCarrier) Set(string, string) {}
func (envCarrier) Keys() []string     { return []string{"TRACEPARENT", "TRACESTATE"} }

// traceCall gives `toolbus call` its trace: the parent is TRACEPARENT from
// the environment when it is well formed; with tracing on, a client span
// "toolbus call" under it is the parent of the worker's spans. end records
// the result and flushes.
func traceCall(ctx context.Context, getenv func(string) string, agent, server, tool, id string, log zerolog.Logger) (context.Context, func(res *subjects.Result), error) {
	ctx = propagation.TraceContext{}.Extract(ctx, envCarrier(getenv))
	tp, stop, err := startTracing(ctx, "", log)
	if err != nil || tp == nil {
		return ctx, func(*subjects.Result) {}, err
	}
	ctx, span := tp.Tracer("github.com/toolbus-dev/toolbus/cmd/toolbus").Start(ctx, "toolbus call", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("toolbus.server", server), attribute.String("toolbus.tool", tool),
			attribute.String("toolbus.agent", agent), attribute.String("toolbus.call_id", id)))
	return ctx, func(res *subjects.Result) {
		if res != nil {
			span.SetAttributes(attribute.String("toolbus.status", string(res.Status)))
			if res.Error != nil {
				span.SetAttributes(attribute.String("toolbus.code", string(res.Error.Code)))
				span.SetStatus(codes.Error, res.Error.Message)
			}
		}
		span.End()
		stop()
	}, nil
}
