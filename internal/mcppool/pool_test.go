package mcppool

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/toolbus-dev/toolbus/internal/registry"
	"github.com/toolbus-dev/toolbus/subjects"
)

func TestDial(t *testing.T) {
	t.Parallel()
	h := startHTTP(t, registry.TransportHTTP, false)
	for _, def := range []registry.Server{httpDef("api", h), stdioDef("local")} {
		c, err := Dial(context.Background(), def, DialOptions{Log: testLog(t)})
		if err != nil {
			t.Fatalf("%s: %v", def.Name, err)
		}
		res, err := c.ListTools(context.Background(), mcp.ListToolsRequest{})
		if err != nil || len(res.Tools) == 0 {
			t.Fatalf("%s: list tools: %v", def.Name, err)
		}
		if err := c.Close(); err != nil {
			t.Fatalf("%s: close: %v", def.Name, err)
		}
	}
}

func TestDialErrorsAreActionable(t *testing.T) {
	t.Parallel()
	cases := []struct {
		def   registry.Server
		want  string
		class Class
	}{
		{registry.Server{Name: "github", Transport: registry.TransportStdio, Command: "no-such-mcp-binary"},
			`server "github": cannot start "no-such-mcp-binary": exec: "no-such-mcp-binary": executable file not found in $PATH`, ClassCommandMissing},
		{registry.Server{Name: "api", Transport: registry.TransportHTTP, URL: "http://127.0.0.1:9/mcp"},
			`server "api": connection refused at http://127.0.0.1:9/mcp — is it running?`, ClassRefused},
		{registry.Server{Name: "old", Transport: registry.TransportSSE, URL: "http://127.0.0.1:9/sse"},
			`server "old": connection refused at http://127.0.0.1:9/sse — is it running?`, ClassRefused},
		{registry.Server{Name: "x", Transport: registry.TransportStdio, Command: stdioBin, Env: map[string]string{"STDIOSRV_FAIL_START": "1"}},
			`server "x": process "` + stdioBin + `" exited (exit status 2); last stderr: stdiosrv: refusing to start`, ClassProcessExited},
	}
	for _, c := range cases {
		_, err := Dial(context.Background(), c.def, DialOptions{Log: testLog(t)})
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("Dial(%s):\n got %v\nwant %s…", c.def.Name, err, c.want)
		}
		if got := ClassOf(err); got != c.class || !got.Transport() {
			t.Errorf("Dial(%s): class %s, want %s", c.def.Name, got, c.class)
		}
	}
	// An error that net/http words with the request URL keeps the query's
	// secrets out: https to a plain HTTP server fails in the TLS handshake.
	plain := httptest.NewServer(http.NotFoundHandler())
	defer plain.Close()
	secretURL := strings.Replace(plain.URL, "http://", "https://", 1) + "/mcp?api_key=SECRET-123"
	_, err := Dial(context.Background(), registry.Server{Name: "tls", Transport: registry.TransportHTTP, URL: secretURL}, DialOptions{Log: testLog(t)})
	if err == nil || strings.Contains(err.Error(), "SECRET-123") || !strings.Contains(err.Error(), "HTTP response to HTTPS client") {
		t.Errorf("Dial with a key in the URL: %v", err)
	}
}

