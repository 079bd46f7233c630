package catalogsync

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/toolbus-dev/toolbus/internal/mcppool"
	"github.com/toolbus-dev/toolbus/internal/registry"
	"github.com/toolbus-dev/toolbus/internal/testutil"
	"github.com/toolbus-dev/toolbus/subjects"
)

// callText calls a tool and returns its first text content.
func callText(t *testing.T, c *client.Client, tool string) string {
	t.Helper()
	req := mcp.CallToolRequest{}
	req.Params.Name = tool
	res, err := c.CallTool(ctx(t), req)
	if err != nil {
		t.Fatalf("call %s: %v", tool, err)
	}
	return testutil.Text(t, res)
}

// dialResolved resolves a stored server and dials it as a worker does.
func dialResolved(t *testing.T, h *harness, name string) *client.Client {
	t.Helper()
	stored, err := h.reg.Get(ctx(t), name)
	if err != nil {
		t.Fatal(err)
	}
	res, err := h.reg.Resolve(stored)
	if err != nil {
		t.Fatal(err)
	}
	c, err := mcppool.Dial(ctx(t), res, mcppool.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestSecretsEndToEndStdio registers a stdio server with secrets in its
// args and env: they are stored sealed, shown redacted, and the child
// still gets the real values.
func TestSecretsEndToEndStdio(t *testing.T) {
	t.Parallel()
	h := newHarness(t, registry.WithoutResyncOnPut())
	h.env.Set("REF_TOKEN", "ref-secret-value")
	args := []string{"--api-key=k-arg-123", "--token", "t-arg-456", "postgresql://u:pw-pos-789@h/db?sslmode=disable", "--verbose"}
	env := map[string]string{
		"DATABASE_URL": "postgres://app:pw-env-321@db:5432/app",
		"GITHUB_TOKEN": "ghp_child_654",
		"REF_TOKEN":    "env:REF_TOKEN",
		"LANG":         "C",
	}
	h.put(registry.Server{
		Name: "child", Transport: registry.TransportStdio, Command: stdioServer(t),
		Args: args, Env: env, ConnectTimeout: subjects.Duration(10 * time.Second),
	})
	secrets := []string{"k-arg-123", "t-arg-456", "pw-pos-789", "pw-env-321", "ghp_child_654"}

	kv, _ := h.ns.JS.KeyValue(ctx(t), subjects.BucketServers)
	e, err := kv.Get(ctx(t), "child")
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := h.reg.Get(ctx(t), "child")
	printed, _ := json.Marshal(registry.Redact(stored)) // servers show, list --json
	for _, s := range secrets {
		if strings.Contains(string(e.Value()), s) {
			t.Errorf("stored entry holds %q in the clear: %s", s, e.Value())
		}
		if strings.Contains(string(printed), s) {
			t.Errorf("printed entry shows %q: %s", s, printed)
		}
	}
	for _, want := range []string{
		`"--api-key=\u003cencrypted\u003e"`, `"--token","\u003cencrypted\u003e"`,
		`"postgresql://u:\u003cencrypted\u003e@h/db?sslmode=disable"`,
		`"DATABASE_URL":"postgres://app:\u003cencrypted\u003e@db:5432/app"`, `"REF_TOKEN":"env:REF_TOKEN"`, `"LANG":"C"`,
	} {
		if !strings.Contains(string(printed), want) {
			t.Errorf("printed entry lacks %s: %s", want, printed)
		}
	}
	if !registry.HasCredentials(stored) {
		t.Error("HasCredentials = false")
	}

	// The sync dials it with the secrets opened.
	d, err := h.syncer(Config{NoListen: true}).SyncServer(ctx(t), "child")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(d.Added, "args") || !slices.Contains(d.Added, "environ") {
		t.Fatalf("synced tools %v", d.Added)
	}

	// So does a worker: the child gets the real values.
	c := dialResolved(t, h, "child")
	var gotArgs []string
	if err := json.Unmarshal([]byte(callText(t, c, "args")), &gotArgs); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(gotArgs, args) {
		t.Errorf("the child got args %q, want %q", gotArgs, args)
	}
	var environ []string
	if err := json.Unmarshal([]byte(callText(t, c, "environ")), &environ); err != nil {
		t.Fatal(err)
	}
	for k, v := range env {
		if v == "env:REF_TOKEN" {
			v = "ref-secret-value"
		}
		if !slices.Contains(environ, k+"="+v) {
			t.Errorf("the child's environment lacks %s=%s: %q", k, v, environ)
		}
	}
}

// TestSecretsEndToEndURL registers an HTTP server whose URL carries a
// password and an API key: stored sealed, shown redacted, sent as written,
// and kept out of the sync status when the server quotes them in an error.
func TestSecretsEndToEndURL(t *testing.T) {
	t.Parallel()
	h := newHarness(t, registry.WithoutResyncOnPut())
	ms := newMCPServer(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			user, pw, _ := r.BasicAuth()
			if user != "bob" || pw != "pw-url-456" || r.URL.Query().Get("api_key") != "k/url+123" {
				// A careless server quoting the request in its error.
				http.Error(w, "no such key in "+r.URL.String(), http.StatusInternalServerError)
				return
			}
			next.ServeHTTP(w, r)
		})
	}, tool("alpha", "first"))
	withCreds := strings.Replace(ms.URL, "http://", "http://bob:pw-url-456@", 1)
	srv := httpServer("web", withCreds+"?region=eu&api_key=k%2Furl%2B123")
	h.put(srv)

	stored, _ := h.reg.Get(ctx(t), "web")
	if strings.Contains(stored.URL, "pw-url-456") || strings.Contains(stored.URL, "k%2Furl") {
		t.Errorf("stored url = %q", stored.URL)
	}
	want := strings.Replace(ms.URL, "http://", "http://bob:<encrypted>@", 1) + "?region=eu&api_key=<encrypted>"
	if got := registry.Redact(stored).URL; got != want {
		t.Errorf("redacted url = %q, want %q", got, want)
	}
	s := h.syncer(Config{NoListen: true})
	if _, err := s.SyncServer(ctx(t), "web"); err != nil {
		t.Fatalf("sync with the opened url: %v", err)
	}

	bad := httpServer("web-bad", ms.URL+"?api_key=wrong-key-789")
	h.put(bad)
	_, err := s.SyncServer(ctx(t), "web-bad")
	if err == nil {
		t.Fatal("sync with a wrong key succeeded")
	}
	st, _ := h.reg.Status(ctx(t), "web-bad")
	if strings.Contains(err.Error(), "wrong-key-789") || strings.Contains(st.Message, "wrong-key-789") {
		t.Errorf("the key reached the error or status: %v / %q", err, st.Message)
	}
	if !strings.Contains(st.Message, "<redacted>") {
		t.Errorf("status message %q: want the server's quote with <redacted> in it", st.Message)
	}
}

