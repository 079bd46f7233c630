// Package bench measures the call path: calls through the bus (client →
// JetStream → worker → MCP server → result) against direct mcp-go client
// calls to the same demo server over streamable HTTP, in one run.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	gosync "sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/toolbus-dev/toolbus/client"
	"github.com/toolbus-dev/toolbus/internal/broker"
	"github.com/toolbus-dev/toolbus/internal/catalog"
	"github.com/toolbus-dev/toolbus/internal/catalogsync"
	"github.com/toolbus-dev/toolbus/internal/demo"
	"github.com/toolbus-dev/toolbus/internal/mcppool"
	"github.com/toolbus-dev/toolbus/internal/registry"
	"github.com/toolbus-dev/toolbus/internal/streams"
	"github.com/toolbus-dev/toolbus/internal/worker"
)

// Options sizes a run.
type Options struct {
	// Concurrency levels to measure (default 1 and 64).
	Concurrency []int
	// Duration per measurement (default 3s), after a short warm-up.
	Duration time.Duration
	// ProtocolVersion for both paths (default 2025-11-25).
	ProtocolVersion string
	// Workers is the worker's concurrency (default 128).
	Workers int
	// Only measures one path: "direct" or "bus" (default both).
	Only string
	// Rounds the two paths take turns (default 3); rows are the median round.
	Rounds int
	// SyncAlways fsyncs every JetStream write (see broker.EmbeddedConfig).
	SyncAlways bool
	// Tracer traces the bus path's worker and pool (default: off).
	Tracer trace.TracerProvider
}

// Row is one measurement.
type Row struct {
	Path        string
	Concurrency int
	Calls       int
	PerSec      float64
	P50, P99    time.Duration
	Errors      int64
	Rounds      int // measurements this row is the median of
}