func TestLazyConnectReuseAndConcurrency(t *testing.T) {
	t.Parallel()
	for _, kind := range []registry.Transport{registry.TransportHTTP, registry.TransportSSE, registry.TransportStdio} {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			var h *httpServer
			def := stdioDef("s")
			if kind != registry.TransportStdio {
				h = startHTTP(t, kind, false)
				def = httpDef("s", h)
			}
			p := New(testLog(t))
			defer p.Close()
			p.Upsert(def)
			if h != nil && h.sessions() != 0 {
				t.Fatal("Upsert connected; want lazy")
			}
			if st := p.Health("s").State; st != StateIdle {
				t.Fatalf("state before first call = %s, want idle", st)
			}
			var wg sync.WaitGroup
			errs := make(chan error, 64)
			for i := range 64 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					args := json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))
					raw, isErr, err := p.Call(context.Background(), "s", "echo", args, CallOptions{AgentID: fmt.Sprintf("agent-%d", i)})
					switch {
					case err != nil:
						errs <- err
					case isErr:
						errs <- fmt.Errorf("isError: %s", raw)
					default:
						if got, err := textOf(raw); err != nil || got != string(args) {
							errs <- fmt.Errorf("echo %s = %s (%v)", args, got, err)
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if h != nil {
				if n := h.sessions(); n != 1 {
					t.Errorf("server saw %d handshakes for 64 calls, want 1", n)
				}
				if h.count("tools/call") != 64 {
					t.Errorf("server saw %d tool calls, want 64", h.count("tools/call"))
				}
				if !h.sawAgent("agent-7") {
					t.Error("x-agent-id did not arrive")
				}
			}
			if st := p.Health("s").State; st != StateConnected {
				t.Errorf("state = %s, want connected", st)
			}
		})
	}
}

func TestStdioOneProcess(t *testing.T) {
	t.Parallel()
	p := New(testLog(t))
	defer p.Close()
	p.Upsert(stdioDef("s"))
	pids := map[string]bool{}
	for range 5 {
		raw, _, err := p.Call(context.Background(), "s", "pid", nil, CallOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pids[text(t, raw)] = true
	}
	if len(pids) != 1 {
		t.Fatalf("calls ran in %d processes, want 1", len(pids))
	}
}

func TestStdioEnvAndDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	def := stdioDef("s")
	def.Env = map[string]string{"MCPPOOL_TEST": "v1"}
	def.Dir = dir
	p := New(testLog(t))
	defer p.Close()
	p.Upsert(def)
	raw, _, err := p.Call(context.Background(), "s", "env", json.RawMessage(`{"name":"MCPPOOL_TEST"}`), CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := text(t, raw); got != "v1|"+dir {
		t.Fatalf("env|dir = %q, want %q", got, "v1|"+dir)
	}
}

func TestProgressRouted(t *testing.T) {
	t.Parallel()
	for _, kind := range []registry.Transport{registry.TransportHTTP, registry.TransportSSE, registry.TransportStdio} {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			def := stdioDef("s")
			if kind != registry.TransportStdio {
				def = httpDef("s", startHTTP(t, kind, false))
			}
			p := New(testLog(t))
			defer p.Close()
			p.Upsert(def)
			// Two concurrent calls: each sees only its own notifications.
			got := make([][]string, 2)
			var mu sync.Mutex
			var wg sync.WaitGroup
			for c := range got {
				wg.Add(1)
				go func() {
					defer wg.Done()
					// The in-process servers' tool waits, by key, until
					// each notification has been seen here (stdiosrv
					// ignores the key and pauses instead).
					key := fmt.Sprintf("%s/%d", t.Name(), c)
					progress := func(progress, total float64, msg string) {
						mu.Lock()
						got[c] = append(got[c], fmt.Sprintf("%g/%g %s", progress, total, msg))
						mu.Unlock()
						progressSeen(key) <- struct{}{}
					}
					args, _ := json.Marshal(map[string]any{"steps": 3, "key": key})
					raw, isErr, err := p.Call(context.Background(), "s", "progress", args, CallOptions{Progress: progress})
					if err != nil || isErr {
						t.Error(string(raw), err)
					}
				}()
			}
			wg.Wait()
			mu.Lock()
			defer mu.Unlock()
			for c := range got {
				if want := "1/3 step 1,2/3 step 2,3/3 step 3"; strings.Join(got[c], ",") != want {
					t.Errorf("call %d: progress = %v, want %s", c, got[c], want)
				}
			}
		})
	}
}

