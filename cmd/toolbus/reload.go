package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"reflect"
	"slices"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/toolbus-dev/toolbus/internal/bridge"
	"github.com/toolbus-dev/toolbus/internal/config"
	"github.com/toolbus-dev/toolbus/internal/registry"
	"github.com/toolbus-dev/toolbus/internal/scheduler"
)

// reloader re-reads the config file on SIGHUP and applies what changed to
// the parts this process runs, without stopping them: servers (the
// registry, which every worker follows), hooks (the bridge), schedules (the
// scheduler) and the worker's concurrency. A file that does not load or
// validate is rejected whole and the running configuration stays; a
// changed setting that only a restart applies (nats.*, bridge.addr, most
// worker.*) is logged as such. Each part is optional: a nil one is not run
// here, and its section of the file is not looked at.
type reloader struct {
	path      string // --config as given: "" reads ./toolbus.yaml, else the built-in default, again
	hooksPath string // bridge --hooks, read instead of the hooks: section
	// bridgeAddr is serve --bridge or bridge --addr, over the file's
	// bridge.addr.
	bridgeAddr string
	// mcpAddr is serve --mcp, over the file's mcp.listen.
	mcpAddr string
	log     zerolog.Logger
	hup     chan os.Signal

	cur    *config.Config
	hooks  []bridge.Hook        // the bridge's, as last applied
	scheds []scheduler.Schedule // the scheduler's config schedules, as last applied

	rf     *runFlags // serve and worker: the worker's flags over the file's limits
	serve  bool      // serve registers the file's servers even without a file
	reg    *registry.Registry
	worker concurrencySetter
	bridge *bridge.Bridge
	sched  *scheduler.Scheduler
	resync bool // the scheduler runs the sync.interval resync (serve)
}

// concurrencySetter is the worker's live limit.
type concurrencySetter interface{ SetConcurrency(n int) }

// newReloader starts listening for SIGHUP at once, so a SIGHUP while the
// process starts is applied once run begins instead of ending the process.
func newReloader(path string, cur *config.Config, log zerolog.Logger) *reloader {
	r := &reloader{path: path, cur: cur, log: log, hup: make(chan os.Signal, 1)}
	signal.Notify(r.hup, syscall.SIGHUP)
	return r
}

// stop stops listening for SIGHUP.
func (r *reloader) stop() { signal.Stop(r.hup) }

// run reloads on every SIGHUP until ctx ends.
func (r *reloader) run(ctx context.Context) error {
	defer r.stop()
	// The sections as the parts were started with (they loaded then).
	if r.bridge != nil {
		r.hooks, _, _ = loadHooks(r.cur, r.hooksPath)
	}
	if r.sched != nil {
		r.scheds, _ = configSchedules(r.cur, r.resync)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.hup:
			if err := r.reload(ctx); err != nil {
				r.log.Error().Err(err).Msg("configuration reload rejected; the running configuration stays")
			}
		}
	}
}

// configSchedules is the scheduler's share of cfg: its schedules: section
// and, with resync, the catalog resync every sync.interval (15m unless set;
// 0 disables).
func configSchedules(cfg *config.Config, resync bool) ([]scheduler.Schedule, error) {
	var scheds []scheduler.Schedule
	if err := config.Decode("schedules", cfg.Schedules, &scheds); err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Path, err)
	}
	if !resync {
		return scheds, nil
	}
	every := 15 * time.Minute
	if cfg.Sync.Interval != nil {
		every = cfg.Sync.Interval.D()
	}
	if every > 0 {
		scheds = append(scheds, scheduler.Schedule{Name: "catalog-resync", Spec: "@every " + every.String(), Kind: scheduler.KindResync})
	}
	return scheds, nil
}

