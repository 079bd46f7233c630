package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/toolbus-dev/toolbus/subjects"
)

// Entry is a tool as a worker sees it: the catalog entry, its KV revision,
// and its argument validator, compiled on first use and kept for the
// revision's life.
type Entry struct {
	subjects.CatalogEntry
	Revision uint64

	once sync.Once
	args *argsValidator
}

// SafeToRetry reports whether a call interrupted mid-run may be run again
// (see subjects.ToolAnnotations.SafeToRetry).
func (e *Entry) SafeToRetry() bool { return e.Annotations.SafeToRetry() }

func (e *Entry) validator() *argsValidator {
	e.once.Do(func() { e.args = newArgsValidator(e.OriginalSchema, e.InputSchema) })
	return e.args
}

// Catalog is the worker's live copy of the catalog KV bucket: lookups and
// argument checks are a read lock and a map, with no I/O. It follows the
// bucket with a KV watch until Stop or its context ends.
//
// It never fails open: until a server's first sync has been read in full,
// a tool the catalog does not have is refused with ErrCatalogUnavailable
// (retryable), not let through unchecked.
type Catalog struct {
	log   zerolog.Logger
	catKV jetstream.KeyValue

	mu     sync.RWMutex
	tools  map[string]map[string]*Entry   // server → tool → entry
	status map[string]subjects.SyncStatus // server → its last sync status
	// synced holds the servers whose status says they synced once and
	// whose tools from that sync are all in view.
	synced map[string]bool
	// pending holds the servers whose status says they synced once while
	// the tools watch has not yet applied the catalog up to this revision:
	// the two buckets are watched apart, so a status can arrive before the
	// tools written ahead of it.
	pending map[string]uint64
	applied uint64        // the highest catalog revision the tools watch applied
	changed chan struct{} // closed and replaced when a server's sync state changes

	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// Option configures a Catalog.
type Option func(*Catalog)

// WithLogger sets the logger.
func WithLogger(l zerolog.Logger) Option { return func(c *Catalog) { c.log = l } }

// New loads the catalog and the servers' sync statuses, returns once
// the current values are in, and keeps following both until ctx ends or
// Stop is called.
func New(ctx context.Context, js jetstream.JetStream, opts ...Option) (*Catalog, error) {
	c := &Catalog{
		log: zerolog.Nop(), tools: map[string]map[string]*Entry{}, status: map[string]subjects.SyncStatus{},
		synced: map[string]bool{}, pending: map[string]uint64{}, changed: make(chan struct{}), done: make(chan struct{}),
	}
	for _, o := range opts {
		o(c)
	}
	catKV, err := js.KeyValue(ctx, subjects.BucketCatalog)
	if err != nil {
		return nil, fmt.Errorf("KV bucket %s: %w", subjects.BucketCatalog, err)
	}
	c.catKV = catKV
	srvKV, err := js.KeyValue(ctx, subjects.BucketServers)
	if err != nil {
		return nil, fmt.Errorf("KV bucket %s: %w", subjects.BucketServers, err)
	}
	wctx, cancel := context.WithCancel(ctx)
	c.cancel = cancel
	tw, err := catKV.WatchAll(wctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("watch %s: %w", subjects.BucketCatalog, err)
	}
	sw, err := srvKV.Watch(wctx, subjects.SyncStatusPrefix+"*")
	if err != nil {
		cancel()
		_ = tw.Stop()
		return nil, fmt.Errorf("watch %s: %w", subjects.BucketServers, err)
	}
	ready := make(chan struct{}, 2)
	go c.run(wctx, tw, sw, ready)
	for range 2 {
		select {
		case <-ready:
		case <-c.done:
			return nil, c.err
		case <-ctx.Done():
			c.Stop()
			return nil, ctx.Err()
		}
	}
	return c, nil
}

func (c *Catalog) run(ctx context.Context, tw, sw jetstream.KeyWatcher, ready chan<- struct{}) {
	defer close(c.done)
	defer func() { _ = tw.Stop(); _ = sw.Stop() }()
	tu, su := tw.Updates(), sw.Updates()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-tu:
			if !ok {
				c.fail(ctx, "catalog")
				return
			}
			if e == nil {
				ready <- struct{}{}
				continue
			}
			c.applyTool(e)
		case e, ok := <-su:
			if !ok {
				c.fail(ctx, "status")
				return
			}
			if e == nil {
				ready <- struct{}{}
				continue
			}
			c.applyStatus(ctx, e)
		}
	}
}

func (c *Catalog) fail(ctx context.Context, what string) {
	if ctx.Err() == nil {
		c.err = fmt.Errorf("%s watch ended", what)
		c.log.Error().Msg("catalog: " + c.err.Error())
	}
}

