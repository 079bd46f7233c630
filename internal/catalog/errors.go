package catalog

import "errors"

var (
	// ErrUnknownServer: the catalog knows nothing of the server — no sync
	// status, no tools: it is not registered, or was registered a moment
	// ago.
	ErrUnknownServer = errors.New("unknown server")
	// ErrCatalogUnavailable: the server is registered but its tool list has
	// not been read yet (its first sync is queued or running, or failed and
	// is retried with backoff), so the catalog cannot vouch for any tool.
	ErrCatalogUnavailable = errors.New("catalog unavailable")
	// ErrUnknownTool: the server's catalog has no such tool.
	ErrUnknownTool = errors.New("unknown tool")
	// ErrToolHeld: the tool's definition changed and is held until approved
	// with `toolbus tools approve <server> <tool>`.
	ErrToolHeld = errors.New("tool held for approval")
	// ErrInvalidArguments: the arguments break the tool's input schema. The
	// concrete error is an *ArgumentsError naming the fields.
	ErrInvalidArguments = errors.New("invalid arguments")
)
