package mcppool

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/toolbus-dev/toolbus/internal/demo"
	"github.com/toolbus-dev/toolbus/internal/registry"
	"github.com/toolbus-dev/toolbus/internal/testutil"
)

// Calls whose results are larger than a read (10 KB, and 1 MB) reuse one
// connection: before, every such call dialed a new one (mcp-go leaves the
// end of a JSON body unread, and net/http then drops the connection).
func TestLargeResultsReuseTheConnection(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	url, stop, err := demo.Serve(ctx, demo.TransportHTTP, "127.0.0.1:0", demo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	var dials atomic.Int64
	p := New(testutil.Logger(t), WithHTTPClients(func(n int) *http.Client {
		hc := NewHTTPClient(n)
		var d net.Dialer
		hc.Transport.(wholeBodies).RoundTripper.(*h1).dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return d.DialContext(ctx, network, addr)
		}
		return hc
	}))
	defer p.Close()
	p.Upsert(registry.Server{Name: "d", Transport: registry.TransportHTTP, URL: url, ProtocolVersion: "2025-11-25"})
	for _, size := range []int{10 << 10, 1 << 20} {
		msg := strings.Repeat("x", size)
		args, _ := json.Marshal(map[string]string{"message": msg})
		for i := range 20 {
			raw, isErr, err := p.Call(ctx, "d", "echo", args, CallOptions{})
			if err != nil || isErr {
				t.Fatalf("call %d of %d bytes: %v (isError %v)", i, size, err, isErr)
			}
			if !strings.Contains(string(raw), msg) {
				t.Fatalf("call %d of %d bytes: the result does not echo the message (%d bytes back)", i, size, len(raw))
			}
		}
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("%d connections dialed for 40 sequential calls, want 1", n)
	}
}
