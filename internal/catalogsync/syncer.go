package catalogsync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/toolbus-dev/toolbus/internal/catalog"
	"github.com/toolbus-dev/toolbus/internal/mcppool"
	"github.com/toolbus-dev/toolbus/internal/registry"
	"github.com/toolbus-dev/toolbus/subjects"
)

// dialer connects to an MCP server (secrets already resolved) and completes
// the handshake; onNotify, when not nil, receives the server's
// notifications, and listen opens streamable HTTP's standing notification
// stream (servers before 2026-07-28 need it). The caller closes the client.
type dialer func(ctx context.Context, srv registry.Server, onNotify func(mcp.JSONRPCNotification), listen bool) (*client.Client, error)

// Pool is an MCP session pool shared with the worker; *mcppool.Pool is the
// real one. A Syncer given one (WithPool) lists tools over the pool's
// session, so a stdio server runs once per process for calls and syncs
// alike, and a first sync's connect is the one calls then use.
type Pool interface {
	// Server returns the definition (secrets resolved) the pool holds.
	Server(name string) (registry.Server, bool)
	// ListTools lists every tool of server over the pool's session.
	ListTools(ctx context.Context, server string) ([]mcp.Tool, error)
}

// notifier is a Pool that passes on the notifications its sessions hear.
type notifier interface {
	OnNotification(f func(server string, n mcp.JSONRPCNotification))
}

// mcpPoolDialer dials with mcppool.Dial, sharing one HTTP client.
func mcpPoolDialer(log zerolog.Logger) dialer {
	hc := mcppool.NewHTTPClient(0)
	return func(ctx context.Context, srv registry.Server, onNotify func(mcp.JSONRPCNotification), listen bool) (*client.Client, error) {
		return mcppool.Dial(ctx, srv, mcppool.DialOptions{Log: log, HTTPClient: hc, OnNotification: onNotify, Listen: listen})
	}
}

// Config are the sync knobs. The zero value works.
type Config struct {
	// HoldChanged holds a tool whose definition changed since it was first
	// seen (or last approved) back from workers until `toolbus tools
	// approve`. Default false: changes are flagged, not held.
	HoldChanged bool
	// Concurrency is how many servers one replica syncs at once (default 8).
	Concurrency int
	// ListTimeout bounds listing tools once connected (default 30s).
	// Connecting is bounded by the server's connect_timeout.
	ListTimeout time.Duration
	// Debounce is how long Run waits after a notifications/tools/list_changed
	// for more before it queues one sync (default 1s); a steady storm still
	// syncs every 10 Debounce.
	Debounce time.Duration
	// NoListen stops Run from keeping a session to each server to receive
	// notifications/tools/list_changed.
	NoListen bool
	// AckWait is the CATALOG_RESYNC consumer's ack wait when Run creates it
	// (default 2m); long syncs report progress meanwhile.
	AckWait time.Duration
	// RetryInitial and RetryMax space the retries of a server that has
	// never synced (default 2s, doubling with jitter up to 60s): each failed
	// sync of it queues the next on CATALOG_RESYNC, until one succeeds. A
	// server that synced once waits for the next scheduled resync instead.
	RetryInitial time.Duration
	RetryMax     time.Duration
}

func (c *Config) setDefaults() {
	if c.Concurrency <= 0 {
		c.Concurrency = 8
	}
	if c.ListTimeout <= 0 {
		c.ListTimeout = 30 * time.Second
	}
	if c.Debounce <= 0 {
		c.Debounce = time.Second
	}
	if c.AckWait <= 0 {
		c.AckWait = 2 * time.Minute
	}
	if c.RetryInitial <= 0 {
		c.RetryInitial = 2 * time.Second
	}
	if c.RetryMax <= 0 {
		c.RetryMax = time.Minute
	}
	c.RetryMax = max(c.RetryMax, c.RetryInitial)
}

// Diff is what one sync changed in a server's catalog (tool names, sorted).
type Diff struct {
	Server    string   `json:"server"`
	Added     []string `json:"added,omitempty"`
	Updated   []string `json:"updated,omitempty"`
	Removed   []string `json:"removed,omitempty"`
	Held      []string `json:"held,omitempty"`
	Unchanged int      `json:"unchanged"`
	// Skipped names tools left out, with the reason.
	Skipped []string `json:"skipped,omitempty"`
}

