package telemetry_test

import (
	"testing"
	"time"

	"github.com/toolbus-dev/toolbus/internal/telemetry"
	"github.com/toolbus-dev/toolbus/internal/worker"
)

// BenchmarkObserveCall is the metrics' cost per call on the hot path:
// CallStarted plus CallFinished, with catalog-bounded labels, from many
// goroutines at once as a worker's calls finish.
func BenchmarkObserveCall(b *testing.B) {
	tools := map[string]bool{"echo": true}
	m := telemetry.New(telemetry.Config{
		KnownServer: func(s string) bool { return s == "demo" },
		KnownTool:   func(s, t string) bool { return tools[t] },
	})
	ev := worker.CallEvent{Server: "demo", Tool: "echo", Status: "ok", Attempt: 1, Ran: true,
		QueueWait: 200 * time.Microsecond, Exec: 300 * time.Microsecond, Total: 900 * time.Microsecond}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.CallStarted("demo", "echo")
			m.CallFinished(ev)
		}
	})
}
