package worker

import (
	"context"
	"errors"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/toolbus-dev/toolbus/subjects"
)

// headerMsg is a delivered call for what tracing reads of it: its headers.
type headerMsg struct {
	jetstream.Msg
	h nats.Header
}

func (m headerMsg) Headers() nats.Header { return m.h }

// With tracing off and no traceparent on the call, the worker's tracing
// hooks on the call path allocate nothing.
func TestTracingOffAllocatesNothing(t *testing.T) {
	w := &Worker{}
	j := &job{msg: headerMsg{h: nats.Header{subjects.HeaderCallID: {"c1"}}}, res: &subjects.Result{Attempt: 1}}
	out := outcome{res: j.res}
	err := errors.New("x")
	ctx := context.Background()
	if n := testing.AllocsPerRun(100, func() {
		c, span := w.traceCall(ctx, j)
		c, ex := w.step(c, SpanExecute)
		w.traceRetry(c, err, 0)
		endStep(ex, nil)
		_, st := w.step(c, SpanSettle)
		endStep(st, nil)
		endCall(span, out, true)
	}); n != 0 {
		t.Errorf("%v allocations per call with tracing off, want 0", n)
	}
}
