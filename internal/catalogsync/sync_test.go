package catalogsync

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/toolbus-dev/toolbus/internal/catalog"
	"github.com/toolbus-dev/toolbus/internal/registry"
	"github.com/toolbus-dev/toolbus/internal/testutil"
	"github.com/toolbus-dev/toolbus/subjects"
)

func TestRegistrySecrets(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	srv := registry.Server{
		Name: "gh", Transport: registry.TransportHTTP, URL: "http://127.0.0.1:1/mcp",
		AuthToken: "s3cret-token",
		Headers:   map[string]string{"X-Api-Key": "key-123", "X-Client": "toolbus", "X-Session-Token": "env:SESSION"},
	}
	h.put(srv)

	// Nothing secret is stored in the clear.
	kv, _ := h.ns.JS.KeyValue(ctx(t), subjects.BucketServers)
	e, err := kv.Get(ctx(t), "gh")
	if err != nil {
		t.Fatal(err)
	}
	for _, plain := range []string{"s3cret-token", "key-123"} {
		if strings.Contains(string(e.Value()), plain) {
			t.Errorf("stored entry holds %q in the clear: %s", plain, e.Value())
		}
	}
	stored, err := h.reg.Get(ctx(t), "gh")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stored.AuthToken, "enc:") || !strings.HasPrefix(stored.Headers["X-Api-Key"], "enc:") {
		t.Errorf("secrets not sealed: %+v", stored)
	}
	if stored.Headers["X-Client"] != "toolbus" || stored.Headers["X-Session-Token"] != "env:SESSION" {
		t.Errorf("non-secrets or references changed: %+v", stored.Headers)
	}

	// Putting the same definition again changes nothing (no new revision,
	// so workers keep their sessions).
	h.put(srv)
	if e2, _ := kv.Get(ctx(t), "gh"); e2.Revision() != e.Revision() {
		t.Errorf("re-put of the same server wrote revision %d (was %d)", e2.Revision(), e.Revision())
	}
	changed := srv
	changed.AuthToken = "rotated"
	h.put(changed)
	if e2, _ := kv.Get(ctx(t), "gh"); e2.Revision() == e.Revision() {
		t.Error("a rotated token was not stored")
	}
	h.put(srv)

	// Resolve opens them; an unset env reference is an error naming it.
	if _, err := h.reg.Resolve(stored); err == nil || !strings.Contains(err.Error(), "SESSION") {
		t.Errorf("Resolve with SESSION unset: %v", err)
	}
	h.env.Set("SESSION", "sess-1")
	res, err := h.reg.Resolve(stored)
	if err != nil {
		t.Fatal(err)
	}
	if res.AuthToken != "s3cret-token" || res.Headers["X-Api-Key"] != "key-123" || res.Headers["X-Session-Token"] != "sess-1" {
		t.Errorf("resolved = %+v", res)
	}

	// Redact hides values, keeps references.
	red := registry.Redact(stored)
	if red.AuthToken != "<encrypted>" || red.Headers["X-Api-Key"] != "<encrypted>" || red.Headers["X-Session-Token"] != "env:SESSION" {
		t.Errorf("redacted = %+v", red)
	}
	if r2 := registry.Redact(srv); r2.AuthToken != "<redacted>" {
		t.Errorf("redacting a plain token: %q", r2.AuthToken)
	}

	// Without a key, a plain secret is refused with advice; references pass.
	noKey, err := registry.New(ctx(t), h.ns.JS, registry.WithGetenv(func(string) string { return "" }), registry.WithoutResyncOnPut())
	if err != nil {
		t.Fatal(err)
	}
	err = noKey.Put(ctx(t), registry.Server{Name: "plain", Transport: registry.TransportStdio, Command: "x", Env: map[string]string{"GITHUB_TOKEN": "ghp_x"}})
	if !errors.Is(err, registry.ErrSecretKey) || !strings.Contains(err.Error(), registry.SecretKeyEnv) || !strings.Contains(err.Error(), "env:") {
		t.Errorf("plain secret without key: %v", err)
	}
	if err := noKey.Put(ctx(t), registry.Server{Name: "ref", Transport: registry.TransportStdio, Command: "x", Env: map[string]string{"GITHUB_TOKEN": "env:GITHUB_TOKEN", "LANG": "C"}}); err != nil {
		t.Errorf("env reference without key: %v", err)
	}
	// Ciphertext under another key does not open.
	other, _ := registry.New(ctx(t), h.ns.JS, registry.WithSecretKey([]byte("ffffffffffffffffffffffffffffffff")))
	if _, err := other.Resolve(stored); !errors.Is(err, registry.ErrSecretKey) {
		t.Errorf("wrong key: %v", err)
	}
	// Validation names the field.
	if err := h.reg.Put(ctx(t), registry.Server{Name: "bad", Transport: registry.TransportHTTP}); err == nil || !strings.Contains(err.Error(), "url") {
		t.Errorf("invalid server: %v", err)
	}
	if !registry.IsSensitiveName("Authorization") || !registry.IsSensitiveName("OPENAI_API_KEY") || registry.IsSensitiveName("LANG") || registry.IsSensitiveName("X-Client") {
		t.Error("registry.IsSensitiveName")
	}
}

