package frontdoor_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/toolbus-dev/toolbus/internal/broker"
	"github.com/toolbus-dev/toolbus/internal/catalog"
	"github.com/toolbus-dev/toolbus/internal/catalogsync"
	"github.com/toolbus-dev/toolbus/internal/demo"
	"github.com/toolbus-dev/toolbus/internal/frontdoor"
	"github.com/toolbus-dev/toolbus/internal/mcppool"
	"github.com/toolbus-dev/toolbus/internal/natstest"
	"github.com/toolbus-dev/toolbus/internal/registry"
	"github.com/toolbus-dev/toolbus/internal/streams"
	"github.com/toolbus-dev/toolbus/internal/worker"
	"github.com/toolbus-dev/toolbus/subjects"
)

func testLog(t testing.TB) zerolog.Logger {
	if testing.Verbose() {
		return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
	}
	return zerolog.Nop()
}

// bus is a real bus: an in-process NATS server, a worker, and the demo
// MCP server over streamable HTTP registered as "demo" and synced.
type bus struct {
	ns   *natstest.Server
	reg  *registry.Registry
	sync *catalogsync.Syncer
	pool *mcppool.Pool
}

func startBus(t *testing.T) *bus {
	t.Helper()
	ctx := context.Background()
	ns := natstest.Start(t)
	url, stop, err := demo.Serve(ctx, demo.TransportHTTP, "127.0.0.1:0", demo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	reg, err := registry.New(ctx, ns.JS, registry.WithoutResyncOnPut())
	if err != nil {
		t.Fatal(err)
	}
	b := &bus{ns: ns, reg: reg, pool: mcppool.New(testLog(t))}
	t.Cleanup(func() { b.pool.Close() })
	b.sync = catalogsync.New(ns.JS, reg, catalogsync.Config{NoListen: true})
	b.addServer(t, registry.Server{Name: "demo", Transport: registry.TransportHTTP, URL: url, ProtocolVersion: "2025-11-25"})
	cat, err := catalog.New(ctx, ns.JS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cat.Stop)
	nc := ns.Conn(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := worker.Config{}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := broker.Provision(pctx, js, streams.Options{}, cfg.ConsumerConfig()); err != nil {
		t.Fatal(err)
	}
	w := worker.New(nc, js, b.pool, cfg, testLog(t), worker.WithCatalog(cat))
	wctx, wcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	t.Cleanup(func() { wcancel(); <-done })
	return b
}

// addServer registers a server, syncs it and hands it to the worker.
func (b *bus) addServer(t *testing.T, srv registry.Server) {
	t.Helper()
	ctx := context.Background()
	if err := b.reg.Put(ctx, srv); err != nil {
		t.Fatal(err)
	}
	if _, err := b.sync.SyncServer(ctx, srv.Name); err != nil {
		t.Fatal(err)
	}
	b.pool.Upsert(srv)
}

// gateway starts a front door on the bus, served over HTTP on loopback,
// and returns its endpoint URL.
func (b *bus) gateway(t *testing.T, cfg frontdoor.Config) (*frontdoor.Gateway, string) {
	t.Helper()
	g, err := frontdoor.New(context.Background(), b.ns.Conn(t), cfg, frontdoor.WithLogger(testLog(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	hs := httptest.NewServer(g)
	t.Cleanup(hs.Close)
	return g, hs.URL + g.Path()
}

// replies receives every result of agent as it is stored.
func (b *bus) replies(t *testing.T, agent string) <-chan *subjects.Result {
	t.Helper()
	ch := make(chan *subjects.Result, 64)
	sub, err := b.ns.NC.Subscribe(subjects.ToolReplies(agent), func(m *nats.Msg) {
		var r subjects.Result
		if json.Unmarshal(m.Data, &r) == nil {
			ch <- &r
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := b.ns.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	return ch
}

// waitResult waits for a result of server/tool matching ok.
func waitResult(t *testing.T, ch <-chan *subjects.Result, tool string, ok func(*subjects.Result) bool) *subjects.Result {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case r := <-ch:
			if r.Tool == tool && ok(r) {
				return r
			}
		case <-deadline:
			t.Fatalf("no matching result of %s within 60s", tool)
			return nil
		}
	}
}

// startDemo runs another demo server over streamable HTTP.
func startDemo(t *testing.T) string {
	t.Helper()
	url, stop, err := demo.Serve(context.Background(), demo.TransportHTTP, "127.0.0.1:0", demo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return url
}
