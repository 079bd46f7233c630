package demo_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/toolbus-dev/toolbus/internal/demo"
	"github.com/toolbus-dev/toolbus/internal/testbin"
	"github.com/toolbus-dev/toolbus/internal/testutil"
)

const demoPkg = "github.com/toolbus-dev/toolbus/cmd/mcp-demo"

// connect starts the demo server with its fault tools over transport (a
// fresh one per call) with the given exec log and returns an initialized
// client.
func connect(t *testing.T, kind, execLog string, opts ...client.ClientOption) (*client.Client, *mcp.InitializeResult) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	var tr transport.Interface
	switch kind {
	case demo.TransportHTTP, demo.TransportSSE:
		url, stop, err := demo.Serve(t.Context(), kind, "127.0.0.1:0", demo.Options{Faults: true, ExecLog: execLog})
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
		t.Cleanup(stop)
		if kind == demo.TransportHTTP {
			if !strings.HasSuffix(url, demo.PathMCP) {
				t.Fatalf("url %q does not end in %s", url, demo.PathMCP)
			}
			tr, err = transport.NewStreamableHTTP(url)
		} else {
			if !strings.HasSuffix(url, demo.PathSSE) {
				t.Fatalf("url %q does not end in %s", url, demo.PathSSE)
			}
			tr, err = transport.NewSSE(url)
		}
		if err != nil {
			t.Fatalf("transport: %v", err)
		}
	case demo.TransportStdio:
		bin := testbin.Build(t, demoPkg)
		// The stdio transport runs the command with exec.CommandContext on
		// Start's ctx: a short-lived ctx there would kill the server.
		tr = transport.NewStdio(bin, nil, "--faults", "--exec-log", execLog)
	default:
		t.Fatalf("unknown transport %q", kind)
	}

	c := client.NewClient(tr, opts...)
	if err := c.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	res, err := c.Initialize(ctx, mcp.InitializeRequest{Params: mcp.InitializeParams{
		ClientInfo: mcp.Implementation{Name: "demo-test", Version: "0"},
	}})
	if err != nil {
		t.Fatalf("Initialize: %v", err)
	}
	return c, res
}

func call(t *testing.T, c *client.Client, name string, args map[string]any, meta *mcp.Meta) *mcp.CallToolResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = args
	req.Params.Meta = meta
	res, err := c.CallTool(ctx, req)
	if err != nil {
		t.Fatalf("call %s: %v", name, err)
	}
	return res
}

// progressRecorder collects notifications/progress for one token.
type progressRecorder struct {
	mu    sync.Mutex
	steps []map[string]any
}

func (p *progressRecorder) handler(token string) func(mcp.JSONRPCNotification) {
	return func(n mcp.JSONRPCNotification) {
		if n.Method != string(mcp.MethodNotificationProgress) {
			return
		}
		f := n.Params.AdditionalFields
		if f["progressToken"] != token {
			return
		}
		p.mu.Lock()
		p.steps = append(p.steps, f)
		p.mu.Unlock()
	}
}

func (p *progressRecorder) snapshot() []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]map[string]any(nil), p.steps...)
}

func execLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func TestTransports(t *testing.T) {
	t.Parallel()
	versions := []struct{ name, pin string }{
		{"default", ""},
		{"pinned-2025-11-25", mcp.ProtocolVersion20251125},
	}
	for _, kind := range []string{demo.TransportHTTP, demo.TransportSSE, demo.TransportStdio} {
		for _, v := range versions {
			t.Run(kind+"/"+v.name, func(t *testing.T) {
				t.Parallel()
				execLog := filepath.Join(t.TempDir(), "exec.log")
				var opts []client.ClientOption
				if v.pin != "" {
					opts = append(opts, client.WithProtocolVersion(v.pin))
				}
				c, init := connect(t, kind, execLog, opts...)
				t.Logf("negotiated protocol %s (client says %s)", init.ProtocolVersion, c.ProtocolVersion())
				if v.pin != "" && init.ProtocolVersion != v.pin {
					t.Fatalf("pinned %s, negotiated %s", v.pin, init.ProtocolVersion)
				}
				if !mcp.IsValidProtocolVersion(init.ProtocolVersion) {
					t.Fatalf("negotiated unknown protocol version %q", init.ProtocolVersion)
				}
				if init.ServerInfo.Name != demo.Name {
					t.Fatalf("server name %q, want %q", init.ServerInfo.Name, demo.Name)
				}

				testTools(t, c, execLog)
			})
		}
	}
}

