package main_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mcpclient "github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/toolbus-dev/toolbus/internal/testbin"
	"github.com/toolbus-dev/toolbus/internal/testutil"
)

// The gateway role of nats.conf is enough for the MCP front door: `toolbus
// gateway` as user gateway lists the catalog, calls a tool, and runs a task
// to its result, with no permissions violation.
func TestNatsConfGateway(t *testing.T) {
	r := startNatsConf(t)
	port := testutil.FreePort(t)
	glog, _ := background(t, r.dir, "gateway", r.bin, "gateway", "--nats-url", r.url("gateway", "change-me-gateway"), "--listen", fmt.Sprintf("127.0.0.1:%d", port))
	waitLog(t, glog, "MCP front door listening")
	url := fmt.Sprintf("http://127.0.0.1:%d/mcp", port)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := mcpSession(ctx, t, url)
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

// serve mounts the MCP front door at /mcp on the bridge's listener, beside
// /healthz; a gateway refuses to listen beyond loopback without tokens.
func TestServeMountsTheFrontDoor(t *testing.T) {
	bin := testbin.Build(t, "github.com/toolbus-dev/toolbus/cmd/toolbus")
	port, natsPort := testutil.FreePort(t), testutil.FreePort(t)
	logPath, stop := background(t, t.TempDir(), "serve", bin, "serve", "--port", fmt.Sprint(natsPort), "--bridge", fmt.Sprintf("127.0.0.1:%d", port))
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("serve on SIGTERM: %v", err)
		}
	})
	// The bridge listens after the worker consumes: wait for the listener.
	waitLog(t, logPath, "webhook bridge listening")
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := mcpSession(ctx, t, fmt.Sprintf("http://127.0.0.1:%d/mcp", port))
	req := mcp.CallToolRequest{}
	req.Params.Name, req.Params.Arguments = "demo__add", map[string]any{"a": 2, "b": 3}
	res, err := c.CallTool(ctx, req)
	if err != nil || res.IsError || res.Content[0].(mcp.TextContent).Text != "5" {
		t.Fatalf("demo__add through serve's /mcp: %+v %v", res, err)
	}

	// The operator endpoints share the listener with the front door.
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz beside /mcp on the bridge's listener: %s", resp.Status)
	}

	_, errOut, code := tb(t, nil, "gateway", "--nats-url", natsURL, "--listen", fmt.Sprintf("0.0.0.0:%d", testutil.FreePort(t)))
	if code != 1 || !strings.Contains(errOut, "not a loopback address") || !strings.Contains(errOut, "mcp.tokens") {
		t.Fatalf("gateway on 0.0.0.0 without tokens: exit %d, %s", code, errOut)
	}
}

// `toolbus mcp` speaks MCP on stdin/stdout: initialize, then a tools/call
// that runs on the bus; it exits 0 when stdin ends. A bad --agent is a usage
// error, an unknown --view a clear failure.
func TestMCPStdio(t *testing.T) {
	bin := testbin.Build(t, "github.com/toolbus-dev/toolbus/cmd/toolbus")
	natsURL := serve(t, bin, t.TempDir(), "--bridge", "off")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "mcp", "--nats-url", natsURL)
	cmd.Dir = t.TempDir()
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	lines.Buffer(nil, 1<<20)
	send := func(msg string) {
		if _, err := io.WriteString(stdin, msg+"\n"); err != nil {
			t.Fatalf("write to toolbus mcp: %v (stderr: %s)", err, errOut.String())
		}
	}
	reply := func(id int) map[string]any {
		for lines.Scan() {
			var m map[string]any
			if err := json.Unmarshal(lines.Bytes(), &m); err != nil {
				t.Fatalf("stdout is not JSON-RPC: %q", lines.Text())
			}
			if m["id"] == float64(id) {
				return m
			}
		}
		t.Fatalf("toolbus mcp ended before answering %d: %v, stderr: %s", id, lines.Err(), errOut.String())
		return nil
	}
	send(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"test","version":"1"}}}`)
	if r := reply(1); r["result"] == nil {
		t.Fatalf("initialize: %v", r)
	}
	send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	send(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"demo__add","arguments":{"a":2,"b":3}}}`)
	r := reply(2)
	b, _ := json.Marshal(r["result"])
	var res mcp.CallToolResult
	if err := json.Unmarshal(b, &res); err != nil || res.IsError || len(res.Content) != 1 || !strings.Contains(string(b), `"text":"5"`) {
		t.Fatalf("tools/call demo__add over stdio: %s", b)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("toolbus mcp after stdin ended: %v, stderr: %s", err, errOut.String())
	}

	env := []string{"NATS_URL=" + natsURL}
	if _, e, code := tb(t, env, "mcp", "--agent", "not an agent"); code != 2 || !strings.Contains(e, "--agent") {
		t.Fatalf("mcp --agent 'not an agent': exit %d, %s", code, e)
	}
	if _, e, code := tb(t, env, "mcp", "--view", "nope"); code != 1 || !strings.Contains(e, `no view "nope"`) {
		t.Fatalf("mcp --view nope: exit %d, %s", code, e)
	}
}

// mcpSession opens an initialized MCP session (2025-11-25) over streamable
// HTTP at url, closed when the test ends.
func mcpSession(ctx context.Context, t *testing.T, url string) *mcpclient.Client {
	t.Helper()
	c, err := mcpclient.NewStreamableHttpClient(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = mcp.ProtocolVersion20251125
	if _, err := c.Initialize(ctx, init); err != nil {
		t.Fatal(err)
	}
	return c
}