func (c *Catalog) applyTool(e jetstream.KeyValueEntry) {
	defer c.advance(e.Revision())
	if e.Operation() != jetstream.KeyValuePut {
		// The key names the tool: <server>.<tool>, both escaped.
		server, tool, err := subjects.ParseCatalogKey(e.Key())
		if err != nil {
			return
		}
		c.mu.Lock()
		if m := c.tools[server]; m != nil {
			delete(m, tool)
			if len(m) == 0 {
				delete(c.tools, server)
			}
		}
		c.mu.Unlock()
		return
	}
	ent := &Entry{Revision: e.Revision()}
	if err := json.Unmarshal(e.Value(), &ent.CatalogEntry); err != nil {
		c.log.Warn().Err(err).Str("key", e.Key()).Msg("catalog: skipping an entry that is not valid JSON")
		return
	}
	c.mu.Lock()
	m := c.tools[ent.Server]
	if m == nil {
		m = map[string]*Entry{}
		c.tools[ent.Server] = m
	}
	m[ent.Tool] = ent
	c.mu.Unlock()
}

// advance records that the tools watch applied the catalog up to rev and
// marks synced the servers that were waiting for it.
func (c *Catalog) advance(rev uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.applied = max(c.applied, rev)
	done := false
	for name, want := range c.pending {
		if want <= c.applied {
			delete(c.pending, name)
			c.synced[name] = true
			done = true
		}
	}
	if done {
		c.notifyLocked()
	}
}

// notifyLocked wakes WaitFirstSync.
func (c *Catalog) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *Catalog) applyStatus(ctx context.Context, e jetstream.KeyValueEntry) {
	name, err := subjects.UnescapeToken(e.Key()[len(subjects.SyncStatusPrefix):])
	if err != nil {
		return
	}
	if e.Operation() != jetstream.KeyValuePut {
		// Removed with its server.
		c.mu.Lock()
		delete(c.status, name)
		delete(c.synced, name)
		delete(c.pending, name)
		c.notifyLocked()
		c.mu.Unlock()
		return
	}
	st := subjects.SyncStatus{Server: name}
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		c.log.Warn().Err(err).Str("server", name).Msg("catalog: sync status is not valid JSON; treating the server as not synced")
		st = subjects.SyncStatus{Server: name, Message: "its sync status is not valid JSON"}
	}
	ok := st.OK || !st.LastOK.IsZero()
	// Only this goroutine writes the maps: reading without the lock first
	// is safe.
	known := c.synced[name]
	_, waiting := c.pending[name]
	var want uint64
	var revErr error
	if ok && !known && !waiting {
		// A first sync: its tools were written before this status, but the
		// tools watch may not have applied them yet. The server counts as
		// synced once the catalog is applied up to its current end.
		want, revErr = c.lastRevision(ctx)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.status[name] = st
	switch {
	case !ok:
		delete(c.synced, name)
		delete(c.pending, name)
	case known || waiting:
	case revErr != nil:
		c.log.Warn().Err(revErr).Str("server", name).Msg("catalog: cannot read the catalog's last revision; taking the synced server's tools as in view")
		c.synced[name] = true
	case want <= c.applied:
		c.synced[name] = true
	default:
		c.pending[name] = want
	}
	c.notifyLocked()
}

// lastRevision is the catalog stream's last sequence: every tool written
// before now has a revision at most this.
func (c *Catalog) lastRevision(ctx context.Context) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := c.catKV.Status(ctx)
	if err != nil {
		return 0, err
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok || bs.StreamInfo() == nil {
		return 0, fmt.Errorf("KV status of %s carries no stream info", subjects.BucketCatalog)
	}
	return bs.StreamInfo().State.LastSeq, nil
}

// Lookup returns a tool that may be called. A tool held for approval is
// not returned; Check says why.
func (c *Catalog) Lookup(server, tool string) (*Entry, bool) {
	c.mu.RLock()
	e, ok := c.tools[server][tool]
	c.mu.RUnlock()
	if !ok || e.Held {
		return nil, false
	}
	return e, true
}

// Known reports whether the catalog has anything of server: a sync status
// (it is registered) or tools.
func (c *Catalog) Known(server string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	_, st := c.status[server]
	return st || len(c.tools[server]) > 0
}

// Synced reports whether server has synced at least once and the tools of
// that sync are all in view, so a tool it lacks does not exist.
func (c *Catalog) Synced(server string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.synced[server]
}

