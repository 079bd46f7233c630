// Package catalogsync lists the registered MCP servers' tools into the
// catalog: the Syncer lists each server's tools, normalizes and judges
// their schemas (package catalog), hashes and diffs them, writes the
// difference to the KV bucket toolbus_catalog and publishes it on
// catalog.changed.<server>, and records the outcome as the server's sync
// status in the registry.
//
// Who writes what: the registry (servers add/rm, config upsert at start)
// writes servers and cascades deletes; Syncers (one or many replicas,
// sharing the CATALOG_RESYNC work queue through the durable consumer
// "sync") write statuses, the catalog and events; the worker's
// catalog.Catalog only reads.
//
// A failed listing never touches the catalog, nor does an empty list from a
// server with credentials that listed tools before (most likely it ignored
// or rejected them): the status records the error class instead.
//
// A failed first sync is retried through CATALOG_RESYNC with backoff (2s
// doubling to 60s, with jitter) until one succeeds, one chain per server
// across replicas (see retry.go). Given the worker's mcppool.Pool
// (WithPool), a Syncer lists tools over the pool's sessions, so each stdio
// server runs once per process.
package catalogsync