func testTools(t *testing.T, c *client.Client, execLog string) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	list, err := c.ListTools(ctx, mcp.ListToolsRequest{})
	if err != nil {
		t.Fatalf("ListTools: %v", err)
	}
	annotations := map[string]mcp.ToolAnnotation{}
	for _, tool := range list.Tools {
		annotations[tool.Name] = tool.Annotations
	}
	for _, name := range []string{"echo", "echo_plain", "add", "sleep", "fail", "crash", "kill_parent", "count", "destroy", "executions", "whoami"} {
		if _, ok := annotations[name]; !ok {
			t.Errorf("tool %s not listed", name)
		}
	}
	if a := annotations["echo_plain"]; a.ReadOnlyHint != nil || a.DestructiveHint != nil || a.IdempotentHint != nil || a.OpenWorldHint != nil {
		t.Errorf("echo_plain declares annotations: %+v", a)
	}
	if a := annotations["count"]; !isTrue(a.IdempotentHint) || isTrue(a.DestructiveHint) {
		t.Errorf("count annotations: idempotent %v destructive %v", a.IdempotentHint, a.DestructiveHint)
	}
	if a := annotations["kill_parent"]; !isTrue(a.IdempotentHint) || isTrue(a.DestructiveHint) {
		t.Errorf("kill_parent annotations: idempotent %v destructive %v", a.IdempotentHint, a.DestructiveHint)
	}
	if a := annotations["destroy"]; isTrue(a.IdempotentHint) || !isTrue(a.DestructiveHint) {
		t.Errorf("destroy annotations: idempotent %v destructive %v", a.IdempotentHint, a.DestructiveHint)
	}

	if got := testutil.Text(t, call(t, c, "echo", map[string]any{"message": "hi there"}, nil)); got != "hi there" {
		t.Errorf("echo = %q", got)
	}
	if got := testutil.Text(t, call(t, c, "add", map[string]any{"a": 2, "b": 3}, nil)); got != "5" {
		t.Errorf("add = %q, want 5", got)
	}
	if got := testutil.Text(t, call(t, c, "add", map[string]any{"a": 0.5, "b": 0.25}, nil)); got != "0.75" {
		t.Errorf("add = %q, want 0.75", got)
	}

	res := call(t, c, "fail", map[string]any{"message": "nope"}, nil)
	if !res.IsError || testutil.Text(t, res) != "nope" {
		t.Errorf("fail = %+v, want isError with nope", res)
	}
	res = call(t, c, "fail", nil, nil)
	if !res.IsError || testutil.Text(t, res) != "demo failure" {
		t.Errorf("fail = %+v, want isError with demo failure", res)
	}

	var rec progressRecorder
	c.OnNotification(rec.handler("tok-" + t.Name()))
	res = call(t, c, "sleep", map[string]any{"ms": 40, "steps": 4}, &mcp.Meta{ProgressToken: "tok-" + t.Name()})
	if got := testutil.Text(t, res); got != "slept 40ms" {
		t.Errorf("sleep = %q", got)
	}
	testutil.Eventually(t, 5*time.Second, "4 progress notifications", func() bool { return len(rec.snapshot()) >= 4 })
	for i, step := range rec.snapshot() {
		if step["progress"] != float64(i+1) || step["total"] != float64(4) {
			t.Errorf("progress %d = %v", i, step)
		}
		if want := "step " + string(rune('1'+i)) + "/4"; step["message"] != want {
			t.Errorf("progress %d message %v, want %s", i, step["message"], want)
		}
	}
	if n := len(rec.snapshot()); n != 4 {
		t.Errorf("got %d progress notifications, want 4", n)
	}

	key := "k-" + strings.ReplaceAll(t.Name(), "/", "-")
	for want := 1; want <= 2; want++ {
		if got := testutil.Text(t, call(t, c, "count", map[string]any{"key": key}, nil)); got != string(rune('0'+want)) {
			t.Errorf("count #%d = %q", want, got)
		}
	}
	if got := testutil.Text(t, call(t, c, "destroy", map[string]any{"key": "d-" + key}, nil)); got != "destroyed d-"+key {
		t.Errorf("destroy = %q", got)
	}
	var counts map[string]int
	if err := json.Unmarshal([]byte(testutil.Text(t, call(t, c, "executions", map[string]any{"key": key}, nil))), &counts); err != nil {
		t.Fatal(err)
	}
	if len(counts) != 1 || counts[key] != 2 {
		t.Errorf("executions(%s) = %v", key, counts)
	}
	want := []string{"count " + key, "count " + key, "destroy d-" + key}
	if got := execLines(t, execLog); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("exec log = %q, want %q", got, want)
	}
}

