package subjects

import (
	"encoding/json"
	"time"
)

// ToolHealth says how well a tool's input schema suits LLM function calling.
type ToolHealth string

const (
	// HealthStrict: the schema meets strict-mode function calling rules
	// (every object closed with additionalProperties false, every property
	// required, every node typed, local $refs only).
	HealthStrict ToolHealth = "strict"
	// HealthNonStrictOnly: a usable JSON Schema, but not strict-mode ready.
	HealthNonStrictOnly ToolHealth = "non_strict_only"
	// HealthInvalid: the schema is broken (root not an object, unresolvable
	// $ref, not a valid JSON Schema). The tool is listed with its reasons;
	// arguments are checked only as far as the schema allows.
	HealthInvalid ToolHealth = "invalid"
)

// ToolAnnotations are the MCP tool annotations (hints, not guarantees),
// with MCP's JSON names. A nil hint means the server did not say; MCP's
// defaults then apply: destructive true, idempotent false, read-only false,
// open-world true.
type ToolAnnotations struct {
	Title           string `json:"title,omitempty"`
	ReadOnlyHint    *bool  `json:"readOnlyHint,omitempty"`
	DestructiveHint *bool  `json:"destructiveHint,omitempty"`
	IdempotentHint  *bool  `json:"idempotentHint,omitempty"`
	OpenWorldHint   *bool  `json:"openWorldHint,omitempty"`
}

// SafeToRetry reports whether a call interrupted mid-run may be run again:
// the tool says it is read-only, idempotent, or not destructive. With no
// hints MCP's defaults (destructive, not idempotent) make it unsafe.
func (a ToolAnnotations) SafeToRetry() bool {
	if a.ReadOnlyHint != nil && *a.ReadOnlyHint {
		return true
	}
	if a.IdempotentHint != nil && *a.IdempotentHint {
		return true
	}
	return a.DestructiveHint != nil && !*a.DestructiveHint
}

// CatalogEntry is one tool in the catalog KV bucket (BucketCatalog), under
// the key CatalogKey(server, tool). Any NATS client may read it.
type CatalogEntry struct {
	// Server is the server's name; ServerID identifies this registration of
	// it (a server removed and added again gets a new id).
	Server   string `json:"server"`
	ServerID string `json:"server_id"`
	// Tool is the tool's name as the MCP server gives it.
	Tool        string `json:"tool"`
	Title       string `json:"title,omitempty"`
	Description string `json:"description,omitempty"`
	// Tags hold "mcp:<server>".
	Tags []string `json:"tags"`

	// InputSchema is the normalized input schema, for LLMs.
	InputSchema json.RawMessage `json:"input_schema"`
	// OriginalSchema is the schema as the server gave it, set only when
	// normalization changed it. Arguments are validated against the original
	// when it compiles, so a call the server accepts is never refused.
	OriginalSchema json.RawMessage `json:"original_schema,omitempty"`
	OutputSchema   json.RawMessage `json:"output_schema,omitempty"`
	Annotations    ToolAnnotations `json:"annotations"`

	// Health and Reasons are the verdict on InputSchema after normalization.
	Health  ToolHealth `json:"health"`
	Reasons []string   `json:"reasons,omitempty"`
	// Fixes lists what normalization changed.
	Fixes []string `json:"fixes,omitempty"`

	// Hash is the SHA-256 (hex) of the tool's definition as the server gave
	// it (name, description, schemas, annotations).
	Hash string `json:"hash"`
	// ApprovedHash is the definition first seen, or last approved with
	// `toolbus tools approve`.
	ApprovedHash string `json:"approved_hash"`
	// Changed is true when Hash differs from ApprovedHash.
	Changed bool `json:"changed,omitempty"`
	// Held is true when Changed and the sync holds changed tools for
	// approval: workers refuse calls to it until approved.
	Held bool `json:"held,omitempty"`

	FirstSeen time.Time `json:"first_seen"`
	SyncedAt  time.Time `json:"synced_at"`
}

// CatalogChange is the event on catalog.changed.<server> (stream EVENTS)
// after a sync or a removal changed the server's catalog. Lists hold tool
// names.
type CatalogChange struct {
	Server   string   `json:"server"`
	ServerID string   `json:"server_id,omitempty"`
	Added    []string `json:"added,omitempty"`
	Updated  []string `json:"updated,omitempty"`
	Removed  []string `json:"removed,omitempty"`
	// Held lists the added or updated tools held back until approved.
	Held []string `json:"held,omitempty"`
	// Reason: "sync", "server_removed" or "approved".
	Reason string    `json:"reason"`
	Time   time.Time `json:"time"`
}

// SyncErrorClass classifies why a server could not be listed.
type SyncErrorClass string

const (
	SyncConnectionRefused SyncErrorClass = "connection_refused" // nothing listens there
	SyncNotFound          SyncErrorClass = "not_found"          // 404, or not an MCP endpoint
	SyncInvalidJSONRPC    SyncErrorClass = "invalid_jsonrpc"    // answered, but not valid MCP JSON-RPC
	SyncTimeout           SyncErrorClass = "timeout"            // no answer in time
	SyncAuthFailed        SyncErrorClass = "auth_failed"        // 401/403 or an empty list behind auth
	SyncProcessExited     SyncErrorClass = "process_exited"     // a stdio server's process ended
	SyncConfig            SyncErrorClass = "config"             // a secret does not resolve (env var unset, wrong key)
	SyncOther             SyncErrorClass = "error"              // anything else; the message says more
)

// SyncStatus is the outcome of a server's last sync, stored in the servers
// bucket under SyncStatusKey(server).
type SyncStatus struct {
	Server   string `json:"server"`
	ServerID string `json:"server_id"`
	// OK is true when the last sync listed the server's tools.
	OK         bool           `json:"ok"`
	ErrorClass SyncErrorClass `json:"error_class,omitempty"`
	// Message says what went wrong and what to do about it.
	Message string `json:"message,omitempty"`
	// Tools is the number of tools in the catalog after the sync.
	Tools      int       `json:"tools"`
	At         time.Time `json:"at"`
	DurationMS float64   `json:"duration_ms"`
	// LastOK is when a sync last succeeded.
	LastOK time.Time `json:"last_ok,omitzero"`
	// Registered is when this registration (ServerID) was created.
	Registered time.Time `json:"registered,omitzero"`
}

// SyncStatusPrefix prefixes the status keys in BucketServers. Server entries
// are single-token keys (the escaped name), so watching "*" sees servers
// only and "status.*" sees statuses only.
const SyncStatusPrefix = "status."

// ServerKey is the servers KV key of a server: its escaped name.
func ServerKey(server string) (string, error) { return EscapeToken(server) }

// SyncStatusKey is the servers KV key of a server's sync status:
// status.<server>.
func SyncStatusKey(server string) (string, error) { return withName(SyncStatusPrefix, server) }

// CatalogServerKeys returns the catalog KV filter for one server's tools:
// <server>.*.
func CatalogServerKeys(server string) (string, error) {
	s, err := EscapeToken(server)
	if err != nil {
		return "", err
	}
	return s + ".*", nil
}
