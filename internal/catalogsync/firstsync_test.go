package catalogsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/toolbus-dev/toolbus/internal/catalog"
	"github.com/toolbus-dev/toolbus/internal/mcppool"
	"github.com/toolbus-dev/toolbus/internal/natstest"
	"github.com/toolbus-dev/toolbus/internal/registry"
	"github.com/toolbus-dev/toolbus/internal/testutil"
	"github.com/toolbus-dev/toolbus/subjects"
)

// gate answers HTTP 503 until opened: a server that is down at its first
// sync and comes up later.
type gate struct{ open atomic.Bool }

func (g *gate) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.open.Load() {
			http.Error(w, "warming up", http.StatusServiceUnavailable)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// fastRetry makes first-sync retries quick, so tests wait on events, not
// minutes.
var fastRetry = Config{NoListen: true, RetryInitial: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond}

// resyncMsgs is how many requests CATALOG_RESYNC holds (a work queue:
// acked requests are gone).
func resyncMsgs(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	st, err := js.Stream(ctx(t), subjects.StreamResync)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// Until a registered server's first sync is read, the catalog refuses its
// calls with catalog_unavailable, saying why; it never lets a call through
// unchecked.
func TestCatalogNeverFailsOpen(t *testing.T) {
	t.Parallel()
	h := newHarness(t, registry.WithoutResyncOnPut())
	cat := h.catalog()
	g := &gate{}
	ms := newMCPServer(t, g.wrap, tool("alpha", "a"))
	h.put(httpServer("late", ms.URL))

	testutil.CheckFor(t, 20*time.Second, func() error {
		if !cat.Known("late") {
			return errors.New("registration not in the catalog yet")
		}
		return nil
	})
	_, refusal := cat.Admit("late", "anything", nil)
	if !errors.Is(refusal, catalog.ErrCatalogUnavailable) {
		t.Fatalf("before any sync: refusal %v", refusal)
	}
	for _, want := range []string{`"late" is registered`, "queued or running", "toolbus sync late"} {
		if !strings.Contains(refusal.Error(), want) {
			t.Errorf("message %q lacks %q", refusal, want)
		}
	}
	if _, err := cat.Check("late", "anything", nil); !errors.Is(err, catalog.ErrCatalogUnavailable) {
		t.Errorf("Check = %v, want catalog.ErrCatalogUnavailable", err)
	}

	// The first sync fails: the refusal carries its error.
	s := h.syncer(Config{NoListen: true})
	if _, err := s.SyncServer(ctx(t), "late"); err == nil {
		t.Fatal("sync of a server answering 503 succeeded")
	}
	natstest.CheckFor(t, 20*time.Second, func() error {
		_, refusal = cat.Admit("late", "alpha", nil)
		if refusal == nil || !strings.Contains(refusal.Error(), "failed (") {
			return fmt.Errorf("refusal = %v", refusal)
		}
		return nil
	})
	if !errors.Is(refusal, catalog.ErrCatalogUnavailable) || !strings.Contains(refusal.Error(), "503") || !strings.Contains(refusal.Error(), "retried with backoff") {
		t.Errorf("after a failed sync: %v", refusal)
	}
	wctx, cancel := context.WithTimeout(ctx(t), 20*time.Second)
	defer cancel()
	if waiting := cat.WaitFirstSync(wctx, []string{"late"}); waiting != nil {
		t.Errorf("WaitFirstSync after a failed first sync: still waiting for %v", waiting)
	}

	// Once synced, the catalog decides: the tool is checked, a missing one
	// is unknown.
	g.open.Store(true)
	if _, err := s.SyncServer(ctx(t), "late"); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 20*time.Second, func() error {
		if !cat.Synced("late") {
			return errors.New("the sync is not in view")
		}
		return nil
	})
	if _, refusal := cat.Admit("late", "alpha", json.RawMessage(`{"text":"hi"}`)); refusal != nil {
		t.Errorf("alpha: refusal %v", refusal)
	}
	if _, refusal := cat.Admit("late", "nope", nil); !errors.Is(refusal, catalog.ErrUnknownTool) {
		t.Errorf("missing tool: %v", refusal)
	}

	// A server the catalog has never heard of: Check says unknown_server;
	// the worker asks Admit only about servers it has registered, so
	// there it is one whose status has not arrived yet: retryable.
	if _, err := cat.Check("ghost", "x", nil); !errors.Is(err, catalog.ErrUnknownServer) {
		t.Errorf("Check ghost = %v", err)
	}
	if _, refusal := cat.Admit("ghost", "x", nil); !errors.Is(refusal, catalog.ErrCatalogUnavailable) {
		t.Errorf("Admit ghost = %v", refusal)
	}
}

// A first sync that fails is retried with backoff, through the queue and
// without anyone asking, until it succeeds; then nothing more is queued.
func TestFailedFirstSyncRetriedUntilItSucceeds(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var mu sync.Mutex
	var errs []error
	failed := make(chan struct{}, 64)
	s := h.syncer(fastRetry, withSyncHook(func(server string, d Diff, err error) {
		mu.Lock()
		defer mu.Unlock()
		errs = append(errs, err)
		if err != nil {
			failed <- struct{}{}
		}
	}))
	runSyncer(t, s)
	g := &gate{}
	ms := newMCPServer(t, g.wrap, tool("alpha", "a"))
	h.put(httpServer("late", ms.URL)) // queues the first sync
	for range 3 {                     // the first sync and two retries fail
		select {
		case <-failed:
		case <-time.After(10 * time.Second):
			t.Fatal("no failed sync within 10s")
		}
	}
	g.open.Store(true)
	testutil.CheckFor(t, 10*time.Second, func() error {
		st, err := h.reg.Status(ctx(t), "late")
		if err != nil || !st.OK {
			return fmt.Errorf("status %+v %v", st, err)
		}
		return nil
	})
	// Synced: no retry left in the queue, so none will run.
	h.waitResyncsDone(10 * time.Second)
	mu.Lock()
	if last := errs[len(errs)-1]; last != nil {
		t.Errorf("last sync failed: %v", last)
	}
	before := len(errs)
	mu.Unlock()
	if es, _ := h.reg.Tools(ctx(t), "late"); names(es) != "alpha" {
		t.Errorf("catalog: %s", names(es))
	}
	// A request with another body (a schedule's) is a plain request.
	subj, _ := subjects.CatalogResync("late")
	if _, err := h.ns.JS.Publish(ctx(t), subj, []byte(`{"schedule":"nightly","kind":"resync"}`)); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(errs) == before {
			return errors.New("the scheduled request did not sync")
		}
		return nil
	})
}

