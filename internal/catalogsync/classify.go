package catalogsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"

	"github.com/mark3labs/mcp-go/client/transport"

	"github.com/toolbus-dev/toolbus/internal/mcppool"
	"github.com/toolbus-dev/toolbus/internal/registry"
	"github.com/toolbus-dev/toolbus/subjects"
)

// SyncError is a failed sync of one server: its class and a message a
// person can act on. The catalog is left as it was.
type SyncError struct {
	Server  string
	Class   subjects.SyncErrorClass
	Message string
	Err     error
}

func (e *SyncError) Error() string {
	return fmt.Sprintf("sync %q: %s: %s", e.Server, e.Class, e.Message)
}

func (e *SyncError) Unwrap() error { return e.Err }

// classify turns a dial or listing failure into a SyncError.
func classify(srv registry.Server, err error) *SyncError {
	var se *SyncError
	if errors.As(err, &se) {
		return se
	}
	srv = registry.Redact(srv) // the hints below quote the url and args
	target := srv.URL
	if srv.Transport == registry.TransportStdio {
		target = srv.Command
	}
	msg := strings.TrimPrefix(err.Error(), fmt.Sprintf("server %q: ", srv.Name))
	low := strings.ToLower(msg)
	var authErr *transport.AuthorizationRequiredError
	var execErr *exec.Error
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	var pe *mcppool.ProtocolError
	mk := func(c subjects.SyncErrorClass, hint string) *SyncError {
		return &SyncError{Server: srv.Name, Class: c, Message: msg + " — " + hint, Err: err}
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED) || strings.Contains(low, "connection refused"):
		return mk(subjects.SyncConnectionRefused, fmt.Sprintf("nothing accepts connections at %s; start the server or fix the url", target))
	case errors.As(err, &authErr) || errors.Is(err, transport.ErrUnauthorized) ||
		httpStatus(low, "401") || httpStatus(low, "403") || strings.Contains(low, "unauthorized") || strings.Contains(low, "forbidden"):
		return mk(subjects.SyncAuthFailed, "the server refused the credentials; check auth_token, auth_header and secret headers (env: references must be set where toolbus sync runs)")
	case errors.Is(err, transport.ErrLegacySSEServer) || errors.Is(err, transport.ErrSessionTerminated) ||
		httpStatus(low, "404") || httpStatus(low, "405"):
		return mk(subjects.SyncNotFound, fmt.Sprintf("%s is not an MCP endpoint; check the path (often /mcp) and the transport (http for streamable HTTP, sse for the older HTTP+SSE)", target))
	case errors.Is(err, context.DeadlineExceeded) || strings.Contains(low, "timeout") || strings.Contains(low, "deadline exceeded") || strings.Contains(low, "within connect_timeout"):
		return mk(subjects.SyncTimeout, fmt.Sprintf("%s did not answer in time; check that it is up, or raise connect_timeout", target))
	case errors.As(err, &execErr) || strings.Contains(low, "exited") || strings.Contains(low, "cannot start") ||
		(srv.Transport == registry.TransportStdio && (errors.Is(err, transport.ErrTransportClosed) || errors.Is(err, syscall.EPIPE))):
		return mk(subjects.SyncProcessExited, fmt.Sprintf("run `%s` by hand to see why it stops", strings.TrimSpace(srv.Command+" "+strings.Join(srv.Args, " "))))
	case errors.As(err, &pe) || errors.As(err, &syntaxErr) || errors.As(err, &typeErr) ||
		strings.Contains(low, "unmarshal") || strings.Contains(low, "invalid character") || strings.Contains(low, "content type") ||
		strings.Contains(low, "json-rpc") || strings.Contains(low, "jsonrpc") || strings.Contains(low, "method not found"):
		return mk(subjects.SyncInvalidJSONRPC, fmt.Sprintf("%s answered, but not as an MCP server listing tools; check that the url points at an MCP endpoint", target))
	case srv.Transport != registry.TransportStdio && strings.Contains(low, "http 5"):
		return mk(subjects.SyncOther, "the server failed; see its logs")
	}
	return &SyncError{Server: srv.Name, Class: subjects.SyncOther, Message: msg, Err: err}
}

// httpStatus reports whether an error message (lower case) names the HTTP
// status code, as mcp-go and mcppool word it — not a port or a path.
func httpStatus(low, code string) bool {
	for _, p := range []string{"http " + code, "status " + code, "(" + code + ")", code + " unauthorized", code + " forbidden", code + " not found"} {
		if strings.Contains(low, p) {
			return true
		}
	}
	return false
}