// Empty reports whether the sync changed nothing.
func (d Diff) Empty() bool { return len(d.Added)+len(d.Updated)+len(d.Removed) == 0 }

// Syncer lists servers' tools into the catalog. Several replicas may run
// against the same NATS: they share CATALOG_RESYNC through one durable
// consumer.
type Syncer struct {
	js   jetstream.JetStream
	reg  *registry.Registry
	dl   dialer
	pool Pool
	cfg  Config
	log  zerolog.Logger
	now  func() time.Time

	hook func(server string, d Diff, err error)
	// onListening, for tests, is called when a list_changed session is up.
	onListening func(server string)
	// pingEvery is how often a listener on a legacy session checks that the
	// server still knows it (pingInterval; tests shorten it).
	pingEvery time.Duration

	mu     sync.Mutex
	states map[string]*serverState

	debMu      sync.Mutex
	debounce   map[string]*debouncer
	debStopped bool
	fireWG     sync.WaitGroup
}

type serverState struct {
	mu      sync.Mutex
	waiting atomic.Int32
}

// Option configures a Syncer.
type Option func(*Syncer)

// WithLogger sets the logger.
func WithLogger(l zerolog.Logger) Option { return func(s *Syncer) { s.log = l } }

// WithPool lists tools over p's sessions instead of dialling: for each
// server p holds with the registry's definition (secrets resolved); one it
// does not hold yet (just registered) is dialled for that sync. Run then
// opens no listener session to a stdio server, which would be a second
// process; with p passing notifications on (*mcppool.Pool does), the
// server's tools/list_changed is heard on p's session instead.
func WithPool(p Pool) Option { return func(s *Syncer) { s.pool = p } }

// New returns a Syncer over reg's buckets.
func New(js jetstream.JetStream, reg *registry.Registry, cfg Config, opts ...Option) *Syncer {
	cfg.setDefaults()
	s := &Syncer{
		js: js, reg: reg, cfg: cfg, log: zerolog.Nop(), now: time.Now, pingEvery: pingInterval,
		states: map[string]*serverState{}, debounce: map[string]*debouncer{},
	}
	for _, o := range opts {
		o(s)
	}
	if s.dl == nil {
		s.dl = mcpPoolDialer(s.log)
	}
	if n, ok := s.pool.(notifier); ok && !cfg.NoListen {
		n.OnNotification(func(server string, n mcp.JSONRPCNotification) {
			if n.Method == string(mcp.MethodNotificationToolsListChanged) {
				s.notifyChanged(server)
			}
		})
	}
	return s
}

func (s *Syncer) state(name string) *serverState {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.states[name]
	if !ok {
		st = &serverState{}
		s.states[name] = st
	}
	return st
}

// SyncServer lists one server's tools and brings its catalog in line:
// adds, updates and removes entries and publishes catalog.changed.<server>
// when anything changed. On failure (a *SyncError) the catalog is left as it
// was and the server's status records why.
func (s *Syncer) SyncServer(ctx context.Context, name string) (Diff, error) {
	st := s.state(name)
	st.mu.Lock()
	defer st.mu.Unlock()
	return s.syncLocked(ctx, name, 0)
}

// syncCoalesced is SyncServer for queued requests: when another request for
// the same server is already waiting to run, this one is covered by it and
// returns at once with ran false. attempt numbers a retry of a failed first
// sync (0: not a retry).
func (s *Syncer) syncCoalesced(ctx context.Context, name string, attempt int) (d Diff, err error, ran bool) {
	st := s.state(name)
	if st.waiting.Add(1) > 1 {
		st.waiting.Add(-1)
		return Diff{Server: name}, nil, false
	}
	st.mu.Lock()
	st.waiting.Add(-1)
	defer st.mu.Unlock()
	d, err = s.syncLocked(ctx, name, attempt)
	return d, err, true
}

