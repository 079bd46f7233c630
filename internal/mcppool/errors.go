package mcppool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
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

// Class says what kind of failure an error is. It is decided once, where
// mcp-go's error arrives (classify), from mcp-go's error types and JSON-RPC
// codes; callers switch on it (ClassOf) and never read an error's text.
type Class string

// Transport classes: the server could not be reached or the connection
// broke. The pool dropped the session; the call may be retried.
const (
	ClassRefused        Class = "refused"         // nothing accepts connections: the request never left
	ClassReset          Class = "reset"           // the connection was reset or closed (EOF) mid-request
	ClassTimeout        Class = "timeout"         // no handshake within connect_timeout, or a deadline
	ClassProcessExited  Class = "process_exited"  // the stdio child exited
	ClassCannotStart    Class = "cannot_start"    // the stdio child could not be started
	ClassCommandMissing Class = "command_missing" // the stdio command is missing or not executable: waiting will not mend it
	ClassAuth           Class = "auth"            // HTTP 401 or 403
	ClassNotMCP         Class = "not_mcp"         // a 4xx to the handshake, or the session ended (404): not an MCP endpoint
	ClassHTTP5xx        Class = "http_5xx"        // the server answered HTTP 5xx
	ClassBadAnswer      Class = "bad_answer"      // the transport read a body that is not JSON-RPC (an HTML page, a proxy's error)
	ClassTransport      Class = "transport"       // any other transport failure (DNS, TLS, ...)
)

// Protocol classes: the server answered and said no, or answered with
// something that is not a valid result. Retrying will not help.
const (
	ClassUnknownTool    Class = "unknown_tool"     // the server has no such tool
	ClassInvalidParams  Class = "invalid_params"   // JSON-RPC -32602: the arguments were refused
	ClassMethodNotFound Class = "method_not_found" // JSON-RPC -32601
	ClassMalformed      Class = "malformed"        // the answer is not valid JSON-RPC or not the expected result
	ClassProtocol       Class = "protocol"         // any other JSON-RPC error
)

// Classes of the pool itself and of the caller's context.
const (
	ClassUnknownServer Class = "unknown_server" // the pool has no such server (ErrUnknownServer)
	ClassClosed        Class = "closed"         // the pool was closed (ErrClosed)
	ClassCanceled      Class = "canceled"       // the caller's context was cancelled
	ClassOther         Class = "other"          // none of the above
)

// Transport reports whether c is a transport class: retryable, the session
// is gone.
func (c Class) Transport() bool {
	switch c {
	case ClassRefused, ClassReset, ClassTimeout, ClassProcessExited, ClassCannotStart,
		ClassCommandMissing, ClassAuth, ClassNotMCP, ClassHTTP5xx, ClassBadAnswer, ClassTransport:
		return true
	}
	return false
}

// Protocol reports whether c is a protocol class: the server answered.
func (c Class) Protocol() bool {
	switch c {
	case ClassUnknownTool, ClassInvalidParams, ClassMethodNotFound, ClassMalformed, ClassProtocol:
		return true
	}
	return false
}

// TransportError is a failure to reach or keep talking to an MCP server:
// it cannot be started or connected to, its process exited, the connection
// broke, it answered HTTP 5xx. The call may be retried; the pool has dropped
// the session and reconnects on the next call.
//
// Down is set when the server's breaker is open: the pool did not try, and
// Err is the last failure (Class is its class). NextRetry is when the pool
// will try again.
type TransportError struct {
	Server    string
	Class     Class
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
	Class   Class
	Code    int // JSON-RPC error code; 0 when the answer was malformed rather than an error
	Message string
}

func (e *ProtocolError) Error() string {
	if e.Code == 0 {
		return fmt.Sprintf("server %q: %s", e.Server, e.Message)
	}
	return fmt.Sprintf("server %q: %s (JSON-RPC %d)", e.Server, e.Message, e.Code)
}

// ClassOf returns the class of err: the one the pool gave it, or, for an
// error straight from mcp-go (a client returned by Dial), the one classify
// would give it. nil has no class ("").
func ClassOf(err error) Class {
	if err == nil {
		return ""
	}
	var te *TransportError
	var pe *ProtocolError
	switch {
	case errors.As(err, &te):
		return te.Class
	case errors.As(err, &pe):
		return pe.Class
	case errors.Is(err, ErrUnknownServer):
		return ClassUnknownServer
	case errors.Is(err, ErrClosed):
		return ClassClosed
	case errors.Is(err, context.DeadlineExceeded):
		return ClassTimeout
	case errors.Is(err, context.Canceled):
		return ClassCanceled
	}
	var re *rpcError
	if errors.As(err, &re) {
		c, _, _ := rpcClass(re)
		return c
	}
	if c, ok := transportClass(err); ok {
		return c
	}
	if c, _, ok := rpcClass(err); ok {
		return c
	}
	return ClassOther
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

// classify turns an error from mcp-go into one of the package's kinds: the
// context's own error (wrapped), a *ProtocolError, or a *TransportError,
// with its class. ctx is the caller's context; target names the URL or
// command for messages.
func classify(ctx context.Context, server, target string, err error) error {
	if err == nil {
		return nil
	}
	var te *TransportError
	var pe *ProtocolError
	var bug *bugErr
	if errors.As(err, &te) || errors.As(err, &pe) || errors.As(err, &bug) {
		return err
	}
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return fmt.Errorf("server %q: %w", server, context.Cause(ctx))
	}
	// A JSON-RPC error the transport wrapper kept arrives inside mcp-go's
	// *transport.Error: look for it first.
	var re *rpcError
	if errors.As(err, &re) {
		c, code, _ := rpcClass(re)
		return &ProtocolError{Server: server, Class: c, Code: code, Message: re.Message}
	}
	if c, ok := transportClass(err); ok {
		return &TransportError{Server: server, Class: c, Err: describe(target, err)}
	}
	// mcp-go returns JSON-RPC errors as its sentinels, and decoding
	// failures of an answer as plain errors: both mean the server answered.
	c, code, _ := rpcClass(err)
	return &ProtocolError{Server: server, Class: c, Code: code, Message: err.Error()}
}

