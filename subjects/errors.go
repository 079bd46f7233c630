package subjects

import "errors"

var (
	// ErrInvalidName is returned for a server, tool, agent or hook name that
	// cannot become a subject token.
	ErrInvalidName = errors.New("invalid name")
	// ErrInvalidSubject is returned for a subject that is not one of toolbus's.
	ErrInvalidSubject = errors.New("invalid subject")
	// ErrInvalidCallID is returned for a call id that is not 1–64 characters of
	// [A-Za-z0-9_-].
	ErrInvalidCallID = errors.New("invalid call id")
	// ErrInvalidAgent is returned for an agent id that is not 1–64
	// characters of [A-Za-z0-9_-].
	ErrInvalidAgent = errors.New("invalid agent id")
)
