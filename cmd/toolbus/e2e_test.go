package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"github.com/nats-io/nats.go"

	"github.com/toolbus-dev/toolbus/client"
	"github.com/toolbus-dev/toolbus/internal/demo"
	"github.com/toolbus-dev/toolbus/internal/testbin"
	"github.com/toolbus-dev/toolbus/internal/testutil"
	"github.com/toolbus-dev/toolbus/subjects"
)

// serve starts `toolbus serve` as a user would, in dir, and returns the NATS
// URL; it is stopped with SIGTERM at the end and must exit 0.
func serve(t *testing.T, bin, dir string, args ...string) string {
	t.Helper()
	port := testutil.FreePort(t)
	logPath, stop := background(t, dir, "serve", append([]string{bin, "serve", "--port", fmt.Sprint(port)}, args...)...)
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("serve on SIGTERM: %v", err)
		}
	})
	waitLog(t, logPath, "worker consuming tool calls")
	// The bridge starts beside the worker: wait for its listener too,
	// unless it is off.
	if !slices.Contains(args, "off") {
		waitLog(t, logPath, "webhook bridge listening")
	}
	return fmt.Sprintf("nats://127.0.0.1:%d", port)
}

func run(t *testing.T, env []string, name string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code = 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return o.String(), e.String(), code
}

