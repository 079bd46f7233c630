package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"gopkg.in/yaml.v3"

	"github.com/toolbus-dev/toolbus/internal/natstest"
	"github.com/toolbus-dev/toolbus/internal/testutil"
	"github.com/toolbus-dev/toolbus/subjects"
)

// recorder collects the OnFire reports of every replica.
type recorder struct {
	mu    sync.Mutex
	fires []Fire
}

func (r *recorder) add(f Fire) {
	r.mu.Lock()
	r.fires = append(r.fires, f)
	r.mu.Unlock()
}

func (r *recorder) count(pred func(Fire) bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, f := range r.fires {
		if pred(f) {
			n++
		}
	}
	return n
}

func all(Fire) bool { return true }

// replica is a scheduler running on its own connection until the test
// ends, or until stop (graceful: it releases the lease) or kill (its
// connection is cut first, as if the process died: the lease stays behind).
type replica struct {
	s     *Scheduler
	nc    *nats.Conn
	stop  func()
	alive atomic.Bool
}

func (r *replica) kill() {
	r.nc.Close()
	r.stop()
}

func (r *replica) leading() bool { return r.alive.Load() && r.s.lease.isLeading() }

func startReplica(t *testing.T, srv *natstest.Server, opts ...Option) *replica {
	t.Helper()
	return startReplicaOn(t, srv.Conn(t), opts...)
}

func startReplicaOn(t *testing.T, nc *nats.Conn, opts ...Option) *replica {
	t.Helper()
	r := &replica{nc: nc}
	js, err := jetstream.New(r.nc)
	if err != nil {
		t.Fatal(err)
	}
	r.s, err = New(js, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel), opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	r.alive.Store(true)
	go func() { done <- r.s.Run(ctx) }()
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
			r.alive.Store(false)
		})
	}
	t.Cleanup(r.stop)
	return r
}

// startScheduler runs one scheduler until the test ends or stop.
func startScheduler(t *testing.T, srv *natstest.Server, opts ...Option) (stop func()) {
	t.Helper()
	return startReplica(t, srv, opts...).stop
}

// waitWaiters waits until n timers are pending: one per schedule of the
// leader, plus the lease's of every replica.
func waitWaiters(t *testing.T, c *fakeClock, n int) {
	t.Helper()
	testutil.CheckFor(t, 10*time.Second, func() error {
		if w := c.Waiters(); w != n {
			return fmt.Errorf("%d timers pending, want %d", w, n)
		}
		return nil
	})
}

func TestWakeInTimeZone(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	// 2026-03-07 07:00 in New York (EST, UTC-5). DST starts on 2026-03-08.
	clock := newFakeClock(time.Date(2026, 3, 7, 12, 0, 0, 0, time.UTC))
	sched := Schedule{Name: "morning", Spec: "0 9 * * *", TZ: "America/New_York", Kind: KindWake, Agent: "planner", Payload: json.RawMessage(`{"task":"plan the day"}`)}
	rec := &recorder{}
	startScheduler(t, srv, WithClock(clock), WithSchedules([]Schedule{sched}), WithOnFire(rec.add))
	waitWaiters(t, clock, 2)

	want := []time.Time{
		time.Date(2026, 3, 7, 14, 0, 0, 0, time.UTC), // 09:00 EST
		time.Date(2026, 3, 8, 13, 0, 0, 0, time.UTC), // 09:00 EDT
	}
	for i, at := range want {
		if !clock.HasTimerAt(at) {
			t.Fatalf("wake %d: no timer at %v: %v", i, at, clock.Pending())
		}
		clock.Set(at.Add(-time.Second))
		waitWaiters(t, clock, 2)
		if rec.count(all) != i || !clock.HasTimerAt(at) {
			t.Fatalf("wake %d fired a second early", i)
		}
		clock.Set(at)
		testutil.CheckFor(t, 10*time.Second, func() error {
			if n := rec.count(all); n != i+1 {
				return fmt.Errorf("%d fires, want %d", n, i+1)
			}
			return nil
		})
		msgs := testutil.StreamMsgs(t, srv.JS, subjects.StreamEvents, "agent.wake.planner")
		if len(msgs) != i+1 {
			t.Fatalf("%d wake messages, want %d", len(msgs), i+1)
		}
		m := msgs[i]
		if got := m.Header.Get(HeaderScheduledAt); got != at.Format(time.RFC3339) {
			t.Errorf("scheduled at %q, want %q", got, at.Format(time.RFC3339))
		}
		if string(m.Data) != `{"task":"plan the day"}` {
			t.Errorf("payload %s", m.Data)
		}
		waitWaiters(t, clock, 2)
	}
	// The agent's durable wake-up consumer was made before the first
	// tick, so both wait for the agent there.
	cons, err := srv.JS.Consumer(context.Background(), subjects.StreamEvents, subjects.WakeConsumer("planner"))
	if err != nil {
		t.Fatalf("wake-up consumer of planner: %v", err)
	}
	if info, err := cons.Info(context.Background()); err != nil || info.NumPending != 2 {
		t.Fatalf("wake-up consumer: %+v %v; want 2 waiting", info, err)
	}
}

