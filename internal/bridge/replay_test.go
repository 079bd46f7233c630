package bridge

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/toolbus-dev/toolbus/internal/natstest"
	"github.com/toolbus-dev/toolbus/internal/streams"
	"github.com/toolbus-dev/toolbus/internal/testutil"
	"github.com/toolbus-dev/toolbus/subjects"
)

// TestReplicasShareDuplicates: a signed request replayed to another bridge
// replica is the same event — the Nats-Msg-Id derived from the signature
// de-duplicates it in JetStream.
func TestReplicasShareDuplicates(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	hooks := []Hook{{Name: "zap", Auth: AuthHMAC, Secret: string(secret)}}
	a, b := startBridge(t, srv.JS, hooks)+"/hooks/zap", startBridge(t, srv.JS, hooks)+"/hooks/zap"
	body := []byte(`{"x":1}`)
	sent := signed(body, time.Now(), nil)
	first, second := post(t, a, body, sent), post(t, b, body, sent)
	if first.status != 202 || second.status != 202 || !second.acc.Duplicate || second.acc.EventID != first.acc.EventID {
		t.Fatalf("%+v %+v", first, second)
	}
	if n := len(testutil.StreamMsgs(t, srv.JS, subjects.StreamEvents, "events.webhook.zap")); n != 1 {
		t.Fatalf("%d events, want 1", n)
	}
}

// TestReplayPastDuplicateWindow: the bridge remembers an accepted request
// for as long as its timestamp is valid, longer than the stream's duplicate
// window; another replica, without that memory, has only the window.
func TestReplayPastDuplicateWindow(t *testing.T) {
	t.Parallel()
	srv := natstest.StartBare(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, cfg := range streams.Streams(streams.Options{DuplicateWindow: 100 * time.Millisecond}) {
		if cfg.Name != subjects.StreamEvents {
			continue
		}
		if _, err := srv.JS.CreateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	hooks := []Hook{{Name: "zap", Auth: AuthHMAC, Secret: string(secret)}}
	a, b := startBridge(t, srv.JS, hooks)+"/hooks/zap", startBridge(t, srv.JS, hooks)+"/hooks/zap"
	body := []byte(`{"x":1}`)
	sent := signed(body, time.Now(), nil)
	first := post(t, a, body, sent)
	if first.status != 202 {
		t.Fatalf("%+v", first)
	}
	waitDuplicateWindow(t, srv.JS)

	if r := post(t, a, body, sent); r.status != 202 || !r.acc.Duplicate || r.acc.EventID != first.acc.EventID {
		t.Fatalf("replay to the same replica: %+v", r)
	}
	if n := len(testutil.StreamMsgs(t, srv.JS, subjects.StreamEvents, "events.webhook.zap")); n != 1 {
		t.Fatalf("%d events, want 1", n)
	}
	// The documented limit: past the window, another replica stores it.
	if r := post(t, b, body, sent); r.status != 202 || r.acc.Duplicate {
		t.Fatalf("replay to another replica past the window: %+v", r)
	}
}

// waitDuplicateWindow returns once a message id published now is forgotten
// by the stream: the window has passed for everything published before.
func waitDuplicateWindow(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	probe := func() (*jetstream.PubAck, error) {
		msg := nats.NewMsg("events.webhook.probe")
		msg.Header.Set(subjects.HeaderCallID, "probe")
		return js.PublishMsg(context.Background(), msg)
	}
	if _, err := probe(); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 10*time.Second, func() error {
		ack, err := probe()
		if err != nil {
			return err
		}
		if ack.Duplicate {
			return errors.New("still inside the duplicate window")
		}
		return nil
	})
}

func TestMemory(t *testing.T) {
	t0 := time.Unix(1_767_225_600, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }

	m := newMemory(3)
	m.remember("a", at(10*time.Second), t0)
	if !m.seen("a", at(5*time.Second)) || m.seen("a", at(10*time.Second)) || m.seen("b", t0) {
		t.Fatal("window")
	}
	// Past the cap, the oldest goes first.
	for _, id := range []string{"b", "c", "d"} {
		m.remember(id, at(time.Hour), at(time.Second))
	}
	if m.len() != 3 || m.seen("a", at(2*time.Second)) || !m.seen("b", at(2*time.Second)) || !m.seen("d", at(2*time.Second)) {
		t.Fatalf("cap: %d held", m.len())
	}
	// A remembered id keeps its first window.
	m.remember("b", at(3*time.Hour), at(2*time.Second))
	if m.seen("b", at(time.Hour)) {
		t.Fatal("window extended")
	}

	// Windows of different lengths: a short one behind a long one is held
	// but not seen, and an id remembered again after its window keeps the
	// new one when the old entry leaves.
	m = newMemory(10)
	m.remember("long", at(time.Hour), t0)
	m.remember("short", at(time.Second), t0)
	if m.seen("short", at(2*time.Second)) {
		t.Fatal("expired id seen")
	}
	m.remember("short", at(3*time.Hour), at(2*time.Second))
	m.remember("later", at(4*time.Hour), at(2*time.Hour))
	if !m.seen("short", at(2*time.Hour)) || m.seen("long", at(2*time.Hour)) || m.len() != 2 {
		t.Fatalf("after the sweep: %d held", m.len())
	}
	// Expired ids leave as new ones come, so a steady flow stays bounded.
	m = newMemory(1_000_000)
	for i := range 10_000 {
		now := at(time.Duration(i) * time.Second)
		m.remember(strconv.Itoa(i), now.Add(time.Minute), now)
	}
	if n := m.len(); n > 61 {
		t.Fatalf("%d held with a one-minute window and one id a second", n)
	}
	if len(m.queue)-m.head > 61 || cap(m.queue) > 4096 {
		t.Fatalf("queue: %d live of %d, capacity %d", len(m.queue)-m.head, len(m.queue), cap(m.queue))
	}
}

func TestMemoryConcurrent(t *testing.T) {
	t.Parallel()
	m := newMemory(100)
	now := time.Now()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				id := fmt.Sprintf("%d-%d", g, i%150)
				if !m.seen(id, now) {
					m.remember(id, now.Add(time.Minute), now)
				}
			}
		}()
	}
	wg.Wait()
	if n := m.len(); n > 100 {
		t.Fatalf("%d held, cap 100", n)
	}
}