func isTrue(b *bool) bool { return b != nil && *b }

// TestCrash checks that the crash tool ends a stdio server with status 3,
// speaking raw JSON-RPC the way any stdio client would.
func TestCrash(t *testing.T) {
	t.Parallel()
	bin := testbin.Build(t, demoPkg)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--faults")
	_, lines, send := startRaw(t, cmd, "crash-test")
	send(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"crash","arguments":{}}}`)
	// The process dies without answering: stdout ends.
	for lines.Scan() {
		t.Errorf("unexpected output after crash: %s", lines.Text())
	}
	err := cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != demo.CrashExitCode {
		t.Fatalf("wait = %v, want exit status %d", err, demo.CrashExitCode)
	}
}

// TestKillParent checks that kill_parent SIGKILLs the stdio server's parent
// (here a sacrificial shell standing in for a worker) without replying.
func TestKillParent(t *testing.T) {
	t.Parallel()
	if runtime.GOOS == "windows" {
		t.Skip("needs /bin/sh and SIGKILL")
	}
	bin := testbin.Build(t, demoPkg)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	// The shell waits for the server (a command follows it), so it is the
	// server's parent; "survived" is printed only if the shell lives on.
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", `"$0" --faults; echo survived`, bin)
	_, lines, send := startRaw(t, cmd, "kill-test")
	send(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"kill_parent","arguments":{}}}`)
	for lines.Scan() {
		t.Errorf("unexpected output after kill_parent: %s", lines.Text())
	}
	err := cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("wait = %v, want the shell killed", err)
	}
	if ws, ok := exit.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("shell ended with %v, want SIGKILL", err)
	}
}

// TestStdioEOF checks that a stdio server exits cleanly when its stdin
// closes, which is how a client shuts it down first.
func TestStdioEOF(t *testing.T) {
	t.Parallel()
	bin := testbin.Build(t, demoPkg)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout strings.Builder
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := stdin.Close(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("wait = %v, want clean exit", err)
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout carried non-protocol output: %q", stdout.String())
	}
}

