package catalogsync

import (
	"errors"
	"fmt"
	"strings"

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

// classify turns a dial or listing failure into a SyncError, by the class
// mcppool gave the failure (mcppool.ClassOf), never by its text.
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
	// The message is the outermost error's text, which has its secrets
	// scrubbed (see scrubber), less the "server %q: " its kind adds and the
	// status already names.
	msg := strings.TrimPrefix(err.Error(), fmt.Sprintf("server %q: ", srv.Name))
	mk := func(c subjects.SyncErrorClass, hint string) *SyncError {
		return &SyncError{Server: srv.Name, Class: c, Message: msg + " — " + hint, Err: err}
	}
	class := mcppool.ClassOf(err)
	switch {
	case class == mcppool.ClassRefused:
		return mk(subjects.SyncConnectionRefused, fmt.Sprintf("nothing accepts connections at %s; start the server or fix the url", target))
	case class == mcppool.ClassAuth:
		return mk(subjects.SyncAuthFailed, "the server refused the credentials; check auth_token, auth_header and secret headers (env: references must be set where toolbus sync runs)")
	case class == mcppool.ClassNotMCP:
		return mk(subjects.SyncNotFound, fmt.Sprintf("%s is not an MCP endpoint; check the path (often /mcp) and the transport (http for streamable HTTP, sse for the older HTTP+SSE)", target))
	case class == mcppool.ClassTimeout:
		return mk(subjects.SyncTimeout, fmt.Sprintf("%s did not answer in time; check that it is up, or raise connect_timeout", target))
	case class == mcppool.ClassProcessExited || class == mcppool.ClassCannotStart || class == mcppool.ClassCommandMissing ||
		srv.Transport == registry.TransportStdio && class == mcppool.ClassReset:
		return mk(subjects.SyncProcessExited, fmt.Sprintf("run `%s` by hand to see why it stops", strings.TrimSpace(srv.Command+" "+strings.Join(srv.Args, " "))))
	case class.Protocol() || class == mcppool.ClassBadAnswer:
		return mk(subjects.SyncInvalidJSONRPC, fmt.Sprintf("%s answered, but not as an MCP server listing tools; check that the url points at an MCP endpoint", target))
	case class == mcppool.ClassHTTP5xx && srv.Transport != registry.TransportStdio:
		return mk(subjects.SyncOther, "the server failed; see its logs")
	}
	return &SyncError{Server: srv.Name, Class: subjects.SyncOther, Message: msg, Err: err}
}
