package telemetry

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/toolbus-dev/toolbus/subjects"
)

// WatchSync follows the sync status entries in the servers bucket
// (subjects.SyncStatusKey) until ctx ends: each new entry is one finished
// sync. The entries present when the watch starts set the gauges but are
// not counted as runs. It returns ctx's error, or why the watch failed.
func (m *Metrics) WatchSync(ctx context.Context, js jetstream.JetStream) error {
	kv, err := js.KeyValue(ctx, subjects.BucketServers)
	if err != nil {
		return fmt.Errorf("KV bucket %s: %w", subjects.BucketServers, err)
	}
	w, err := kv.Watch(ctx, subjects.SyncStatusPrefix+"*")
	if err != nil {
		return fmt.Errorf("watch %s: %w", subjects.BucketServers, err)
	}
	defer func() { _ = w.Stop() }()
	replaying := true
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("watch %s: ended", subjects.BucketServers)
			}
			if e == nil {
				replaying = false
				continue
			}
			m.applySync(e, !replaying)
		}
	}
}

func (m *Metrics) applySync(e jetstream.KeyValueEntry, counted bool) {
	server, err := subjects.UnescapeToken(strings.TrimPrefix(e.Key(), subjects.SyncStatusPrefix))
	if err != nil {
		return
	}
	if e.Operation() != jetstream.KeyValuePut {
		m.SyncRemoved(server)
		return
	}
	var st subjects.SyncStatus
	if json.Unmarshal(e.Value(), &st) != nil {
		return
	}
	st.Server = server // the key, not the body, names the server
	m.SyncStatus(st, counted)
}
