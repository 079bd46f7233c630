// Package streams defines toolbus's JetStream streams, consumers and KV
// buckets: their deployment settings (replicas, retention, leases). Their
// names are the wire contract and live in package subjects.
package streams

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/toolbus-dev/toolbus/subjects"
)

// Options are the deployment knobs of the stream definitions. Retention of
// results and ledger marks is bounded by age AND bytes, the oldest going
// first, so neither the disk nor the NATS server's memory (it indexes every
// retained subject: see docs/benchmarks.md) grows without bound under
// sustained load.
type Options struct {
	// Replicas per stream: 1 on one server, 3 on a cluster.
	Replicas int
	// ResultMaxAge is how long TOOL_RESULTS keeps a result (default 24h).
	ResultMaxAge time.Duration
	// ResultMaxBytes caps TOOL_RESULTS; past it the oldest results are
	// dropped (default DefaultResultMaxBytes; -1: no cap).
	ResultMaxBytes int64
	// LedgerMaxAge is how long the call ledger keeps a start mark (default
	// ResultMaxAge). A mark matters only while its call can still be
	// redelivered: until the call's deadline.
	LedgerMaxAge time.Duration
	// LedgerMaxBytes caps the call ledger; past it the oldest marks are
	// dropped (default DefaultLedgerMaxBytes; -1: no cap).
	LedgerMaxBytes int64
	// DuplicateWindow is JetStream's de-duplication window on calls (default
	// 2m). The server keeps every call id of the window in memory.
	DuplicateWindow time.Duration
	// BlobMaxAge is how long the Object Store bucket toolbus_blobs keeps a
	// claimed body (a result or arguments too large for a message; default
	// ResultMaxAge plus a minute: a result's object is written just before
	// its stub, and outlives it).
	BlobMaxAge time.Duration
}

// Retention defaults, sized so that a `toolbus serve` at its full call rate
// keeps its RSS under 256 MB (docs/benchmarks.md has the measurement).
const (
	DefaultResultMaxBytes int64 = 64 << 20
	DefaultLedgerMaxBytes int64 = 16 << 20
)

func (o Options) withDefaults() Options {
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.ResultMaxAge <= 0 {
		o.ResultMaxAge = 24 * time.Hour
	}
	if o.ResultMaxBytes == 0 {
		o.ResultMaxBytes = DefaultResultMaxBytes
	}
	if o.LedgerMaxAge <= 0 {
		o.LedgerMaxAge = o.ResultMaxAge
	}
	if o.LedgerMaxBytes == 0 {
		o.LedgerMaxBytes = DefaultLedgerMaxBytes
	}
	if o.DuplicateWindow <= 0 {
		o.DuplicateWindow = 2 * time.Minute
	}
	if o.BlobMaxAge <= 0 {
		o.BlobMaxAge = o.ResultMaxAge + time.Minute
	}
	return o
}

// Validate names the first setting that cannot work.
func (o Options) Validate() error {
	switch {
	case o.ResultMaxBytes < -1 || (o.ResultMaxBytes > 0 && o.ResultMaxBytes < 1<<20):
		return fmt.Errorf("result_max_bytes: %d is below 1 MiB (use -1 for no cap)", o.ResultMaxBytes)
	case o.LedgerMaxBytes < -1 || (o.LedgerMaxBytes > 0 && o.LedgerMaxBytes < 1<<20):
		return fmt.Errorf("ledger_max_bytes: %d is below 1 MiB (use -1 for no cap)", o.LedgerMaxBytes)
	case o.ResultMaxAge < 0 || o.LedgerMaxAge < 0 || o.DuplicateWindow < 0:
		return errors.New("result_max_age, ledger_max_age and duplicate_window must not be negative")
	}
	return nil
}

