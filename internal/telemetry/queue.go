package telemetry

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/toolbus-dev/toolbus/internal/streams"
	"github.com/toolbus-dev/toolbus/subjects"
)

var (
	descQueued      = prometheus.NewDesc("toolbus_queue_pending", "Calls in TOOL_CALLS not yet delivered to a worker (fleet-wide).", nil, nil)
	descAwaitingAck = prometheus.NewDesc("toolbus_queue_awaiting_ack", "Calls delivered to a worker and not yet acknowledged (fleet-wide).", nil, nil)
	descOldest      = prometheus.NewDesc("toolbus_queue_oldest_age_seconds", "Age of the oldest call in TOOL_CALLS, queued or running; 0 when empty.", nil, nil)
	descDead        = prometheus.NewDesc("toolbus_dead_letters_stored", "Calls kept in TOOL_DEAD (fleet-wide).", nil, nil)
)

// WatchQueue adds the fleet-wide queue gauges, read from JetStream at each
// scrape (the workers' consumer info, TOOL_CALLS and TOOL_DEAD stream
// info, each bounded by ReadyTimeout). A part that cannot be read is left
// out of that scrape.
func (m *Metrics) WatchQueue(js jetstream.JetStream) {
	m.reg.MustRegister(&queueCollector{js: js})
}

type queueCollector struct{ js jetstream.JetStream }

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descQueued
	ch <- descAwaitingAck
	ch <- descOldest
	ch <- descDead
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), ReadyTimeout)
	defer cancel()
	if cons, err := c.js.Consumer(ctx, subjects.StreamCalls, subjects.ConsumerWorkers); err == nil {
		if info, err := cons.Info(ctx); err == nil {
			ch <- prometheus.MustNewConstMetric(descQueued, prometheus.GaugeValue, float64(info.NumPending))
			ch <- prometheus.MustNewConstMetric(descAwaitingAck, prometheus.GaugeValue, float64(info.NumAckPending))
		}
	}
	if s, err := c.js.Stream(ctx, subjects.StreamCalls); err == nil {
		if first, err := streams.OldestCall(ctx, s); err == nil {
			age := 0.0
			if !first.IsZero() {
				age = time.Since(first).Seconds()
			}
			ch <- prometheus.MustNewConstMetric(descOldest, prometheus.GaugeValue, age)
		}
	}
	if s, err := c.js.Stream(ctx, subjects.StreamDead); err == nil {
		if info, err := s.Info(ctx); err == nil {
			ch <- prometheus.MustNewConstMetric(descDead, prometheus.GaugeValue, float64(info.State.Msgs))
		}
	}
}
