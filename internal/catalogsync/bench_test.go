package catalogsync

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/toolbus-dev/toolbus/internal/catalog"
	"github.com/toolbus-dev/toolbus/internal/natstest"
	"github.com/toolbus-dev/toolbus/internal/registry"
	"github.com/toolbus-dev/toolbus/internal/testutil"
	"github.com/toolbus-dev/toolbus/subjects"
)

const (
	benchServers   = 200
	benchTools     = 50
	benchListeners = 4
)

func benchTool(i int) mcp.Tool {
	return mcp.NewTool(fmt.Sprintf("tool_%02d", i),
		mcp.WithDescription(fmt.Sprintf("benchmark tool %d: looks something up", i)),
		mcp.WithString("query", mcp.Required(), mcp.Description("what to look up")),
		mcp.WithNumber("limit", mcp.Min(1), mcp.Max(100)),
		mcp.WithBoolean("exact"),
		mcp.WithIdempotentHintAnnotation(true),
	)
}

// benchFleet serves n mcp-go servers of benchTools tools each over
// streamable HTTP, spread over a few listeners by path.
func benchFleet(b *testing.B, n int) []string {
	muxes := make([]*http.ServeMux, benchListeners)
	hss := make([]*httptest.Server, benchListeners)
	for i := range muxes {
		muxes[i] = http.NewServeMux()
		hss[i] = httptest.NewServer(muxes[i])
		b.Cleanup(hss[i].Close)
	}
	tools := make([]server.ServerTool, benchTools)
	for i := range tools {
		tools[i] = server.ServerTool{Tool: benchTool(i), Handler: echo}
	}
	urls := make([]string, n)
	for i := range n {
		s := server.NewMCPServer(fmt.Sprintf("bench%d", i), "1", server.WithToolCapabilities(false))
		s.AddTools(tools...)
		path := fmt.Sprintf("/s%03d/mcp", i)
		muxes[i%benchListeners].Handle(path, server.NewStreamableHTTPServer(s, server.WithEndpointPath(path)))
		urls[i] = hss[i%benchListeners].URL + path
	}
	return urls
}

// peakHeap samples the heap until stop is called and returns the peak in
// bytes above the heap in use when it started.
func peakHeap() (stop func() uint64) {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		var m runtime.MemStats
		for {
			select {
			case <-done:
				return
			case <-t.C:
				runtime.ReadMemStats(&m)
				if m.HeapInuse > peak.Load() {
					peak.Store(m.HeapInuse)
				}
			}
		}
	})
	return func() uint64 {
		close(done)
		wg.Wait()
		if p := peak.Load(); p > base {
			return p - base
		}
		return 0
	}
}

// BenchmarkSync200x50 syncs 200 servers of 50 tools each into an empty
// catalog: 10,000 tools listed, normalized, judged and stored per op.
//
//	go test -run '^$' -bench Sync200x50 -benchtime 3x ./sync/
func BenchmarkSync200x50(b *testing.B) {
	ns, s := benchSyncer(b)
	ctx := context.Background()
	catalogStream := "KV_" + subjects.BucketCatalog
	var peak uint64
	var total time.Duration
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		st, err := ns.JS.Stream(ctx, catalogStream)
		if err != nil {
			b.Fatal(err)
		}
		if err := st.Purge(ctx); err != nil {
			b.Fatal(err)
		}
		stop := peakHeap()
		b.StartTimer()
		start := time.Now()
		diffs, err := s.SyncAll(ctx)
		total += time.Since(start)
		b.StopTimer()
		peak = max(peak, stop())
		if err != nil {
			b.Fatal(err)
		}
		added := 0
		for _, d := range diffs {
			added += len(d.Added)
		}
		if added != benchServers*benchTools {
			b.Fatalf("added %d tools, want %d", added, benchServers*benchTools)
		}
		b.StartTimer()
	}
	b.StopTimer()
	per := total / time.Duration(b.N)
	b.ReportMetric(per.Seconds(), "s/sync-all")
	b.ReportMetric(float64(per.Microseconds())/1000/benchServers, "ms/server")
	b.ReportMetric(float64(benchServers*benchTools)/per.Seconds(), "tools/s")
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
}