func TestSyncDiffEventsAndCatalog(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	next := h.events()
	ms := newMCPServer(t, nil,
		tool("alpha", "first"),
		mcp.NewTool("wipe", mcp.WithDescription("destroys"), mcp.WithDestructiveHintAnnotation(true), mcp.WithIdempotentHintAnnotation(false)),
		mcp.NewTool("get", mcp.WithReadOnlyHintAnnotation(true)),
	)
	for i := range 10 { // more than one page (pagination limit 7)
		ms.AddTool(tool(fmt.Sprintf("t%02d", i), "filler"), echo)
	}
	h.put(httpServer("demo", ms.URL))
	s := h.syncer(Config{})
	cat := h.catalog()

	d, err := s.SyncServer(ctx(t), "demo")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Added) != 13 || len(d.Updated)+len(d.Removed) != 0 {
		t.Fatalf("first diff = %+v", d)
	}
	ev := next()
	if ev.Server != "demo" || len(ev.Added) != 13 || ev.Reason != "sync" {
		t.Errorf("event = %+v", ev)
	}
	st, _ := h.reg.Status(ctx(t), "demo")
	if !st.OK || st.Tools != 13 || st.ServerID == "" {
		t.Errorf("status = %+v", st)
	}
	entries, _ := h.reg.Tools(ctx(t), "demo")
	var alpha subjects.CatalogEntry
	for _, e := range entries {
		if e.Tool == "alpha" {
			alpha = e
		}
	}
	if alpha.ServerID != st.ServerID || !slices.Equal(alpha.Tags, []string{"mcp:demo"}) || alpha.Hash == "" || alpha.ApprovedHash != alpha.Hash || alpha.SyncedAt.IsZero() {
		t.Errorf("alpha = %+v", alpha)
	}

	// The worker cache follows, compiles, validates.
	testutil.CheckFor(t, 20*time.Second, func() error {
		if !cat.Synced("demo") || len(cat.Tools("demo")) != 13 {
			return fmt.Errorf("catalog has %d tools", len(cat.Tools("demo")))
		}
		return nil
	})
	if _, err := cat.Check("demo", "alpha", json.RawMessage(`{"text":"hi"}`)); err != nil {
		t.Errorf("valid args: %v", err)
	}
	_, err = cat.Check("demo", "alpha", json.RawMessage(`{"text":5}`))
	if !errors.Is(err, catalog.ErrInvalidArguments) || !strings.Contains(err.Error(), `argument "text"`) {
		t.Errorf("invalid args: %v", err)
	}
	if _, err := cat.Check("demo", "nope", nil); !errors.Is(err, catalog.ErrUnknownTool) {
		t.Errorf("unknown tool: %v", err)
	}
	if _, err := cat.Check("ghost", "x", nil); !errors.Is(err, catalog.ErrUnknownServer) {
		t.Errorf("unknown server: %v", err)
	}
	if e, ok := cat.Lookup("demo", "wipe"); !ok || e.SafeToRetry() {
		t.Errorf("wipe: ok=%v safe=%v", ok, e != nil && e.SafeToRetry())
	}
	if e, ok := cat.Lookup("demo", "get"); !ok || !e.SafeToRetry() {
		t.Error("get should be safe to retry (read-only)")
	}

	// A second sync with nothing new writes nothing and publishes nothing.
	d, err = s.SyncServer(ctx(t), "demo")
	if err != nil || !d.Empty() || d.Unchanged != 13 {
		t.Fatalf("idle sync: %+v %v", d, err)
	}

	// Tools change: alpha's schema changes, t00 goes, beta comes.
	ms.DeleteTools("t00")
	ms.AddTool(mcp.NewTool("alpha", mcp.WithDescription("first"), mcp.WithNumber("n", mcp.Required())), echo)
	ms.AddTool(tool("beta", "new"), echo)
	d, err = s.SyncServer(ctx(t), "demo")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(d.Added, []string{"beta"}) || !slices.Equal(d.Updated, []string{"alpha"}) || !slices.Equal(d.Removed, []string{"t00"}) {
		t.Fatalf("diff = %+v", d)
	}
	ev = next()
	if !slices.Equal(ev.Added, []string{"beta"}) || !slices.Equal(ev.Updated, []string{"alpha"}) || !slices.Equal(ev.Removed, []string{"t00"}) {
		t.Errorf("event = %+v", ev)
	}
	testutil.CheckFor(t, 20*time.Second, func() error {
		e, ok := cat.Lookup("demo", "alpha")
		if !ok || !e.Changed {
			return errors.New("alpha not updated in cache")
		}
		if _, ok := cat.Lookup("demo", "t00"); ok {
			return errors.New("t00 still in cache")
		}
		return nil
	})
	// Not held by default; the new schema is the one enforced.
	if _, err := cat.Check("demo", "alpha", json.RawMessage(`{"n":"x"}`)); !errors.Is(err, catalog.ErrInvalidArguments) {
		t.Errorf("new schema not enforced: %v", err)
	}

	// With HoldChanged, a changed tool is held until approved.
	held := h.syncer(Config{HoldChanged: true})
	d, err = held.SyncServer(ctx(t), "demo")
	if err != nil || !slices.Equal(d.Held, []string{"alpha"}) {
		t.Fatalf("hold sync: %+v %v", d, err)
	}
	testutil.CheckFor(t, 20*time.Second, func() error {
		if _, ok := cat.Lookup("demo", "alpha"); ok {
			return errors.New("held alpha still callable")
		}
		return nil
	})
	if _, err := cat.Check("demo", "alpha", json.RawMessage(`{"n":1}`)); !errors.Is(err, catalog.ErrToolHeld) || !strings.Contains(err.Error(), "toolbus tools approve demo alpha") {
		t.Errorf("held tool: %v", err)
	}
	if err := h.reg.Approve(ctx(t), "demo", "alpha"); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 20*time.Second, func() error {
		if e, ok := cat.Lookup("demo", "alpha"); !ok || e.Changed {
			return errors.New("approved alpha not released")
		}
		return nil
	})
	// Approved stays approved on the next held sync.
	if d, err := held.SyncServer(ctx(t), "demo"); err != nil || len(d.Held) != 0 {
		t.Errorf("after approve: %+v %v", d, err)
	}
}

