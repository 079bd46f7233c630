package registry

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/toolbus-dev/toolbus/internal/catalog"
	"github.com/toolbus-dev/toolbus/internal/streams"
	"github.com/toolbus-dev/toolbus/subjects"
)

// Registry is the server registry: Server entries in the servers
// KV bucket (key: the escaped server name), each with a sync status beside
// it (key: status.<server>, a subjects.SyncStatus). Secrets are stored
// encrypted or as env: references (see SecretKeyEnv).
type Registry struct {
	js      jetstream.JetStream
	servers jetstream.KeyValue
	catalog jetstream.KeyValue
	seal    *sealer
	getenv  func(string) string
	log     zerolog.Logger
	resync  bool
	now     func() time.Time
}

// Option configures a Registry.
type Option func(*options)

type options struct {
	key      []byte
	keySet   bool
	getenv   func(string) string
	log      zerolog.Logger
	noResync bool
}

// WithSecretKey sets the encryption key (32 bytes) instead of reading
// TOOLBUS_SECRET_KEY; nil means no key.
func WithSecretKey(key []byte) Option {
	return func(o *options) { o.key, o.keySet = key, true }
}

// WithGetenv replaces os.Getenv for env: references and the key (tests).
func WithGetenv(f func(string) string) Option {
	return func(o *options) { o.getenv = f }
}

// WithLogger sets the logger.
func WithLogger(l zerolog.Logger) Option {
	return func(o *options) { o.log = l }
}

// WithoutResyncOnPut stops Put from queueing a catalog.resync.<server>
// request; for callers that sync the server themselves right after.
func WithoutResyncOnPut() Option {
	return func(o *options) { o.noResync = true }
}

// New binds the servers and catalog buckets (provisioned by
// broker.Provision) and reads the secret key from TOOLBUS_SECRET_KEY unless
// WithSecretKey says otherwise.
func New(ctx context.Context, js jetstream.JetStream, opts ...Option) (*Registry, error) {
	o := options{getenv: os.Getenv, log: zerolog.Nop()}
	for _, opt := range opts {
		opt(&o)
	}
	if !o.keySet {
		if s := o.getenv(SecretKeyEnv); s != "" {
			k, err := parseSecretKey(s)
			if err != nil {
				return nil, err
			}
			o.key = k
		}
	}
	seal, err := newSealer(o.key)
	if err != nil {
		return nil, err
	}
	servers, err := js.KeyValue(ctx, subjects.BucketServers)
	if err != nil {
		return nil, fmt.Errorf("KV bucket %s: %w (run toolbus serve once, or broker.Provision)", subjects.BucketServers, err)
	}
	catalog, err := js.KeyValue(ctx, subjects.BucketCatalog)
	if err != nil {
		return nil, fmt.Errorf("KV bucket %s: %w (run toolbus serve once, or broker.Provision)", subjects.BucketCatalog, err)
	}
	return &Registry{
		js: js, servers: servers, catalog: catalog, seal: seal,
		getenv: o.getenv, log: o.log, resync: !o.noResync, now: time.Now,
	}, nil
}

// Put validates srv, seals its secrets and stores it, then queues a sync of
// it (catalog.resync.<server>) for whichever sync replica is running. The
// registration succeeds even if that sync later fails; the server's status
// says why.
func (r *Registry) Put(ctx context.Context, srv Server) error {
	if err := srv.Validate(); err != nil {
		return err
	}
	key, _ := subjects.ServerKey(srv.Name)
	// The stored entry's ciphertexts, by field: a secret that did not change
	// keeps its ciphertext, so re-putting the same definition (the config
	// file at every start) leaves the entry as it is and workers' sessions
	// alone.
	prevSealed := map[string]string{}
	var prevRaw []byte
	if e, err := r.servers.Get(ctx, key); err == nil {
		prevRaw = e.Value()
		var prev Server
		if json.Unmarshal(prevRaw, &prev) == nil {
			_ = secretFields(&prev, func(s secret, v string) (string, error) {
				prevSealed[s.field] = v
				return v, nil
			})
		}
	}
	sealed := srv
	if err := secretFields(&sealed, func(s secret, v string) (string, error) {
		field := s.field
		switch {
		case strings.HasPrefix(v, envPrefix):
			if len(v) == len(envPrefix) {
				return "", fmt.Errorf("server %q: %s: env: needs a variable name, like env:MY_TOKEN", srv.Name, field)
			}
			return v, nil
		case strings.HasPrefix(v, encPrefix):
			if r.seal.aead != nil {
				if _, err := r.seal.open(srv.Name, field, v); err != nil {
					return "", err
				}
			}
			return v, nil
		case v == "":
			return v, nil
		}
		if p := prevSealed[field]; strings.HasPrefix(p, encPrefix) && r.seal.aead != nil {
			if old, err := r.seal.open(srv.Name, field, p); err == nil && old == v {
				return p, nil
			}
		}
		return r.seal.seal(srv.Name, field, v)
	}); err != nil {
		return err
	}
	b, err := json.Marshal(sealed)
	if err != nil {
		return err
	}
	if !bytes.Equal(b, prevRaw) {
		if _, err := r.servers.Put(ctx, key, b); err != nil {
			return fmt.Errorf("store server %q: %w", srv.Name, err)
		}
	}
	if err := r.EnsureStatus(ctx, srv.Name); err != nil {
		return err
	}
	r.log.Info().Str("server", srv.Name).Str("transport", string(srv.Transport)).Msg("server registered")
	if r.resync {
		if err := RequestResync(ctx, r.js, srv.Name); err != nil {
			r.log.Warn().Err(err).Str("server", srv.Name).Msg("could not queue the first sync; run toolbus sync")
		}
	}
	return nil
}

