package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/toolbus-dev/toolbus/internal/streams"
	"github.com/toolbus-dev/toolbus/subjects"
)

// Keys in the schedules bucket: def.<name> holds a Schedule added with Put
// (`toolbus schedules add`); status.<name> holds the Status of every
// schedule that has fired, from the config file or the bucket. Names are
// escaped with subjects.EscapeToken.
const (
	defPrefix    = "def."
	statusPrefix = "status."
)

// Source says where a schedule is defined.
type Source string

const (
	// SourceKV: added with Put (toolbus schedules add); removable with Delete.
	SourceKV Source = "kv"
	// SourceConfig: listed in a scheduler's config file. Known to List only
	// once it has fired, from its status.
	SourceConfig Source = "config"
)

// Status is what the scheduler records after each tick it published.
type Status struct {
	// Schedule is the definition that fired (so List can show config
	// schedules, which the bucket does not hold).
	Schedule Schedule `json:"schedule"`
	Source   Source   `json:"source"`
	// LastFire is the scheduled time of the last published tick.
	LastFire time.Time `json:"last_fire"`
	// FiredAt is when it was actually published.
	FiredAt time.Time `json:"fired_at"`
	// MsgID is the Nats-Msg-Id it was published with.
	MsgID string `json:"msg_id"`
	// Subject it was published on, and the stream sequence.
	Subject string `json:"subject"`
	Seq     uint64 `json:"seq"`
}

// Info is one row of List (and of `toolbus schedules list --json`).
type Info struct {
	Schedule Schedule `json:"schedule"`
	Source   Source   `json:"source"`
	// Next is the next tick after now (zero if the spec has none).
	Next time.Time `json:"next,omitzero"`
	// Status is the last recorded fire, nil if it never fired.
	Status *Status `json:"status,omitempty"`
}

func bucket(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, subjects.BucketSchedules)
	if err != nil {
		return nil, fmt.Errorf("schedules bucket %s: %w", subjects.BucketSchedules, err)
	}
	return kv, nil
}

// Put validates s and stores it in the schedules bucket, where every running
// scheduler picks it up at once. A schedule of the same name in a config
// file is overridden while this one exists.
func Put(ctx context.Context, js jetstream.JetStream, s Schedule) error {
	c, err := s.compile()
	if err != nil {
		return err
	}
	kv, err := bucket(ctx, js)
	if err != nil {
		return err
	}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, defPrefix+c.key, b); err != nil {
		return fmt.Errorf("store schedule %q: %w", s.Name, err)
	}
	return nil
}

// Delete removes a schedule added with Put, and its status. It returns
// ErrNotFound if the bucket holds no schedule of that name.
func Delete(ctx context.Context, js jetstream.JetStream, name string) error {
	key, err := subjects.EscapeToken(name)
	if err != nil {
		return fmt.Errorf("name: %w", err)
	}
	kv, err := bucket(ctx, js)
	if err != nil {
		return err
	}
	if _, err := kv.Get(ctx, defPrefix+key); err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("%w: %q", ErrNotFound, name)
		}
		return err
	}
	if err := kv.Delete(ctx, defPrefix+key); err != nil {
		return fmt.Errorf("delete schedule %q: %w", name, err)
	}
	if err := kv.Delete(ctx, statusPrefix+key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("delete status of %q: %w", name, err)
	}
	return nil
}

// List returns the bucket's schedules, and config schedules that have fired,
// sorted by name, each with its next tick after now and its last fire.
func List(ctx context.Context, js jetstream.JetStream, now time.Time) ([]Info, error) {
	kv, err := bucket(ctx, js)
	if err != nil {
		return nil, err
	}
	es, err := streams.ReadBucket(ctx, kv, ">")
	if err != nil {
		return nil, err
	}
	byName := map[string]*Info{}
	statuses := map[string]*Status{}
	for _, e := range es {
		key := e.Key()
		switch {
		case strings.HasPrefix(key, defPrefix):
			var s Schedule
			if err := json.Unmarshal(e.Value(), &s); err != nil {
				return nil, fmt.Errorf("key %s: %w", key, err)
			}
			byName[s.Name] = &Info{Schedule: s, Source: SourceKV}
		case strings.HasPrefix(key, statusPrefix):
			var st Status
			if err := json.Unmarshal(e.Value(), &st); err != nil {
				return nil, fmt.Errorf("key %s: %w", key, err)
			}
			statuses[st.Schedule.Name] = &st
		}
	}
	for name, st := range statuses {
		if in, ok := byName[name]; ok {
			in.Status = st
			continue
		}
		byName[name] = &Info{Schedule: st.Schedule, Source: SourceConfig, Status: st}
	}
	out := make([]Info, 0, len(byName))
	for _, in := range byName {
		if c, err := in.Schedule.compile(); err == nil {
			in.Next = c.next(now)
		}
		out = append(out, *in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Schedule.Name < out[j].Schedule.Name })
	return out, nil
}

func getStatus(ctx context.Context, kv jetstream.KeyValue, key string) (*Status, error) {
	e, err := kv.Get(ctx, statusPrefix+key)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, nil
		}
		return nil, err
	}
	var st Status
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return nil, err
	}
	return &st, nil
}
