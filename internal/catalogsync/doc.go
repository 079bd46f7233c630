// Package sync owns the MCP server registry and the tool catalog: servers
// in the KV bucket toolbus_servers, their tools — listed, schema-validated,
// normalized, hashed and diffed — in toolbus_catalog, and the change events
// on catalog.changed.<server>.
//
// Layout in KV (names escaped with subjects.EscapeToken):
//
//	toolbus_servers  <server>          subjects.Server, secrets sealed
//	toolbus_servers  status.<server>   subjects.SyncStatus of the last sync
//	toolbus_catalog  <server>.<tool>   subjects.CatalogEntry
//
// Secrets (auth_token; headers and env entries under names such as
// Authorization, X-Api-Key, *TOKEN*, *SECRET*, *PASSWORD*; the password and
// api_key-like query values of a URL, in url or in any env value or
// argument; the value of a flag such as --api-key=VALUE or --token VALUE)
// are stored as env:NAME references or as AES-256-GCM ciphertext
// ("enc:...") under TOOLBUS_SECRET_KEY, in place, so a sealed URL or
// argument list keeps its shape; Registry.Put refuses a plain secret when no
// key is set. Registry.Resolve opens them right before dialing, and Redact
// hides them for printing. One function, secretFields, decides what is
// secret for all of these.
//
// Who writes what: Registry (servers add/rm, config upsert at start) writes
// servers and cascades deletes; Syncer (one or many replicas, sharing the
// CATALOG_RESYNC work queue through the durable consumer "sync") writes
// statuses, the catalog and events; Catalog is the worker's read-only live
// copy with compiled argument validators.
//
// Which wins between the config file and `toolbus servers add`: the serving
// process upserts the config file's servers at start, so the file wins at
// each start; `servers add`/`rm` take effect at once and last until the next
// start that lists the same name.
//
// A failed listing never touches the catalog, nor does an empty list from a
// server with credentials that listed tools before (most likely it ignored
// or rejected them): the status records the error class instead.
//
// The catalog never fails open: until a registered server's first sync is
// read in full, Catalog refuses a tool it does not have with
// ErrCatalogUnavailable (the worker answers catalog_unavailable, which is
// retryable) instead of letting the call through unchecked. A failed first
// sync is retried through CATALOG_RESYNC with backoff (2s doubling to 60s,
// with jitter) until one succeeds, one chain per server across replicas
// (see retry.go). Given the worker's mcppool.Pool (WithPool), a Syncer
// lists tools over the pool's sessions, so each stdio server runs once per
// process.
//
// Import it as toolsync "github.com/toolbus-dev/toolbus/internal/sync"; inside, the standard library's sync
// is gosync.
package sync
