package mcppool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
)

var (
	// ErrUnknownServer is returned, wrapped with the name, for a server the
	// pool has no definition of.
	ErrUnknownServer = errors.New("unknown server")
	// ErrClosed is returned by a pool that has been closed.
	ErrClosed = errors.New("mcppool: pool closed")
)

// TransportError is a failure to reach or keep talking to an MCP server:
// it cannot be started or connected to, its process exited, the connection
// broke, it answered HTTP 5xx. The call may be retried; the pool has dropped
// the session and reconnects on the next call.
//
// Down is set when the server's breaker is open: the pool did not try, and
// Err is the last failure. NextRetry is when the pool will try again.
type TransportError struct {
	Server    string
	Err       error
	Down      bool
	NextRetry time.Time
	// MaybeDelivered is set when the request was written and the session
	// failed before its answer: the server may have run it. A tool that
	// must not run twice is then not retried.
	MaybeDelivered bool
}

func (e *TransportError) Error() string {
	if e.Down {
		wait := time.Until(e.NextRetry).Round(time.Millisecond)
		if wait < 0 {
			wait = 0
		}
		return fmt.Sprintf("server %q is down (next try in %s): %v", e.Server, wait, e.Err)
	}
	return fmt.Sprintf("server %q: %v", e.Server, e.Err)
}

func (e *TransportError) Unwrap() error { return e.Err }

// ProtocolError is a JSON-RPC error response: the server answered and said
// no (unknown tool, invalid params, ...), or answered with something that is
// not a valid result. Retrying the same call will not help; the session stays.
type ProtocolError struct {
	Server  string
	Code    int // JSON-RPC error code; 0 when the answer was malformed rather than an error
	Message string
}

func (e *ProtocolError) Error() string {
	if e.Code == 0 {
		return fmt.Sprintf("server %q: %s", e.Server, e.Message)
	}
	return fmt.Sprintf("server %q: %s (JSON-RPC %d)", e.Server, e.Message, e.Code)
}

// IsTransport reports whether err is (or wraps) a *TransportError.
func IsTransport(err error) bool {
	var te *TransportError
	return errors.As(err, &te)
}

// rpcError carries a JSON-RPC error response, code intact, from the
// transport wrapper to classify (mcp-go keeps only the message).
type rpcError struct {
	Code    int
	Message string
}

func (e *rpcError) Error() string { return e.Message }

// explained is a failure reworded for a person, still unwrapping to the cause.
type explained struct {
	msg string
	err error
}

func (e *explained) Error() string { return e.msg }
func (e *explained) Unwrap() error { return e.err }

func explain(err error, format string, args ...any) error {
	return &explained{msg: fmt.Sprintf(format, args...), err: err}
}

// errProcessExited marks a stdio child that went away.
var errProcessExited = errors.New("process exited")

var statusRE = regexp.MustCompile(`(?:request|notification) failed with status (\d{3}): ?(.*)`)

// classify turns an error from mcp-go into one of the package's kinds: the
// context's own error (wrapped), a *ProtocolError, or a *TransportError.
// ctx is the caller's context; target names the URL or command for messages.
func classify(ctx context.Context, server, target string, err error) error {
	if err == nil {
		return nil
	}
	var te *TransportError
	var pe *ProtocolError
	if errors.As(err, &te) || errors.As(err, &pe) {
		return err
	}
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return fmt.Errorf("server %q: %w", server, context.Cause(ctx))
	}
	var re *rpcError
	if errors.As(err, &re) {
		return &ProtocolError{Server: server, Code: re.Code, Message: re.Message}
	}
	var tre *transport.Error
	if !errors.As(err, &tre) && !isTransportish(err) {
		// mcp-go returns JSON-RPC errors unwrapped, and decoding failures
		// of an answer as plain errors: both mean the server did answer.
		code := 0
		switch {
		case errors.Is(err, mcp.ErrMethodNotFound):
			code = mcp.METHOD_NOT_FOUND
		case errors.Is(err, mcp.ErrInvalidParams):
			code = mcp.INVALID_PARAMS
		case errors.Is(err, mcp.ErrInvalidRequest):
			code = mcp.INVALID_REQUEST
		case errors.Is(err, mcp.ErrInternalError):
			code = mcp.INTERNAL_ERROR
		case errors.Is(err, mcp.ErrParseError):
			code = mcp.PARSE_ERROR
		}
		return &ProtocolError{Server: server, Code: code, Message: err.Error()}
	}
	return &TransportError{Server: server, Err: describe(target, err)}
}

// isTransportish spots transport failures mcp-go returns without wrapping
// them in *transport.Error (e.g. from Start).
func isTransportish(err error) bool {
	var ne net.Error
	var ee *exec.Error
	var xe *exec.ExitError
	return errors.As(err, &ne) || errors.As(err, &ee) || errors.As(err, &xe) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, transport.ErrTransportClosed) ||
		errors.Is(err, errProcessExited)
}

// describe rewords a transport failure so a person knows what to do.
func describe(target string, err error) error {
	var ex *explained
	if errors.As(err, &ex) {
		return err
	}
	var dnsErr *net.DNSError
	var authErr *transport.AuthorizationRequiredError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return explain(err, "connection refused at %s — is it running?", target)
	case errors.Is(err, syscall.ECONNRESET):
		return explain(err, "connection reset by %s", target)
	case errors.As(err, &dnsErr):
		return explain(err, "cannot resolve host %q of %s: %v", dnsErr.Name, target, dnsErr.Err)
	case errors.As(err, &authErr):
		return explain(err, "%s answered 401 Unauthorized — check auth_token / auth_header", target)
	case errors.Is(err, transport.ErrLegacySSEServer):
		return explain(err, "%s rejected the streamable HTTP handshake with a 4xx — if it is an SSE server, set transport: sse", target)
	case errors.Is(err, transport.ErrSessionTerminated):
		return explain(err, "%s ended the MCP session (HTTP 404)", target)
	}
	if m := statusRE.FindStringSubmatch(err.Error()); m != nil {
		code, _ := strconv.Atoi(m[1])
		body := strings.TrimSpace(m[2])
		if len(body) > 200 {
			body = body[:200] + "…"
		}
		if body != "" {
			return explain(err, "%s answered HTTP %d: %s", target, code, body)
		}
		return explain(err, "%s answered HTTP %d", target, code)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return explain(err, "connection to %s closed unexpectedly", target)
	}
	return explain(err, "%s: %v", target, withoutURL(unwrapTransport(err)))
}

// withoutURL drops the request URL net/http quotes in a *url.Error: Go
// redacts only its password, so an api_key in the query would reach call
// errors and logs. target already names the server, redacted.
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

// unwrapTransport drops mcp-go's "transport error: " prefix.
func unwrapTransport(err error) error {
	var tre *transport.Error
	if errors.As(err, &tre) && tre.Err != nil {
		return tre.Err
	}
	return err
}