// syncLocked syncs name; attempt numbers a retry of its failed first sync
// (0: not a retry). A failed sync of a server that never synced queues the
// next retry.
func (s *Syncer) syncLocked(ctx context.Context, name string, attempt int) (d Diff, err error) {
	start := s.now()
	d.Server = name
	defer func() {
		if s.hook != nil {
			s.hook(name, d, err)
		}
	}()
	srv, err := s.reg.Get(ctx, name)
	if err != nil {
		return d, err
	}
	status, err := s.reg.Status(ctx, name)
	if errors.Is(err, registry.ErrNotFound) {
		if err = s.reg.EnsureStatus(ctx, name); err == nil {
			status, err = s.reg.Status(ctx, name)
		}
	}
	if err != nil {
		return d, err
	}
	tools, listErr := s.list(ctx, srv)
	if ctx.Err() != nil {
		return d, ctx.Err()
	}
	// Removed while we listed: write nothing, or the tools come back.
	if _, err := s.reg.Get(ctx, name); err != nil {
		return d, err
	}
	stored, err := catalog.Read(ctx, s.reg.Catalog(), name)
	if err != nil {
		return d, fmt.Errorf("read catalog of %q: %w", name, err)
	}
	existing := make(map[string]subjects.CatalogEntry, len(stored))
	for _, e := range stored {
		existing[e.Tool] = e
	}
	if listErr == nil && len(tools) == 0 && len(existing) > 0 && registry.HasCredentials(srv) {
		listErr = &SyncError{Server: name, Class: subjects.SyncAuthFailed,
			Message: fmt.Sprintf("the server listed no tools although %d were listed before; it most likely ignored or rejected the credentials — check auth_token and secret headers. The catalog was kept", len(existing))}
	}
	status.Server = name
	status.At = start.UTC()
	if listErr != nil {
		se := classify(srv, listErr)
		status.OK, status.ErrorClass, status.Message = false, se.Class, se.Message
		status.Tools = len(existing)
		status.DurationMS = msSince(start, s.now())
		if err := s.reg.PutStatus(ctx, status); err != nil {
			s.log.Warn().Err(err).Str("server", name).Msg("could not store sync status")
		}
		s.log.Warn().Str("server", name).Str("class", string(se.Class)).Msg("sync failed: " + se.Message)
		if status.LastOK.IsZero() {
			s.queueRetry(ctx, status, attempt+1)
		}
		return d, se
	}
	d, err = s.apply(ctx, srv, status.ServerID, tools, existing)
	if err != nil {
		return d, err
	}
	if _, err := s.reg.Get(ctx, name); errors.Is(err, registry.ErrNotFound) {
		// Removed while we wrote: finish the cascade for what we added.
		_ = s.reg.Delete(ctx, name)
		return d, err
	}
	status.OK, status.ErrorClass, status.Message = true, "", ""
	if len(d.Skipped) > 0 {
		status.Message = fmt.Sprintf("%d tool(s) skipped: %v", len(d.Skipped), d.Skipped)
	}
	status.Tools = len(tools) - len(d.Skipped)
	status.LastOK = status.At
	status.DurationMS = msSince(start, s.now())
	if err := s.reg.PutStatus(ctx, status); err != nil {
		s.log.Warn().Err(err).Str("server", name).Msg("could not store sync status")
	}
	ev := s.log.Info()
	if d.Empty() {
		ev = s.log.Debug()
	}
	ev.Str("server", name).Int("added", len(d.Added)).Int("updated", len(d.Updated)).
		Int("removed", len(d.Removed)).Int("held", len(d.Held)).Float64("duration_ms", status.DurationMS).Msg("synced")
	return d, nil
}

func msSince(a, b time.Time) float64 { return float64(b.Sub(a).Microseconds()) / 1000 }

// list connects and lists every tool, following pagination.
func (s *Syncer) list(ctx context.Context, srv registry.Server) ([]mcp.Tool, error) {
	res, err := s.reg.Resolve(srv)
	if err != nil {
		return nil, &SyncError{Server: srv.Name, Class: subjects.SyncConfig, Message: err.Error(), Err: err}
	}
	// Errors become the status message, printed and logged: mcp-go and
	// net/http quote URLs with their query, and a child's stderr is quoted.
	scrub := registry.Scrubber(res)
	if s.pool != nil {
		if def, ok := s.pool.Server(srv.Name); ok && reflect.DeepEqual(def, res) {
			// The pool's session, dialled now if it has none: connecting
			// may take the first connect's allowance, then listing.
			lctx, cancel := context.WithTimeout(ctx, mcppool.ConnectTimeout(res, true)+s.cfg.ListTimeout)
			defer cancel()
			tools, err := s.pool.ListTools(lctx, srv.Name)
			if err != nil {
				return nil, scrub(err)
			}
			return tools, nil
		}
		s.log.Debug().Str("server", srv.Name).Msg("the pool does not hold this definition yet; dialling for this sync")
	}
	c, err := s.dl(ctx, res, nil, false)
	if err != nil {
		return nil, scrub(err)
	}
	defer c.Close()
	lctx, cancel := context.WithTimeout(ctx, s.cfg.ListTimeout)
	defer cancel()
	out, err := c.ListTools(lctx, mcp.ListToolsRequest{})
	if err != nil {
		return nil, scrub(err)
	}
	return out.Tools, nil
}