func TestBucketScheduleLive(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 3, 0, time.UTC)
	clock := newFakeClock(t0)
	rec := &recorder{}
	startScheduler(t, srv, WithClock(clock), WithOnFire(rec.add))
	// Let the scheduler start with an empty bucket.
	testutil.CheckFor(t, 20*time.Second, func() error {
		_, err := List(ctx, srv.JS, clock.Now())
		return err
	})

	sched := Schedule{Name: "nightly report", Spec: "@every 10s", Kind: KindPublish, Subject: "tool.call.reporter.demo.echo",
		Payload: json.RawMessage(`{"text":"hi"}`), Agent: "reporter", Headers: map[string]string{"X-Team": "reports"}}
	if err := Put(ctx, srv.JS, sched); err != nil {
		t.Fatal(err)
	}
	waitWaiters(t, clock, 2)
	clock.Advance(7 * time.Second) // to 12:00:10
	testutil.CheckFor(t, 10*time.Second, func() error {
		if n := rec.count(all); n != 1 {
			return fmt.Errorf("%d fires", n)
		}
		return nil
	})
	msgs := testutil.StreamMsgs(t, srv.JS, subjects.StreamCalls, "tool.call.reporter.demo.echo")
	if len(msgs) != 1 {
		t.Fatalf("%d calls stored", len(msgs))
	}
	m := msgs[0]
	tick := time.Date(2026, 3, 1, 12, 0, 10, 0, time.UTC)
	id := m.Header.Get(subjects.HeaderCallID)
	if err := subjects.ValidateCallID(id); err != nil || id != CallID("nightly report", tick) || !strings.HasSuffix(id, fmt.Sprint(tick.Unix())) {
		t.Errorf("call id %q: %v", id, err)
	}
	dl, err := subjects.ParseDeadline(m.Header.Get(subjects.HeaderDeadline))
	if err != nil || !dl.Equal(tick.Add(DefaultCallTimeout)) {
		t.Errorf("deadline %v, %v", dl, err)
	}
	if m.Header.Get("X-Team") != "reports" {
		t.Errorf("headers %v", m.Header)
	}
	if string(m.Data) != `{"text":"hi"}` {
		t.Errorf("body %s", m.Data)
	}

	infos, err := List(ctx, srv.JS, clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 1 || infos[0].Source != SourceKV || infos[0].Status == nil || !infos[0].Status.LastFire.Equal(tick) ||
		!infos[0].Next.Equal(tick.Add(10*time.Second)) {
		t.Fatalf("list: %+v", infos)
	}

	// A change restarts it with the new spec.
	waitWaiters(t, clock, 2)
	sched.Spec = "@every 1m"
	if err := Put(ctx, srv.JS, sched); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 10*time.Second, func() error {
		if at := time.Date(2026, 3, 1, 12, 1, 0, 0, time.UTC); !clock.HasTimerAt(at) || clock.Waiters() != 2 {
			return fmt.Errorf("timers at %v, want the lease's and %v", clock.Pending(), at)
		}
		return nil
	})

	// Removal stops it.
	if err := Delete(ctx, srv.JS, "nightly report"); err != nil {
		t.Fatal(err)
	}
	waitWaiters(t, clock, 1)
	if err := Delete(ctx, srv.JS, "nightly report"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if infos, _ := List(ctx, srv.JS, clock.Now()); len(infos) != 0 {
		t.Fatalf("list after delete: %+v", infos)
	}
}

