package catalogsync

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/mark3labs/mcp-go/client/transport"

	"github.com/toolbus-dev/toolbus/internal/registry"
	"github.com/toolbus-dev/toolbus/subjects"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	web := registry.Server{Name: "w", Transport: registry.TransportHTTP, URL: "http://127.0.0.1:40123/mcp"}
	cmd := registry.Server{Name: "c", Transport: registry.TransportStdio, Command: "my-server", Args: []string{"--x"}}
	tests := []struct {
		srv  registry.Server
		err  error
		want subjects.SyncErrorClass
	}{
		{web, fmt.Errorf("dial: %w", syscall.ECONNREFUSED), subjects.SyncConnectionRefused},
		{web, &transport.AuthorizationRequiredError{}, subjects.SyncAuthFailed},
		{web, errors.New("http://127.0.0.1:40123/mcp answered HTTP 403: no"), subjects.SyncAuthFailed},
		{web, errors.New("http://127.0.0.1:40123/mcp answered HTTP 404"), subjects.SyncNotFound},
		{web, transport.ErrLegacySSEServer, subjects.SyncNotFound},
		{web, fmt.Errorf("list: %w", context.DeadlineExceeded), subjects.SyncTimeout},
		{web, errors.New("failed to unmarshal response: invalid character '<'"), subjects.SyncInvalidJSONRPC},
		{cmd, errors.New(`process "my-server" exited (exit status 3); last stderr: boom`), subjects.SyncProcessExited},
		{cmd, fmt.Errorf("write: %w", syscall.EPIPE), subjects.SyncProcessExited},
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