// apply diffs the listed tools against the stored entries and writes the
// difference.
func (s *Syncer) apply(ctx context.Context, srv registry.Server, serverID string, tools []mcp.Tool, existing map[string]subjects.CatalogEntry) (Diff, error) {
	d := Diff{Server: srv.Name}
	now := s.now().UTC()
	sort.SliceStable(tools, func(i, j int) bool { return tools[i].Name < tools[j].Name })
	seen := make(map[string]bool, len(tools))
	for _, t := range tools {
		if seen[t.Name] {
			d.Skipped = append(d.Skipped, t.Name+" (listed twice)")
			continue
		}
		key, err := subjects.CatalogKey(srv.Name, t.Name)
		if err != nil {
			d.Skipped = append(d.Skipped, fmt.Sprintf("%q (%v)", t.Name, err))
			continue
		}
		seen[t.Name] = true
		old, had := existing[t.Name]
		if had {
			// Unchanged definition: skip normalizing and judging it again.
			o := old
			changed := o.ApprovedHash != "" && o.Hash != o.ApprovedHash
			if o.Hash == hashTool(t) && o.ServerID == serverID && o.Changed == changed && o.Held == (s.cfg.HoldChanged && changed) {
				d.Unchanged++
				continue
			}
		}
		ce := buildEntry(srv.Name, serverID, t, now)
		if !had {
			ce.FirstSeen, ce.ApprovedHash = now, ce.Hash
			d.Added = append(d.Added, t.Name)
		} else {
			o := old
			ce.FirstSeen, ce.ApprovedHash = o.FirstSeen, o.ApprovedHash
			if ce.ApprovedHash == "" {
				ce.ApprovedHash = o.Hash
			}
			ce.Changed = ce.Hash != ce.ApprovedHash
			ce.Held = s.cfg.HoldChanged && ce.Changed
			if o.Hash == ce.Hash && o.Held == ce.Held && o.Changed == ce.Changed && o.ServerID == serverID {
				d.Unchanged++
				continue
			}
			if o.Hash != ce.Hash {
				d.Updated = append(d.Updated, t.Name)
			}
		}
		if ce.Held {
			d.Held = append(d.Held, t.Name)
		}
		b, err := json.Marshal(ce)
		if err != nil {
			return d, err
		}
		if _, err := s.reg.Catalog().Put(ctx, key, b); err != nil {
			return d, fmt.Errorf("store tool %q of %q: %w", t.Name, srv.Name, err)
		}
	}
	for name := range existing {
		if seen[name] {
			continue
		}
		key, _ := subjects.CatalogKey(srv.Name, name)
		if err := s.reg.Catalog().Delete(ctx, key); err != nil {
			return d, fmt.Errorf("remove tool %q of %q: %w", name, srv.Name, err)
		}
		d.Removed = append(d.Removed, name)
	}
	sort.Strings(d.Removed)
	if !d.Empty() {
		err := catalog.PublishChange(ctx, s.js, subjects.CatalogChange{
			Server: srv.Name, ServerID: serverID, Added: d.Added, Updated: d.Updated,
			Removed: d.Removed, Held: d.Held, Reason: "sync", Time: now,
		})
		if err != nil {
			return d, err
		}
	}
	return d, nil
}

