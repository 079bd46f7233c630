package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/toolbus-dev/toolbus/internal/natstest"
	"github.com/toolbus-dev/toolbus/subjects"
)

// newCatalogView is a Catalog fed by hand (no watch), to apply KV entries
// in a chosen order.
func newCatalogView(t *testing.T, js jetstream.JetStream) *Catalog {
	t.Helper()
	kv, err := js.KeyValue(context.Background(), subjects.BucketCatalog)
	if err != nil {
		t.Fatal(err)
	}
	return &Catalog{
		catKV: kv, tools: map[string]map[string]*Entry{}, status: map[string]subjects.SyncStatus{},
		synced: map[string]bool{}, pending: map[string]uint64{}, changed: make(chan struct{}), done: make(chan struct{}),
	}
}

// The catalog and status buckets are watched apart, so a sync's status can
// arrive before the tools written ahead of it. Until they are in, a tool
// the view lacks is not called unknown (the cause of a flaky
// TestSyncDiffEventsAndCatalog, seen from the other side).
func TestStatusBeforeToolsIsNotUnknownTool(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	ctx := context.Background()
	catKV, err := ns.JS.KeyValue(ctx, subjects.BucketCatalog)
	if err != nil {
		t.Fatal(err)
	}
	srvKV, err := ns.JS.KeyValue(ctx, subjects.BucketServers)
	if err != nil {
		t.Fatal(err)
	}
	// What a sync writes: the tools, then the status.
	var tools []jetstream.KeyValueEntry
	for _, name := range []string{"alpha", "beta"} {
		key, _ := subjects.CatalogKey("demo", name)
		b, _ := json.Marshal(subjects.CatalogEntry{Server: "demo", Tool: name,
			InputSchema: json.RawMessage(`{"type":"object","properties":{"text":{"type":"string"}}}`)})
		rev, err := catKV.Put(ctx, key, b)
		if err != nil {
			t.Fatal(err)
		}
		e, err := catKV.GetRevision(ctx, key, rev)
		if err != nil {
			t.Fatal(err)
		}
		tools = append(tools, e)
	}
	skey, _ := subjects.SyncStatusKey("demo")
	b, _ := json.Marshal(subjects.SyncStatus{Server: "demo", OK: true, At: time.Now(), LastOK: time.Now(), Tools: 2})
	if _, err := srvKV.Put(ctx, skey, b); err != nil {
		t.Fatal(err)
	}
	status, err := srvKV.Get(ctx, skey)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(tools, func(a, b jetstream.KeyValueEntry) int { return int(a.Revision()) - int(b.Revision()) })

	c := newCatalogView(t, ns.JS)
	c.applyStatus(ctx, status) // the status first
	if c.Synced("demo") {
		t.Fatal("synced before its tools arrived")
	}
	if _, err := c.Check("demo", "nope", nil); !errors.Is(err, ErrCatalogUnavailable) || !strings.Contains(err.Error(), "still arriving") {
		t.Errorf("missing tool while the sync's tools arrive: %v", err)
	}
	c.applyTool(tools[0])
	if _, err := c.Check("demo", "beta", json.RawMessage(`{"text":"x"}`)); tools[0].Key() == "demo.alpha" && !errors.Is(err, ErrCatalogUnavailable) {
		t.Errorf("beta before it arrived: %v", err)
	}
	c.applyTool(tools[1])
	if !c.Synced("demo") {
		t.Fatal("not synced once its tools are in")
	}
	if _, err := c.Check("demo", "nope", nil); !errors.Is(err, ErrUnknownTool) {
		t.Errorf("missing tool after the sync is in view: %v", err)
	}
	if _, err := c.Check("demo", "beta", json.RawMessage(`{"text":"x"}`)); err != nil {
		t.Errorf("beta: %v", err)
	}
}