// Streams returns every stream toolbus needs, in creation order.
func Streams(o Options) []jetstream.StreamConfig {
	o = o.withDefaults()
	return []jetstream.StreamConfig{
		{
			Name:        subjects.StreamCalls,
			Description: "toolbus: pending tool calls, one message per call; removed when acked (and the workers' keeper messages on " + subjects.CallsKeeper + ", which expire)",
			Subjects:    []string{subjects.ToolCallAll, subjects.CallsKeeper},
			Retention:   jetstream.WorkQueuePolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    o.Replicas,
			Duplicates:  o.DuplicateWindow,
			Discard:     jetstream.DiscardOld,
			// The keeper messages expire by their own TTL (KeeperTTL).
			AllowMsgTTL: true,
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
			Discard:           jetstream.DiscardOld,
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
		LedgerStream(o),
		{
			// The Object Store bucket toolbus_blobs, made by hand rather than
			// by CreateObjectStore for two differences: no rollups (an agent
			// may publish its argument chunks, and a "Nats-Rollup: all"
			// header would purge the bucket), and toolbus's own chunk layout
			// (subjects.Claim) keeps within the Object Store's subjects, so
			// `nats object` and Object Store clients read it.
			Name:        subjects.StreamBlobs,
			Description: "toolbus: Object Store bucket " + subjects.BucketBlobs + ", results and arguments too large for a message",
			Subjects:    subjects.BlobAll,
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    o.Replicas,
			MaxAge:      o.BlobMaxAge,
			Discard:     jetstream.DiscardNew,
			AllowDirect: true,
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

// DefaultCallTimeout is a call's deadline when nothing sets one: the
// worker cancels a call that carries no deadline after it, the client
// waits this long by default, and a webhook's tool call gets it.
const DefaultCallTimeout = 60 * time.Second

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
		// Calls only: the keeper messages stay in the stream until they
		// expire, so acks never empty the stream's newest block.
		FilterSubject: subjects.ToolCallAll,
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

// LedgerStream is the stream behind the call ledger's KV bucket
// (subjects.BucketLedger, key <agent>.<call_id>): a KV bucket to its
// readers, but defined here as a stream because a KV bucket made by
// CreateKeyValue refuses writes once full (DiscardNew), and a full ledger
// must not refuse the start marks of new calls. So it drops its oldest
// marks instead, bounded by age and bytes like TOOL_RESULTS, and allows
// per-message TTLs (Nats-TTL), so a mark can live exactly as long as its
// call's deadline.
func LedgerStream(o Options) jetstream.StreamConfig {
	o = o.withDefaults()
	return jetstream.StreamConfig{
		Name:              KVStream(subjects.BucketLedger),
		Description:       "toolbus: call ledger, key <agent>.<call_id>",
		Subjects:          []string{"$KV." + subjects.BucketLedger + ".>"},
		Retention:         jetstream.LimitsPolicy,
		Storage:           jetstream.FileStorage,
		Replicas:          o.Replicas,
		MaxAge:            o.LedgerMaxAge,
		MaxBytes:          o.LedgerMaxBytes,
		MaxMsgs:           -1,
		MaxMsgsPerSubject: 1,
		MaxMsgSize:        -1,
		MaxConsumers:      -1,
		Discard:           jetstream.DiscardOld,
		Duplicates:        min(o.DuplicateWindow, o.LedgerMaxAge),
		AllowRollup:       true,
		DenyDelete:        true,
		AllowDirect:       true,
		AllowMsgTTL:       true,
	}
}

// KVStream is the name of the stream behind KV bucket.
func KVStream(bucket string) string { return "KV_" + bucket }

// Buckets returns the KV buckets toolbus needs (the ledger is a stream of
// Streams: see LedgerStream).
func Buckets(o Options) []jetstream.KeyValueConfig {
	o = o.withDefaults()
	return []jetstream.KeyValueConfig{
		{Bucket: subjects.BucketServers, Description: "toolbus: registered MCP servers", History: 5, Storage: jetstream.FileStorage, Replicas: o.Replicas},
		{Bucket: subjects.BucketCatalog, Description: "toolbus: tool catalog, key <server>.<tool>", History: 1, Storage: jetstream.FileStorage, Replicas: o.Replicas},
		{Bucket: subjects.BucketSchedules, Description: "toolbus: cron schedules", History: 5, Storage: jetstream.FileStorage, Replicas: o.Replicas},
		TasksBucket(o),
	}
}

// TasksBucket is the MCP front door's task index: key <agent>.<call_id>,
// kept as long as results.
func TasksBucket(o Options) jetstream.KeyValueConfig {
	o = o.withDefaults()
	return jetstream.KeyValueConfig{Bucket: subjects.BucketTasks, Description: "toolbus: MCP tasks of the front door, key <agent>.<call_id>", History: 1, Storage: jetstream.FileStorage, Replicas: o.Replicas, TTL: o.ResultMaxAge}
}

// OldestCall is when the oldest call still in TOOL_CALLS was published
// (zero when none is): the first message on tool.call.>, so the workers'
// keeper messages do not count.
func OldestCall(ctx context.Context, calls jetstream.Stream) (time.Time, error) {
	m, err := calls.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(subjects.ToolCallAll))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	return m.Time, nil
}

// CallsStored counts the calls in TOOL_CALLS (queued, or taken and not yet
// acked), without the keeper messages.
func CallsStored(ctx context.Context, calls jetstream.Stream) (uint64, error) {
	info, err := calls.Info(ctx, jetstream.WithSubjectFilter(subjects.ToolCallAll))
	if err != nil {
		return 0, err
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n, nil
}
