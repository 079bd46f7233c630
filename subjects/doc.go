// Package subjects is toolbus's wire contract: what an agent, a worker or
// any NATS tool must agree on to take part.
//
//   - Subject names, built only by this package's functions, which validate
//     the agent and call id and escape every server, tool, agent or hook
//     name into one token (EscapeToken, reversible with UnescapeToken):
//     ToolCall, ToolResult, ToolReply, ToolProgress, ToolCancel, ToolDead,
//     CatalogResync, CatalogChanged, AgentWake, Webhook; and their parsers.
//   - The names of the streams, consumers and KV buckets and their keys
//     (StreamCalls, ConsumerWorkers, BucketCatalog, CatalogKey, ...). Their
//     settings are the deployment's, not the contract's.
//   - The header names a call carries (HeaderDeadline, ...).
//   - The JSON that crosses the bus: Result with its Status and error Code,
//     Progress, the catalog's CatalogEntry and CatalogChange, SyncStatus.
//
// Every subject about a call carries its agent as the token after the
// prefix (tool.call.<agent>.<server>.<tool>, tool.result.<agent>.<call_id>),
// so NATS permissions that grant each agent its own token decide who may
// call and who may read a result.
//
// It does no I/O and imports nothing of toolbus's own, so any client — an
// agent, a bridge, a test — can build against it alone. The README's "Wire
// protocol" section is the same contract in words; package client is a Go
// agent built on it.
package subjects