func TestBrokenSchemas(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ms := newMCPServer(t, nil,
		rawTool("no_properties", `{"type":"object"}`),
		rawTool("no_type", `{"properties":{"q":{"type":"string"}},"required":["q"]}`),
		rawTool("refs", `{"type":"object","$defs":{"Addr":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}},"properties":{"home":{"$ref":"#/$defs/Addr"}},"required":["home"]}`),
		rawTool("nested_anyof", `{"type":"object","properties":{"v":{"anyOf":[{"anyOf":[{"type":"string"},{"type":"integer"}]},{"type":"string"}]}},"required":["v"]}`),
		rawTool("dangling", `{"type":"object","properties":{"p":{"$ref":"#/$defs/Gone"}},"required":["p"]}`),
		rawTool("untyped_prop", `{"type":"object","properties":{"x":{"description":"anything"}},"required":["x"]}`),
	)
	h.put(httpServer("broken", ms.URL))
	if _, err := h.syncer(Config{}).SyncServer(ctx(t), "broken"); err != nil {
		t.Fatal(err)
	}
	es, _ := h.reg.Tools(ctx(t), "broken")
	got := map[string]subjects.CatalogEntry{}
	for _, e := range es {
		got[e.Tool] = e
	}
	want := map[string]struct {
		health subjects.ToolHealth
		fix    string
	}{
		"no_properties": {subjects.HealthStrict, "added empty properties"},
		"no_type":       {subjects.HealthStrict, `added "type": "object"`},
		"refs":          {subjects.HealthStrict, `inlined $ref "#/$defs/Addr"`},
		"nested_anyof":  {subjects.HealthStrict, "flattened a nested anyOf"},
		"dangling":      {subjects.HealthInvalid, "set additionalProperties false"},
		"untyped_prop":  {subjects.HealthNonStrictOnly, "set additionalProperties false"},
	}
	for name, w := range want {
		e, ok := got[name]
		if !ok {
			t.Errorf("%s missing from catalog (have %s)", name, names(es))
			continue
		}
		if e.Health != w.health {
			t.Errorf("%s: health %s, want %s; reasons %q", name, e.Health, w.health, e.Reasons)
		}
		if !strings.Contains(strings.Join(e.Fixes, "\n"), w.fix) {
			t.Errorf("%s: fixes %q lack %q", name, e.Fixes, w.fix)
		}
		if len(e.OriginalSchema) == 0 {
			t.Errorf("%s: original schema not kept", name)
		}
	}
	if !strings.Contains(strings.Join(got["dangling"].Reasons, "\n"), "does not resolve") {
		t.Errorf("dangling reasons: %q", got["dangling"].Reasons)
	}
	// Calls are checked against the server's own schema where it compiles.
	cat := h.catalog()
	testutil.CheckFor(t, 20*time.Second, func() error {
		if len(cat.Tools("broken")) != 6 {
			return errors.New("catalog not loaded")
		}
		return nil
	})
	if _, err := cat.Check("broken", "refs", json.RawMessage(`{"home":{}}`)); err == nil || !strings.Contains(err.Error(), "city") {
		t.Errorf("refs: %v", err)
	}
	if _, err := cat.Check("broken", "nested_anyof", json.RawMessage(`{"v":true}`)); !errors.Is(err, catalog.ErrInvalidArguments) {
		t.Errorf("nested_anyof: %v", err)
	}
	if _, err := cat.Check("broken", "no_properties", json.RawMessage(`{"any":"thing"}`)); err != nil {
		t.Errorf("no_properties is open for the server: %v", err)
	}
}

