package main_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	gosync "sync"
	"syscall"
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

// SIGHUP reloads toolbus.yaml while calls run: a steady stream of calls
// and one long call held open across the reload all answer ok; the added
// server's tools appear and answer; the removed hook answers 404; the log
// names what changed and what needs a restart. A bad file is then refused
// whole and the running configuration keeps working.
func TestReloadOnSIGHUP(t *testing.T) {
	bin := testbin.Build(t, "github.com/toolbus-dev/toolbus/cmd/toolbus")

	// alpha: the demo server plus "hold", which runs until the test lets
	// it go; beta: a plain demo server, added by the reload.
	alpha := demo.NewServer(demo.Options{})
	held, release := make(chan struct{}, 1), make(chan struct{})
	alpha.AddTool(mcp.NewTool("hold", mcp.WithDescription("returns once the test releases it")),
		func(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			held <- struct{}{}
			select {
			case <-release:
				return mcp.NewToolResultText("released"), nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})
	alphaSrv := httptest.NewServer(server.NewStreamableHTTPServer(alpha))
	t.Cleanup(func() { alphaSrv.CloseClientConnections(); alphaSrv.Close() })
	betaSrv := httptest.NewServer(server.NewStreamableHTTPServer(demo.NewServer(demo.Options{})))
	t.Cleanup(func() { betaSrv.CloseClientConnections(); betaSrv.Close() })

	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "toolbus.yaml")
	bridgeAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	srvYAML := func(name, url string) string {
		return fmt.Sprintf("  %s:\n    transport: http\n    url: %s/mcp\n    protocol_version: \"2025-11-25\"\n", name, url)
	}
	write := func(servers, hooks, rest string) {
		t.Helper()
		body := "bridge:\n  addr: " + bridgeAddr + "\nservers:\n" + servers + "hooks:\n" + hooks + rest
		if err := os.WriteFile(cfgPath, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	hook := func(name string) string { return "  - name: " + name + "\n    auth: none\n" }
	write(srvYAML("alpha", alphaSrv.URL)+srvYAML("gamma", betaSrv.URL), hook("keep")+hook("gone"), "worker:\n  concurrency: 8\n")

	port := testutil.FreePort(t)
	// --mcp puts the front door on a listener of its own: a flag the file
	// does not know, which a reload must keep (and not call a change).
	mcpAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	logPath, hup := startHUPable(t, dir, "serve", bin, "serve", "--port", fmt.Sprint(port), "--config", cfgPath, "--mcp", mcpAddr)
	waitLog(t, logPath, "worker consuming tool calls")
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	env := []string{"NATS_URL=" + url}
	synced := func(name string) {
		t.Helper()
		testutil.CheckFor(t, 30*time.Second, func() error {
			if out, _, _ := tb(t, env, "tools", name); !strings.Contains(out, "echo") {
				return fmt.Errorf("%s not synced yet: %s", name, out)
			}
			return nil
		})
	}
	synced("alpha")
	synced("gamma")

	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	cl, err := client.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	callOK := func(server, tool, args string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		res, err := cl.Call(ctx, server, tool, args)
		if err != nil {
			return fmt.Errorf("%s/%s: %w", server, tool, err)
		}
		if res.Status != subjects.StatusOK {
			return fmt.Errorf("%s/%s answered %s: %+v", server, tool, res.Status, res.Error)
		}
		return nil
	}

	// The long call, held open until the end.
	holdErr := make(chan error, 1)
	go func() { holdErr <- callOK("alpha", "hold", `{}`) }()
	<-held
	// The steady stream: two callers, one call after another, until stopped.
	stop := make(chan struct{})
	var wg gosync.WaitGroup
	var mu gosync.Mutex
	var streamErrs []error
	calls := 0
	for c := range 2 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				err := callOK("alpha", "echo", fmt.Sprintf(`{"message":"c%d-%d"}`, c, i))
				mu.Lock()
				calls++
				if err != nil {
					streamErrs = append(streamErrs, err)
				}
				mu.Unlock()
			}
		})
	}
	callsSoFar := func() int { mu.Lock(); defer mu.Unlock(); return calls }
	testutil.CheckFor(t, 30*time.Second, func() error {
		if n := callsSoFar(); n < 20 {
			return fmt.Errorf("%d calls so far", n)
		}
		return nil
	})
	postHook := func(name string) int {
		t.Helper()
		resp, err := http.Post("http://"+bridgeAddr+"/hooks/"+name, "application/json", strings.NewReader(`{"n":1}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if a, b := postHook("keep"), postHook("gone"); a != 202 || b != 202 {
		t.Fatalf("before the reload: hooks answered %d, %d", a, b)
	}

	// Add beta, drop gamma and the hook gone, add a schedule, halve the concurrency
	// (live) and change max_deliver (restart).
	write(srvYAML("alpha", alphaSrv.URL)+srvYAML("beta", betaSrv.URL), hook("keep"),
		"worker:\n  concurrency: 4\n  max_deliver: 7\nschedules:\n  - name: hourly-resync\n    spec: \"@hourly\"\n    kind: resync\n")
	before := callsSoFar()
	hup()
	waitLog(t, logPath, `"configuration reloaded"`)
	logText := func() string { b, _ := os.ReadFile(logPath); return string(b) }
	for _, want := range []string{`"servers_added":["beta"]`, `"servers_removed":["gamma"]`, `"hooks_removed":["gone"]`, `"schedules_added":["hourly-resync"]`,
		`"worker_concurrency":4`, `"needs_restart":["worker.max_deliver"]`} {
		if !strings.Contains(logText(), want) {
			t.Errorf("the reload log does not say %s:\n%s", want, logText())
		}
	}
	// The front door still answers on --mcp's listener.
	initialize := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`
	req, _ := http.NewRequest("POST", "http://"+mcpAddr+"/mcp", strings.NewReader(initialize))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Errorf("the front door on --mcp after the reload: %v", err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("the front door on --mcp after the reload: HTTP %d", resp.StatusCode)
		}
	}
	synced("beta")
	if err := callOK("beta", "add", `{"a":2,"b":3}`); err != nil {
		t.Fatalf("the added server: %v", err)
	}
	// The removed server took its tools, and its calls are refused.
	testutil.CheckFor(t, 30*time.Second, func() error {
		if out, _, _ := tb(t, env, "tools", "gamma"); strings.Contains(out, "echo") {
			return fmt.Errorf("gamma's tools still listed: %s", out)
		}
		return nil
	})
	if err := callOK("gamma", "echo", `{"message":"x"}`); err == nil || !strings.Contains(err.Error(), string(subjects.CodeUnknownServer)) {
		t.Fatalf("a call to the removed server: %v, want unknown_server", err)
	}
	if a, b := postHook("keep"), postHook("gone"); a != 202 || b != 404 {
		t.Fatalf("after the reload: keep answered %d (want 202), gone %d (want 404)", a, b)
	}
	testutil.CheckFor(t, 30*time.Second, func() error {
		if n := callsSoFar(); n < before+20 {
			return fmt.Errorf("%d calls since the reload", n-before)
		}
		return nil
	})

	// A bad file (a hook with no auth) is refused whole: beta stays, gone
	// stays gone, though the file drops one and lists the other.
	write(srvYAML("alpha", alphaSrv.URL), hook("keep")+"  - name: gone\n", "")
	hup()
	waitLog(t, logPath, "configuration reload rejected")
	if !strings.Contains(logText(), "auth") {
		t.Errorf("the rejection does not say what is wrong:\n%s", logText())
	}
	if err := callOK("beta", "echo", `{"message":"still here"}`); err != nil {
		t.Fatalf("after a rejected reload: %v", err)
	}
	if a, b := postHook("keep"), postHook("gone"); a != 202 || b != 404 {
		t.Fatalf("after a rejected reload: keep answered %d (want 202), gone %d (want 404)", a, b)
	}
	if out, _, _ := tb(t, env, "servers", "list"); !strings.Contains(out, "beta") {
		t.Fatalf("beta left the registry on a rejected reload:\n%s", out)
	}

	close(stop)
	wg.Wait()
	close(release)
	if err := <-holdErr; err != nil {
		t.Fatalf("the call held across the reloads: %v", err)
	}
	if len(streamErrs) > 0 {
		t.Fatalf("%d of %d calls failed across the reloads; first: %v", len(streamErrs), calls, streamErrs[0])
	}
	if n := bytes.Count([]byte(logText()), []byte(`"configuration reloaded"`)); n != 1 {
		t.Fatalf("%d reloads applied, want 1", n)
	}
}

// startHUPable starts a long-running toolbus command in dir, its output in
// dir/name.log, stopped with SIGTERM at the end (it must exit 0). It
// returns the log's path and a func that sends it SIGHUP.
func startHUPable(t *testing.T, dir, name string, cmdline ...string) (logPath string, hup func()) {
	t.Helper()
	logPath = filepath.Join(dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(cmdline[0], cmdline[1:]...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("%s on SIGTERM: %v", name, err)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("%s did not stop on SIGTERM", name)
		}
	})
	return logPath, func() {
		t.Helper()
		if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
}

// The standalone bridge reloads its --hooks file on SIGHUP, and a
// scheduler replica its config file's schedules; a bad hooks file is
// refused and the running hooks stay.
func TestReloadBridgeAndSchedulesRun(t *testing.T) {
	bin := testbin.Build(t, "github.com/toolbus-dev/toolbus/cmd/toolbus")
	dir := t.TempDir()
	url := serve(t, bin, dir, "--bridge", "off")
	hooksPath := filepath.Join(dir, "hooks.json")
	writeFile := func(path, body string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(hooksPath, `[{"name":"a","auth":"none"},{"name":"b","auth":"bearer","token":"t0ken"}]`)
	addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	bridgeLog, hupBridge := startHUPable(t, dir, "bridge", bin, "bridge", "--nats-url", url, "--hooks", hooksPath, "--addr", addr)
	waitLog(t, bridgeLog, "webhook bridge listening")
	post := func(name, token string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/hooks/"+name, strings.NewReader(`{}`))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if a, b := post("a", ""), post("b", "t0ken"); a != 202 || b != 202 {
		t.Fatalf("before: %d %d", a, b)
	}
	writeFile(hooksPath, `[{"name":"b","auth":"bearer","token":"n3w"},{"name":"c","auth":"none"}]`)
	hupBridge()
	waitLog(t, bridgeLog, `"configuration reloaded"`)
	if a, bOld, bNew, c := post("a", ""), post("b", "t0ken"), post("b", "n3w"), post("c", ""); a != 404 || bOld != 401 || bNew != 202 || c != 202 {
		t.Fatalf("after the reload: a %d (want 404), b with the old token %d (401), with the new %d (202), c %d (202)", a, bOld, bNew, c)
	}
	b, _ := os.ReadFile(bridgeLog)
	for _, want := range []string{`"hooks_added":["c"]`, `"hooks_changed":["b"]`, `"hooks_removed":["a"]`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("the bridge's log does not say %s:\n%s", want, b)
		}
	}
	if bytes.Contains(b, []byte("n3w")) || bytes.Contains(b, []byte("t0ken")) {
		t.Errorf("a token reached the log:\n%s", b)
	}
	writeFile(hooksPath, `[{"name":"x","auth":"none"}`)
	hupBridge()
	waitLog(t, bridgeLog, "configuration reload rejected")
	if c, x := post("c", ""), post("x", ""); c != 202 || x != 404 {
		t.Fatalf("after a rejected reload: c %d (want 202), x %d (want 404)", c, x)
	}

	cfgPath := filepath.Join(dir, "sched.yaml")
	writeFile(cfgPath, "schedules:\n  - name: one\n    spec: \"@hourly\"\n    kind: resync\n")
	schedLog, hupSched := startHUPable(t, dir, "schedules", bin, "schedules", "run", "--nats-url", url, "--config", cfgPath, "--name", "replica-2")
	waitLog(t, schedLog, "scheduler started")
	writeFile(cfgPath, "schedules:\n  - name: two\n    spec: \"@daily\"\n    kind: resync\n")
	hupSched()
	waitLog(t, schedLog, `"configuration reloaded"`)
	b, _ = os.ReadFile(schedLog)
	if !bytes.Contains(b, []byte(`"schedules_added":["two"]`)) || !bytes.Contains(b, []byte(`"schedules_removed":["one"]`)) {
		t.Errorf("the scheduler's log does not name the changes:\n%s", b)
	}
}
