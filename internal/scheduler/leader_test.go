package scheduler

import (
	"context"
	"fmt"
	"io"
	"net"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/toolbus-dev/toolbus/internal/natstest"
	"github.com/toolbus-dev/toolbus/internal/testutil"
	"github.com/toolbus-dev/toolbus/subjects"
)

// heard counts the ticks a core subscriber receives, by scheduled time:
// what an agent listening on agent.wake.<agent> without JetStream gets.
type heard struct {
	mu   sync.Mutex
	byAt map[string]int
	n    int
}

func hear(t *testing.T, nc *nats.Conn, subject string) *heard {
	t.Helper()
	h := &heard{byAt: map[string]int{}}
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		h.mu.Lock()
		h.byAt[m.Header.Get(HeaderScheduledAt)]++
		h.n++
		h.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *heard) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

// check fails the test unless exactly the ticks want were heard, each once.
func (h *heard) check(t *testing.T, want []time.Time) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	var bad []string
	for _, at := range want {
		k := at.UTC().Format(time.RFC3339)
		if h.byAt[k] != 1 {
			bad = append(bad, fmt.Sprintf("%s heard %d times", k, h.byAt[k]))
		}
	}
	if h.n != len(want) {
		bad = append(bad, fmt.Sprintf("%d messages heard, want %d", h.n, len(want)))
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		t.Fatalf("core subscriber: %v", bad)
	}
}

// settle waits until every replica is idle on its timers (the lease's, and
// the leader's schedules') and returns the leader, nil if none leads. Two
// leaders fail the test.
func settle(t *testing.T, clock *fakeClock, reps []*replica, schedules int) *replica {
	t.Helper()
	var leader *replica
	testutil.CheckFor(t, 10*time.Second, func() error {
		alive, leaders := 0, []*replica{}
		for _, r := range reps {
			if r.alive.Load() {
				alive++
			}
			if r.leading() {
				leaders = append(leaders, r)
			}
		}
		if len(leaders) > 1 {
			t.Fatalf("%d replicas lead at once", len(leaders))
		}
		want := alive + len(leaders)*schedules
		if w := clock.Waiters(); w != want {
			return fmt.Errorf("%d timers pending, want %d (%d replicas, %d leading)", w, want, alive, len(leaders))
		}
		leader = nil
		if len(leaders) == 1 {
			leader = leaders[0]
		}
		return nil
	})
	return leader
}

func ticksFrom(t0 time.Time, n int) []time.Time {
	var out []time.Time
	for i := 1; i <= n; i++ {
		out = append(out, t0.Add(time.Duration(i)*time.Second).Truncate(time.Second))
	}
	return out
}

// Three replicas elect one leader, which alone publishes: a core subscriber
// hears each tick once (it heard it three times when every replica
// published), and the stream stores it once.
func TestOneLeaderPublishesEachTickOnce(t *testing.T) {
	for _, spec := range []string{"@every 1s", "* * * * * *"} {
		t.Run(spec, func(t *testing.T) {
			t.Parallel()
			srv := natstest.Start(t)
			ctx := context.Background()
			t0 := time.Date(2026, 3, 1, 12, 0, 0, 500_000_000, time.UTC)
			clock := newFakeClock(t0)
			h := hear(t, srv.NC, "agent.wake.a1")
			sched := Schedule{Name: "heartbeat", Spec: spec, Kind: KindWake, Agent: "a1"}
			var reps []*replica
			recs := map[string]*recorder{}
			for _, name := range []string{"r0", "r1", "r2"} {
				recs[name] = &recorder{}
				reps = append(reps, startReplica(t, srv, WithName(name), WithClock(clock), WithSchedules([]Schedule{sched}), WithOnFire(recs[name].add)))
			}
			leader := settle(t, clock, reps, 1)
			if leader == nil {
				t.Fatal("no replica leads")
			}
			info, err := CurrentLeader(ctx, srv.JS, clock.Now())
			if err != nil || info == nil || info.Name != leader.s.name || !info.Since.Equal(t0) || info.Expired || info.Lease.D() != DefaultLease {
				t.Fatalf("CurrentLeader = %+v, %v; want %s since %v", info, err, leader.s.name, t0)
			}
			for i := 1; i <= 10; i++ {
				clock.Advance(time.Second)
				if l := settle(t, clock, reps, 1); l != leader {
					t.Fatalf("tick %d: leadership moved without cause", i)
				}
				testutil.CheckFor(t, 10*time.Second, func() error {
					if n := h.count(); n != i {
						return fmt.Errorf("tick %d: %d heard", i, n)
					}
					return nil
				})
			}
			h.check(t, ticksFrom(t0, 10))
			for name, rec := range recs {
				want := 0
				if name == leader.s.name {
					want = 10
				}
				if n := rec.count(func(f Fire) bool { return f.Err == nil && !f.Duplicate }); n != want || rec.count(all) != want {
					t.Errorf("%s published %d ticks (%d attempts), want %d", name, n, rec.count(all), want)
				}
			}
			if msgs := testutil.StreamMsgs(t, srv.JS, subjects.StreamEvents, "agent.wake.a1"); len(msgs) != 10 {
				t.Fatalf("%d messages stored, want 10", len(msgs))
			}
		})
	}
}