func TestSyncFailuresKeepCatalog(t *testing.T) {
	t.Parallel()
	h := newHarness(t)

	notFound := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(notFound.Close)
	html := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`<html>hello</html>`))
	}))
	t.Cleanup(html.Close)
	hang := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(hang); slow.Close() })
	secured := newMCPServer(t, bearer("good"), tool("private", "needs a token"))

	s := h.syncer(Config{})
	slowSrv := httpServer("slow", slow.URL+"/mcp")
	slowSrv.ConnectTimeout = subjects.Duration(300 * time.Millisecond)
	cases := []struct {
		srv   registry.Server
		class subjects.SyncErrorClass
		hint  string
	}{
		{httpServer("down", closedPort(t)), subjects.SyncConnectionRefused, "start the server"},
		{httpServer("missing", notFound.URL+"/mcp"), subjects.SyncNotFound, "not an MCP endpoint"},
		{httpServer("html", html.URL+"/mcp"), subjects.SyncInvalidJSONRPC, "not as an MCP server"},
		{slowSrv, subjects.SyncTimeout, "connect_timeout"},
		{httpServer("notoken", secured.URL), subjects.SyncAuthFailed, "credentials"},
		{registry.Server{Name: "gone", Transport: registry.TransportStdio, Command: "/nonexistent/mcp-server"}, subjects.SyncProcessExited, "by hand"},
		{registry.Server{Name: "quits", Transport: registry.TransportStdio, Command: "sh", Args: []string{"-c", "echo boom >&2; exit 3"}}, subjects.SyncProcessExited, "by hand"},
	}
	for _, c := range cases {
		t.Run(c.srv.Name, func(t *testing.T) {
			t.Parallel()
			h.put(c.srv) // registration succeeds although the server is unusable
			_, err := s.SyncServer(ctx(t), c.srv.Name)
			var se *SyncError
			if !errors.As(err, &se) {
				t.Fatalf("want *SyncError, got %v", err)
			}
			if se.Class != c.class || !strings.Contains(se.Message, c.hint) {
				t.Errorf("class %s (want %s), message %q (want %q)", se.Class, c.class, se.Message, c.hint)
			}
			st, _ := h.reg.Status(ctx(t), c.srv.Name)
			if st.OK || st.ErrorClass != c.class || st.Message == "" {
				t.Errorf("status = %+v", st)
			}
		})
	}
}