// Run starts an embedded NATS on a temp dir, the demo MCP server over
// streamable HTTP on loopback and a worker, then measures both paths.
func Run(ctx context.Context, o Options) ([]Row, error) {
	if len(o.Concurrency) == 0 {
		o.Concurrency = []int{1, 64}
	}
	if o.Duration <= 0 {
		o.Duration = 3 * time.Second
	}
	if o.ProtocolVersion == "" {
		o.ProtocolVersion = mcp.ProtocolVersion20251125
	}
	if o.Workers <= 0 {
		o.Workers = 128
	}
	if o.Rounds <= 0 {
		o.Rounds = 3
	}
	log := zerolog.Nop()
	dir, err := os.MkdirTemp("", "toolbus-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	emb, err := broker.StartEmbedded(broker.EmbeddedConfig{Port: -1, DataDir: filepath.Join(dir, "data"), SyncAlways: o.SyncAlways}, log)
	if err != nil {
		return nil, err
	}
	defer emb.Shutdown()

	url, stopDemo, err := demo.Serve(ctx, demo.TransportHTTP, "127.0.0.1:0", demo.Options{})
	if err != nil {
		return nil, err
	}
	defer stopDemo()
	srv := registry.Server{Name: "demo", Transport: registry.TransportHTTP, URL: url, ProtocolVersion: o.ProtocolVersion, MaxConcurrency: 512}

	// The worker uses an in-process connection, as `toolbus serve` does.
	wnc, err := emb.Connect("bench-worker")
	if err != nil {
		return nil, err
	}
	defer wnc.Close()
	wjs, _ := jetstream.New(wnc)
	wcfg := worker.Config{Concurrency: o.Workers, MaxAckPending: 4096}
	if err := broker.Provision(ctx, wjs, streams.Options{}, wcfg.ConsumerConfig()); err != nil {
		return nil, err
	}
	pool := mcppool.New(log, mcppool.WithTracerProvider(o.Tracer))
	defer pool.Close()
	pool.Upsert(srv)
	// The worker checks calls against the catalog, as under toolbus serve.
	reg, err := registry.New(ctx, wjs, registry.WithoutResyncOnPut())
	if err != nil {
		return nil, err
	}
	if err := reg.Put(ctx, srv); err != nil {
		return nil, err
	}
	if _, err := catalogsync.New(wjs, reg, catalogsync.Config{NoListen: true}).SyncServer(ctx, srv.Name); err != nil {
		return nil, fmt.Errorf("sync the demo server: %w", err)
	}
	cat, err := catalog.New(ctx, wjs)
	if err != nil {
		return nil, err
	}
	defer cat.Stop()
	w := worker.New(wnc, wjs, pool, wcfg, log, worker.WithCatalog(cat), worker.WithTracerProvider(o.Tracer))
	wctx, stopWorker := context.WithCancel(ctx)
	wdone := make(chan error, 1)
	go func() { wdone <- w.Run(wctx) }()
	defer func() { stopWorker(); <-wdone }()

	// The agent is another process in real life: it talks TCP on loopback.
	cnc, err := nats.Connect(emb.ClientURL())
	if err != nil {
		return nil, err
	}
	defer cnc.Close()
	cl, err := client.New(cnc)
	if err != nil {
		return nil, err
	}
	defer cl.Close()

	dc, err := mcppool.Dial(ctx, srv, mcppool.DialOptions{Log: log, HTTPClient: mcppool.NewHTTPClient(256)})
	if err != nil {
		return nil, fmt.Errorf("direct client: %w", err)
	}
	defer dc.Close()

	args := json.RawMessage(`{"message":"hello"}`)
	bus := func(ctx context.Context) error {
		res, err := cl.Call(ctx, "demo", "echo", args, client.WithTimeout(30*time.Second))
		if err != nil {
			return err
		}
		return res.Err()
	}
	directCall := func(ctx context.Context) error {
		req := mcp.CallToolRequest{}
		req.Params.Name = "echo"
		req.Params.Arguments = args
		_, err := dc.CallTool(ctx, req)
		return err
	}

	// The two paths take turns, Rounds times, and each row is the median
	// round: this machine's noise moves both alike instead of one.
	paths := []struct {
		name string
		f    func(context.Context) error
	}{{"direct mcp-go (streamable HTTP)", directCall}, {"toolbus (JetStream + worker)", bus}}
	var rows []Row
	for _, c := range o.Concurrency {
		rounds := make([][]Row, len(paths))
		for range o.Rounds {
			for i, p := range paths {
				if o.Only != "" && !strings.HasPrefix(p.name, o.Only) && !(o.Only == "bus" && strings.HasPrefix(p.name, "toolbus")) {
					continue
				}
				measure(ctx, p.f, c, o.Duration/5) // warm-up
				row := measure(ctx, p.f, c, o.Duration)
				row.Path = p.name
				rounds[i] = append(rounds[i], row)
			}
		}
		for _, rs := range rounds {
			if len(rs) > 0 {
				rows = append(rows, median(rs))
			}
		}
	}
	return rows, nil
}

// median returns the round with the median throughput, its calls and
// errors summed over all rounds.
func median(rs []Row) Row {
	sorted := append([]Row(nil), rs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].PerSec < sorted[j].PerSec })
	m := sorted[len(sorted)/2]
	m.Calls, m.Errors, m.Rounds = 0, 0, len(rs)
	for _, r := range rs {
		m.Calls += r.Calls
		m.Errors += r.Errors
	}
	return m
}

func measure(ctx context.Context, f func(context.Context) error, conc int, d time.Duration) Row {
	var (
		wg     gosync.WaitGroup
		mu     gosync.Mutex
		lat    []time.Duration
		errs   atomic.Int64
		stopAt = time.Now().Add(d)
	)
	start := time.Now()
	for i := 0; i < conc; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 4096)
			for time.Now().Before(stopAt) && ctx.Err() == nil {
				t0 := time.Now()
				if err := f(ctx); err != nil {
					errs.Add(1)
					continue
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	row := Row{Concurrency: conc, Calls: len(lat), PerSec: float64(len(lat)) / elapsed.Seconds(), Errors: errs.Load()}
	if len(lat) > 0 {
		row.P50 = lat[len(lat)/2]
		row.P99 = lat[len(lat)*99/100]
	}
	return row
}

// Print writes the table, with the bus relative to direct at each level.
func Print(w io.Writer, rows []Row) {
	fmt.Fprintf(w, "%-34s %5s %8s %10s %10s %10s %7s %s\n", "path", "conc", "calls", "calls/s", "p50", "p99", "errors", "vs direct")
	var base Row
	for _, r := range rows {
		rel := ""
		if r.Path[:6] == "direct" {
			base = r
		} else if base.PerSec > 0 {
			rel = fmt.Sprintf("%.2fx throughput, p50 +%v", r.PerSec/base.PerSec, (r.P50 - base.P50).Round(time.Microsecond))
		}
		fmt.Fprintf(w, "%-34s %5d %8d %10.0f %10v %10v %7d %s\n", r.Path, r.Concurrency, r.Calls, r.PerSec,
			r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Errors, rel)
	}
}
