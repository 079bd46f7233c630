package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"runtime/debug"
	gosync "sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/toolbus-dev/toolbus/internal/bridge"
	"github.com/toolbus-dev/toolbus/internal/broker"
	"github.com/toolbus-dev/toolbus/internal/catalog"
	"github.com/toolbus-dev/toolbus/internal/catalogsync"
	"github.com/toolbus-dev/toolbus/internal/config"
	"github.com/toolbus-dev/toolbus/internal/mcppool"
	"github.com/toolbus-dev/toolbus/internal/registry"
	"github.com/toolbus-dev/toolbus/internal/scheduler"
	"github.com/toolbus-dev/toolbus/internal/worker"
)

// runFlags are shared by serve and worker.
type runFlags struct {
	configPath  string
	logLevel    string
	concurrency int
	name        string
	metrics     string
	memoryLimit string
	bridge      string // serve --bridge, over the file's bridge.addr
	mcp         string // serve --mcp, over the file's mcp.listen
}

func addRunFlags(fs *pflag.FlagSet) *runFlags {
	r := &runFlags{}
	fs.StringVar(&r.configPath, "config", "", "config file (default ./toolbus.yaml if present, else the built-in demo server)")
	fs.StringVar(&r.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.IntVar(&r.concurrency, "concurrency", 0, "calls run at once by this worker (default: config worker.concurrency, else 64)")
	fs.StringVar(&r.name, "name", "", "worker name in results and logs (default host-pid)")
	fs.StringVar(&r.metrics, "metrics", "", "serve /metrics, /healthz and /readyz on this address (serve: instead of on the bridge's listener)")
	fs.StringVar(&r.memoryLimit, "memory-limit", "", `soft memory limit of the Go runtime when GOMEMLIMIT is unset, e.g. 512MiB, or "off" (default: config worker.memory_limit, else 192MiB)`)
	return r
}

func (r *runFlags) workerConfig(c *config.Config) worker.Config {
	w := c.Worker
	cfg := worker.Config{
		Name:           r.name,
		Concurrency:    w.Concurrency,
		MaxAckPending:  w.MaxAckPending,
		AckWait:        w.AckWait.D(),
		MaxDeliver:     w.MaxDeliver,
		DefaultTimeout: w.DefaultTimeout.D(),
		Grace:          w.Grace.D(),
		MaxResultBytes: w.MaxResultBytes,
		MaxClaimBytes:  w.MaxClaimBytes,
		RetryFor:       w.RetryFor.D(),
		QueueTimeout:   w.QueueTimeout.D(),
	}
	if r.concurrency > 0 {
		cfg.Concurrency = r.concurrency
	}
	return cfg
}

func newServeCmd(a *app) *cobra.Command {
	var rf *runFlags
	var dataDir, host, natsMonitor string
	var port int
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "run everything in one process: embedded NATS (or --nats-url), worker, sync, scheduler, webhook bridge, MCP front door",
		Long: `Run everything in one process: an embedded NATS server with JetStream (or the
NATS of --nats-url, --context or the config's nats.url), a worker, the catalog
sync, the scheduler, the webhook bridge and the MCP front door (at /mcp on the
bridge's listener unless --mcp or mcp.listen names its own). SIGINT/SIGTERM
drains: no new calls, in-flight ones finish within worker.grace; a second
signal exits at once. SIGHUP re-reads the config file: servers, hooks,
schedules and worker.concurrency change live; other changed settings need a
restart.

NATS_URL and NATS_CONTEXT in the environment do not turn the embedded server
off: only a flag or the config file does.`,
		Example: `  toolbus serve                                   # ./toolbus.yaml, else the demo server; data in ./data
  toolbus serve --port 4333 --data /var/lib/toolbus
  toolbus serve --nats-url nats://nats1:4222,nats://nats2:4222 --bridge off
  toolbus serve --metrics 127.0.0.1:9090 --nats-monitor 127.0.0.1:8222
  toolbus serve --mcp 127.0.0.1:8090              # the MCP front door on its own listener`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, cfg, ccfg, err := rf.start(a, cmd)
			if err != nil {
				return err
			}
			if rf.bridge != "" {
				cfg.Bridge.Addr = rf.bridge
			}
			if rf.mcp != "" {
				cfg.MCP.Listen = rf.mcp
			}
			ctx := cmd.Context()
			var nc *nats.Conn
			var embedded *broker.Embedded
			if a.conn.explicit() || cfg.NATS.URL != "" {
				if nc, _, err = dial(ccfg, "toolbus-serve", log); err != nil {
					return err
				}
			} else {
				ec := broker.EmbeddedConfig{Host: cfg.NATS.Host, Port: cfg.NATS.Port, DataDir: cfg.NATS.DataDir, SyncAlways: cfg.NATS.SyncAlways, MonitorAddr: natsMonitor}
				if dataDir != "" {
					ec.DataDir = dataDir
				}
				if host != "" {
					ec.Host = host
				}
				if port != 0 {
					ec.Port = port
				}
				if embedded, err = broker.StartEmbedded(ec, log); err != nil {
					return err
				}
				defer embedded.Shutdown()
				if nc, err = embedded.Connect("toolbus-serve"); err != nil {
					return err
				}
			}
			defer nc.Close()
			return runStack(ctx, nc, cfg, rf, log, true)
		},
	}
	fs := cmd.Flags()
	rf = addRunFlags(fs)
	fs.StringVar(&dataDir, "data", "", "embedded NATS: JetStream data directory (default config nats.data_dir, else ./data)")
	fs.StringVar(&host, "host", "", "embedded NATS: listen host (default 127.0.0.1)")
	fs.IntVar(&port, "port", 0, "embedded NATS: listen port (default 4222)")
	fs.StringVar(&natsMonitor, "nats-monitor", "", "embedded NATS: serve its monitoring endpoints (/varz, /jsz; for nats-surveyor) on this host:port")
	fs.StringVar(&rf.bridge, "bridge", "", "webhook bridge listen address (default config bridge.addr, else "+defaultBridgeAddr+"); off disables it")
	fs.StringVar(&rf.mcp, "mcp", "", "MCP front door listen address (default config mcp.listen, else the bridge's listener at /mcp); off disables it")
	return cmd
}