func TestToolErrorAndProtocolError(t *testing.T) {
	t.Parallel()
	h := startHTTP(t, registry.TransportHTTP, false)
	p := New(testLog(t))
	defer p.Close()
	p.Upsert(httpDef("s", h))
	p.Upsert(stdioDef("local"))

	raw, isErr, err := p.Call(context.Background(), "s", "fail", nil, CallOptions{})
	if err != nil || !isErr || text(t, raw) != "the tool said no" {
		t.Fatalf("tool error: %s %v %v", raw, isErr, err)
	}
	for _, srv := range []string{"s", "local"} {
		_, _, err = p.Call(context.Background(), srv, "no_such_tool", nil, CallOptions{})
		var pe *ProtocolError
		if !errors.As(err, &pe) || pe.Code == 0 || !strings.Contains(pe.Message, "no_such_tool") || ClassOf(err) != ClassUnknownTool {
			t.Fatalf("%s: unknown tool: %T %v (class %s)", srv, err, err, ClassOf(err))
		}
		if ClassOf(err).Transport() {
			t.Fatalf("%s: protocol error counted as transport", srv)
		}
		if st := p.Health(srv); st.State != StateConnected || st.ConsecutiveFailures != 0 {
			t.Fatalf("%s: after protocol error health = %+v, want connected", srv, st)
		}
	}
	if _, _, err := p.Call(context.Background(), "nope", "echo", nil, CallOptions{}); !errors.Is(err, ErrUnknownServer) || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("unknown server: %v", err)
	}
}

func TestResultRoundTrip(t *testing.T) {
	t.Parallel()
	h := startHTTP(t, registry.TransportHTTP, false)
	p := New(testLog(t))
	defer p.Close()
	p.Upsert(httpDef("s", h))
	raw, isErr, err := p.Call(context.Background(), "s", "rich", nil, CallOptions{})
	if err != nil || !isErr {
		t.Fatalf("rich: %v %v", isErr, err)
	}
	var got map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	sc, _ := json.Marshal(got["structuredContent"])
	meta, _ := json.Marshal(got["_meta"])
	if string(sc) != `{"list":["a","b"],"n":42}` || !strings.Contains(string(meta), `"trace":"t-1"`) || got["isError"] != true || text(t, raw) != `{"n":42}` {
		t.Fatalf("result did not round-trip: %s", raw)
	}
}

func TestServerDownBreakerAndRecovery(t *testing.T) {
	t.Parallel()
	h := startHTTP(t, registry.TransportHTTP, false)
	p := New(testLog(t), WithBackoff(100*time.Millisecond, 200*time.Millisecond), WithBreaker(3, 0))
	defer p.Close()
	p.Upsert(httpDef("s", h))
	if _, _, err := p.Call(context.Background(), "s", "echo", nil, CallOptions{}); err != nil {
		t.Fatal(err)
	}
	h.stop()

	// Three failures open the breaker; each is a transport error.
	for i := range 3 {
		_, _, err := p.Call(context.Background(), "s", "echo", nil, CallOptions{})
		var te *TransportError
		if !errors.As(err, &te) || te.Down {
			t.Fatalf("failure %d: %T %v", i+1, err, err)
		}
		// The first failure may be the old connection closing; the
		// reconnects then find nothing listening.
		if i > 0 && !strings.Contains(err.Error(), "is it running?") {
			t.Fatalf("failure %d not actionable: %v", i+1, err)
		}
	}
	// Down means the pool did not try: it failed fast with the last error.
	_, _, err := p.Call(context.Background(), "s", "echo", nil, CallOptions{})
	var te *TransportError
	if !errors.As(err, &te) || !te.Down || te.NextRetry.IsZero() {
		t.Fatalf("after 3 failures: %T %v, want Down", err, err)
	}
	if hl := p.Health("s"); hl.State != StateDown || hl.ConsecutiveFailures != 3 || hl.LastError == nil {
		t.Fatalf("health = %+v", hl)
	}
	t.Logf("down error: %v", err)

	h.restart()
	checkFor(t, 5*time.Second, "recovery after restart", func() bool {
		_, _, err := p.Call(context.Background(), "s", "echo", nil, CallOptions{})
		return err == nil
	})
	if hl := p.Health("s"); hl.State != StateConnected || hl.ConsecutiveFailures != 0 {
		t.Fatalf("health after recovery = %+v", hl)
	}
}

