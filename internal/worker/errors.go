package worker

import "errors"

var (
	// errShutdown is the cancel cause of a call stopped by worker shutdown:
	// its message is handed back to JetStream, not answered.
	errShutdown = errors.New("worker shutting down")
	// errCancelled is the cancel cause of a call stopped on tool.cancel.<id>.
	errCancelled = errors.New("cancelled by request")
)