// TestCancel checks that sleep, count and destroy return promptly when the
// call is cancelled, and that a cancelled count records nothing.
func TestCancel(t *testing.T) {
	t.Parallel()
	c, err := client.NewInProcessClient(demo.NewServer(demo.Options{Faults: true}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Initialize(t.Context(), mcp.InitializeRequest{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		tool string
		args map[string]any
	}{
		{"sleep", map[string]any{"ms": 600_000}},
		{"count", map[string]any{"key": "c", "ms": 600_000}},
		{"destroy", map[string]any{"key": "d", "ms": 600_000}},
	} {
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() {
			req := mcp.CallToolRequest{}
			req.Params.Name = tc.tool
			req.Params.Arguments = tc.args
			_, err := c.CallTool(ctx, req)
			done <- err
		}()
		cancel()
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("%s: cancelled call returned no error", tc.tool)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: cancelled call did not return", tc.tool)
		}
	}
	var counts map[string]int
	if err := json.Unmarshal([]byte(testutil.Text(t, call(t, c, "executions", nil, nil))), &counts); err != nil {
		t.Fatal(err)
	}
	if counts["c"] != 0 {
		t.Errorf("cancelled count recorded: %v", counts)
	}
}

// TestServeStop checks that Serve's stop is idempotent and that the
// listener is gone afterwards.
func TestServeStop(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{demo.TransportHTTP, demo.TransportSSE} {
		url, stop, err := demo.Serve(t.Context(), kind, "127.0.0.1:0", demo.Options{})
		if err != nil {
			t.Fatal(err)
		}
		stop()
		stop()
		tr, err := transport.NewStreamableHTTP(url)
		if err != nil {
			t.Fatal(err)
		}
		c := client.NewClient(tr)
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		if _, err := c.Initialize(ctx, mcp.InitializeRequest{}); err == nil {
			t.Errorf("%s: Initialize succeeded after stop", kind)
		}
		cancel()
	}
	if _, _, err := demo.Serve(t.Context(), "carrier-pigeon", "127.0.0.1:0", demo.Options{}); !errors.Is(err, demo.ErrUnknownTransport) {
		t.Errorf("Serve(carrier-pigeon) = %v", err)
	}
}

// TestFaultToolsOnlyWithFaults checks that a demo server offers the fault
// tools only when asked: by default it lists SafeTools alone and refuses a
// fault tool as unknown; with Faults it lists both sets.
func TestFaultToolsOnlyWithFaults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		opts demo.Options
		want []string
	}{
		{demo.Options{}, demo.SafeTools},
		{demo.Options{Faults: true}, append(append([]string(nil), demo.SafeTools...), demo.FaultTools...)},
	} {
		c, err := client.NewInProcessClient(demo.NewServer(tc.opts))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Initialize(t.Context(), mcp.InitializeRequest{}); err != nil {
			t.Fatal(err)
		}
		list, err := c.ListTools(t.Context(), mcp.ListToolsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, tool := range list.Tools {
			got = append(got, tool.Name)
		}
		slices.Sort(got)
		want := slices.Sorted(slices.Values(tc.want))
		if !slices.Equal(got, want) {
			t.Errorf("Faults %v: tools %v, want %v", tc.opts.Faults, got, want)
		}
		if tc.opts.Faults {
			continue
		}
		for _, name := range demo.FaultTools {
			req := mcp.CallToolRequest{}
			req.Params.Name = name
			if _, err := c.CallTool(t.Context(), req); err == nil || !strings.Contains(err.Error(), "not found") {
				t.Errorf("call %s without Faults: err %v, want tool not found", name, err)
			}
		}
	}
}

// TestKillParentWithoutFaults checks that a stdio demo server started
// without --faults answers kill_parent with an unknown-tool error and leaves
// its parent alone, which is what keeps `toolbus serve` alive.
func TestKillParentWithoutFaults(t *testing.T) {
	t.Parallel()
	if runtime.GOOS == "windows" {
		t.Skip("needs /bin/sh")
	}
	bin := testbin.Build(t, demoPkg)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", `"$0"; echo survived`, bin)
	stdin, lines, send := startRaw(t, cmd, "kill-test")
	send(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"kill_parent","arguments":{}}}`)
	if !lines.Scan() || !strings.Contains(lines.Text(), `"id":2`) || !strings.Contains(lines.Text(), `"error"`) || !strings.Contains(lines.Text(), "not found") {
		t.Fatalf("kill_parent without --faults: got %q, %v; want a tool-not-found error", lines.Text(), lines.Err())
	}
	if err := stdin.Close(); err != nil {
		t.Fatal(err)
	}
	if !lines.Scan() || lines.Text() != "survived" {
		t.Errorf("after kill_parent: got %q, want the parent to survive", lines.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("wait = %v, want the parent to exit 0", err)
	}
}

// TestExecLogNeedsFaults checks that mcp-demo refuses --exec-log without
// --faults: only the fault tools record executions.
func TestExecLogNeedsFaults(t *testing.T) {
	t.Parallel()
	bin := testbin.Build(t, demoPkg)
	out, err := exec.CommandContext(t.Context(), bin, "--exec-log", filepath.Join(t.TempDir(), "x.log")).CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), "--faults") {
		t.Fatalf("mcp-demo --exec-log without --faults: %v %q, want exit 2 naming --faults", err, out)
	}
}

// startRaw starts cmd, a demo server over stdio, and completes the MCP
// handshake by hand as client name; send writes one JSON-RPC line, lines
// reads the server's.
func startRaw(t *testing.T, cmd *exec.Cmd, name string) (stdin io.WriteCloser, lines *bufio.Scanner, send func(string)) {
	t.Helper()
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
	lines = bufio.NewScanner(stdout)
	send = func(msg string) {
		t.Helper()
		if _, err := stdin.Write([]byte(msg + "\n")); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	send(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"` + name + `","version":"0"}}}`)
	if !lines.Scan() || !strings.Contains(lines.Text(), `"id":1`) {
		t.Fatalf("initialize: got %q, %v", lines.Text(), lines.Err())
	}
	send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	return stdin, lines, send
}
