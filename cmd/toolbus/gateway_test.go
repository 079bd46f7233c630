package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mcpclient "github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/toolbus-dev/toolbus/internal/testbin"
)

// The gateway role of nats.conf is enough for the MCP front door: `toolbus
// gateway` as user gateway lists the catalog, calls a tool, and runs a task
// to its result, with no permissions violation.
func TestNatsConfGateway(t *testing.T) {
	r := startNatsConf(t)
	port := freePort(t)
	glog, _ := background(t, r.dir, "gateway", r.bin, "gateway", "--nats-url", r.url("gateway", "change-me-gateway"), "--listen", fmt.Sprintf("127.0.0.1:%d", port))
	waitLog(t, glog, "MCP front door listening")
	url := fmt.Sprintf("http://127.0.0.1:%d/mcp", port)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := mcpclient.NewStreamableHttpClient(url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = mcp.ProtocolVersion20251125
	if _, err := c.Initialize(ctx, init); err != nil {
		t.Fatal(err)
	}
	tools, err := c.ListTools(ctx, mcp.ListToolsRequest{})
	if err != nil || len(tools.Tools) == 0 {
		t.Fatalf("tools/list as gateway: %v %v", tools, err)
	}
	req := mcp.CallToolRequest{}
	req.Params.Name, req.Params.Arguments = "demo__add", map[string]any{"a": 2, "b": 3}
	res, err := c.CallTool(ctx, req)
	if err != nil || res.IsError || len(res.Content) == 0 || res.Content[0].(mcp.TextContent).Text != "5" {
		t.Fatalf("demo__add as gateway: %+v %v", res, err)
	}

	// A task: started, then read to its result.
	post := func(method string, params any) string {
		body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 7, "method": method, "params": params})
		hr, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		hr.Header.Set("Content-Type", "application/json")
		hr.Header.Set("Accept", "application/json, text/event-stream")
		hr.Header.Set("MCP-Protocol-Version", "2025-11-25")
		resp, err := http.DefaultClient.Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	created := post("tools/call", map[string]any{"name": "demo__add", "arguments": map[string]any{"a": 20, "b": 22}, "task": map[string]any{}})
	var cr struct {
		Result struct {
			Task struct{ TaskID string } `json:"task"`
		} `json:"result"`
	}
	if json.Unmarshal([]byte(created), &cr) != nil || cr.Result.Task.TaskID == "" {
		t.Fatalf("task-augmented call: %s", created)
	}
	if out := post("tasks/result", map[string]any{"taskId": cr.Result.Task.TaskID}); !strings.Contains(out, `"42"`) {
		t.Fatalf("tasks/result: %s", out)
	}
	for _, p := range []string{r.serverLog, glog} {
		b, _ := os.ReadFile(p)
		if bytes.Contains(b, []byte("Violation")) {
			t.Fatalf("%s reports a permissions violation:\n%s", filepath.Base(p), b)
		}
	}
}

// serve mounts the MCP front door at /mcp on the bridge's listener; a
// gateway refuses to listen beyond loopback without tokens.
func TestServeMountsTheFrontDoor(t *testing.T) {
	bin := testbin.Build(t, "github.com/toolbus-dev/toolbus/cmd/toolbus")
	port := freePort(t)
	natsURL := serve(t, bin, t.TempDir(), "--bridge", fmt.Sprintf("127.0.0.1:%d", port))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := mcpclient.NewStreamableHttpClient(fmt.Sprintf("http://127.0.0.1:%d/mcp", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = mcp.ProtocolVersion20251125
	if _, err := c.Initialize(ctx, init); err != nil {
		t.Fatal(err)
	}
	req := mcp.CallToolRequest{}
	req.Params.Name, req.Params.Arguments = "demo__add", map[string]any{"a": 2, "b": 3}
	res, err := c.CallTool(ctx, req)
	if err != nil || res.IsError || res.Content[0].(mcp.TextContent).Text != "5" {
		t.Fatalf("demo__add through serve's /mcp: %+v %v", res, err)
	}

	_, errOut, code := run(t, nil, bin, "gateway", "--nats-url", natsURL, "--listen", fmt.Sprintf("0.0.0.0:%d", freePort(t)))
	if code != 1 || !strings.Contains(errOut, "not a loopback address") || !strings.Contains(errOut, "mcp.tokens") {
		t.Fatalf("gateway on 0.0.0.0 without tokens: exit %d, %s", code, errOut)
	}
}
