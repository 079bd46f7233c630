package subjects

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Status is the outcome class of a call.
type Status string

const (
	// StatusOK: the tool ran and returned a result.
	StatusOK Status = "ok"
	// StatusToolError: the tool ran and said no (MCP isError). Never retried.
	StatusToolError Status = "tool_error"
	// StatusError: toolbus could not run the tool; Error says why.
	StatusError Status = "error"
)

// Code is a stable error code in an error result. Codes are part of the wire
// contract: clients switch on them.
type Code string

const (
	CodeInvalidRequest     Code = "invalid_request"     // the call message itself is malformed
	CodeUnknownServer      Code = "unknown_server"      // no server of that name is registered
	CodeUnknownTool        Code = "unknown_tool"        // the server has no such tool
	CodeInvalidArguments   Code = "invalid_arguments"   // arguments are not an object or break the schema
	CodeServerUnavailable  Code = "server_unavailable"  // the MCP server cannot be started or reached
	CodeCatalogUnavailable Code = "catalog_unavailable" // registered, but its tool list is not read yet; retry shortly
	CodeTimeout            Code = "timeout"             // the deadline passed
	CodeCancelled          Code = "cancelled"           // cancelled on tool.cancel.<agent>.<call_id>
	CodeOutcomeUnknown     Code = "outcome_unknown"     // a non-idempotent call was interrupted mid-run
	CodeTooLarge           Code = "too_large"           // a payload or result exceeds a limit
	CodeProtocol           Code = "protocol_error"      // the MCP server answered with a JSON-RPC error
	CodeDeadLetter         Code = "dead_letter"         // the call exhausted its deliveries
	CodeInternal           Code = "internal"            // a toolbus bug; the message says more
)

// HTTPish returns the numeric code set in Nats-Service-Error-Code, in the
// spirit of NATS micro (4xx: the caller's fault, 5xx: ours or the server's).
func (c Code) HTTPish() int {
	switch c {
	case CodeInvalidRequest, CodeInvalidArguments:
		return 400
	case CodeUnknownServer, CodeUnknownTool:
		return 404
	case CodeTooLarge:
		return 413
	case CodeCancelled:
		return 499
	case CodeTimeout:
		return 504
	case CodeServerUnavailable, CodeProtocol:
		return 502
	case CodeCatalogUnavailable:
		return 503
	default:
		return 500
	}
}

// Error is the reason of an error result.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Result is the outcome of one call, stored on
// tool.result.<agent>.<call_id>; its caller, subscribed there, receives it
// as it is stored.
type Result struct {
	CallID string `json:"call_id"`
	Agent  string `json:"agent,omitempty"`
	Server string `json:"server"`
	Tool   string `json:"tool"`
	Status Status `json:"status"`
	// Error is set when Status is "error".
	Error *Error `json:"error,omitempty"`
	// Result is the MCP CallToolResult exactly as the server's JSON-RPC
	// response carried it (set for "ok" and "tool_error").
	Result json.RawMessage `json:"result,omitempty"`
	// Attempt is the JetStream delivery that produced this result (1-based).
	Attempt int `json:"attempt,omitempty"`
	// DurationMS is the time the worker spent on the call.
	DurationMS float64 `json:"duration_ms"`
	// Worker names the worker process that answered.
	Worker string `json:"worker,omitempty"`
	// Claim, when set, says the result was too large for a message: the
	// whole result (this same JSON with "result" set) is the object it
	// names, and this message is a stub without "result".
	Claim *Claim `json:"claim,omitempty"`
}

// Err returns the result's error as a Go error, or nil for ok and tool_error.
func (r *Result) Err() error {
	if r.Status == StatusError && r.Error != nil {
		return r.Error
	}
	return nil
}

// Advisory is the part of JetStream's MAX_DELIVERIES and MSG_TERMINATED
// advisories toolbus reads.
type Advisory struct {
	Type       string `json:"type"`
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
	Reason     string `json:"reason,omitempty"`
}

// Progress is published on tool.progress.<agent>.<call_id> while a call runs, one per
// MCP progress notification.
type Progress struct {
	CallID   string  `json:"call_id"`
	Progress float64 `json:"progress"`
	Total    float64 `json:"total,omitempty"`
	Message  string  `json:"message,omitempty"`
}

// FormatDeadline renders a deadline for HeaderDeadline.
func FormatDeadline(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// ParseDeadline reads HeaderDeadline. It accepts RFC 3339 and, for clients
// without a date library, Unix milliseconds.
func ParseDeadline(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.UnixMilli(ms), nil
	}
	return time.Time{}, fmt.Errorf("deadline %q is neither RFC 3339 nor Unix milliseconds", s)
}

// Duration is a time.Duration that reads and writes as "30s" in JSON and YAML.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalText renders d as Go duration text.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText parses Go duration text ("1m30s").
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration like \"30s\" or \"5m\"", b)
	}
	*d = Duration(v)
	return nil
}
