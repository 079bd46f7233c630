package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/toolbus-dev/toolbus/internal/streams"
	"github.com/toolbus-dev/toolbus/subjects"
)

// Read returns the stored catalog entries of one server, or of all servers
// when server is "", sorted by server then tool. Entries that are not valid
// JSON are left out.
func Read(ctx context.Context, kv jetstream.KeyValue, server string) ([]subjects.CatalogEntry, error) {
	filter := ">"
	if server != "" {
		var err error
		if filter, err = subjects.CatalogServerKeys(server); err != nil {
			return nil, err
		}
	}
	es, err := streams.ReadBucket(ctx, kv, filter)
	if err != nil {
		return nil, err
	}
	out := make([]subjects.CatalogEntry, 0, len(es))
	for _, e := range es {
		var ce subjects.CatalogEntry
		if json.Unmarshal(e.Value(), &ce) == nil {
			out = append(out, ce)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Server != out[j].Server {
			return out[i].Server < out[j].Server
		}
		return out[i].Tool < out[j].Tool
	})
	return out, nil
}

// PublishChange publishes a catalog change event on the EVENTS stream.
func PublishChange(ctx context.Context, js jetstream.JetStream, ev subjects.CatalogChange) error {
	subj, err := subjects.CatalogChanged(ev.Server)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(ev)
	msg := nats.NewMsg(subj)
	msg.Data = b
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("publish %s: %w", subj, err)
	}
	return nil
}