func TestFailedOrEmptyListingNeverWipes(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	// A server that lists no tools to a caller with the wrong token (some
	// do, instead of answering 401).
	full := server.NewMCPServer("full", "1", server.WithToolCapabilities(true))
	full.AddTool(tool("a", "a"), echo)
	full.AddTool(tool("b", "b"), echo)
	empty := server.NewMCPServer("empty", "1", server.WithToolCapabilities(true))
	fullH, emptyH := server.NewStreamableHTTPServer(full), server.NewStreamableHTTPServer(empty)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "Bearer good" {
			fullH.ServeHTTP(w, r)
			return
		}
		emptyH.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)

	srv := httpServer("lenient", hs.URL+"/mcp")
	srv.AuthToken = "env:LENIENT_TOKEN"
	h.put(srv)
	h.env.Set("LENIENT_TOKEN", "good")
	s := h.syncer(Config{})
	if d, err := s.SyncServer(ctx(t), "lenient"); err != nil || len(d.Added) != 2 {
		t.Fatalf("first sync: %+v %v", d, err)
	}
	h.env.Set("LENIENT_TOKEN", "rotated-wrong")
	_, err := s.SyncServer(ctx(t), "lenient")
	var se *SyncError
	if !errors.As(err, &se) || se.Class != subjects.SyncAuthFailed {
		t.Fatalf("empty list behind auth: %v", err)
	}
	if es, _ := h.reg.Tools(ctx(t), "lenient"); len(es) != 2 {
		t.Errorf("catalog wiped: %s", names(es))
	}

	// Unreachable: kept too.
	h.env.Set("LENIENT_TOKEN", "good")
	hs.Close()
	_, err = s.SyncServer(ctx(t), "lenient")
	if !errors.As(err, &se) || se.Class != subjects.SyncConnectionRefused {
		t.Fatalf("closed server: %v", err)
	}
	if es, _ := h.reg.Tools(ctx(t), "lenient"); len(es) != 2 {
		t.Errorf("catalog wiped: %s", names(es))
	}
	st, _ := h.reg.Status(ctx(t), "lenient")
	if st.OK || st.Tools != 2 || st.LastOK.IsZero() {
		t.Errorf("status = %+v", st)
	}
}

func TestBearerTokenServer(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ms := newMCPServer(t, bearer("tok-1"), tool("private", "p"))
	srv := httpServer("secured", ms.URL)
	srv.AuthToken = "tok-1" // sealed with the key, opened to dial
	h.put(srv)
	if d, err := h.syncer(Config{}).SyncServer(ctx(t), "secured"); err != nil || !slices.Equal(d.Added, []string{"private"}) {
		t.Fatalf("%+v %v", d, err)
	}
}