// start checks the flags of serve and worker, makes the logger, loads the
// config (logging what it registers) and resolves the NATS connection, which
// takes nats.url from the config unless a flag, the environment or a NATS
// context said otherwise.
func (r *runFlags) start(a *app, cmd *cobra.Command) (zerolog.Logger, *config.Config, broker.ConnConfig, error) {
	if err := checkLogLevel(r.logLevel); err != nil {
		return zerolog.Nop(), nil, broker.ConnConfig{}, err
	}
	log := newLogger(cmd.ErrOrStderr(), r.logLevel)
	cfg, err := loadConfig(r.configPath, &log)
	if err != nil {
		return log, nil, broker.ConnConfig{}, err
	}
	if err := r.setMemoryLimit(a, cfg, log); err != nil {
		return log, nil, broker.ConnConfig{}, err
	}
	ccfg, err := a.resolve(cfg.NATS.URL)
	return log, cfg, ccfg, err
}

// setMemoryLimit sets the Go runtime's soft memory limit from --memory-limit
// or worker.memory_limit (default config.DefaultMemoryLimit), unless
// GOMEMLIMIT is set, which the runtime has applied already and wins.
func (r *runFlags) setMemoryLimit(a *app, cfg *config.Config, log zerolog.Logger) error {
	s, what := cfg.Worker.MemoryLimit, "worker.memory_limit"
	if r.memoryLimit != "" {
		s, what = r.memoryLimit, "--memory-limit"
	}
	n, err := applyMemoryLimit(a.getenv, s)
	switch {
	case err != nil && what == "--memory-limit":
		return usagef("%s: %v", what, err)
	case err != nil:
		return fmt.Errorf("%s: %w", what, err)
	case n == 0:
		log.Debug().Str("GOMEMLIMIT", a.getenv("GOMEMLIMIT")).Msg("memory limit from the environment")
	default:
		log.Debug().Int64("bytes", n).Msg("soft memory limit set")
	}
	return nil
}

// applyMemoryLimit sets the soft memory limit s (config.ParseMemoryLimit)
// and returns it (math.MaxInt64 for "off"), or 0 when GOMEMLIMIT is set
// and it left the runtime's alone.
func applyMemoryLimit(getenv func(string) string, s string) (int64, error) {
	n, err := config.ParseMemoryLimit(s)
	if err != nil || getenv("GOMEMLIMIT") != "" {
		return 0, err
	}
	if n < 0 {
		n = math.MaxInt64
	}
	debug.SetMemoryLimit(n)
	return n, nil
}

