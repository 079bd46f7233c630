package streams_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/toolbus-dev/toolbus/internal/broker"
	"github.com/toolbus-dev/toolbus/internal/natstest"
	"github.com/toolbus-dev/toolbus/internal/streams"
	"github.com/toolbus-dev/toolbus/subjects"
)

func provision(t *testing.T, js jetstream.JetStream, o streams.Options) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := broker.Provision(ctx, js, o, streams.WorkerConsumer(0, 0, 0)); err != nil {
		t.Fatalf("provision: %v", err)
	}
}

// Full TOOL_RESULTS and ledger drop their oldest entries and keep taking
// new ones: a full ledger must never refuse the start mark of a new call,
// and the ledger still reads as a KV bucket with write-once creates.
func TestRetentionDropsOldestWhenFull(t *testing.T) {
	s := natstest.StartBare(t)
	o := streams.Options{ResultMaxBytes: 1 << 20, LedgerMaxBytes: 1 << 20}
	provision(t, s.JS, o)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	kv, err := s.JS.KeyValue(ctx, subjects.BucketLedger)
	if err != nil {
		t.Fatalf("the ledger stream does not bind as a KV bucket: %v", err)
	}
	value := []byte(strings.Repeat("l", 1000))
	const n = 3000 // ~3 MB of marks into a 1 MiB ledger
	for i := range n {
		if _, err := kv.Create(ctx, fmt.Sprintf("agent.call%d", i), value); err != nil {
			t.Fatalf("mark %d refused: %v", i, err)
		}
	}
	if _, err := kv.Create(ctx, fmt.Sprintf("agent.call%d", n-1), value); !errors.Is(err, jetstream.ErrKeyExists) {
		t.Fatalf("second create of a mark: %v, want ErrKeyExists", err)
	}
	if _, err := kv.Get(ctx, "agent.call0"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("oldest mark: %v, want dropped", err)
	}
	if _, err := kv.Get(ctx, fmt.Sprintf("agent.call%d", n-1)); err != nil {
		t.Fatalf("newest mark: %v", err)
	}

	result := []byte(strings.Repeat("r", 1000))
	for i := range n {
		m := nats.NewMsg(subjects.ToolResult("agent", fmt.Sprintf("call%d", i)))
		m.Data = result
		if _, err := s.JS.PublishMsg(ctx, m, jetstream.WithExpectLastSequencePerSubject(0)); err != nil {
			t.Fatalf("result %d refused: %v", i, err)
		}
	}
	for _, name := range []string{subjects.StreamResults, streams.KVStream(subjects.BucketLedger)} {
		str, err := s.JS.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		st := str.CachedInfo().State
		if st.Bytes > 1<<20 || st.Msgs == 0 || st.Msgs >= n {
			t.Errorf("%s holds %d messages, %d bytes; want under 1 MiB, oldest dropped", name, st.Msgs, st.Bytes)
		}
	}
}

// A ledger made by an earlier toolbus with CreateKeyValue (DiscardNew, no
// byte cap) is updated in place, marks kept.
func TestLedgerBucketFromCreateKeyValueIsUpdated(t *testing.T) {
	s := natstest.StartBare(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := s.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: subjects.BucketLedger, History: 1, Storage: jetstream.FileStorage, TTL: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, "agent.old", []byte("x")); err != nil {
		t.Fatal(err)
	}
	provision(t, s.JS, streams.Options{})
	str, err := s.JS.Stream(ctx, streams.KVStream(subjects.BucketLedger))
	if err != nil {
		t.Fatal(err)
	}
	cfg := str.CachedInfo().Config
	if cfg.Discard != jetstream.DiscardOld || cfg.MaxBytes != streams.DefaultLedgerMaxBytes || !cfg.AllowMsgTTL {
		t.Fatalf("ledger config not updated: discard %v max_bytes %d allow_msg_ttl %v", cfg.Discard, cfg.MaxBytes, cfg.AllowMsgTTL)
	}
	if _, err := kv.Get(ctx, "agent.old"); err != nil {
		t.Fatalf("mark lost in the update: %v", err)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		o    streams.Options
		want string
	}{
		{streams.Options{}, ""},
		{streams.Options{ResultMaxBytes: -1, LedgerMaxBytes: -1}, ""},
		{streams.Options{ResultMaxBytes: 1000}, "result_max_bytes"},
		{streams.Options{LedgerMaxBytes: -5}, "ledger_max_bytes"},
		{streams.Options{LedgerMaxAge: -time.Second}, "ledger_max_age"},
	} {
		err := tc.o.Validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v, want %q", tc.o, err, tc.want)
		}
	}
}

// The ledger takes per-message TTLs, so the worker can give a start mark
// exactly its call's lifetime: a mark created with KeyTTL expires.
func TestLedgerMarkWithTTLExpires(t *testing.T) {
	s := natstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := s.JS.KeyValue(ctx, subjects.BucketLedger)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, "agent.short", []byte("x"), jetstream.KeyTTL(time.Second)); err != nil {
		t.Fatalf("mark with a TTL refused: %v", err)
	}
	if _, err := kv.Create(ctx, "agent.long", []byte("x")); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := kv.Get(ctx, "agent.short")
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("mark with a 1s TTL still there: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := kv.Get(ctx, "agent.long"); err != nil {
		t.Fatalf("mark without a TTL: %v", err)
	}
}
