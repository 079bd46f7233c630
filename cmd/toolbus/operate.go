package main

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/toolbus-dev/toolbus/internal/bridge"
	"github.com/toolbus-dev/toolbus/internal/catalog"
	"github.com/toolbus-dev/toolbus/internal/control"
	"github.com/toolbus-dev/toolbus/internal/httpserve"
	"github.com/toolbus-dev/toolbus/internal/mcppool"
	"github.com/toolbus-dev/toolbus/internal/scheduler"
	"github.com/toolbus-dev/toolbus/internal/telemetry"
	"github.com/toolbus-dev/toolbus/internal/worker"
	"github.com/toolbus-dev/toolbus/subjects"
)

// ops is what an operator scrapes from one process: Prometheus metrics,
// /healthz and /readyz, on --metrics ADDR and, in serve, on the bridge's
// listener.
type ops struct {
	metrics *telemetry.Metrics
	health  *telemetry.Health
	mux     *http.ServeMux
	// own: served on --metrics, so kept off the bridge's listener (which
	// may face the internet for webhooks).
	own bool
}

// startOps makes the metrics (labels bounded by the catalog), follows the
// sync statuses, and serves them on rf.metrics when set.
func startOps(ctx context.Context, svc *services, nc *nats.Conn, js jetstream.JetStream, rf *runFlags, cat *catalog.Catalog, pool *mcppool.Pool, log zerolog.Logger) (*ops, error) {
	o := &ops{health: telemetry.NewHealth(nc, js), mux: http.NewServeMux()}
	o.metrics = telemetry.New(telemetry.Config{
		KnownServer: cat.Known,
		KnownTool: func(server, tool string) bool {
			// Held tools are known too: Lookup hides them.
			if _, ok := cat.Lookup(server, tool); ok {
				return true
			}
			return slices.Contains(cat.Tools(server), tool)
		},
		PoolStats: func() []telemetry.PoolServerStats { return poolStats(pool) },
	})
	o.metrics.WatchQueue(js)
	o.health.SetCatalog(cat.Err)
	telemetry.Mount(o.mux, o.metrics, o.health)
	svc.run(ctx, "metrics", func(ctx context.Context) error {
		if err := o.metrics.WatchSync(ctx, js); err != nil && ctx.Err() == nil {
			log.Warn().Err(err).Msg("sync metrics stopped")
		}
		return nil
	})
	if rf.metrics == "" {
		return o, nil
	}
	o.own = true
	ln, err := net.Listen("tcp", rf.metrics)
	if err != nil {
		return nil, fmt.Errorf("--metrics: listen on %s: %w", rf.metrics, err)
	}
	log.Info().Str("addr", ln.Addr().String()).Msg("metrics on /metrics, health on /healthz and /readyz")
	srv := &http.Server{Handler: o.mux, ReadHeaderTimeout: 10 * time.Second}
	svc.run(ctx, "metrics-http", func(ctx context.Context) error {
		return httpserve.Run(ctx, srv, ln, 5*time.Second)
	})
	return o, nil
}

// onFire counts a scheduler publish attempt.
func (o *ops) onFire(f scheduler.Fire) { o.metrics.SchedulerFired(f.Name, f.Duplicate, f.Err) }

// fleet is what the control service reports and steers in this process:
// the worker's in-flight calls and paused servers, the pool's sessions and
// breakers.
type fleet struct {
	w    *worker.Worker
	pool *mcppool.Pool
}

func (f fleet) Status() subjects.WorkerStatus {
	ws := f.w.Stats()
	st := subjects.WorkerStatus{Paused: ws.Paused}
	for _, n := range ws.InFlight {
		st.InFlight += n
	}
	for _, ps := range poolStats(f.pool) {
		st.Servers = append(st.Servers, subjects.WorkerServerStatus{
			Server: ps.Server, Sessions: ps.Sessions, Breaker: ps.Breaker,
			InFlight: ws.InFlight[ps.Server], Paused: slices.Contains(ws.Paused, ps.Server),
		})
	}
	return st
}

func (f fleet) Pause(server string) error {
	if !slices.Contains(f.pool.Names(), server) {
		return fmt.Errorf("%w: %q", control.ErrUnknownServer, server)
	}
	f.w.Pause(server)
	return nil
}

func (f fleet) Resume(server string) error {
	if !slices.Contains(f.pool.Names(), server) {
		return fmt.Errorf("%w: %q", control.ErrUnknownServer, server)
	}
	f.w.Resume(server)
	return nil
}

// poolStats is the pool's view of each server, sorted by name, with the
// breaker named as Prometheus and status show it.
func poolStats(pool *mcppool.Pool) []telemetry.PoolServerStats {
	stats := pool.Stats()
	out := make([]telemetry.PoolServerStats, 0, len(stats))
	for _, name := range slices.Sorted(maps.Keys(stats)) {
		ps := stats[name]
		breaker := "closed"
		if ps.State == mcppool.StateDown {
			breaker = "open"
		}
		out = append(out, telemetry.PoolServerStats{Server: name, Sessions: ps.Sessions, Breaker: breaker, InFlight: ps.InFlight})
	}
	return out
}

// startControl registers this process's worker in the control service
// (`nats micro ls`) until ctx ends.
func startControl(ctx context.Context, svc *services, nc *nats.Conn, f control.Fleet, name string) error {
	if name == "" { // as the worker names itself
		host, _ := os.Hostname()
		name = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	s, err := control.Start(nc, f, control.Config{Name: name, Version: moduleVersion()})
	if err != nil {
		return err
	}
	svc.run(ctx, "control", func(ctx context.Context) error {
		<-ctx.Done()
		return s.Stop()
	})
	return nil
}

// moduleVersion is the SemVer of this build's module, "0.0.0" when unknown.
func moduleVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := strings.TrimPrefix(bi.Main.Version, "v"); v != "" && v != "(devel)" {
			return v
		}
	}
	return "0.0.0"
}

// bridgeOptions hook the bridge's requests into the metrics and, unless
// they have a listener of their own, serve them on the bridge's.
func (o *ops) bridgeOptions() []bridge.Option {
	opts := []bridge.Option{bridge.WithOnRequest(o.metrics.WebhookRequest)}
	if !o.own {
		opts = append(opts, bridge.WithOther(o.mux))
	}
	return opts
}