// firstSyncWait bounds how long a starting worker waits for the first syncs
// of registered servers (see runStack).
const firstSyncWait = 10 * time.Second

// runStack provisions the bus and runs the worker (and, with all, the other
// services) until ctx ends, then shuts down in order: stop publishing,
// drain the worker, close MCP sessions, drain NATS.
func runStack(ctx context.Context, nc *nats.Conn, cfg *config.Config, rf *runFlags, log zerolog.Logger, all bool) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	rl := newReloader(rf.configPath, cfg, log)
	defer rl.stop()
	wcfg := rf.workerConfig(cfg)
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	// serve owns the settings of streams and the shared consumer; a worker
	// only creates what is missing, so it never rewrites the fleet's.
	provision := broker.Ensure
	if all {
		provision = broker.Provision
	}
	err = provision(pctx, js, cfg.NATS.StreamOptions(), wcfg.ConsumerConfig())
	cancel()
	if err != nil {
		return fmt.Errorf("provision JetStream: %w", err)
	}

	reg, err := registry.New(ctx, js, registry.WithLogger(log))
	if err != nil {
		return err
	}
	// The config file's servers are upserted at every start (serve always;
	// a worker only when given a file), so the file wins over `servers add`
	// at the next start. A server that cannot be stored is reported and
	// skipped; the others still run.
	if all || cfg.Path != "" {
		for _, s := range cfg.ServerList() {
			if err := reg.Put(ctx, s); err != nil {
				log.Error().Err(err).Str("server", s.Name).Msg("server from the config not registered")
			}
		}
	}
	rl.reg, rl.rf, rl.serve, rl.bridgeAddr, rl.mcpAddr = reg, rf, all, rf.bridge, rf.mcp
	tp, stopTracing, err := startTracing(ctx, wcfg.Name, log)
	if err != nil {
		return err
	}
	defer stopTracing()
	pool := mcppool.New(log, mcppool.WithTracerProvider(tp))
	defer pool.Close()
	if err := followRegistry(ctx, reg, pool, log); err != nil {
		return err
	}
	cat, err := catalog.New(ctx, js, catalog.WithLogger(log))
	if err != nil {
		return err
	}
	defer cat.Stop()

	svc := &services{}
	op, err := startOps(ctx, svc, nc, js, rf, cat, pool, log)
	if err != nil {
		return err
	}
	// Every process is a sync replica (they share the resync queue), so a
	// fleet of plain workers keeps its catalog too; only serve listens for
	// notifications/tools/list_changed. The syncer lists tools over the
	// worker's pool: one process per stdio server per toolbus process.
	syncer := catalogsync.New(js, reg, catalogsync.Config{HoldChanged: cfg.Sync.HoldChanged, NoListen: !all},
		catalogsync.WithLogger(log), catalogsync.WithPool(pool))
	svc.run(ctx, "sync", syncer.Run)
	// The catalog refuses calls to a server until its first sync is read
	// (catalog_unavailable): give first syncs a moment before taking calls,
	// which wait in TOOL_CALLS meanwhile.
	wctx, cancel := context.WithTimeout(ctx, firstSyncWait)
	if waiting := cat.WaitFirstSync(wctx, pool.Names()); len(waiting) > 0 && ctx.Err() == nil {
		log.Warn().Strs("servers", waiting).Msg("first sync still running; calls to these servers answer catalog_unavailable until it ends")
	}
	cancel()
	w := worker.New(nc, js, pool, wcfg, log, worker.WithCatalog(cat), worker.WithObserver(op.metrics), worker.WithTracerProvider(tp))
	svc.run(ctx, "worker", w.Run)
	rl.worker = w
	if err := startControl(ctx, svc, nc, fleet{w: w, pool: pool}, wcfg.Name); err != nil {
		return err
	}
	if all {
		if rl.sched, err = startScheduler(ctx, svc, js, cfg, log, op); err != nil {
			return err
		}
		rl.resync = true
		if rl.bridge, err = startBridge(ctx, svc, js, cfg, log, op); err != nil {
			return err
		}
	}
	svc.run(ctx, "reload", rl.run)
	err = svc.wait()
	if derr := nc.Drain(); derr != nil && !errors.Is(derr, nats.ErrConnectionClosed) {
		log.Debug().Err(derr).Msg("drain")
	}
	log.Info().Msg("stopped")
	return err
}