// RequestResync queues a sync of one server ("" = all) on the
// CATALOG_RESYNC work queue, for whichever sync replica takes it.
func RequestResync(ctx context.Context, js jetstream.JetStream, server string) error {
	subj, err := subjects.CatalogResync(server)
	if err != nil {
		return err
	}
	_, err = js.Publish(ctx, subj, nil)
	return err
}

// EnsureStatus gives a newly registered server an id and a status entry;
// one that has them keeps them.
func (r *Registry) EnsureStatus(ctx context.Context, name string) error {
	key, _ := subjects.SyncStatusKey(name)
	if _, err := r.servers.Get(ctx, key); err == nil {
		return nil
	}
	st := subjects.SyncStatus{Server: name, ServerID: newID(), Registered: r.now().UTC(), Message: "not synced yet"}
	b, _ := json.Marshal(st)
	if _, err := r.servers.Create(ctx, key, b); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("store status of %q: %w", name, err)
	}
	return nil
}

func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Get returns a stored server, secrets sealed. Use Resolve before dialing
// and Redact before printing.
func (r *Registry) Get(ctx context.Context, name string) (Server, error) {
	key, err := subjects.ServerKey(name)
	if err != nil {
		return Server{}, err
	}
	e, err := r.servers.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return Server{}, fmt.Errorf("server %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return Server{}, err
	}
	var srv Server
	if err := json.Unmarshal(e.Value(), &srv); err != nil {
		return Server{}, fmt.Errorf("server %q: stored entry is not valid JSON: %w", name, err)
	}
	return srv, nil
}

// List returns every registered server, sorted by name, secrets sealed.
func (r *Registry) List(ctx context.Context) ([]Server, error) {
	es, err := streams.ReadBucket(ctx, r.servers, "*")
	if err != nil {
		return nil, err
	}
	out := make([]Server, 0, len(es))
	for _, e := range es {
		var srv Server
		if err := json.Unmarshal(e.Value(), &srv); err != nil {
			r.log.Warn().Err(err).Str("key", e.Key()).Msg("skipping a server entry that is not valid JSON")
			continue
		}
		out = append(out, srv)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Delete removes a server, its status and all its catalog entries, and
// publishes catalog.changed.<server> naming every tool removed. Workers
// watching the registry close their sessions to it. It returns ErrNotFound
// when no such server was registered (its leftover tools are removed all the
// same).
func (r *Registry) Delete(ctx context.Context, name string) error {
	key, err := subjects.ServerKey(name)
	if err != nil {
		return err
	}
	_, getErr := r.servers.Get(ctx, key)
	st, _ := r.Status(ctx, name)
	if getErr == nil {
		if err := r.servers.Delete(ctx, key); err != nil {
			return fmt.Errorf("delete server %q: %w", name, err)
		}
	}
	skey, _ := subjects.SyncStatusKey(name)
	if err := r.servers.Purge(ctx, skey); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		r.log.Warn().Err(err).Str("server", name).Msg("could not remove sync status")
	}
	entries, err := catalog.Read(ctx, r.catalog, name)
	if err != nil {
		return fmt.Errorf("list tools of %q: %w", name, err)
	}
	var removed []string
	for _, e := range entries {
		ck, _ := subjects.CatalogKey(name, e.Tool)
		if err := r.catalog.Delete(ctx, ck); err != nil {
			return fmt.Errorf("delete tool %q of %q: %w", e.Tool, name, err)
		}
		removed = append(removed, e.Tool)
	}
	sort.Strings(removed)
	if len(removed) > 0 || getErr == nil {
		ev := subjects.CatalogChange{Server: name, ServerID: st.ServerID, Removed: removed, Reason: "server_removed", Time: r.now().UTC()}
		if err := catalog.PublishChange(ctx, r.js, ev); err != nil {
			return err
		}
	}
	r.log.Info().Str("server", name).Int("tools_removed", len(removed)).Msg("server removed")
	if getErr != nil {
		return fmt.Errorf("server %q: %w", name, ErrNotFound)
	}
	return nil
}

// Resolve returns srv with its secrets in the clear: env: references read
// from this process's environment (percent-encoded when they sit inside a
// URL), ciphertext decrypted. Call it right before dialing, and never log
// the result.
func (r *Registry) Resolve(srv Server) (Server, error) {
	out := srv
	err := secretFields(&out, func(s secret, v string) (string, error) {
		switch {
		case strings.HasPrefix(v, envPrefix):
			name := v[len(envPrefix):]
			val := r.getenv(name)
			if val == "" {
				return "", fmt.Errorf("server %q: %s refers to the environment variable %s, which is not set in this process", srv.Name, s.field, name)
			}
			return escapeIn(s.in, val), nil
		case strings.HasPrefix(v, encPrefix):
			return r.seal.open(srv.Name, s.field, v)
		}
		return v, nil
	})
	return out, err
}

// Redact returns srv fit for printing (servers list and show, --json, logs,
// messages): env: references stay (they are names, not secrets), every
// other secret secretFields finds becomes "<encrypted>" or "<redacted>" —
// the whole value, or just the password or query value inside a URL, or
// the value of a secret flag in args.
func Redact(srv Server) Server {
	_ = secretFields(&srv, func(_ secret, v string) (string, error) {
		switch {
		case strings.HasPrefix(v, envPrefix), v == "":
			return v, nil
		case strings.HasPrefix(v, encPrefix):
			return "<encrypted>", nil
		}
		return "<redacted>", nil
	})
	return srv
}

// Watch calls f for every registered server (initial values first), then
// ready (when not nil) once, then f for every change, until ctx ends: srv
// is nil when the server was removed. Secrets in srv are sealed; Resolve
// before dialing. Watch blocks; it returns nil when ctx ends.
func (r *Registry) Watch(ctx context.Context, f func(name string, srv *Server), ready func()) error {
	w, err := r.servers.Watch(ctx, "*")
	if err != nil {
		return err
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return errors.New("registry watch ended")
			}
			if e == nil {
				if ready != nil {
					ready()
				}
				continue
			}
			name, err := subjects.UnescapeToken(e.Key())
			if err != nil {
				continue
			}
			if e.Operation() != jetstream.KeyValuePut {
				f(name, nil)
				continue
			}
			var srv Server
			if err := json.Unmarshal(e.Value(), &srv); err != nil {
				r.log.Warn().Err(err).Str("server", name).Msg("skipping a server entry that is not valid JSON")
				continue
			}
			f(name, &srv)
		}
	}
}