// TestServerEverythingEnv asks npm's reference server for its environment
// (its get-env tool) while toolbus's own holds the secret key and a token
// meant for something else.
func TestServerEverythingEnv(t *testing.T) {
	npx, err := exec.LookPath("npx")
	if err != nil {
		t.Skip("npx not on PATH; install Node.js to run this test")
	}
	dir, _ := filepath.Abs("../../testdata/node")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@modelcontextprotocol", "server-everything")); err != nil {
		t.Skip("@modelcontextprotocol/server-everything not installed; run `cd testdata/node && npm install` (the Makefile's npm step)")
	}
	t.Setenv(registry.SecretKeyEnv, base64.StdEncoding.EncodeToString(testutil.SecretKey))
	t.Setenv("GITHUB_TOKEN", "ghp_host_only")
	h := newHarness(t, registry.WithoutResyncOnPut())
	h.put(registry.Server{
		Name: "everything", Transport: registry.TransportStdio,
		Command: npx, Args: []string{"--no-install", "mcp-server-everything", "stdio"}, Dir: dir,
		Env:            map[string]string{"GITHUB_TOKEN": "ghp_for_everything"},
		ConnectTimeout: subjects.Duration(30 * time.Second),
	})
	c := dialResolved(t, h, "everything")
	var env map[string]string
	if err := json.Unmarshal([]byte(callText(t, c, "get-env")), &env); err != nil {
		t.Fatal(err)
	}
	if v, ok := env[registry.SecretKeyEnv]; ok {
		t.Errorf("the server sees %s=%q", registry.SecretKeyEnv, v)
	}
	if env["GITHUB_TOKEN"] != "ghp_for_everything" {
		t.Errorf("GITHUB_TOKEN = %q, want the configured one", env["GITHUB_TOKEN"])
	}
	if !strings.HasSuffix(env["PATH"], os.Getenv("PATH")) { // npx puts its own dirs first
		t.Errorf("PATH = %q, want ours at its end", env["PATH"])
	}
	for k := range env {
		if strings.Contains(k, "SECRET") || (strings.Contains(k, "TOKEN") && k != "GITHUB_TOKEN") {
			t.Errorf("the server sees %s", k)
		}
	}
}