func TestStdioChildExitRespawns(t *testing.T) {
	t.Parallel()
	p := New(testLog(t))
	defer p.Close()
	p.Upsert(stdioDef("x"))
	raw, _, err := p.Call(context.Background(), "x", "pid", nil, CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pid1 := text(t, raw)

	_, _, err = p.Call(context.Background(), "x", "exit", json.RawMessage(`{"code":3}`), CallOptions{})
	if ClassOf(err) != ClassProcessExited || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "last stderr: stdiosrv: exiting on request") {
		t.Fatalf("exit: %v", err)
	}
	t.Logf("exit error: %v", err)
	raw, _, err = p.Call(context.Background(), "x", "pid", nil, CallOptions{})
	if err != nil {
		t.Fatalf("call after exit: %v", err)
	}
	if pid2 := text(t, raw); pid2 == pid1 {
		t.Fatal("no new process after exit")
	}
}

func TestStdioStderrAndDeadChildDetected(t *testing.T) {
	t.Parallel()
	p := New(testLog(t))
	defer p.Close()
	p.Upsert(stdioDef("x"))
	if _, _, err := p.Call(context.Background(), "x", "stderr", json.RawMessage(`{"line":"warming up"}`), CallOptions{}); err != nil {
		t.Fatal(err)
	}
	raw, _, err := p.Call(context.Background(), "x", "pid", nil, CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	fmt.Sscan(text(t, raw), &pid)
	// Killed behind the pool's back: the session is dropped promptly, and
	// the next call respawns instead of failing.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, "the dead child to be noticed", func() bool {
		return p.Health("x").State == StateFailing
	})
	if hl := p.Health("x"); !strings.Contains(fmt.Sprint(hl.LastError), "signal: killed") || !strings.Contains(fmt.Sprint(hl.LastError), "warming up") {
		t.Fatalf("last error = %v", hl.LastError)
	}
	if _, _, err := p.Call(context.Background(), "x", "pid", nil, CallOptions{}); err != nil {
		t.Fatalf("call after kill: %v", err)
	}
}

