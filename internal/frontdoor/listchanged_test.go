package frontdoor_test

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/toolbus-dev/toolbus/internal/frontdoor"
	"github.com/toolbus-dev/toolbus/internal/registry"
	"github.com/toolbus-dev/toolbus/subjects"
)

// A 2025-11-25 session's GET stream hears notifications/tools/list_changed
// when a server is added to the bus.
func TestListChangedOnTheGetStream(t *testing.T) {
	b := startBus(t)
	_, url := b.gateway(t, frontdoor.Config{Debounce: 50 * time.Millisecond})
	session := initialize(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Mcp-Session-Id", session)
	req.Header.Set("MCP-Protocol-Version", "2025-11-25")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET stream: %s", resp.Status)
	}
	b.addServer(t, registry.Server{Name: "more", Transport: registry.TransportHTTP, URL: startDemo(t), ProtocolVersion: "2025-11-25"})
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "notifications/tools/list_changed") {
			return
		}
	}
	t.Fatalf("the GET stream ended without list_changed: %v", sc.Err())
}

// A client that disconnects mid-call leaves the call running: its result
// is stored as if it had stayed.
func TestDisconnectLeavesTheCallRunning(t *testing.T) {
	b := startBus(t)
	_, url := b.gateway(t, frontdoor.Config{})
	results := b.replies(t, subjects.DefaultAgent)
	session := initialize(t, url)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	body := `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"demo__sleep","arguments":{"ms":1500,"steps":15},"_meta":{"progressToken":"p1"}}}`
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Session-Id", session)
	req.Header.Set("MCP-Protocol-Version", "2025-11-25")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	running := false
	for !running && sc.Scan() {
		running = strings.Contains(sc.Text(), "notifications/progress")
	}
	if !running {
		t.Fatal("the call's stream ended before any progress")
	}
	cancel() // the client goes away while the tool runs
	resp.Body.Close()
	r := waitResult(t, results, "sleep", func(r *subjects.Result) bool { return true })
	if r.Status != subjects.StatusOK {
		t.Fatalf("the call ended %s %+v after its client left; want ok", r.Status, r.Error)
	}
}