func benchSyncer(b *testing.B) (*natstest.Server, *Syncer) {
	ns := natstest.Start(b)
	urls := benchFleet(b, benchServers)
	ctx := context.Background()
	reg, err := registry.New(ctx, ns.JS, registry.WithSecretKey(testutil.SecretKey), registry.WithoutResyncOnPut())
	if err != nil {
		b.Fatal(err)
	}
	for i, u := range urls {
		if err := reg.Put(ctx, httpServer(fmt.Sprintf("bench%03d", i), u)); err != nil {
			b.Fatal(err)
		}
	}
	return ns, New(ns.JS, reg, Config{Concurrency: 16})
}

// BenchmarkResync200x50Unchanged is the periodic resync: 200 servers of 50
// tools listed again, nothing changed, nothing written but statuses.
//
//	go test -run '^$' -bench Resync200x50 -benchtime 3x ./sync/
func BenchmarkResync200x50Unchanged(b *testing.B) {
	_, s := benchSyncer(b)
	ctx := context.Background()
	if _, err := s.SyncAll(ctx); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		diffs, err := s.SyncAll(ctx)
		if err != nil {
			b.Fatal(err)
		}
		for _, d := range diffs {
			if !d.Empty() {
				b.Fatalf("diff on an unchanged resync: %+v", d)
			}
		}
	}
	per := time.Since(start) / time.Duration(b.N)
	b.ReportMetric(per.Seconds(), "s/sync-all")
	b.ReportMetric(float64(per.Microseconds())/1000/benchServers, "ms/server")
}

// BenchmarkCatalogLookupValidate is a worker's per-call catalog work:
// Lookup plus Check on a 10,000-tool catalog, from all CPUs.
//
//	go test -run '^$' -bench CatalogLookup ./sync/
func BenchmarkCatalogLookupValidate(b *testing.B) {
	ns := natstest.Start(b)
	ctx := context.Background()
	kv, err := ns.JS.KeyValue(ctx, subjects.BucketCatalog)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	for i := range benchServers {
		srv := fmt.Sprintf("bench%03d", i)
		for j := range benchTools {
			e := buildEntry(srv, "id", benchTool(j), now)
			key, _ := subjects.CatalogKey(srv, e.Tool)
			v, _ := json.Marshal(e)
			if _, err := kv.Put(ctx, key, v); err != nil {
				b.Fatal(err)
			}
		}
	}
	cat, err := catalog.New(ctx, ns.JS)
	if err != nil {
		b.Fatal(err)
	}
	defer cat.Stop()
	if !cat.Known("bench199") {
		b.Fatal("catalog not loaded")
	}
	args := json.RawMessage(`{"query":"weather in Oslo","limit":5,"exact":true}`)
	type key struct{ srv, tool string }
	keys := make([]key, 0, benchServers*benchTools)
	compileStart := time.Now()
	for i := range benchServers {
		for j := range benchTools {
			k := key{fmt.Sprintf("bench%03d", i), fmt.Sprintf("tool_%02d", j)}
			keys = append(keys, k)
			if _, err := cat.Check(k.srv, k.tool, args); err != nil { // compiles once
				b.Fatal(err)
			}
		}
	}
	compile := time.Since(compileStart)

	// run looks every tool up from parallel goroutines, and checks the
	// arguments too when validate is set.
	run := func(b *testing.B, validate bool) {
		var n atomic.Int64
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			i := int(n.Add(1)) * 7919
			for pb.Next() {
				i++
				k := keys[i%len(keys)]
				if _, ok := cat.Lookup(k.srv, k.tool); !ok {
					b.Fatalf("%v not found", k)
				}
				if !validate {
					continue
				}
				if _, err := cat.Check(k.srv, k.tool, args); err != nil {
					b.Fatal(err)
				}
			}
		})
		unit := "lookups/s"
		if validate {
			unit = "calls/s"
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), unit)
	}
	b.Run("lookup", func(b *testing.B) { run(b, false) })
	b.Run("lookup+validate", func(b *testing.B) {
		run(b, true)
		b.ReportMetric(float64(compile.Microseconds())/float64(len(keys)), "µs-compile/tool")
	})
}