func TestIdleCloseAndRemove(t *testing.T) {
	t.Parallel()
	def := stdioDef("x")
	def.IdleTimeout = subjects.Duration(50 * time.Millisecond)
	p := New(testLog(t), WithIdleCheck(10*time.Millisecond))
	defer p.Close()
	p.Upsert(def)
	pid := func() int {
		raw, _, err := p.Call(context.Background(), "x", "pid", nil, CallOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var n int
		fmt.Sscan(text(t, raw), &n)
		return n
	}
	gone := func(pid int) func() bool {
		return func() bool { return syscall.Kill(pid, 0) == syscall.ESRCH }
	}
	first := pid()
	checkFor(t, 5*time.Second, "idle session to close", func() bool { return p.Health("x").State == StateIdle })
	checkFor(t, 5*time.Second, "idle child to exit", gone(first))
	second := pid()
	if second == first {
		t.Fatal("no new process after idle close")
	}
	p.Remove("x")
	checkFor(t, 5*time.Second, "removed child to exit", gone(second))
	if _, _, err := p.Call(context.Background(), "x", "pid", nil, CallOptions{}); !errors.Is(err, ErrUnknownServer) {
		t.Fatalf("after Remove: %v", err)
	}
	if _, ok := p.Server("x"); ok || len(p.Names()) != 0 {
		t.Fatal("Remove left the definition")
	}
}

func TestUpsertChangedClosesOldSession(t *testing.T) {
	t.Parallel()
	h := startHTTP(t, registry.TransportHTTP, false)
	p := New(testLog(t))
	defer p.Close()
	def := httpDef("s", h)
	def.ProtocolVersion = "2025-11-25"
	p.Upsert(def)
	if _, _, err := p.Call(context.Background(), "s", "echo", nil, CallOptions{}); err != nil {
		t.Fatal(err)
	}
	p.Upsert(def) // unchanged: keeps the session
	if _, _, err := p.Call(context.Background(), "s", "echo", nil, CallOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := h.sessions(); n != 1 {
		t.Fatalf("unchanged Upsert: %d handshakes, want 1", n)
	}
	def.Headers = map[string]string{"X-Extra": "1"}
	p.Upsert(def)
	if _, _, err := p.Call(context.Background(), "s", "echo", nil, CallOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := h.sessions(); n != 2 {
		t.Fatalf("changed Upsert: %d handshakes, want 2", n)
	}
	if got, _ := p.Server("s"); got.Headers["X-Extra"] != "1" {
		t.Fatal("Server does not return the new definition")
	}
}

func TestProtocolPinSkipsDiscover(t *testing.T) {
	t.Parallel()
	h := startHTTP(t, registry.TransportHTTP, true) // ignores server/discover
	def := httpDef("pinned", h)
	def.ProtocolVersion = "2025-11-25"
	p := New(testLog(t))
	defer p.Close()
	p.Upsert(def)
	if _, _, err := p.Call(context.Background(), "pinned", "echo", nil, CallOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := h.count("server/discover"); n != 0 {
		t.Fatalf("pinned session sent %d server/discover", n)
	}
	if n := h.count("initialize"); n != 1 {
		t.Fatalf("pinned session sent %d initialize, want 1", n)
	}

	// Negotiated against the same server: the probe is ignored, costs the
	// discover timeout once, then the handshake is used.
	p2 := New(testLog(t), WithDiscoverTimeout(100*time.Millisecond))
	defer p2.Close()
	p2.Upsert(httpDef("negotiated", h))
	for range 3 {
		if _, _, err := p2.Call(context.Background(), "negotiated", "echo", nil, CallOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if n := h.count("server/discover"); n != 1 {
		t.Fatalf("negotiated session sent %d server/discover, want 1", n)
	}
}

func TestCancelSendsNotificationOverHTTP(t *testing.T) {
	t.Parallel()
	h := startHTTP(t, registry.TransportHTTP, false)
	def := httpDef("s", h)
	def.ProtocolVersion = "2025-11-25"
	p := New(testLog(t))
	defer p.Close()
	p.Upsert(def)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, _, err := p.Call(ctx, "s", "sleep", json.RawMessage(`{"ms":5000}`), CallOptions{})
	var te *TransportError
	if !errors.Is(err, context.DeadlineExceeded) || errors.As(err, &te) || ClassOf(err) != ClassTimeout {
		t.Fatalf("cancelled call: %T %v", err, err)
	}
	checkFor(t, 3*time.Second, "notifications/cancelled", func() bool { return h.count("notifications/cancelled") == 1 })
	if hl := p.Health("s"); hl.State != StateConnected {
		t.Fatalf("a timeout broke the session: %+v", hl)
	}
}

func TestConcurrencyCap(t *testing.T) {
	t.Parallel()
	def := stdioDef("x")
	def.MaxConcurrency = 2
	p := New(testLog(t))
	defer p.Close()
	p.Upsert(def)
	// Two slow calls hold both slots; a third with a short deadline waits
	// and gives up without reaching the server.
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := p.Call(context.Background(), "x", "sleep", json.RawMessage(`{"ms":500}`), CallOptions{}); err != nil {
				t.Error(err)
			}
		}()
	}
	checkFor(t, 5*time.Second, "both slots taken", func() bool { return len(p.serverFor(t, "x").sem) == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, _, err := p.Call(ctx, "x", "echo", nil, CallOptions{})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "free call slot") {
		t.Fatalf("third call: %v", err)
	}
	wg.Wait()
}

func TestListToolsPaginates(t *testing.T) {
	t.Parallel()
	h := startHTTP(t, registry.TransportHTTP, false)
	p := New(testLog(t))
	defer p.Close()
	p.Upsert(httpDef("s", h))
	tools, err := p.ListTools(context.Background(), "s")
	if err != nil {
		t.Fatal(err)
	}
	if len(tools) != 8 {
		t.Fatalf("got %d tools, want 8", len(tools))
	}
}

func TestCloseIdempotent(t *testing.T) {
	t.Parallel()
	p := New(testLog(t))
	p.Upsert(stdioDef("x"))
	raw, _, err := p.Call(context.Background(), "x", "pid", nil, CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	fmt.Sscan(text(t, raw), &pid)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if syscall.Kill(pid, 0) != syscall.ESRCH {
		t.Fatal("child still running after Close")
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.Call(context.Background(), "x", "pid", nil, CallOptions{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

func (p *Pool) serverFor(t *testing.T, name string) *server {
	t.Helper()
	s, err := p.server(name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The CallToolResult reaches the caller as the server sent it, fields
// mcp-go does not know included, on both protocol eras: the pool never
// decodes and re-encodes it.
func TestResultUnknownFieldsKept(t *testing.T) {
	t.Parallel()
	inner := mcpserver.NewStreamableHTTPServer(newMCPServer())
	// A real MCP server whose tools/call answers carry a field from a
	// newer spec: it is inserted into the JSON the server wrote.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		if !bytes.Contains(body, []byte(`"tools/call"`)) {
			inner.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		inner.ServeHTTP(rec, r)
		out := bytes.Replace(rec.Body.Bytes(), []byte(`"content":`), []byte(`"x_future":{"kept":true,"n":[1,2]},"content":`), 1)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Del("Content-Length")
		w.WriteHeader(rec.Code)
		_, _ = w.Write(out)
	}))
	defer srv.Close()
	for _, version := range []string{"2025-11-25", "2026-07-28"} {
		p := New(testLog(t))
		defer p.Close()
		def := registry.Server{Name: "s", Transport: registry.TransportHTTP, URL: srv.URL + "/mcp", ProtocolVersion: version}
		p.Upsert(def)
		raw, isErr, err := p.Call(context.Background(), "s", "echo", json.RawMessage(`{"a":1}`), CallOptions{})
		if err != nil || isErr {
			t.Fatalf("%s: %v %v", version, isErr, err)
		}
		if got := p.serverFor(t, "s").sess.conn.client.ProtocolVersion(); got != version {
			t.Fatalf("session speaks %s, want %s", got, version)
		}
		if !bytes.Contains(raw, []byte(`"x_future":{"kept":true,"n":[1,2]}`)) || text(t, raw) != `{"a":1}` {
			t.Errorf("%s: unknown field not passed through: %s", version, raw)
		}
	}
}

func TestStats(t *testing.T) {
	t.Parallel()
	h := startHTTP(t, registry.TransportHTTP, false)
	p := New(testLog(t))
	defer p.Close()
	p.Upsert(httpDef("s", h))
	if st := p.Stats()["s"]; st.State != StateIdle || st.Sessions != 0 || st.InFlight != 0 {
		t.Fatalf("before any call: %+v", st)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := p.Call(context.Background(), "s", "sleep", json.RawMessage(`{"ms":300}`), CallOptions{})
		done <- err
	}()
	checkFor(t, 5*time.Second, "one call in flight on a session", func() bool {
		st := p.Stats()["s"]
		return st.InFlight == 1 && st.Sessions == 1 && st.State == StateConnected
	})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := p.Stats()["s"]; st.InFlight != 0 || st.Sessions != 1 {
		t.Fatalf("after the call: %+v", st)
	}
}

// HTTP answers that are not MCP get their class from mcp-go's types (401,
// a 4xx to the handshake) or, for other statuses, the status mcp-go quotes.
func TestDialHTTPStatusClasses(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		status int
		class  Class
	}{
		{http.StatusUnauthorized, ClassAuth},
		{http.StatusNotFound, ClassNotMCP},
		{http.StatusServiceUnavailable, ClassHTTP5xx},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "no", c.status)
		}))
		def := registry.Server{Name: "s", Transport: registry.TransportHTTP, URL: srv.URL + "/mcp", ProtocolVersion: "2025-11-25"}
		_, err := Dial(context.Background(), def, DialOptions{Log: testLog(t)})
		if got := ClassOf(err); got != c.class {
			t.Errorf("HTTP %d: class %s, want %s (%v)", c.status, got, c.class, err)
		}
		srv.Close()
	}
}