// reload reads the file, checks every section this process uses, and only
// then applies them. An error means nothing was applied.
func (r *reloader) reload(ctx context.Context) error {
	next, err := config.Load(r.path)
	if err != nil {
		return err
	}
	if r.mcpAddr != "" {
		next.MCP.Listen = r.mcpAddr // as at start
	}
	if r.bridgeAddr != "" {
		next.Bridge.Addr = r.bridgeAddr // as at start
	}
	src := next.Path
	if src == "" {
		src = "built-in default (demo server)"
	}
	lc := r.log.With().Str("config", src)
	if r.hooksPath != "" {
		lc = lc.Str("hooks", r.hooksPath)
	}
	log := lc.Logger()
	log.Info().Msg("SIGHUP: reloading the configuration")

	var hooks []bridge.Hook
	if r.bridge != nil {
		var from string
		if hooks, from, err = loadHooks(next, r.hooksPath); err != nil {
			return err
		}
		// Checked whole before anything is applied; SetHooks checks again.
		if _, err := bridge.New(nil, hooks, zerolog.Nop()); err != nil {
			return fmt.Errorf("%s: %w", from, err)
		}
	}
	var scheds []scheduler.Schedule
	if r.sched != nil {
		if scheds, err = configSchedules(next, r.resync); err != nil {
			return err
		}
		if err := scheduler.ValidateSet(scheds); err != nil {
			return fmt.Errorf("%s: %w", src, err)
		}
	}

	// Apply: hooks and schedules swap whole; servers go through the
	// registry, which this process's pool and sync (and every other
	// worker's) follow.
	ev := log.Info()
	changed := false
	note := func(key string, names []string) {
		if len(names) > 0 {
			ev.Strs(key, names)
			changed = true
		}
	}
	if r.bridge != nil {
		if err := r.bridge.SetHooks(hooks); err != nil {
			return err
		}
		added, updated, removed := diffNamed(r.hooks, hooks, func(h bridge.Hook) string { return h.Name })
		note("hooks_added", added)
		note("hooks_changed", updated)
		note("hooks_removed", removed)
		r.hooks = hooks
	}
	if r.sched != nil {
		if err := r.sched.SetSchedules(scheds); err != nil {
			return err // checked above; not reached
		}
		added, updated, removed := diffNamed(r.scheds, scheds, func(s scheduler.Schedule) string { return s.Name })
		note("schedules_added", added)
		note("schedules_changed", updated)
		note("schedules_removed", removed)
		r.scheds = scheds
	}
	if r.reg != nil {
		added, updated, removed := r.applyServers(ctx, next, log)
		note("servers_added", added)
		note("servers_changed", updated)
		note("servers_removed", removed)
	}
	restart := r.applyWorker(next, ev, &changed)
	restart = append(restart, r.needsRestart(next)...)
	r.cur = next
	for _, s := range restart {
		log.Warn().Str("setting", s).Msg("changed setting needs a restart to apply; the running value stays")
	}
	if !changed && len(restart) == 0 {
		log.Info().Msg("configuration reloaded: nothing changed")
		return nil
	}
	if len(restart) > 0 {
		ev.Strs("needs_restart", restart)
	}
	ev.Msg("configuration reloaded")
	return nil
}

// applyServers registers the file's added and changed servers and removes
// the ones it no longer lists, as start-up registers them: serve always, a
// worker only from a file. A server added with `toolbus servers add` is not
// the file's and stays. Failures are logged per server; the others apply.
func (r *reloader) applyServers(ctx context.Context, next *config.Config, log zerolog.Logger) (added, updated, removed []string) {
	var was, now []registry.Server
	if r.serve || r.cur.Path != "" {
		was = r.cur.ServerList()
	}
	if r.serve || next.Path != "" {
		now = next.ServerList()
	}
	added, updated, removed = diffNamed(was, now, func(s registry.Server) string { return s.Name })
	for _, s := range now {
		if !slices.Contains(added, s.Name) && !slices.Contains(updated, s.Name) {
			continue
		}
		if err := r.reg.Put(ctx, s); err != nil {
			log.Error().Err(err).Str("server", s.Name).Msg("server from the config not registered")
		}
	}
	for _, name := range removed {
		if err := r.reg.Delete(ctx, name); err != nil && !errors.Is(err, registry.ErrNotFound) {
			log.Error().Err(err).Str("server", name).Msg("server removed from the config but not from the registry")
		}
	}
	return added, updated, removed
}