// Status returns a server's last sync status.
func (r *Registry) Status(ctx context.Context, name string) (subjects.SyncStatus, error) {
	key, err := subjects.SyncStatusKey(name)
	if err != nil {
		return subjects.SyncStatus{}, err
	}
	e, err := r.servers.Get(ctx, key)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			return subjects.SyncStatus{Server: name}, fmt.Errorf("status of %q: %w", name, ErrNotFound)
		}
		return subjects.SyncStatus{Server: name}, err
	}
	var st subjects.SyncStatus
	err = json.Unmarshal(e.Value(), &st)
	return st, err
}

// PutStatus stores a server's sync status (the syncer's record of its last
// sync).
func (r *Registry) PutStatus(ctx context.Context, st subjects.SyncStatus) error {
	key, err := subjects.SyncStatusKey(st.Server)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(st)
	_, err = r.servers.Put(ctx, key, b)
	return err
}

// Tools returns the catalog entries of one server, or of all servers when
// server is "", sorted by server then tool.
func (r *Registry) Tools(ctx context.Context, server string) ([]subjects.CatalogEntry, error) {
	return catalog.Read(ctx, r.catalog, server)
}

// Catalog is the catalog bucket the registry cascades deletes into, for the
// syncer that writes it.
func (r *Registry) Catalog() jetstream.KeyValue { return r.catalog }

// Approve accepts a changed tool's current definition: it becomes the
// approved one, and a held tool is released to workers.
func (r *Registry) Approve(ctx context.Context, server, tool string) error {
	key, err := subjects.CatalogKey(server, tool)
	if err != nil {
		return err
	}
	for range 3 {
		e, err := r.catalog.Get(ctx, key)
		if err != nil {
			if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
				return fmt.Errorf("tool %q of server %q: %w", tool, server, catalog.ErrUnknownTool)
			}
			return err
		}
		var ce subjects.CatalogEntry
		if err := json.Unmarshal(e.Value(), &ce); err != nil {
			return err
		}
		if !ce.Changed && !ce.Held && ce.ApprovedHash == ce.Hash {
			return nil
		}
		ce.ApprovedHash, ce.Changed, ce.Held = ce.Hash, false, false
		b, _ := json.Marshal(ce)
		if _, err := r.catalog.Update(ctx, key, b, e.Revision()); err != nil {
			if errors.Is(err, jetstream.ErrKeyExists) || strings.Contains(err.Error(), "wrong last sequence") {
				continue // a sync wrote it meanwhile; read again
			}
			return err
		}
		return catalog.PublishChange(ctx, r.js, subjects.CatalogChange{
			Server: server, ServerID: ce.ServerID, Updated: []string{tool}, Reason: "approved", Time: r.now().UTC(),
		})
	}
	return fmt.Errorf("approve %s/%s: the entry kept changing; try again", server, tool)
}
