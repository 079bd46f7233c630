package frontdoor

import (
	"context"
	"encoding/json"
	"fmt"
	gosync "sync"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/toolbus-dev/toolbus/subjects"
)

// catalog is the front door's copy of the catalog KV bucket, followed
// live. Every change bumps the version and signals changed.
type catalog struct {
	log zerolog.Logger

	mu      gosync.RWMutex
	entries map[ref]*subjects.CatalogEntry
	version uint64
	changed chan struct{} // 1-buffered: a change since the last read
}

// watchCatalog loads the catalog and follows it until ctx ends. It returns
// once the current entries are in; done is closed when the watch ends.
func watchCatalog(ctx context.Context, js jetstream.JetStream, log zerolog.Logger) (*catalog, <-chan error, error) {
	kv, err := js.KeyValue(ctx, subjects.BucketCatalog)
	if err != nil {
		return nil, nil, fmt.Errorf("KV bucket %s (is `toolbus serve` running, and may this connection read the catalog?): %w", subjects.BucketCatalog, err)
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("watch %s: %w", subjects.BucketCatalog, err)
	}
	c := &catalog{log: log, entries: map[ref]*subjects.CatalogEntry{}, changed: make(chan struct{}, 1)}
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		defer func() { _ = w.Stop() }()
		first := true
		for {
			select {
			case <-ctx.Done():
				done <- nil
				return
			case e, ok := <-w.Updates():
				if !ok {
					done <- fmt.Errorf("catalog watch ended")
					return
				}
				if e == nil {
					if first {
						first = false
						close(ready)
					}
					continue
				}
				c.apply(e)
			}
		}
	}()
	select {
	case <-ready:
		return c, done, nil
	case err := <-done:
		if err == nil {
			err = ctx.Err()
		}
		return nil, nil, err
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
}

func (c *catalog) apply(e jetstream.KeyValueEntry) {
	server, tool, err := subjects.ParseCatalogKey(e.Key())
	if err != nil {
		return
	}
	r := ref{server, tool}
	c.mu.Lock()
	if e.Operation() != jetstream.KeyValuePut {
		delete(c.entries, r)
	} else {
		var ce subjects.CatalogEntry
		if err := json.Unmarshal(e.Value(), &ce); err != nil {
			c.mu.Unlock()
			c.log.Warn().Err(err).Str("key", e.Key()).Msg("front door: skipping a catalog entry that is not valid JSON")
			return
		}
		c.entries[r] = &ce
	}
	c.version++
	c.mu.Unlock()
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// healthy reports whether a tool is listed: its schema is usable and it is
// not held for approval.
func healthy(e *subjects.CatalogEntry) bool {
	return e.Health != subjects.HealthInvalid && !e.Held
}

// snapshot returns the listed tools and the version they are at.
func (c *catalog) snapshot() (map[ref]*subjects.CatalogEntry, uint64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make(map[ref]*subjects.CatalogEntry, len(c.entries))
	for r, e := range c.entries {
		if healthy(e) {
			out[r] = e
		}
	}
	return out, c.version
}