// The leader goes away, gracefully (it releases the lease: a follower takes
// over at its next look) or by dying (the lease stays until it expires, a
// lease later). The new leader starts from the last fire recorded and
// publishes the ticks of the hand-over late, so every tick is heard once.
func TestLeaderHandOver(t *testing.T) {
	for _, how := range []string{"stop", "kill"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			srv := natstest.Start(t)
			ctx := context.Background()
			t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
			clock := newFakeClock(t0)
			h := hear(t, srv.NC, "agent.wake.a1")
			sched := Schedule{Name: "heartbeat", Spec: "* * * * * *", Kind: KindWake, Agent: "a1"}
			var reps []*replica
			for _, name := range []string{"r0", "r1", "r2"} {
				reps = append(reps, startReplica(t, srv, WithName(name), WithClock(clock), WithSchedules([]Schedule{sched})))
			}
			old := settle(t, clock, reps, 1)
			for range 3 {
				clock.Advance(time.Second)
				settle(t, clock, reps, 1)
			}
			if how == "stop" {
				old.stop()
				if info, err := CurrentLeader(ctx, srv.JS, clock.Now()); err != nil || info != nil {
					t.Fatalf("after release: CurrentLeader = %+v, %v", info, err)
				}
			} else {
				old.kill()
			}
			var leader *replica
			steps := 0
			for leader == nil {
				steps++
				if steps > 6 {
					t.Fatal("no replica took over within 6s")
				}
				clock.Advance(time.Second)
				leader = settle(t, clock, reps, 1)
				if how == "kill" && leader == nil && steps >= 3 {
					info, err := CurrentLeader(ctx, srv.JS, clock.Now())
					if err != nil || info == nil || info.Name != old.s.name || !info.Expired {
						t.Fatalf("dead leader's lease: %+v, %v; want %s, expired", info, err, old.s.name)
					}
				}
			}
			t.Logf("%s: %s took over from %s after %d s", how, leader.s.name, old.s.name, steps)
			switch {
			case leader == old:
				t.Fatal("the old leader leads again")
			case how == "stop" && steps != 1:
				t.Fatalf("released lease taken after %d renewal periods, want 1", steps)
			case how == "kill" && (steps < 3 || steps > 4):
				t.Fatalf("expired lease taken after %d s, want a lease (3s) to a lease and a renewal (4s)", steps)
			}
			for range 3 {
				clock.Advance(time.Second)
				if settle(t, clock, reps, 1) != leader {
					t.Fatal("leadership moved again")
				}
			}
			n := 3 + steps + 3
			testutil.CheckFor(t, 10*time.Second, func() error {
				if got := h.count(); got < n {
					return fmt.Errorf("%d heard, want %d", got, n)
				}
				return nil
			})
			h.check(t, ticksFrom(t0, n))
			if msgs := testutil.StreamMsgs(t, srv.JS, subjects.StreamEvents, "agent.wake.a1"); len(msgs) != n {
				t.Fatalf("%d messages stored, want %d", len(msgs), n)
			}
			info, err := CurrentLeader(ctx, srv.JS, clock.Now())
			if err != nil || info == nil || info.Name != leader.s.name || info.Expired {
				t.Fatalf("CurrentLeader = %+v, %v; want %s", info, err, leader.s.name)
			}
		})
	}
}

