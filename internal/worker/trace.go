package worker

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/toolbus-dev/toolbus/subjects"
)

const tracerName = "github.com/toolbus-dev/toolbus/internal/worker"

// Span names of a call, for the README and the test.
const (
	SpanCall    = "toolbus.call"    // one delivery, from publish (first) or delivery to settled
	SpanQueue   = "toolbus.queue"   // publish to first delivery, from the stream's timestamp
	SpanLookup  = "toolbus.lookup"  // looking for a result an earlier attempt stored
	SpanExecute = "toolbus.execute" // deadline, pause, claim, the MCP call with retries
	SpanSettle  = "toolbus.settle"  // storing the result (delivering it) and the ack
)

// WithTracerProvider traces calls with tp (nil: off, the default). Off,
// the worker still passes a caller's traceparent to the MCP server.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(w *Worker) {
		if tp != nil {
			w.tracer = tp.Tracer(tracerName)
		}
	}
}

// traceCall continues the caller's trace (the call's traceparent header)
// for one delivery, or starts a new one. With tracing off it only carries
// a valid caller's context on to the MCP request, and costs a header
// lookup when there is none.
func (w *Worker) traceCall(ctx context.Context, j *job) (context.Context, trace.Span) {
	if h := j.msg.Headers(); h.Get(subjects.HeaderTraceparent) != "" || h.Get("Traceparent") != "" {
		// Caller input: the propagator takes only a well-formed context.
		ctx = propagation.TraceContext{}.Extract(ctx, natsCarrier(h))
	}
	if w.tracer == nil {
		return ctx, nil
	}
	start := j.start
	queued := j.res.Attempt == 1 && !j.sent.IsZero() && j.sent.Before(j.start)
	if queued {
		start = j.sent
	}
	c := &j.call
	ctx, span := w.tracer.Start(ctx, SpanCall, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithTimestamp(start),
		trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.destination.name", j.msg.Subject()),
			attribute.String("toolbus.server", c.server),
			attribute.String("toolbus.tool", c.tool),
			attribute.String("toolbus.agent", c.agent),
			attribute.String("toolbus.call_id", c.id),
			attribute.Int("toolbus.attempt", j.res.Attempt),
			attribute.String("toolbus.worker", w.cfg.Name),
		))
	if queued {
		_, q := w.tracer.Start(ctx, SpanQueue, trace.WithTimestamp(j.sent))
		q.End(trace.WithTimestamp(j.start))
	}
	return ctx, span
}

// endCall ends a delivery's span with its outcome. An error result marks
// it failed; a tool error is an answer (its tools/call span is failed).
func endCall(span trace.Span, out outcome, settled bool) {
	if span == nil {
		return
	}
	res := out.res
	switch {
	case out.stored != nil:
		span.SetAttributes(attribute.String("toolbus.answer", "stored"))
	case res != nil && res.Status != "":
		span.SetAttributes(attribute.String("toolbus.status", string(res.Status)))
		if res.Error != nil {
			span.SetAttributes(attribute.String("toolbus.code", string(res.Error.Code)))
			span.SetStatus(codes.Error, res.Error.Message)
		}
	}
	switch {
	case out.action == handBack:
		span.SetAttributes(attribute.String("toolbus.action", "hand_back"))
	case out.action == retryLater:
		span.SetAttributes(attribute.String("toolbus.action", "retry_later"))
	case out.action == bury:
		span.SetAttributes(attribute.String("toolbus.action", "dead_letter"))
	case !settled:
		span.SetAttributes(attribute.String("toolbus.action", "not_settled"))
	}
	span.End()
}

// step starts the span of one step of a call, when tracing is on; end it
// with endStep.
func (w *Worker) step(ctx context.Context, name string) (context.Context, trace.Span) {
	if w.tracer == nil {
		return ctx, nil
	}
	return w.tracer.Start(ctx, name)
}

// endStep ends a step's span, failed when err is set.
func endStep(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// traceRetry notes a transport failure about to be retried on the step's
// span.
func (w *Worker) traceRetry(ctx context.Context, err error, wait time.Duration) {
	if w.tracer == nil {
		return
	}
	trace.SpanFromContext(ctx).AddEvent("retry", trace.WithAttributes(
		attribute.String("error", err.Error()), attribute.Int64("wait_ms", wait.Milliseconds())))
}

// natsCarrier reads a call's W3C trace context from its NATS headers for
// OpenTelemetry's propagators. NATS headers are case-sensitive; the
// lowercase names are the standard ones, the canonical HTTP spelling is
// accepted too.
type natsCarrier nats.Header

func (c natsCarrier) Get(key string) string {
	if v := nats.Header(c).Get(key); v != "" {
		return v
	}
	switch key {
	case subjects.HeaderTraceparent:
		return nats.Header(c).Get("Traceparent")
	case subjects.HeaderTracestate:
		return nats.Header(c).Get("Tracestate")
	}
	return ""
}

func (c natsCarrier) Set(key, value string) { nats.Header(c).Set(key, value) }

func (c natsCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// endExecute ends the execute span with the call's outcome.
func endExecute(span trace.Span, out outcome) {
	if res := out.res; res != nil && res.Error != nil {
		span.SetAttributes(attribute.String("toolbus.code", string(res.Error.Code)))
		span.SetStatus(codes.Error, res.Error.Message)
	}
	span.End()
}
