// Package catalog owns the tool catalog as the worker consults it: Catalog,
// a live copy of the KV bucket toolbus_catalog (key <server>.<tool>, a
// subjects.CatalogEntry) and of the servers' sync statuses, with each
// tool's argument validator compiled on first use; and the schema rules
// the syncer applies before writing an entry (ValidateSchema, Normalize).
//
// The catalog never fails open: until a registered server's first sync is
// read in full, Catalog refuses a tool it does not have with
// ErrCatalogUnavailable (the worker answers catalog_unavailable, which is
// retryable) instead of letting the call through unchecked.
//
// Check returns the sentinels of errors.go (wrapped with a message a
// person can act on), or an *ArgumentsError naming the failing fields.
package catalog
