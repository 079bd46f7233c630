package sync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	gosync "sync"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"toolbus/subjects"
)

// Entry is a tool as a worker sees it: the catalog entry, its KV revision,
// and its argument validator, compiled on first use and kept for the
// revision's life.
type Entry struct {
	subjects.CatalogEntry
	Revision uint64

	once gosync.Once
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
type Catalog struct {
	log zerolog.Logger

	mu     gosync.RWMutex
	tools  map[string]map[string]*Entry // server → tool → entry
	synced map[string]bool              // servers whose status says they synced once

	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// CatalogOption configures a Catalog.
type CatalogOption func(*Catalog)

// WithCatalogLogger sets the logger.
func WithCatalogLogger(l zerolog.Logger) CatalogOption { return func(c *Catalog) { c.log = l } }

// NewCatalog loads the catalog and the servers' sync statuses, returns once
// the current values are in, and keeps following both until ctx ends or
// Stop is called.
func NewCatalog(ctx context.Context, js jetstream.JetStream, opts ...CatalogOption) (*Catalog, error) {
	c := &Catalog{log: zerolog.Nop(), tools: map[string]map[string]*Entry{}, synced: map[string]bool{}, done: make(chan struct{})}
	for _, o := range opts {
		o(c)
	}
	catKV, err := js.KeyValue(ctx, subjects.BucketCatalog)
	if err != nil {
		return nil, fmt.Errorf("KV bucket %s: %w", subjects.BucketCatalog, err)
	}
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
			c.applyStatus(e)
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

func (c *Catalog) applyStatus(e jetstream.KeyValueEntry) {
	name, err := subjects.UnescapeToken(e.Key()[len(subjects.SyncStatusPrefix):])
	if err != nil {
		return
	}
	ok := false
	if e.Operation() == jetstream.KeyValuePut {
		var st subjects.SyncStatus
		if json.Unmarshal(e.Value(), &st) == nil {
			ok = st.OK || !st.LastOK.IsZero()
		}
	}
	c.mu.Lock()
	if ok {
		c.synced[name] = true
	} else {
		delete(c.synced, name)
	}
	c.mu.Unlock()
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

// Entry returns a tool's entry, held or not.
func (c *Catalog) Entry(server, tool string) (*Entry, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.tools[server][tool]
	return e, ok
}

// Known reports whether server has catalog entries or has synced at least
// once (a server with no tools is known once synced).
func (c *Catalog) Known(server string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.tools[server]) > 0 || c.synced[server]
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

// ValidateArgs checks args against the tool's input schema, compiled once
// per catalog revision. It returns ErrUnknownServer, ErrUnknownTool or
// ErrToolHeld (wrapped, with a message), or an *ArgumentsError (errors.Is
// ErrInvalidArguments) naming the failing fields.
func (c *Catalog) ValidateArgs(server, tool string, args json.RawMessage) error {
	_, err := c.Check(server, tool, args)
	return err
}

// Check is Lookup and ValidateArgs in one: the entry to call, or why not.
func (c *Catalog) Check(server, tool string, args json.RawMessage) (*Entry, error) {
	c.mu.RLock()
	m := c.tools[server]
	e, ok := m[tool]
	synced := c.synced[server]
	c.mu.RUnlock()
	switch {
	case !ok && !synced:
		// Not synced to the end yet (entries of a first sync may be
		// arriving): the catalog cannot say the tool does not exist.
		return nil, fmt.Errorf("%w: %q is not registered or has not synced yet (toolbus servers list; toolbus sync %s)", ErrUnknownServer, server, server)
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

// CheckCall is Check in the worker's terms, in one lookup: refusal is nil
// when the call may go to the server — including when the server has not
// synced yet, so a registry without a catalog still works — or the error
// result to answer with. known says whether the catalog has the tool, and
// safe whether its annotations (MCP's defaults when absent) make running it
// twice harmless (read-only, idempotent or not destructive).
func (c *Catalog) CheckCall(server, tool string, args json.RawMessage) (refusal *subjects.Error, safe, known bool) {
	e, err := c.Check(server, tool, args)
	if e != nil {
		safe, known = e.SafeToRetry(), true
	}
	switch {
	case err == nil, errors.Is(err, ErrUnknownServer):
		return nil, safe, known
	case errors.Is(err, ErrUnknownTool), errors.Is(err, ErrToolHeld):
		return &subjects.Error{Code: subjects.CodeUnknownTool, Message: err.Error()}, safe, known
	case errors.Is(err, ErrInvalidArguments):
		return &subjects.Error{Code: subjects.CodeInvalidArguments, Message: err.Error()}, safe, known
	}
	return &subjects.Error{Code: subjects.CodeInternal, Message: err.Error()}, safe, known
}