func TestMissedTickPolicies(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	t0 := time.Date(2026, 3, 1, 12, 0, 30, 0, time.UTC)
	clock := newFakeClock(t0)
	scheds := []Schedule{
		{Name: "skipper", Spec: "0 * * * * *", Kind: KindWake, Agent: "skipper"},
		{Name: "catcher", Spec: "0 * * * * *", Kind: KindWake, Agent: "catcher", Missed: MissedOnce},
	}
	count := func(agent string) int {
		return len(testutil.StreamMsgs(t, srv.JS, subjects.StreamEvents, "agent.wake."+agent))
	}
	rec := &recorder{}
	stop := startScheduler(t, srv, WithName("first"), WithClock(clock), WithSchedules(scheds), WithOnFire(rec.add))
	waitWaiters(t, clock, 3)
	clock.Advance(30 * time.Second) // 12:01:00, both fire
	testutil.CheckFor(t, 10*time.Second, func() error {
		if n := rec.count(all); n != 2 {
			return fmt.Errorf("%d fires", n)
		}
		return nil
	})
	waitWaiters(t, clock, 3)
	stop()

	// Every replica is down from 12:01:00 to 12:10:45, past the grace
	// (30s) of the 12:10:00 tick. Another replica leads on return: it
	// reads the last fires the first one recorded.
	clock.Set(time.Date(2026, 3, 1, 12, 10, 45, 0, time.UTC))
	rec2 := &recorder{}
	var missedMu sync.Mutex
	missed := map[string]int{}
	onMissed := func(name string, n int) { missedMu.Lock(); missed[name] += n; missedMu.Unlock() }
	startScheduler(t, srv, WithName("second"), WithClock(clock), WithSchedules(scheds), WithOnFire(rec2.add), WithOnMissed(onMissed))
	testutil.CheckFor(t, 10*time.Second, func() error {
		if n := rec2.count(all); n != 1 {
			return fmt.Errorf("%d fires on return, want 1", n)
		}
		return nil
	})
	// 12:02 to 12:10 were missed: the skipper skips all nine, the catcher
	// fires 12:10 and misses the eight before it.
	natstest.CheckFor(t, 10*time.Second, func() error {
		missedMu.Lock()
		defer missedMu.Unlock()
		if missed["skipper"] != 9 || missed["catcher"] != 8 {
			return fmt.Errorf("missed ticks %v, want skipper 9, catcher 8", missed)
		}
		return nil
	})
	waitWaiters(t, clock, 3)
	rec2.mu.Lock()
	f := rec2.fires[0]
	rec2.mu.Unlock()
	if f.Name != "catcher" || !f.CatchUp || !f.Scheduled.Equal(time.Date(2026, 3, 1, 12, 10, 0, 0, time.UTC)) {
		t.Fatalf("catch-up fire: %+v", f)
	}
	if s, c := count("skipper"), count("catcher"); s != 1 || c != 2 {
		t.Fatalf("after return: skipper %d, catcher %d; want 1, 2", s, c)
	}
	// Both resume at the next tick.
	clock.Advance(15 * time.Second)
	testutil.CheckFor(t, 10*time.Second, func() error {
		if s, c := count("skipper"), count("catcher"); s != 2 || c != 3 {
			return fmt.Errorf("skipper %d, catcher %d; want 2, 3", s, c)
		}
		return nil
	})
}

func TestRestartWithinGraceKeepsDueTick(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	clock := newFakeClock(time.Date(2026, 3, 1, 12, 0, 30, 0, time.UTC))
	scheds := []Schedule{{Name: "s", Spec: "0 * * * * *", Kind: KindResync}}
	rec := &recorder{}
	stop := startScheduler(t, srv, WithClock(clock), WithSchedules(scheds), WithOnFire(rec.add))
	waitWaiters(t, clock, 2)
	clock.Advance(30 * time.Second)
	testutil.CheckFor(t, 10*time.Second, func() error {
		if rec.count(all) != 1 {
			return errors.New("no fire")
		}
		return nil
	})
	waitWaiters(t, clock, 2)
	stop()
	// Down across the 12:02:00 tick, back 10s later: still on time.
	clock.Set(time.Date(2026, 3, 1, 12, 2, 10, 0, time.UTC))
	rec2 := &recorder{}
	startScheduler(t, srv, WithClock(clock), WithSchedules(scheds), WithOnFire(rec2.add))
	testutil.CheckFor(t, 10*time.Second, func() error {
		if rec2.count(all) != 1 {
			return errors.New("due tick not fired on restart")
		}
		return nil
	})
	msgs := testutil.StreamMsgs(t, srv.JS, subjects.StreamResync, subjects.CatalogResyncAll)
	if len(msgs) != 2 || msgs[1].Header.Get(HeaderScheduledAt) != "2026-03-01T12:02:00Z" {
		t.Fatalf("%d resyncs", len(msgs))
	}
}

func TestStartStop(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	clock := newFakeClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	for i := range 20 {
		stop := startScheduler(t, srv, WithClock(clock), WithSchedules([]Schedule{{Name: "x", Spec: "@hourly", Kind: KindResync, Server: "github"}}))
		if i%2 == 0 {
			waitWaiters(t, clock, 2)
		}
		stop()
		stop()
	}
	waitWaiters(t, clock, 0)
}