// applyWorker applies the worker's concurrency live and returns the worker
// settings that changed and only a restart applies.
func (r *reloader) applyWorker(next *config.Config, ev *zerolog.Event, changed *bool) []string {
	if r.rf == nil {
		return nil
	}
	was, now := r.rf.workerConfig(r.cur), r.rf.workerConfig(next)
	var restart []string
	if was.Concurrency != now.Concurrency {
		if r.worker != nil {
			n := now.Concurrency
			if n <= 0 {
				n = defaultConcurrency
			}
			r.worker.SetConcurrency(n)
			ev.Int("worker_concurrency", n)
			*changed = true
		} else {
			restart = append(restart, "worker.concurrency")
		}
	}
	for _, f := range []struct {
		name     string
		was, now any
	}{
		{"worker.max_ack_pending", was.MaxAckPending, now.MaxAckPending},
		{"worker.ack_wait", was.AckWait, now.AckWait},
		{"worker.max_deliver", was.MaxDeliver, now.MaxDeliver},
		{"worker.default_timeout", was.DefaultTimeout, now.DefaultTimeout},
		{"worker.grace", was.Grace, now.Grace},
		{"worker.max_result_bytes", was.MaxResultBytes, now.MaxResultBytes},
		{"worker.retry_for", was.RetryFor, now.RetryFor},
		{"worker.max_claim_bytes", was.MaxClaimBytes, now.MaxClaimBytes},
		{"worker.queue_timeout", was.QueueTimeout, now.QueueTimeout},
		{"worker.memory_limit", r.cur.Worker.MemoryLimit, next.Worker.MemoryLimit},
		{"sync.hold_changed", r.cur.Sync.HoldChanged, next.Sync.HoldChanged},
	} {
		if f.was != f.now {
			restart = append(restart, f.name)
		}
	}
	return restart
}

// defaultConcurrency is worker.Config's default, applied when a reload
// drops worker.concurrency.
const defaultConcurrency = 64

// needsRestart names the changed settings fixed at start: where NATS is,
// and where the bridge listens.
func (r *reloader) needsRestart(next *config.Config) []string {
	var out []string
	a, b := r.cur.NATS, next.NATS
	for _, f := range []struct {
		name string
		same bool
	}{
		{"nats.url", a.URL == b.URL},
		{"nats.data_dir", a.DataDir == b.DataDir},
		{"nats.host", a.Host == b.Host},
		{"nats.port", a.Port == b.Port},
		{"nats.replicas", a.Replicas == b.Replicas},
		{"nats.result_max_age", a.ResultMaxAge == b.ResultMaxAge},
		{"nats.result_max_bytes", a.ResultMaxBytes == b.ResultMaxBytes},
		{"nats.ledger_max_age", a.LedgerMaxAge == b.LedgerMaxAge},
		{"nats.ledger_max_bytes", a.LedgerMaxBytes == b.LedgerMaxBytes},
		{"nats.duplicate_window", a.DuplicateWindow == b.DuplicateWindow},
		{"nats.sync_always", a.SyncAlways == b.SyncAlways},
	} {
		if !f.same {
			out = append(out, f.name)
		}
	}
	if r.bridge != nil && r.cur.Bridge.Addr != next.Bridge.Addr {
		out = append(out, "bridge.addr")
	}
	if r.serve && !reflect.DeepEqual(r.cur.MCP, next.MCP) {
		out = append(out, "mcp")
	}
	return out
}

// diffNamed compares two lists of named definitions: the names only in
// now, in both but different, and only in was, each in now's or was's
// order.
func diffNamed[T any](was, now []T, name func(T) string) (added, changed, removed []string) {
	old := make(map[string]T, len(was))
	for _, v := range was {
		old[name(v)] = v
	}
	seen := make(map[string]bool, len(now))
	for _, v := range now {
		n := name(v)
		seen[n] = true
		if o, ok := old[n]; !ok {
			added = append(added, n)
		} else if !reflect.DeepEqual(o, v) {
			changed = append(changed, n)
		}
	}
	for _, v := range was {
		if !seen[name(v)] {
			removed = append(removed, name(v))
		}
	}
	return added, changed, removed
}