// The README's walk-through: `toolbus serve` on a fresh directory (no
// config: the built-in demo server), then `toolbus call demo add` prints 5.
func TestReadmeWalkthrough(t *testing.T) {
	bin := testbin.Build(t, "github.com/toolbus-dev/toolbus/cmd/toolbus")
	dir := t.TempDir()
	url := serve(t, bin, dir, "--bridge", "off")
	env := []string{"NATS_URL=" + url}

	out, errOut, code := tb(t, env, "call", "demo", "add", `{"a":2,"b":3}`)
	if code != 0 || out != "5\n" {
		t.Fatalf("call demo add: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	out, _, code = tb(t, env, "call", "demo", "echo", `{"message":"hi"}`, "--json")
	var res subjects.Result
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.Status != subjects.StatusOK {
		t.Fatalf("--json: exit %d, %q", code, out)
	}
	_, errOut, code = tb(t, env, "call", "demo", "fail", `{"message":"no"}`)
	if code != 1 || !strings.Contains(errOut, "tool error: no") {
		t.Fatalf("fail: exit %d, stderr %q", code, errOut)
	}
	_, errOut, code = tb(t, env, "call", "nope", "add", `{}`)
	if code != 1 || !strings.Contains(errOut, "unknown_server") {
		t.Fatalf("unknown server: exit %d, stderr %q", code, errOut)
	}
	_, errOut, code = tb(t, env, "call", "demo", "add", `{"a":`)
	if code != 2 || !strings.Contains(errOut, "not valid JSON") {
		t.Fatalf("bad JSON: exit %d, stderr %q", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); err != nil {
		t.Fatalf("data dir not under ./data: %v", err)
	}

	// Arguments from stdin.
	out, errOut, code = tbIn(t, `{"a":40,"b":2}`, env, "call", "demo", "add", "-")
	if code != 0 || out != "42\n" {
		t.Fatalf("call demo add -: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// --detach prints the id at once; result reads the outcome later.
	out, errOut, code = tb(t, env, "call", "--detach", "demo", "echo", `{"message":"later"}`)
	id := strings.TrimSpace(out)
	if code != 0 || id == "" || !strings.Contains(errOut, "toolbus result ") || !strings.Contains(errOut, id) {
		t.Fatalf("call --detach: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	out, errOut, code = tb(t, env, "result", "--wait", "30s", "--", id)
	if code != 0 || out != "later\n" {
		t.Fatalf("result %s: exit %d, stdout %q, stderr %q", id, code, out, errOut)
	}
	if _, errOut, code = tb(t, env, "result", "never-sent-"+id); code != 1 || !strings.Contains(errOut, "no result for call") {
		t.Fatalf("result of an unknown call: exit %d, stderr %q", code, errOut)
	}
}

// Ctrl-C while `toolbus call` waits cancels the call on the bus: the
// worker cancels the tool, whose handler returns with its context
// cancelled, stores "cancelled", and call exits 130. The demo server runs in
// this process over streamable HTTP, its sleep handler watched. With one
// slot (--concurrency 1), the next call runs at once.
func TestCallInterruptCancels(t *testing.T) {
	bin := testbin.Build(t, "github.com/toolbus-dev/toolbus/cmd/toolbus")
	mcpSrv := demo.NewServer(demo.Options{})
	sleep := mcpSrv.GetTool("sleep")
	sleepEnded := make(chan error, 1)
	mcpSrv.AddTool(sleep.Tool, func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		res, err := sleep.Handler(ctx, req)
		select {
		case sleepEnded <- err:
		default:
		}
		return res, err
	})
	httpSrv := httptest.NewServer(server.NewStreamableHTTPServer(mcpSrv))
	// Closed after serve stops (cleanups run last first), dropping a
	// sleep that was never cancelled.
	t.Cleanup(func() { httpSrv.CloseClientConnections(); httpSrv.Close() })
	dir := t.TempDir()
	cfg := fmt.Sprintf("servers:\n  demo:\n    transport: http\n    url: %s/mcp\n    protocol_version: \"2025-11-25\"\n", httpSrv.URL)
	if err := os.WriteFile(filepath.Join(dir, "toolbus.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	url := serve(t, bin, dir, "--bridge", "off", "--concurrency", "1")
	env := []string{"NATS_URL=" + url}
	testutil.CheckFor(t, 30*time.Second, func() error {
		if out, _, _ := tb(t, env, "tools", "demo"); !strings.Contains(out, "sleep") {
			return fmt.Errorf("demo not synced yet: %s", out)
		}
		return nil
	})

	id := client.NewCallID()
	var callOut, callErr syncBuffer
	call := exec.Command(bin, "call", "demo", "sleep", `{"ms":600000,"steps":6000}`, "--progress", "--timeout", "20m", "--id", id)
	call.Env = append(os.Environ(), env...)
	call.Stdout, call.Stderr = &callOut, &callErr
	if err := call.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- call.Wait() }()
	defer func() { _ = call.Process.Kill() }()
	testutil.CheckFor(t, 30*time.Second, func() error {
		if !strings.Contains(callErr.String(), "progress") {
			return fmt.Errorf("the tool is not running yet: %q", callErr.String())
		}
		return nil
	})
	if err := call.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	var err error
	select {
	case err = <-exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("call did not exit after SIGINT:\n%s", callErr.String())
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 || !strings.Contains(callErr.String(), "error (cancelled)") || !strings.Contains(callErr.String(), "cancelled on interrupt") {
		t.Fatalf("call after SIGINT: %v, want exit 130 and the cancelled answer:\n%s%s", err, callOut.String(), callErr.String())
	}
	select {
	case err := <-sleepEnded:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("the sleep tool ended with %v, want its context cancelled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the sleep tool still runs after the call was cancelled")
	}
	out, errOut, code := tb(t, env, "result", "--json", "--", id)
	var res subjects.Result
	if code != 1 || json.Unmarshal([]byte(out), &res) != nil || res.Error == nil || res.Error.Code != subjects.CodeCancelled {
		t.Fatalf("stored result of %s: exit %d\n%s%s", id, code, out, errOut)
	}
	out, errOut, code = tb(t, env, "call", "demo", "add", `{"a":2,"b":3}`, "--timeout", "30s")
	if code != 0 || out != "5\n" {
		t.Fatalf("the worker's one slot is still taken after the cancel: exit %d %q %q", code, out, errOut)
	}
}

// A webhook routed to a tool call produces a result from the demo MCP
// server, end to end through `toolbus serve`.
func TestWebhookToToolCall(t *testing.T) {
	bin := testbin.Build(t, "github.com/toolbus-dev/toolbus/cmd/toolbus")
	dir := t.TempDir()
	bridgePort := testutil.FreePort(t)
	cfg := fmt.Sprintf(`
bridge:
  addr: 127.0.0.1:%d
servers:
  demo:
    command: %s
    args: [demo]
    protocol_version: "2025-11-25"
hooks:
  - name: adder
    auth: bearer
    token: s3cret
    route: tool
    server: demo
    tool: add
    args: {a: x, b: y}
`, bridgePort, bin)
	if err := os.WriteFile(filepath.Join(dir, "toolbus.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	url := serve(t, bin, dir)
	req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/hooks/adder", bridgePort), strings.NewReader(`{"x":40,"y":2}`))
	req.Header.Set("Authorization", "Bearer s3cret")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var acc struct {
		EventID string `json:"event_id"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&acc)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || acc.EventID == "" {
		t.Fatalf("bridge answered %d %+v", resp.StatusCode, acc)
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	cl, _ := client.New(nc, client.WithAgent("bridge")) // a hook's calls run as agent bridge
	defer cl.Close()
	testutil.CheckFor(t, 20*time.Second, func() error {
		res, err := cl.Result(context.Background(), acc.EventID)
		if err != nil {
			return err
		}
		if res.Status != subjects.StatusOK || !strings.Contains(string(res.Result), `"42"`) {
			return fmt.Errorf("result %+v %s", res, res.Result)
		}
		return nil
	})
}

// The README's catalog, registry, schedules and dead-letter commands,
// against `toolbus serve`.
func TestReadmeCatalogCommands(t *testing.T) {
	t.Setenv("SEARCH_TOKEN", "t0ken") // the env: reference below resolves in serve and in `toolbus sync`
	bin := testbin.Build(t, "github.com/toolbus-dev/toolbus/cmd/toolbus")
	url := serve(t, bin, t.TempDir(), "--bridge", "off")
	env := []string{"NATS_URL=" + url}
	must := func(want string, args ...string) string {
		t.Helper()
		out, errOut, code := tb(t, env, args...)
		if code != 0 || !strings.Contains(out+errOut, want) {
			t.Fatalf("toolbus %s: exit %d, want %q in\n%s%s", strings.Join(args, " "), code, want, out, errOut)
		}
		return out
	}
	// The demo server syncs at start.
	testutil.CheckFor(t, 30*time.Second, func() error {
		out, _, _ := tb(t, env, "tools")
		if !strings.Contains(out, "demo") || !strings.Contains(out, "add") || !strings.Contains(out, "strict") {
			return fmt.Errorf("tools: %s", out)
		}
		return nil
	})
	var entries []map[string]any
	if err := json.Unmarshal([]byte(must("add", "tools", "demo", "--json")), &entries); err != nil || len(entries) == 0 {
		t.Fatalf("tools --json: %v", err)
	}

	// A second server registered at run time, called, then removed.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srvURL, stop, err := demoServe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	must("", "servers", "add", "search", "--transport", "http", "--url", srvURL, "--auth-token", "env:SEARCH_TOKEN")
	out := must("search", "servers", "list")
	if strings.Contains(out, "t0ken") {
		t.Fatalf("servers list leaks: %s", out)
	}
	must(fmt.Sprintf("%d tools", len(demo.SafeTools)), "sync", "search")
	testutil.CheckFor(t, 20*time.Second, func() error {
		out, errOut, code := tb(t, env, "call", "search", "echo", `{"message":"found"}`)
		if code != 0 || out != "found\n" {
			return fmt.Errorf("call search echo: %d %q %q", code, out, errOut)
		}
		return nil
	})
	// Arguments that break the schema are refused by the catalog.
	_, errOut, code := tb(t, env, "call", "search", "add", `{"a":"two"}`)
	if code != 1 || !strings.Contains(errOut, "invalid_arguments") || !strings.Contains(errOut, `argument "a": got string, want number`) {
		t.Fatalf("schema check: %d %q", code, errOut)
	}
	must("", "servers", "rm", "search")
	testutil.CheckFor(t, 20*time.Second, func() error {
		_, errOut, _ := tb(t, env, "call", "search", "echo", `{"message":"x"}`)
		if !strings.Contains(errOut, "unknown_server") {
			return fmt.Errorf("after rm: %q", errOut)
		}
		return nil
	})

	must("", "schedules", "add", "wake-planner", "--spec", "0 9 * * 1-5", "--tz", "Europe/Paris", "--kind", "wake", "--agent", "planner", "--payload", `{"reason":"daily"}`)
	must("wake-planner", "schedules", "list")
	must("no dead letters", "dlq", "list")
	for _, c := range []string{"serve", "worker", "call", "tools", "servers", "sync", "schedules", "bridge", "dlq", "demo", "bench"} {
		must("Usage", c, "--help")
	}
	must("Commands", "--help")
}
