// Package registry owns the MCP server definitions (Server, the unit the
// config file lists) and their store, the KV bucket toolbus_servers, with
// each server's sync status beside it:
//
//	toolbus_servers  <server>          Server, secrets sealed
//	toolbus_servers  status.<server>   subjects.SyncStatus of the last sync
//
// (names escaped with subjects.EscapeToken). Removing a server cascades
// into the catalog bucket: its tools go, and catalog.changed.<server> says
// so.
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
// Which wins between the config file and `toolbus servers add`: the serving
// process upserts the config file's servers at start, so the file wins at
// each start; `servers add`/`rm` take effect at once and last until the next
// start that lists the same name.
package registry
