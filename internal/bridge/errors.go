package bridge

import "errors"

// ErrInvalidHook is wrapped by every Hook.Validate and New error about a
// hook's configuration.
var ErrInvalidHook = errors.New("invalid hook")
