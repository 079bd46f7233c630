package worker

import "time"

// Observer hears what happens to calls, for metrics. Its methods are called
// on the call path and must not block; nil fields of CallEvent are zero.
type Observer interface {
	// CallStarted: a worker began to execute a call (after admission).
	CallStarted(server, tool string)
	// CallFinished: a call was answered and acked, whether it ran or not
	// (a refusal, a cancel, a stored answer re-sent).
	CallFinished(CallEvent)
	// DeadLettered: a call was moved to TOOL_DEAD.
	DeadLettered(server, tool, reason string)
}

// CallEvent describes one answered call.
type CallEvent struct {
	Server, Tool string
	Status       string        // ok, tool_error, error
	Code         string        // the error code, empty unless Status is error
	Attempt      int           // the delivery that answered it; >1 is a redelivery
	Ran          bool          // this worker executed the tool for this answer
	QueueWait    time.Duration // publish to first delivery (0 when unknown)
	Exec         time.Duration // the MCP call itself (0 when it did not run)
	Total        time.Duration // publish to answer stored (0 when unknown)
}

type nopObserver struct{}

func (nopObserver) CallStarted(string, string)          {}
func (nopObserver) CallFinished(CallEvent)              {}
func (nopObserver) DeadLettered(string, string, string) {}

// WithObserver reports calls to o (metrics). Default: none.
func WithObserver(o Observer) Option { return func(w *Worker) { w.observer = o } }