// Retries never multiply: each failed sync queues one, a retry overtaken by
// a later attempt is dropped, and a server that synced once is not retried
// (the scheduled resync covers it). Two failures, then two replicas: one
// sync runs.
func TestFirstSyncRetriesDoNotMultiply(t *testing.T) {
	t.Parallel()
	h := newHarness(t, registry.WithoutResyncOnPut())
	g := &gate{}
	ms := newMCPServer(t, g.wrap, tool("alpha", "a"))
	h.put(httpServer("late", ms.URL))
	direct := h.syncer(fastRetry)
	for range 2 {
		if _, err := direct.SyncServer(ctx(t), "late"); err == nil {
			t.Fatal("sync of a closed gate succeeded")
		}
	}
	if n := resyncMsgs(t, h.ns.JS); n != 2 {
		t.Fatalf("%d requests queued after two failed first syncs, want 2 retries", n)
	}
	// The second failure overtakes the first one's retry.
	stream, err := h.ns.JS.Stream(ctx(t), subjects.StreamResync)
	if err != nil {
		t.Fatal(err)
	}
	for seq, wantDue := range map[uint64]bool{1: false, 2: true} {
		m, err := stream.GetMsg(ctx(t), seq)
		if err != nil {
			t.Fatal(err)
		}
		var rt retryRequest
		if err := json.Unmarshal(m.Data, &rt); err != nil || rt.Attempt != 1 || rt.Delay <= 0 {
			t.Fatalf("retry %d: %s (%v)", seq, m.Data, err)
		}
		if due, err := direct.retryDue(ctx(t), "late", rt); err != nil || due != wantDue {
			t.Errorf("retry %d due = %v (%v), want %v", seq, due, err, wantDue)
		}
	}
	g.open.Store(true)
	var syncs atomic.Int32
	for range 2 {
		runSyncer(t, h.syncer(fastRetry, withSyncHook(func(string, Diff, error) { syncs.Add(1) })))
	}
	testutil.CheckFor(t, 10*time.Second, func() error {
		if n := resyncMsgs(t, h.ns.JS); n != 0 {
			return fmt.Errorf("%d requests queued", n)
		}
		return nil
	})
	if n := syncs.Load(); n != 1 {
		t.Errorf("two queued retries ran %d syncs, want 1 (the older one is overtaken)", n)
	}
	if st, _ := h.reg.Status(ctx(t), "late"); !st.OK {
		t.Errorf("status = %+v", st)
	}

	// Synced once: a later failure queues nothing, nor does a success.
	g.open.Store(false)
	if _, err := direct.SyncServer(ctx(t), "late"); err == nil {
		t.Fatal("sync of a closed gate succeeded")
	}
	g.open.Store(true)
	if _, err := direct.SyncServer(ctx(t), "late"); err != nil {
		t.Fatal(err)
	}
	if n := resyncMsgs(t, h.ns.JS); n != 0 {
		t.Errorf("%d requests queued by syncs of a server that synced before", n)
	}
}

// spawns reads the pids stdiosrv appended to its spawn log.
func spawns(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

// poolFollows upserts every registered server into pool, secrets resolved,
// as toolbus serve does, and returns once the current ones are in.
func poolFollows(t *testing.T, reg *registry.Registry, pool *mcppool.Pool) {
	t.Helper()
	wctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = reg.Watch(wctx, func(name string, srv *registry.Server) {
			if srv == nil {
				pool.Remove(name)
				return
			}
			if res, err := reg.Resolve(*srv); err == nil {
				pool.Upsert(res)
			}
		}, func() { close(ready) })
	}()
	t.Cleanup(func() { cancel(); <-done })
	<-ready
}