func TestValidate(t *testing.T) {
	ok := Schedule{Name: "n", Spec: "@every 10s", Kind: KindResync}
	cases := []struct {
		field string
		mut   func(*Schedule)
	}{
		{"name", func(s *Schedule) { s.Name = "" }},
		{"spec", func(s *Schedule) { s.Spec = "" }},
		{"spec", func(s *Schedule) { s.Spec = "61 * * * *" }},
		{"spec", func(s *Schedule) { s.Spec = "CRON_TZ=UTC * * * * *" }},
		{"tz", func(s *Schedule) { s.TZ = "Mars/Olympus" }},
		{"kind", func(s *Schedule) { s.Kind = "" }},
		{"kind", func(s *Schedule) { s.Kind = "email" }},
		{"agent", func(s *Schedule) { s.Kind = KindWake }},
		{"subject", func(s *Schedule) { s.Kind, s.Subject = KindPublish, "tool.call.>" }},
		{"subject", func(s *Schedule) { s.Kind, s.Subject = KindPublish, "tool.call.only" }},
		{"subject", func(s *Schedule) { s.Kind, s.Subject = KindPublish, "tool.call.a.b" }},
		{"agent", func(s *Schedule) { s.Kind, s.Subject, s.Agent = KindPublish, "tool.call.a.b.c", "other" }},
		{"payload", func(s *Schedule) { s.Payload = json.RawMessage(`{`) }},
		{"payload", func(s *Schedule) {
			s.Kind, s.Subject, s.Payload = KindPublish, "tool.call.a.b.c", json.RawMessage(`[1]`)
		}},
		{"missed", func(s *Schedule) { s.Missed = "twice" }},
		{"headers", func(s *Schedule) { s.Headers = map[string]string{"Nats-Msg-Id": "x"} }},
	}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		s := ok
		c.mut(&s)
		err := s.Validate()
		if !errors.Is(err, ErrInvalidSchedule) || !strings.Contains(err.Error(), ": "+c.field+": ") {
			t.Errorf("%s: err = %v", c.field, err)
		}
	}
	for _, spec := range []string{"0 9 * * *", "*/5 * * * * *", "@hourly", "@daily", "@every 90s", "0 0 9 * * mon-fri"} {
		s := ok
		s.Spec = spec
		if err := s.Validate(); err != nil {
			t.Errorf("%q: %v", spec, err)
		}
	}
}

func TestNextAlignsIntervals(t *testing.T) {
	s := Schedule{Name: "n", Spec: "@every 15m", Kind: KindResync}
	for _, from := range []time.Time{
		time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
		time.Date(2026, 3, 1, 12, 7, 13, 5, time.UTC),
		time.Date(2026, 3, 1, 12, 14, 59, 999, time.UTC),
	} {
		got, err := s.Next(from)
		if err != nil || !got.Equal(time.Date(2026, 3, 1, 12, 15, 0, 0, time.UTC)) {
			t.Errorf("Next(%v) = %v, %v", from, got, err)
		}
	}
	c, _ := s.compile()
	if got := c.latest(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 3, 1, 12, 20, 0, 0, time.UTC)); !got.Equal(time.Date(2026, 3, 1, 12, 15, 0, 0, time.UTC)) {
		t.Errorf("latest = %v", got)
	}
	d := Schedule{Name: "d", Spec: "30 9 * * mon", TZ: "Europe/Paris", Kind: KindResync}
	dc, err := d.compile()
	if err != nil {
		t.Fatal(err)
	}
	got := dc.latest(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 3, 4, 0, 0, 0, 0, time.UTC))
	if want := time.Date(2026, 3, 2, 8, 30, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("latest weekly = %v, want %v", got, want)
	}
}

func TestScheduleFromYAML(t *testing.T) {
	var ss []Schedule
	err := yaml.Unmarshal([]byte(`
- name: morning
  spec: "0 9 * * mon-fri"
  tz: America/New_York
  kind: wake
  agent: planner
  payload: {task: plan the day, priority: 2}
  missed: once
- name: echo
  spec: "@every 1h"
  kind: publish
  subject: tool.call.scheduler.demo.echo
  timeout: 30s
  headers: {X-Team: reports}
`), &ss)
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != 2 || string(ss[0].Payload) != `{"priority":2,"task":"plan the day"}` || ss[0].Missed != MissedOnce ||
		ss[1].Timeout.D() != 30*time.Second || ss[1].Headers["X-Team"] != "reports" || ss[1].Payload != nil {
		t.Fatalf("%+v", ss)
	}
	for _, s := range ss {
		if err := s.Validate(); err != nil {
			t.Fatal(err)
		}
	}
}
