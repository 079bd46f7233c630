package mcppool

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// Calls whose results are larger than a read (10 KB, and 1 MB) reuse one
// connection: before, every such call dialed a new one (mcp-go leaves the
// end of a JSON body unread, and net/http then drops the connection).
func TestLargeResultsReuseTheConnection(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cc connCounter
	p, _ := demoPool(t, &cc)
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
	if n := cc.dials.Load(); n != 1 {
		t.Errorf("%d connections dialed for 40 sequential calls, want 1", n)
	}
}
