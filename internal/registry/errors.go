package registry

import "errors"

var (
	// ErrNotFound: no such server in the registry, or no such tool in the
	// catalog.
	ErrNotFound = errors.New("not found")
	// ErrSecretKey: a plain secret was given and no TOOLBUS_SECRET_KEY is
	// set, or the key is malformed, or a ciphertext does not decrypt.
	ErrSecretKey = errors.New("secret key")
)
