package subjects

import "encoding/hex"

// Header names on a call message. There is no reply header and no agent
// header: the result goes to tool.result.<agent>.<call_id> and the agent is
// the subject's token, so no caller chooses where a worker publishes or who
// a call runs as.
const (
	// HeaderCallID carries the call id. It is JetStream's de-duplication
	// header, so a call published twice inside the duplicate window is
	// stored once.
	HeaderCallID = "Nats-Msg-Id"
	// HeaderDeadline is the call's deadline, RFC 3339 with nanoseconds (UTC).
	HeaderDeadline = "Toolbus-Deadline"
	// HeaderTraceparent is the W3C trace context: the worker's spans
	// continue it, and it reaches HTTP MCP servers as this header and as
	// params._meta.traceparent.
	HeaderTraceparent = "traceparent"
	// HeaderTracestate is the W3C vendor trace state that goes with it.
	HeaderTracestate = "tracestate"

	// HeaderStatus on a result message repeats Result.Status, so a reader can
	// route without decoding the body.
	HeaderStatus = "Toolbus-Status"
	// HeaderServiceError and HeaderServiceErrorCode are the NATS micro
	// headers, set on error results so generic NATS tooling reads them.
	HeaderServiceError     = "Nats-Service-Error"
	HeaderServiceErrorCode = "Nats-Service-Error-Code"

	// HeaderDeadReason on a TOOL_DEAD message says why the call died.
	HeaderDeadReason = "Toolbus-Dead-Reason"
	// HeaderOrigSubject on a TOOL_DEAD message is the call's tool.call subject.
	HeaderOrigSubject = "Toolbus-Subject"
	// HeaderIdempotencyKey is read by the webhook bridge.
	HeaderIdempotencyKey = "Idempotency-Key"
)

// AgentHTTPHeader is the HTTP header that carries the agent id (the call
// subject's agent token) to streamable HTTP and SSE MCP servers.
const AgentHTTPHeader = "x-agent-id"

// Headers of a claim (see Claim): on a call whose arguments, or a result
// whose body, are in the Object Store.
const (
	// HeaderClaim is <bucket>/<object>.
	HeaderClaim = "Toolbus-Claim"
	// HeaderClaimSize is the body's size in bytes.
	HeaderClaimSize = "Toolbus-Claim-Size"
	// HeaderClaimChunks is the number of chunks.
	HeaderClaimChunks = "Toolbus-Claim-Chunks"
	// HeaderClaimDigest is "SHA-256=<URL-safe base64>" of the body.
	HeaderClaimDigest = "Toolbus-Claim-Digest"
)

// FormatTraceparent is a W3C traceparent (version 00) for a trace id, a
// parent span id and the trace flags (01: sampled).
func FormatTraceparent(traceID [16]byte, spanID [8]byte, flags byte) string {
	var b [55]byte
	copy(b[:3], "00-")
	hex.Encode(b[3:35], traceID[:])
	b[35] = '-'
	hex.Encode(b[36:52], spanID[:])
	b[52] = '-'
	hex.Encode(b[53:55], []byte{flags})
	return string(b[:])
}