// With the worker's pool, a sync lists over the pool's session: after a
// sync and a call, the stdio server has run once.
func TestSyncOverPoolOneProcess(t *testing.T) {
	t.Parallel()
	h := newHarness(t, registry.WithoutResyncOnPut())
	spawnLog := filepath.Join(t.TempDir(), "spawns")
	h.put(registry.Server{Name: "mem", Transport: registry.TransportStdio, Command: stdioServer(t),
		Env: map[string]string{"STDIOSRV_SPAWN_LOG": spawnLog}})
	pool := mcppool.New(testutil.Logger(t))
	t.Cleanup(func() { pool.Close() })
	poolFollows(t, h.reg, pool)

	s := h.syncer(Config{NoListen: true}, WithPool(pool))
	d, err := s.SyncServer(ctx(t), "mem")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(d.Added, "pid") {
		t.Fatalf("first sync added %v", d.Added)
	}
	raw, _, err := pool.Call(ctx(t), "mem", "pid", nil, mcppool.CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := spawns(t, spawnLog); len(got) != 1 || got[0] != testutil.Text(t, raw) {
		t.Fatalf("processes started %v, the call ran in %s: want one, the same", got, testutil.Text(t, raw))
	}
	// A later sync reuses the session too.
	if _, err := s.SyncServer(ctx(t), "mem"); err != nil {
		t.Fatal(err)
	}
	if got := spawns(t, spawnLog); len(got) != 1 {
		t.Fatalf("processes started %v after a second sync, want one", got)
	}
}

// Under Run with listening on, a stdio server that declares
// tools.listChanged gets no listener session of its own (it would be a
// second process): its list changes are heard on the pool's session and
// synced.
func TestRunOverPoolHearsListChangedWithoutSecondProcess(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	spawnLog := filepath.Join(t.TempDir(), "spawns")
	pool := mcppool.New(testutil.Logger(t))
	t.Cleanup(func() { pool.Close() })
	poolFollows(t, h.reg, pool)

	var dialMu sync.Mutex
	dialled := map[string]int{}
	dl := mcpPoolDialer(testutil.Logger(t))
	counting := func(c context.Context, srv registry.Server, onNotify func(mcp.JSONRPCNotification), listen bool) (*client.Client, error) {
		dialMu.Lock()
		dialled[srv.Name]++
		dialMu.Unlock()
		return dl(c, srv, onNotify, listen)
	}
	// Before the syncer: cleanups run in reverse, and the server's Close
	// waits for the listener's stream.
	other := newMCPServer(t, nil, tool("o", "o"))
	listening := make(chan string, 4)
	s := h.syncer(Config{Debounce: 50 * time.Millisecond}, WithPool(pool), withDialer(counting))
	s.onListening = func(name string) { listening <- name }
	runSyncer(t, s)

	mem := registry.Server{Name: "mem", Transport: registry.TransportStdio, Command: stdioServer(t),
		Env: map[string]string{"STDIOSRV_SPAWN_LOG": spawnLog, "STDIOSRV_LIST_CHANGED": "1"}}
	h.put(mem)
	// An HTTP server registered after it does get a listener: once that is
	// up, the registry watch has passed mem.
	h.put(httpServer("other", other.URL))
	select {
	case name := <-listening:
		if name != "other" {
			t.Fatalf("listener opened for %s", name)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no listener for the HTTP server within 10s")
	}
	testutil.CheckFor(t, 10*time.Second, func() error {
		if es, _ := h.reg.Tools(ctx(t), "mem"); !slices.ContainsFunc(es, func(e subjects.CatalogEntry) bool { return e.Tool == "addtool" }) {
			return fmt.Errorf("mem's tools: %s", names(es))
		}
		return nil
	})
	// The call adds a tool; the server says so on the pool's session.
	raw, _, err := pool.Call(ctx(t), "mem", "addtool", json.RawMessage(`{"name":"fresh"}`), mcppool.CallOptions{})
	if err != nil || testutil.Text(t, raw) != "added" {
		t.Fatalf("addtool: %s %v", raw, err)
	}
	testutil.CheckFor(t, 10*time.Second, func() error {
		if es, _ := h.reg.Tools(ctx(t), "mem"); !slices.ContainsFunc(es, func(e subjects.CatalogEntry) bool { return e.Tool == "fresh" }) {
			return fmt.Errorf("fresh not synced: %s", names(es))
		}
		return nil
	})
	if got := spawns(t, spawnLog); len(got) != 1 {
		t.Errorf("processes started %v, want one", got)
	}
	dialMu.Lock()
	defer dialMu.Unlock()
	if dialled["mem"] != 0 {
		t.Errorf("the syncer dialled mem %d times itself", dialled["mem"])
	}
}