func TestCascadeDelete(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ms := newMCPServer(t, nil, tool("one", "1"), tool("two", "2"))
	keep := newMCPServer(t, nil, tool("other", "o"))
	h.put(httpServer("victim", ms.URL))
	h.put(httpServer("keeper", keep.URL))
	s := h.syncer(Config{})
	if _, err := s.SyncAll(ctx(t)); err != nil {
		t.Fatal(err)
	}
	cat := h.catalog()

	// A worker's registry watch sees servers first, then the removal.
	var mu sync.Mutex
	seen := map[string]bool{}
	wctx := ctx(t)
	go func() {
		_ = h.reg.Watch(wctx, func(name string, srv *registry.Server) {
			mu.Lock()
			defer mu.Unlock()
			seen[name] = srv != nil
		}, nil)
	}()
	testutil.CheckFor(t, 20*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if !seen["victim"] || !seen["keeper"] {
			return fmt.Errorf("watch saw %v", seen)
		}
		return nil
	})
	testutil.CheckFor(t, 20*time.Second, func() error {
		if !cat.Known("victim") {
			return errors.New("victim not in catalog")
		}
		return nil
	})

	next := h.events()
	if err := h.reg.Delete(ctx(t), "victim"); err != nil {
		t.Fatal(err)
	}
	ev := next()
	if ev.Server != "victim" || ev.Reason != "server_removed" || !slices.Equal(ev.Removed, []string{"one", "two"}) {
		t.Errorf("event = %+v", ev)
	}
	if es, _ := h.reg.Tools(ctx(t), "victim"); len(es) != 0 {
		t.Errorf("tools left: %s", names(es))
	}
	if es, _ := h.reg.Tools(ctx(t), ""); names(es) != "other" {
		t.Errorf("other server's tools: %s", names(es))
	}
	if _, err := h.reg.Get(ctx(t), "victim"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("get after delete: %v", err)
	}
	testutil.CheckFor(t, 20*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if seen["victim"] {
			return errors.New("watch did not see the removal")
		}
		if cat.Known("victim") {
			return errors.New("catalog still knows victim")
		}
		return nil
	})
	if _, err := cat.Check("victim", "one", nil); !errors.Is(err, catalog.ErrUnknownServer) {
		t.Errorf("call to removed server: %v", err)
	}
	if err := h.reg.Delete(ctx(t), "victim"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
	// A sync of a removed server is refused, not resurrected.
	if _, err := s.SyncServer(ctx(t), "victim"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("sync removed: %v", err)
	}
}

func TestRunSharedQueue(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var mu sync.Mutex
	count := map[string]int{}
	hook := func(server string, d Diff, err error) {
		mu.Lock()
		defer mu.Unlock()
		count[server]++
	}
	// Two replicas share the consumer.
	for range 2 {
		s := h.syncer(Config{NoListen: true}, withSyncHook(hook))
		runSyncer(t, s)
	}
	for i := range 4 {
		ms := newMCPServer(t, nil, tool(fmt.Sprintf("tool%d", i), "x"))
		h.put(httpServer(fmt.Sprintf("s%d", i), ms.URL)) // registration queues a sync
	}
	testutil.CheckFor(t, 10*time.Second, func() error {
		for i := range 4 {
			st, err := h.reg.Status(ctx(t), fmt.Sprintf("s%d", i))
			if err != nil || !st.OK {
				return fmt.Errorf("s%d: %+v %v", i, st, err)
			}
		}
		return nil
	})
	mu.Lock()
	before := count["s0"]
	mu.Unlock()
	if err := registry.RequestResync(ctx(t), h.ns.JS, ""); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if count["s0"] <= before {
			return errors.New("resync of all did not reach s0")
		}
		return nil
	})
	// An unknown server's request is terminated, not retried forever.
	if err := registry.RequestResync(ctx(t), h.ns.JS, "nobody"); err != nil {
		t.Fatal(err)
	}
	h.waitResyncsDone(10 * time.Second)
}

func TestListChangedStormSyncsOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ms := newMCPServer(t, nil, tool("seed", "s"))
	var mu sync.Mutex
	syncs := 0
	listening := make(chan struct{}, 4)
	// The storm makes one sync only if it reaches the syncer with no gap
	// of Debounce and within 10 Debounce (the cap). A second leaves a
	// loaded machine room: under load, the 200 tools took 1.3-1.6 s from
	// the first AddTool to the catalog.
	s := h.syncer(Config{Debounce: time.Second}, withSyncHook(func(server string, d Diff, err error) {
		mu.Lock()
		defer mu.Unlock()
		syncs++
	}))
	s.onListening = func(string) { listening <- struct{}{} }
	runSyncer(t, s)
	h.put(httpServer("stormy", ms.URL))
	testutil.CheckFor(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if syncs != 1 {
			return fmt.Errorf("%d syncs after registration", syncs)
		}
		return nil
	})
	select {
	case <-listening:
	case <-time.After(10 * time.Second):
		t.Fatal("listener did not connect")
	}

	// 200 tools added one by one: 200 notifications/tools/list_changed.
	for i := range 200 {
		ms.AddTool(tool(fmt.Sprintf("storm%03d", i), "x"), echo)
	}
	h.waitTools("stormy", 201, 30*time.Second)
	// Quiet: nothing pending in the debouncer or the queue.
	cons, _ := h.ns.JS.Consumer(ctx(t), subjects.StreamResync, subjects.ConsumerSync)
	testutil.CheckFor(t, 20*time.Second, func() error {
		s.debMu.Lock()
		n := len(s.debounce)
		s.debMu.Unlock()
		ci, err := cons.Info(ctx(t))
		if err != nil {
			return err
		}
		if n != 0 || ci.NumPending != 0 || ci.NumAckPending != 0 {
			return fmt.Errorf("debouncing %d, pending %d/%d", n, ci.NumPending, ci.NumAckPending)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if syncs != 2 {
		t.Errorf("200 notifications caused %d syncs, want 1", syncs-1)
	}
}

func TestSSEServer(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	s := server.NewMCPServer("sse", "1", server.WithToolCapabilities(true))
	s.AddTool(tool("over_sse", "x"), echo)
	hs := httptest.NewUnstartedServer(nil)
	base := "http://" + hs.Listener.Addr().String()
	sse := server.NewSSEServer(s, server.WithBaseURL(base))
	hs.Config.Handler = sse
	hs.Start()
	t.Cleanup(hs.Close)
	t.Cleanup(func() { _ = sse.Shutdown(ctx(t)) })
	h.put(registry.Server{Name: "legacy-sse", Transport: registry.TransportSSE, URL: base + "/sse"})
	d, err := h.syncer(Config{}).SyncServer(ctx(t), "legacy-sse")
	if err != nil || !slices.Equal(d.Added, []string{"over_sse"}) {
		t.Fatalf("%+v %v", d, err)
	}
}

// A server on the 2025-11-25 protocol over streamable HTTP sends
// tools/list_changed on the standing GET stream; the listener opens it and
// the change is synced without waiting for the periodic resync.
func TestListChangedOverLegacyStreamableHTTP(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ms := newMCPServer(t, nil, tool("first", "s"))
	listening := make(chan struct{}, 4)
	s := h.syncer(Config{Debounce: 100 * time.Millisecond})
	s.onListening = func(string) { listening <- struct{}{} }
	runSyncer(t, s)
	srv := httpServer("legacy", ms.URL)
	srv.ProtocolVersion = "2025-11-25"
	h.put(srv)
	select {
	case <-listening:
	case <-time.After(15 * time.Second):
		t.Fatal("listener did not connect")
	}
	h.waitTools("legacy", 1, 10*time.Second)
	ms.AddTool(tool("second", "x"), echo)
	h.waitTools("legacy", 2, 10*time.Second)
}

// A legacy streamable HTTP server that forgets the listener's session (a
// restart behind the same URL) keeps the old standing GET stream open, so
// only the listener's periodic request notices; it then reconnects and
// queues a sync, which finds the restarted server's tools.
func TestLegacyListenerNoticesForgottenSession(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	// Stateful, so that a session id the server did not issue is refused
	// (404), as a restarted server refuses its predecessor's.
	stateful := func(tools ...mcp.Tool) http.Handler {
		s := server.NewMCPServer("test", "1.0", server.WithToolCapabilities(true))
		for _, tl := range tools {
			s.AddTool(tl, echo)
		}
		return server.NewStreamableHTTPServer(s, server.WithStateful(true))
	}
	var current atomic.Value // http.Handler
	current.Store(stateful(tool("first", "s")))
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		current.Load().(http.Handler).ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)

	listening := make(chan struct{}, 4)
	s := h.syncer(Config{Debounce: 50 * time.Millisecond})
	s.onListening = func(string) { listening <- struct{}{} }
	s.pingEvery = 50 * time.Millisecond
	runSyncer(t, s)
	srv := httpServer("legacy", front.URL+"/mcp")
	srv.ProtocolVersion = "2025-11-25"
	h.put(srv)
	select {
	case <-listening:
	case <-time.After(15 * time.Second):
		t.Fatal("listener did not connect")
	}
	h.waitTools("legacy", 1, 10*time.Second)

	current.Store(stateful(tool("first", "s"), tool("second", "x"))) // "restarted": it knows no session
	select {
	case <-listening: // connected again
	case <-time.After(15 * time.Second):
		t.Fatal("the listener did not notice the forgotten session")
	}
	h.waitTools("legacy", 2, 10*time.Second)
}