// transportClass is the class of a transport failure, from mcp-go's
// transport types and the net, syscall and exec errors under them; ok is
// false when err is not one.
func transportClass(err error) (Class, bool) {
	var ne net.Error
	var ee *exec.Error
	var xe *exec.ExitError
	var authErr *transport.AuthorizationRequiredError
	var tre *transport.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return ClassRefused, true
	case errors.As(err, &authErr) || errors.Is(err, transport.ErrUnauthorized) ||
		errors.Is(err, transport.ErrAuthorizationRequired) || errors.Is(err, transport.ErrOAuthAuthorizationRequired):
		return ClassAuth, true
	case errors.Is(err, transport.ErrLegacySSEServer) || errors.Is(err, transport.ErrSessionTerminated):
		return ClassNotMCP, true
	case errors.Is(err, errProcessExited) || errors.As(err, &xe):
		return ClassProcessExited, true
	case errors.Is(err, exec.ErrNotFound) || errors.As(err, &ee):
		return ClassCommandMissing, true
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, transport.ErrTransportClosed):
		return ClassReset, true
	}
	if status, _, ok := httpStatus(err); ok {
		switch {
		case status == 401 || status == 403:
			return ClassAuth, true
		case status == 404 || status == 405:
			return ClassNotMCP, true
		case status >= 500:
			return ClassHTTP5xx, true
		}
		return ClassTransport, true
	}
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return ClassTimeout, true
	case errors.As(err, &tre) && (errors.As(err, &syntaxErr) || errors.As(err, &typeErr)):
		return ClassBadAnswer, true
	case errors.As(err, &ne) || errors.As(err, &tre):
		return ClassTransport, true
	}
	return "", false
}

// rpcClass is the class of a JSON-RPC error response or of an answer that
// could not be read: ok is false when err is neither. code is the JSON-RPC
// code when there is one.
func rpcClass(err error) (c Class, code int, ok bool) {
	var re *rpcError
	switch {
	case errors.As(err, &re):
		code = re.Code
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
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	switch {
	case code == mcp.METHOD_NOT_FOUND:
		return ClassMethodNotFound, code, true
	case code == mcp.INVALID_PARAMS && unknownToolMessage(err.Error()):
		return ClassUnknownTool, code, true
	case code == mcp.INVALID_PARAMS:
		return ClassInvalidParams, code, true
	case code != 0:
		return ClassProtocol, code, true
	case errors.As(err, &syntaxErr) || errors.As(err, &typeErr):
		return ClassMalformed, 0, true
	}
	return ClassMalformed, 0, false
}

// unknownToolMessage reports whether a -32602 error's message says the tool
// does not exist. The MCP spec gives an unknown tool the same code as bad
// arguments (-32602) and no code of its own, so here the text is all there
// is: mcp-go and the TypeScript SDK say "tool 'x' not found" / "Tool x not
// found", Python's SDK "Unknown tool: x". This is the one place that reads it.
func unknownToolMessage(msg string) bool {
	low := strings.ToLower(msg)
	return strings.Contains(low, "unknown tool") || strings.Contains(low, "tool") && strings.Contains(low, "not found")
}

// statusRE reads the HTTP status mcp-go puts in the text of an error for a
// non-2xx answer ("request failed with status 503: body"): mcp-go v1.2.1
// returns it as a plain fmt error, with no type or field. httpStatus is the
// one place that parses it.
var statusRE = regexp.MustCompile(`(?:request|notification) failed with status (\d{3}): ?(.*)`)

// httpStatus returns the HTTP status and body mcp-go quoted in err's text.
func httpStatus(err error) (status int, body string, ok bool) {
	m := statusRE.FindStringSubmatch(err.Error())
	if m == nil {
		return 0, "", false
	}
	status, _ = strconv.Atoi(m[1])
	return status, strings.TrimSpace(m[2]), true
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
	if code, body, ok := httpStatus(err); ok {
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

// startClass is the class of a stdio child that could not be started: a
// missing or non-executable command (or directory) is permanent.
func startClass(err error) Class {
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
		return ClassCommandMissing
	}
	return ClassCannotStart
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
