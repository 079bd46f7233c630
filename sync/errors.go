package sync

import "errors"

var (
	// ErrUnknownServer: no server of that name is registered (or it has no
	// catalog entries yet).
	ErrUnknownServer = errors.New("unknown server")
	// ErrUnknownTool: the server's catalog has no such tool.
	ErrUnknownTool = errors.New("unknown tool")
	// ErrToolHeld: the tool's definition changed and is held until approved
	// with `toolbus tools approve <server> <tool>`.
	ErrToolHeld = errors.New("tool held for approval")
	// ErrInvalidArguments: the arguments break the tool's input schema. The
	// concrete error is an *ArgumentsError naming the fields.
	ErrInvalidArguments = errors.New("invalid arguments")
	// ErrNotFound: no such server in the registry.
	ErrNotFound = errors.New("not found")
	// ErrSecretKey: a plain secret was given and no TOOLBUS_SECRET_KEY is
	// set, or the key is malformed, or a ciphertext does not decrypt.
	ErrSecretKey = errors.New("secret key")
)
