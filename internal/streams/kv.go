package streams

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// ReadBucket returns the current entries of kv whose keys match filter (a
// key pattern: "*", ">", "status.*"), deletes left out, in key order of
// their last write. It reads them through one watch: one round of
// messages, rather than a key listing and a get per key.
func ReadBucket(ctx context.Context, kv jetstream.KeyValue, filter string) ([]jetstream.KeyValueEntry, error) {
	w, err := kv.Watch(ctx, filter, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("read KV bucket %s: %w", kv.Bucket(), err)
	}
	defer func() { _ = w.Stop() }()
	var out []jetstream.KeyValueEntry
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("read KV bucket " + kv.Bucket() + ": the watch ended early")
			}
			if e == nil {
				return out, nil
			}
			out = append(out, e)
		}
	}
}