// proxy forwards TCP to a NATS server until cut, which drops every
// connection and refuses new ones until restore.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  []net.Conn
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	t.Cleanup(func() {
		ln.Close()
		p.cut()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			down := p.down
			p.mu.Unlock()
			if down {
				c.Close()
				continue
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(s, c); s.Close() }()
			go func() { _, _ = io.Copy(c, s); c.Close() }()
		}
	}()
	return p
}

func (p *proxy) url() string { return "nats://" + p.ln.Addr().String() }

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *proxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// A leader cut off from NATS stops publishing once its lease runs out by
// its own clock, before a follower may take over; back on NATS it follows,
// and publishes again only once it holds the lease again.
func TestLeaderCutOffFromNATS(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := newFakeClock(t0)
	h := hear(t, srv.NC, "agent.wake.a1")
	sched := Schedule{Name: "heartbeat", Spec: "* * * * * *", Kind: KindWake, Agent: "a1"}
	p := startProxy(t, srv.Srv.Addr().String())
	nc, err := nats.Connect(p.url(), nats.ReconnectWait(50*time.Millisecond), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	recA, recB := &recorder{}, &recorder{}
	a := startReplicaOn(t, nc, WithName("a"), WithClock(clock), WithSchedules([]Schedule{sched}), WithOnFire(recA.add))
	reps := []*replica{a}
	if settle(t, clock, reps, 1) != a {
		t.Fatal("a does not lead")
	}
	b := startReplica(t, srv, WithName("b"), WithClock(clock), WithSchedules([]Schedule{sched}), WithOnFire(recB.add))
	reps = append(reps, b)
	for range 2 {
		clock.Advance(time.Second)
		if settle(t, clock, reps, 1) != a {
			t.Fatal("a lost the lead")
		}
	}

	p.cut()
	testutil.CheckFor(t, 10*time.Second, func() error {
		if nc.IsConnected() {
			return fmt.Errorf("a still connected")
		}
		return nil
	})
	// Past a's lease by its clock (renewed at t0+2s, trusted until +4s).
	clock.Advance(2 * time.Second)
	if l := settle(t, clock, reps, 1); l != nil {
		t.Fatalf("%s leads while a's lease has not expired for others", l.s.name)
	}
	steps := 0
	for {
		steps++
		clock.Advance(time.Second)
		l := settle(t, clock, reps, 1)
		if l == b {
			break
		}
		if l == a || steps > 4 {
			t.Fatalf("after %d s: leader %v", steps, l)
		}
	}
	afterCut := recA.count(all)
	p.restore()
	testutil.CheckFor(t, 10*time.Second, func() error {
		if !nc.IsConnected() {
			return fmt.Errorf("a not reconnected")
		}
		return nil
	})
	for range 3 {
		clock.Advance(time.Second)
		if settle(t, clock, reps, 1) != b {
			t.Fatal("b lost the lead to a reconnected replica")
		}
	}
	if n := recA.count(func(f Fire) bool { return f.Err == nil }); n != 2 {
		t.Fatalf("a published %d ticks, want the 2 before the cut", n)
	}
	// Now b goes: a leads again, and publishes.
	b.stop()
	clock.Advance(time.Second)
	if settle(t, clock, reps, 1) != a {
		t.Fatal("a does not take the released lease")
	}
	n := 2 + 2 + steps + 3 + 1
	testutil.CheckFor(t, 10*time.Second, func() error {
		if got := h.count(); got < n {
			return fmt.Errorf("%d heard, want %d", got, n)
		}
		return nil
	})
	h.check(t, ticksFrom(t0, n))
	if got := recA.count(func(f Fire) bool { return f.Err == nil }); got != 3 {
		t.Fatalf("a published %d ticks in all (%d attempts during the cut), want 2 before the cut and 1 after", got, afterCut-2)
	}
}
