package catalogsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/toolbus-dev/toolbus/internal/mcppool"
	"github.com/toolbus-dev/toolbus/internal/registry"
	"github.com/toolbus-dev/toolbus/subjects"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	web := registry.Server{Name: "w", Transport: registry.TransportHTTP, URL: "http://127.0.0.1:40123/mcp"}
	cmd := registry.Server{Name: "c", Transport: registry.TransportStdio, Command: "my-server", Args: []string{"--x"}}
	te := func(c mcppool.Class, msg string) error {
		return &mcppool.TransportError{Server: "w", Class: c, Err: errors.New(msg)}
	}
	tests := []struct {
		srv  registry.Server
		err  error
		want subjects.SyncErrorClass
	}{
		// Errors as the pool (and Dial) return them: classed at the edge.
		{web, te(mcppool.ClassRefused, "connection refused at http://127.0.0.1:40123/mcp — is it running?"), subjects.SyncConnectionRefused},
		{web, te(mcppool.ClassAuth, "http://127.0.0.1:40123/mcp answered HTTP 403: no"), subjects.SyncAuthFailed},
		{web, te(mcppool.ClassNotMCP, "http://127.0.0.1:40123/mcp answered HTTP 404"), subjects.SyncNotFound},
		{web, te(mcppool.ClassTimeout, "no MCP handshake within connect_timeout 15s"), subjects.SyncTimeout},
		{web, te(mcppool.ClassHTTP5xx, "http://127.0.0.1:40123/mcp answered HTTP 503"), subjects.SyncOther},
		{web, &mcppool.ProtocolError{Server: "w", Class: mcppool.ClassMalformed, Message: "tools/list answer is not JSON"}, subjects.SyncInvalidJSONRPC},
		{cmd, te(mcppool.ClassProcessExited, `process "my-server" exited (exit status 3); last stderr: boom`), subjects.SyncProcessExited},
		{cmd, te(mcppool.ClassCommandMissing, `cannot start "my-server"`), subjects.SyncProcessExited},
		// Errors straight from a client Dial returned: mcp-go's own types.
		{web, fmt.Errorf("dial: %w", syscall.ECONNREFUSED), subjects.SyncConnectionRefused},
		{web, transport.NewError(&transport.AuthorizationRequiredError{}), subjects.SyncAuthFailed},
		{web, transport.NewError(fmt.Errorf("request failed with status 404: nope")), subjects.SyncNotFound},
		{web, transport.ErrLegacySSEServer, subjects.SyncNotFound},
		{web, fmt.Errorf("list: %w", context.DeadlineExceeded), subjects.SyncTimeout},
		{web, fmt.Errorf("%w: no such method", mcp.ErrMethodNotFound), subjects.SyncInvalidJSONRPC},
		{web, transport.NewError(fmt.Errorf("failed to decode response: %w", &json.SyntaxError{})), subjects.SyncInvalidJSONRPC},
		{cmd, transport.NewError(fmt.Errorf("write: %w", syscall.EPIPE)), subjects.SyncProcessExited},
		{web, errors.New("something odd"), subjects.SyncOther},
	}
	for _, tt := range tests {
		got := classify(tt.srv, tt.err)
		if got.Class != tt.want {
			t.Errorf("classify(%v) = %s, want %s (%s)", tt.err, got.Class, tt.want, got.Message)
		}
		if !errors.Is(got, tt.err) {
			t.Errorf("classify(%v) does not wrap the cause", tt.err)
		}
	}
}
