package frontdoor_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/toolbus-dev/toolbus/internal/frontdoor"
	"github.com/toolbus-dev/toolbus/internal/testbin"
	"github.com/toolbus-dev/toolbus/subjects"
)

// startGateway runs `toolbus gateway` on the bus and returns its endpoint
// once it listens.
func startGateway(t *testing.T, bin string, b *bus) (*exec.Cmd, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "gateway", "--nats-url", b.ns.URL, "--listen", addr)
	cmd.Dir = t.TempDir()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "MCP front door listening") {
			go func() { _, _ = io.Copy(io.Discard, stderr) }()
			return cmd, "http://" + addr + "/mcp"
		}
	}
	t.Fatalf("toolbus gateway ended before listening")
	return nil, ""
}

// rpc posts one JSON-RPC request and returns its result (SSE or JSON).
func rpc(t *testing.T, url, session, method string, params any) (json.RawMessage, string) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("MCP-Protocol-Version", "2025-11-25")
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		for _, line := range strings.Split(string(raw), "\n") {
			if d, ok := strings.CutPrefix(line, "data: "); ok && strings.Contains(d, `"id":1`) {
				raw = []byte(d)
			}
		}
	}
	var msg struct {
		Result json.RawMessage `json:"result"`
		Error  json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(raw, &msg); err != nil || msg.Error != nil {
		t.Fatalf("%s: status %d, %s", method, resp.StatusCode, raw)
	}
	return msg.Result, resp.Header.Get("Mcp-Session-Id")
}

func initialize(t *testing.T, url string) string {
	_, session := rpc(t, url, "", "initialize", map[string]any{
		"protocolVersion": "2025-11-25", "capabilities": map[string]any{},
		"clientInfo": map[string]any{"name": "tasks-test", "version": "1"},
	})
	return session
}

// A task started through one gateway process is read to completion through
// another after the first was killed: the task is the bus call.
func TestTaskOutlivesItsGateway(t *testing.T) {
	b := startBus(t)
	bin := testbin.Build(t, "github.com/toolbus-dev/toolbus/cmd/toolbus")
	first, url1 := startGateway(t, bin, b)
	s1 := initialize(t, url1)
	res, _ := rpc(t, url1, s1, "tools/call", map[string]any{
		"name": "demo__sleep", "arguments": map[string]any{"ms": 1000, "steps": 1}, "task": map[string]any{"ttl": 60000},
	})
	var created struct {
		Task struct {
			TaskID string `json:"taskId"`
			Status string `json:"status"`
		} `json:"task"`
	}
	if err := json.Unmarshal(res, &created); err != nil || created.Task.TaskID == "" || created.Task.Status != "working" {
		t.Fatalf("task-augmented call answered %s", res)
	}
	if err := first.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()

	_, url2 := startGateway(t, bin, b)
	s2 := initialize(t, url2)
	id := created.Task.TaskID
	out, _ := rpc(t, url2, s2, "tasks/result", map[string]any{"taskId": id})
	var result struct {
		Content []struct{ Text string } `json:"content"`
		IsError bool                    `json:"isError"`
		Meta    map[string]any          `json:"_meta"`
	}
	if err := json.Unmarshal(out, &result); err != nil || result.IsError || len(result.Content) == 0 {
		t.Fatalf("tasks/result through the second gateway: %s", out)
	}
	got, _ := rpc(t, url2, s2, "tasks/get", map[string]any{"taskId": id})
	if !strings.Contains(string(got), `"status":"completed"`) {
		t.Fatalf("tasks/get: %s", got)
	}
	list, _ := rpc(t, url2, s2, "tasks/list", map[string]any{})
	if !strings.Contains(string(list), fmt.Sprintf("%q", id)) {
		t.Fatalf("tasks/list lacks %s: %s", id, list)
	}
}

// A task whose call never reached the bus (its gateway died between
// recording and publishing it) ends failed after its deadline, instead of
// working forever; an unknown task id is an error.
func TestLostTaskEndsFailed(t *testing.T) {
	b := startBus(t)
	_, url := b.gateway(t, frontdoor.Config{})
	kv, err := b.ns.JS.KeyValue(context.Background(), subjects.BucketTasks)
	if err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Hour).UTC()
	rec, _ := json.Marshal(map[string]any{"call_id": "lost-call-1", "agent": "default", "server": "demo", "tool": "add", "name": "demo__add",
		"created": past, "ttl_ms": 1000, "deadline": past.Add(time.Second)})
	if _, err := kv.Create(context.Background(), "default.lost-call-1", rec); err != nil {
		t.Fatal(err)
	}
	s := initialize(t, url)
	got, _ := rpc(t, url, s, "tasks/get", map[string]any{"taskId": "lost-call-1"})
	if !strings.Contains(string(got), `"status":"failed"`) || !strings.Contains(string(got), "deadline") {
		t.Fatalf("tasks/get of a lost task: %s", got)
	}
	res, _ := rpc(t, url, s, "tasks/result", map[string]any{"taskId": "lost-call-1"})
	if !strings.Contains(string(res), `"isError":true`) {
		t.Fatalf("tasks/result of a lost task: %s", res)
	}
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "tasks/get", "params": map[string]any{"taskId": "no-such-task"}})
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(out), `"code":-32602`) || !strings.Contains(string(out), "no task") {
		t.Fatalf("unknown task: %s", out)
	}
}
