// Package streams defines toolbus's JetStream streams, consumers and KV
// buckets: their deployment settings (replicas, retention, leases). Their
// names are the wire contract and live in package subjects.
package streams

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/toolbus-dev/toolbus/subjects"
)

// Options are the deployment knobs of the stream definitions.
type Options struct {
	// Replicas per stream: 1 on one server, 3 on a cluster.
	Replicas int
	// ResultMaxAge is how long TOOL_RESULTS keeps a result (default 24h).
	ResultMaxAge time.Duration
	// ResultMaxBytes caps TOOL_RESULTS on disk; the oldest results go first
	// (-1: no cap).
	ResultMaxBytes int64
	// DuplicateWindow is JetStream's de-duplication window on calls (default 2m).
	DuplicateWindow time.Duration
}

func (o Options) withDefaults() Options {
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.ResultMaxAge <= 0 {
		o.ResultMaxAge = 24 * time.Hour
	}
	if o.ResultMaxBytes == 0 {
		o.ResultMaxBytes = -1
	}
	if o.DuplicateWindow <= 0 {
		o.DuplicateWindow = 2 * time.Minute
	}
	return o
}

// Streams returns every stream toolbus needs, in creation order.
func Streams(o Options) []jetstream.StreamConfig {
	o = o.withDefaults()
	return []jetstream.StreamConfig{
		{
			Name:        subjects.StreamCalls,
			Description: "toolbus: pending tool calls, one message per call; removed when acked",
			Subjects:    []string{subjects.ToolCallAll},
			Retention:   jetstream.WorkQueuePolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    o.Replicas,
			Duplicates:  o.DuplicateWindow,
			Discard:     jetstream.DiscardOld,
		},
		{
			Name:              subjects.StreamResults,
			Description:       "toolbus: the result of each call, on tool.result.<agent>.<call_id>",
			Subjects:          []string{subjects.ToolResultAll},
			Retention:         jetstream.LimitsPolicy,
			Storage:           jetstream.FileStorage,
			Replicas:          o.Replicas,
			MaxAge:            o.ResultMaxAge,
			MaxMsgsPerSubject: 1,
			MaxBytes:          o.ResultMaxBytes,
			Duplicates:        o.DuplicateWindow,
			AllowDirect:       true,
			// Each stored result is republished to its caller on
			// tool.reply.<agent>.<call_id>. Only what the stream stored is
			// republished: a write refused by the write-once check never
			// reaches a caller, as it would on tool.result itself.
			RePublish: &jetstream.RePublish{Source: subjects.ToolResultAll, Destination: subjects.ToolReplyAll},
		},
		{
			Name:        subjects.StreamDead,
			Description: "toolbus: calls that could not be delivered, with the reason",
			Subjects:    []string{subjects.ToolDeadAll},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    o.Replicas,
			MaxAge:      30 * 24 * time.Hour,
			Duplicates:  o.DuplicateWindow,
		},
		{
			Name:        subjects.StreamEvents,
			Description: "toolbus: catalog changes, agent wake-ups and webhook events",
			Subjects:    []string{subjects.CatalogChangedPrefix + ">", subjects.AgentWakePrefix + ">", subjects.WebhookPrefix + ">"},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    o.Replicas,
			MaxAge:      7 * 24 * time.Hour,
			Duplicates:  o.DuplicateWindow,
		},
		{
			Name:        subjects.StreamAdvisories,
			Description: "toolbus: max-deliveries and terminated advisories of the workers' consumer",
			Subjects:    []string{subjects.AdvisoryMaxDeliveries, subjects.AdvisoryTerminated},
			Retention:   jetstream.WorkQueuePolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    o.Replicas,
			MaxAge:      7 * 24 * time.Hour,
		},
		{
			Name:        subjects.StreamResync,
			Description: "toolbus: catalog resync requests, shared by sync replicas",
			Subjects:    []string{subjects.CatalogResyncAll, subjects.CatalogResyncPrefix + ">"},
			Retention:   jetstream.WorkQueuePolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    o.Replicas,
			Duplicates:  o.DuplicateWindow,
		},
	}
}

// DefaultAckWait is the lease of a call on the workers' consumer: a
// worker renews it every third of it while the call runs, so it bounds how
// long the calls of a worker that died wait before another worker takes
// them.
const DefaultAckWait = 5 * time.Second

// WorkerConsumer is the durable pull consumer on TOOL_CALLS that every
// worker shares, so any number of worker processes split the calls.
func WorkerConsumer(maxAckPending int, ackWait time.Duration, maxDeliver int) jetstream.ConsumerConfig {
	if maxAckPending <= 0 {
		maxAckPending = 1024
	}
	if ackWait <= 0 {
		ackWait = DefaultAckWait
	}
	if maxDeliver <= 0 {
		maxDeliver = 5
	}
	return jetstream.ConsumerConfig{
		Durable:       subjects.ConsumerWorkers,
		Description:   "toolbus workers (shared)",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxDeliver:    maxDeliver,
		MaxAckPending: maxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

// WakeConsumerConfig is an agent's durable consumer of agent.wake.<agent>
// on EVENTS: everything retained (so wake-ups published while the agent was
// offline wait for it), one at a time in order, each until acked. The
// filter is the one subject, so the consumer API subject names it and NATS
// permissions can scope it. Created by whoever publishes the first wake-up
// (scheduler, bridge) or by the agent's client where it may.
func WakeConsumerConfig(agent string) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       subjects.WakeConsumer(agent),
		Description:   "toolbus: wake-ups of agent " + agent,
		FilterSubject: subjects.AgentWakePrefix + agent,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 1,
	}
}

// DeadLetterConsumer is the durable consumer on TOOL_ADVISORIES.
func DeadLetterConsumer() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:     subjects.ConsumerDeadLetters,
		Description: "toolbus workers: move undeliverable calls to TOOL_DEAD",
		AckPolicy:   jetstream.AckExplicitPolicy,
		AckWait:     30 * time.Second,
		MaxDeliver:  10,
	}
}

// Buckets returns the KV buckets toolbus needs.
func Buckets(o Options) []jetstream.KeyValueConfig {
	o = o.withDefaults()
	return []jetstream.KeyValueConfig{
		{Bucket: subjects.BucketServers, Description: "toolbus: registered MCP servers", History: 5, Storage: jetstream.FileStorage, Replicas: o.Replicas},
		{Bucket: subjects.BucketCatalog, Description: "toolbus: tool catalog, key <server>.<tool>", History: 1, Storage: jetstream.FileStorage, Replicas: o.Replicas},
		{Bucket: subjects.BucketLedger, Description: "toolbus: call ledger, key <agent>.<call_id>", History: 1, Storage: jetstream.FileStorage, Replicas: o.Replicas, TTL: o.ResultMaxAge},
		{Bucket: subjects.BucketSchedules, Description: "toolbus: cron schedules", History: 5, Storage: jetstream.FileStorage, Replicas: o.Replicas},
	}
}
