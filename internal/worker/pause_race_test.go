package worker_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/toolbus-dev/toolbus/internal/natstest"
	"github.com/toolbus-dev/toolbus/internal/worker"
	"github.com/toolbus-dev/toolbus/subjects"
)

// executeGate holds the first call's execute span at its start until
// released: the moment a runner starts the execution.
type executeGate struct {
	once     sync.Once
	entered  chan struct{}
	released chan struct{}
}

func (g *executeGate) OnStart(_ context.Context, s sdktrace.ReadWriteSpan) {
	if s.Name() == worker.SpanExecute {
		g.once.Do(func() { close(g.entered); <-g.released })
	}
}
func (g *executeGate) OnEnd(sdktrace.ReadOnlySpan)      {}
func (g *executeGate) Shutdown(context.Context) error   { return nil }
func (g *executeGate) ForceFlush(context.Context) error { return nil }

// Beyond the runners, a call whose server is paused while its runner
// starts the execution (after the runner saw it not paused) waits for
// Resume on a goroutine of its own, not on the runner: a runner held for a
// pause takes no other call, and a pause caught every runner so would stop
// the worker's calls to every server.
func TestPauseWhileAnExecutionStartsHoldsNoRunner(t *testing.T) {
	ns, pool, cl := demoRig(t)
	g := &executeGate{entered: make(chan struct{}), released: make(chan struct{})}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(g))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	w, _ := runWorker(t, ns.Conn(t), pool, worker.Config{Concurrency: 300, MaxAckPending: 300}, testLog(t), worker.WithTracerProvider(tp))
	answer := callAsync(cl, "demo", "echo", `{"message":"after the pause"}`)
	<-g.entered
	w.Pause("demo")
	close(g.released)

	var waiter string
	natstest.CheckFor(t, 10*time.Second, func() error {
		buf := make([]byte, 16<<20)
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, "(*Worker).waitUnpaused") {
				waiter = g
				return nil
			}
		}
		return errors.New("the call does not wait for Resume")
	})
	if strings.Contains(waiter, "(*Worker).process") {
		t.Errorf("the call waits for Resume on the runner that took it:\n%s", waiter)
	}
	w.Resume("demo")
	if res := (<-answer).must(t); res.Status != subjects.StatusOK {
		t.Fatalf("call after Resume: %+v", res)
	}
}
