package subjects

// Stream, consumer and bucket names.
const (
	StreamCalls   = "TOOL_CALLS"
	StreamResults = "TOOL_RESULTS"
	StreamDead    = "TOOL_DEAD"
	StreamEvents  = "EVENTS"
	StreamResync  = "CATALOG_RESYNC"
	// StreamAdvisories keeps the JetStream advisories that turn calls into
	// dead letters, so no advisory is lost while no worker listens.
	StreamAdvisories = "TOOL_ADVISORIES"

	// ConsumerWorkers is the one durable pull consumer all workers share.
	ConsumerWorkers = "workers"
	// ConsumerSync is the durable consumer sync replicas share on CATALOG_RESYNC.
	ConsumerSync = "sync"
	// ConsumerDeadLetters is the durable consumer workers share on
	// TOOL_ADVISORIES.
	ConsumerDeadLetters = "dead-letters"

	// CallsKeeper is a subject of TOOL_CALLS outside tool.call.>, which no
	// consumer takes: workers keep a short-lived message on it so the work
	// queue's newest file block is never emptied by an ack (see
	// internal/worker/keep.go). Only workers publish on it.
	CallsKeeper = "tool.keeper"

	// AdvisoryMaxDeliveries is published by JetStream when a call has been
	// delivered MaxDeliver times without an ack.
	AdvisoryMaxDeliveries = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + StreamCalls + "." + ConsumerWorkers
	// AdvisoryTerminated is published when a call is terminated (AckTerm).
	AdvisoryTerminated = "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED." + StreamCalls + "." + ConsumerWorkers

	BucketServers   = "toolbus_servers"
	BucketCatalog   = "toolbus_catalog"
	BucketLedger    = "toolbus_ledger"
	BucketSchedules = "toolbus_schedules"
	// BucketTasks indexes the MCP tasks the front door started, by agent,
	// so tasks/get and tasks/list work through any gateway replica.
	BucketTasks = "toolbus_tasks"
)

// LedgerKey is the call ledger's KV key of a call: <agent>.<call_id>, so a
// call id is scoped to its agent everywhere.
func LedgerKey(agent, callID string) string { return agent + "." + callID }

// CatalogKey is the catalog KV key of a tool: <server>.<tool>, both escaped.
func CatalogKey(server, tool string) (string, error) { return withTwo("", server, tool) }

// ParseCatalogKey returns the server and tool of a catalog KV key.
func ParseCatalogKey(key string) (server, tool string, err error) { return parseTwo(key, "") }

// WakeConsumer is the name of an agent's durable consumer of its wake-ups
// on EVENTS: wake-<agent>.
func WakeConsumer(agent string) string { return "wake-" + agent }