// buildEntry turns a listed tool into a catalog entry: schema normalized
// and judged, definition hashed. FirstSeen, ApprovedHash, Changed and Held
// are the diff's to fill.
func buildEntry(server, serverID string, t mcp.Tool, now time.Time) subjects.CatalogEntry {
	orig := inputSchemaOf(t)
	norm, fixes := catalog.Normalize(orig)
	health, reasons := catalog.ValidateSchema(norm)
	origJSON, _ := json.Marshal(orig)
	normJSON, _ := json.Marshal(norm)
	ce := subjects.CatalogEntry{
		Server: server, ServerID: serverID, Tool: t.Name,
		Title: t.Title, Description: t.Description,
		Tags:        []string{"mcp:" + server},
		InputSchema: normJSON,
		Health:      health, Reasons: reasons, Fixes: fixes,
		Annotations: subjects.ToolAnnotations{
			Title:           t.Annotations.Title,
			ReadOnlyHint:    t.Annotations.ReadOnlyHint,
			DestructiveHint: t.Annotations.DestructiveHint,
			IdempotentHint:  t.Annotations.IdempotentHint,
			OpenWorldHint:   t.Annotations.OpenWorldHint,
		},
		SyncedAt: now,
	}
	if ce.Title == "" {
		ce.Title = t.Annotations.Title
	}
	if len(fixes) > 0 {
		ce.OriginalSchema = origJSON
	}
	if out := outputSchemaOf(t); out != nil {
		ce.OutputSchema, _ = json.Marshal(out)
	}
	ce.Hash = hashTool(t)
	return ce
}

// hashTool is the SHA-256 (hex) of a tool's definition: name, title,
// description, input and output schema, annotations; JSON with sorted keys.
func hashTool(t mcp.Tool) string {
	h := sha256.New()
	def, _ := json.Marshal(map[string]any{
		"name": t.Name, "title": t.Title, "description": t.Description,
		"inputSchema": inputSchemaOf(t), "outputSchema": outputSchemaOf(t), "annotations": t.Annotations,
	})
	h.Write(def)
	return hex.EncodeToString(h.Sum(nil))
}

// inputSchemaOf rebuilds the input schema as the server sent it, as far as
// mcp-go's decoding keeps it: keys the server left out stay out, so a
// missing type or properties is seen as missing. (Top-level keywords other
// than type, properties, required, additionalProperties and $defs are not
// kept by mcp-go's client.)
func inputSchemaOf(t mcp.Tool) any {
	if len(t.RawInputSchema) > 0 {
		var v any
		if err := json.Unmarshal(t.RawInputSchema, &v); err == nil {
			return v
		}
	}
	return argsSchemaMap(mcp.ToolArgumentsSchema(t.InputSchema))
}

func outputSchemaOf(t mcp.Tool) any {
	if len(t.RawOutputSchema) > 0 {
		var v any
		if err := json.Unmarshal(t.RawOutputSchema, &v); err == nil {
			return v
		}
	}
	os := mcp.ToolArgumentsSchema(t.OutputSchema)
	if os.Type == "" && os.Properties == nil {
		return nil
	}
	return argsSchemaMap(os)
}

func argsSchemaMap(s mcp.ToolArgumentsSchema) map[string]any {
	m := map[string]any{}
	if s.Type != "" {
		m["type"] = s.Type
	}
	if s.Properties != nil {
		m["properties"] = jsonClean(s.Properties)
	}
	if s.Required != nil {
		req := make([]any, len(s.Required))
		for i, r := range s.Required {
			req[i] = r
		}
		m["required"] = req
	}
	if s.AdditionalProperties != nil {
		m["additionalProperties"] = jsonClean(s.AdditionalProperties)
	}
	if s.Defs != nil {
		m["$defs"] = jsonClean(s.Defs)
	}
	return m
}

// jsonClean round-trips v through JSON so it holds only map[string]any,
// []any and JSON scalars.
func jsonClean(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var out any
	if json.Unmarshal(b, &out) != nil {
		return v
	}
	return out
}

// SyncAll syncs every registered server, Concurrency at a time, and returns
// the diff of each server that synced; the error joins the failures.
func (s *Syncer) SyncAll(ctx context.Context) (map[string]Diff, error) {
	srvs, err := s.reg.List(ctx)
	if err != nil {
		return nil, err
	}
	var (
		mu    sync.Mutex
		diffs = make(map[string]Diff, len(srvs))
		errs  []error
		wg    sync.WaitGroup
		sem   = make(chan struct{}, s.cfg.Concurrency)
	)
	for _, srv := range srvs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return diffs, ctx.Err()
		}
		wg.Go(func() {
			defer func() { <-sem }()
			d, err := s.SyncServer(ctx, srv.Name)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			diffs[srv.Name] = d
		})
	}
	wg.Wait()
	return diffs, errors.Join(errs...)
}