// WaitFirstSync waits until each of servers has synced (Synced) or has a
// failed sync on record, so a call to it is either checked or refused with
// the reason at once, or until ctx ends. It returns the servers still
// waiting for their first sync to end.
func (c *Catalog) WaitFirstSync(ctx context.Context, servers []string) []string {
	for {
		c.mu.RLock()
		var waiting []string
		for _, name := range servers {
			st, ok := c.status[name]
			// A failed first sync has a time; the status of a fresh
			// registration has none.
			failed := ok && !st.OK && st.LastOK.IsZero() && !st.At.IsZero()
			if !c.synced[name] && !failed {
				waiting = append(waiting, name)
			}
		}
		changed := c.changed
		c.mu.RUnlock()
		if len(waiting) == 0 {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return waiting
		case <-c.done:
			return waiting
		}
	}
}

// Tools returns the names of a server's tools (held ones included).
func (c *Catalog) Tools(server string) []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]string, 0, len(c.tools[server]))
	for t := range c.tools[server] {
		out = append(out, t)
	}
	return out
}

// Check returns the entry to call, or why not: ErrUnknownServer,
// ErrCatalogUnavailable, ErrUnknownTool or ErrToolHeld (wrapped, with a
// message), or an *ArgumentsError (errors.Is ErrInvalidArguments) naming
// the fields that break the tool's input schema, compiled once per catalog
// revision. A tool the catalog has is checked even before its server's
// first sync is in view in full; a tool it lacks is unknown only once it
// is.
func (c *Catalog) Check(server, tool string, args json.RawMessage) (*Entry, error) {
	c.mu.RLock()
	e, ok := c.tools[server][tool]
	st, registered := c.status[server]
	synced := c.synced[server]
	_, arriving := c.pending[server]
	c.mu.RUnlock()
	switch {
	case !ok && !synced && !registered:
		return nil, fmt.Errorf("%w: the catalog has no server %q: it is not registered (toolbus servers list), or was registered a moment ago", ErrUnknownServer, server)
	case !ok && !synced:
		return nil, fmt.Errorf("%w: %s", ErrCatalogUnavailable, notSyncedYet(server, st, arriving))
	case !ok:
		return nil, fmt.Errorf("%w: server %q has no tool %q (toolbus tools %s)", ErrUnknownTool, server, tool, server)
	case e.Held:
		return nil, fmt.Errorf("%w: %s/%s changed since it was approved; review it and run `toolbus tools approve %s %s`", ErrToolHeld, server, tool, server, tool)
	}
	if err := e.validator().validate(args); err != nil {
		return e, err
	}
	return e, nil
}

// Stop ends the watch and waits for it. Safe to call twice.
func (c *Catalog) Stop() {
	c.cancel()
	<-c.done
}

// Done is closed when the watch has ended; Err then says why (nil after
// Stop or the context's end).
func (c *Catalog) Done() <-chan struct{} { return c.done }

// Err returns why the watch ended early, if it did.
func (c *Catalog) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// notSyncedYet says why a registered server's catalog cannot be used yet,
// and what to do.
func notSyncedYet(server string, st subjects.SyncStatus, arriving bool) string {
	what := "its first sync is queued or running"
	switch {
	case arriving:
		what = "its first sync just ended and its tools are still arriving"
	case !st.At.IsZero():
		what = fmt.Sprintf("its last sync, at %s, failed (%s: %s) and is retried with backoff", st.At.UTC().Format(time.RFC3339), st.ErrorClass, st.Message)
	}
	return fmt.Sprintf("server %q is registered but its tool list has not been read yet: %s. Retry the call shortly (with a new call id), or run `toolbus sync %s` to sync it now and see why it fails", server, what, server)
}

// Admit is Check in the worker's terms (worker.Catalog), in one lookup:
// nil when the call may go to the server, and whether the tool's
// annotations (MCP's defaults when absent) make running it twice harmless
// (read-only, idempotent or not destructive); otherwise ErrUnknownTool,
// ErrToolHeld, ErrInvalidArguments or ErrCatalogUnavailable, wrapped with a
// message. The worker asks only about servers it has registered, so a
// server the catalog knows nothing of yet — like one whose first sync has
// not been read in full — is ErrCatalogUnavailable (retryable), never let
// through unchecked.
func (c *Catalog) Admit(server, tool string, args json.RawMessage) (safe bool, err error) {
	e, err := c.Check(server, tool, args)
	if errors.Is(err, ErrUnknownServer) {
		// Registered (the worker checked) but not in the catalog yet: its
		// status has not arrived.
		return false, fmt.Errorf("%w: %s", ErrCatalogUnavailable, notSyncedYet(server, subjects.SyncStatus{}, false))
	}
	if err != nil {
		return false, err
	}
	return e.SafeToRetry(), nil
}
