package worker

import (
	"encoding/json"
	"time"
)

// WithFault runs f before each execution of a call (after admission, before
// the MCP call), on the call's goroutine: a test makes the handler fail
// there, e.g. panic.
func WithFault(f func(server, tool string, args json.RawMessage)) Option {
	return func(w *Worker) { w.fault = f }
}

// SetLedgerWindowEvery sets how often workers look at the ledger's window
// (watchLedger), for the test's duration.
func SetLedgerWindowEvery(t interface{ Cleanup(func()) }, d time.Duration) {
	old := ledgerWindowEvery
	ledgerWindowEvery = d
	t.Cleanup(func() { ledgerWindowEvery = old })
}