// services runs long-lived parts; the first to fail stops the others.
type services struct {
	wg     gosync.WaitGroup
	mu     gosync.Mutex
	err    error
	cancel []context.CancelCauseFunc
}

func (s *services) run(ctx context.Context, name string, f func(context.Context) error) {
	ctx, cancel := context.WithCancelCause(ctx)
	s.mu.Lock()
	s.cancel = append(s.cancel, cancel)
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := f(ctx); err != nil && !errors.Is(err, context.Canceled) {
			s.mu.Lock()
			if s.err == nil {
				s.err = fmt.Errorf("%s: %w", name, err)
			}
			cancels := s.cancel
			s.mu.Unlock()
			for _, c := range cancels {
				c(err)
			}
		}
	}()
}

func (s *services) wait() error {
	s.wg.Wait()
	return s.err
}

// startScheduler runs the cron scheduler with the config's schedules plus
// the default catalog resync (sync.interval, 15m unless set; 0 disables).
func startScheduler(ctx context.Context, svc *services, js jetstream.JetStream, cfg *config.Config, log zerolog.Logger, op *ops) (*scheduler.Scheduler, error) {
	scheds, err := configSchedules(cfg, true)
	if err != nil {
		return nil, err
	}
	s, err := scheduler.New(js, log, scheduler.WithSchedules(scheds), scheduler.WithOnFire(op.onFire), scheduler.WithOnMissed(op.metrics.SchedulerMissed))
	if err != nil {
		return nil, err
	}
	svc.run(ctx, "scheduler", s.Run)
	return s, nil
}

// startBridge serves the webhook bridge on bridge.addr (default
// 127.0.0.1:8088; "off" disables it), with /metrics, /healthz and /readyz
// on the same listener unless --metrics gives them their own, and the MCP
// front door at /mcp unless mcp.listen gives it its own (startFrontDoor).
// It returns nil when the bridge is off.
func startBridge(ctx context.Context, svc *services, js jetstream.JetStream, cfg *config.Config, log zerolog.Logger, op *ops) (*bridge.Bridge, error) {
	addr := cfg.Bridge.Addr
	if addr == "off" {
		_, err := startFrontDoor(ctx, svc, js.Conn(), cfg, log, "")
		return nil, err
	}
	if addr == "" {
		addr = defaultBridgeAddr
	}
	hooks, src, err := loadHooks(cfg, "")
	if err != nil {
		return nil, err
	}
	fd, err := startFrontDoor(ctx, svc, js.Conn(), cfg, log, addr)
	if err != nil {
		return nil, err
	}
	opts := op.bridgeOptions()
	if fd != nil { // after bridgeOptions: its WithOther is replaced
		var next http.Handler
		if !op.own {
			next = op.mux
		}
		opts = append(opts, bridge.WithOther(withFrontDoor(fd, next)))
	}
	b, err := bridge.New(js, hooks, log, opts...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	svc.run(ctx, "bridge", func(ctx context.Context) error { return b.Run(ctx, addr) })
	return b, nil
}

// followRegistry keeps pool in step with the server registry: every
// registered server (secrets resolved), live, and a removed server's
// sessions closed. It returns once the current servers are loaded.
func followRegistry(ctx context.Context, reg *registry.Registry, pool *mcppool.Pool, log zerolog.Logger) error {
	ready := make(chan struct{})
	failed := make(chan error, 1)
	apply := func(name string, srv *registry.Server) {
		if srv == nil {
			pool.Remove(name)
			log.Info().Str("server", name).Msg("server removed; sessions closed")
			return
		}
		resolved, err := reg.Resolve(*srv)
		if err != nil {
			pool.Remove(name)
			log.Error().Err(err).Str("server", name).Msg("server secrets do not resolve; calls to it answer unknown_server")
			return
		}
		pool.Upsert(resolved)
	}
	go func() {
		if err := reg.Watch(ctx, apply, func() { close(ready) }); err != nil {
			failed <- err
		}
	}()
	select {
	case <-ready:
		return nil
	case err := <-failed:
		return fmt.Errorf("watch the server registry: %w", err)
	case <-ctx.Done():
		return ctx.Err()
	}
}
