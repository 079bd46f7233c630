// Package scheduler turns cron schedules into publications: catalog
// resyncs, agent wake-ups and publishes to any subject (a tool call
// included). Schedules come from the config file and from the schedules KV
// bucket, watched live.
//
// Several schedulers may run at once for availability. They elect one
// leader with a lease in the schedules bucket (see lease); only the leader
// runs the schedules, so a core subscriber hears each tick once. A new
// leader resumes from the last fire each schedule recorded, publishing the
// ticks still within the grace period that fell during the hand-over. Each
// tick keeps a Nats-Msg-Id made of the schedule name and scheduled time, the
// same on every replica, so should two replicas briefly both publish (a
// leader paused past its lease), JetStream stores one copy.
//
// The timing loop is the scheduler's own, one goroutine per schedule, driven
// by an injected Clock; robfig/cron supplies the parser and Next, not its
// timer, so tests run on a fake clock.
package scheduler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/toolbus-dev/toolbus/internal/broker"
	"github.com/toolbus-dev/toolbus/internal/streams"
	"github.com/toolbus-dev/toolbus/subjects"
)

// Headers the scheduler sets on every tick.
const (
	// HeaderSchedule names the schedule that published the message.
	HeaderSchedule = "Toolbus-Schedule"
	// HeaderScheduledAt is the tick's scheduled time, RFC 3339 (UTC).
	HeaderScheduledAt = "Toolbus-Scheduled-At"
)

// defaultGrace is how late a tick may be published and still count as on
// time; an older tick counts as missed and follows the schedule's Missed
// policy. It must stay below the streams' duplicate window (2m), or a late
// replica could publish a tick again, and well above the time a dead
// leader takes to be replaced (lease plus renewal, 4s by default), or the
// ticks of a hand-over are missed rather than published late.
const defaultGrace = 30 * time.Second

// Fire reports one publish attempt of one tick, to the WithOnFire observer.
type Fire struct {
	Name      string
	Scheduled time.Time
	Subject   string
	MsgID     string
	// CatchUp is set when the tick was missed and fired under policy "once".
	CatchUp bool
	// Duplicate: another replica published this tick first.
	Duplicate bool
	Seq       uint64
	Err       error
}

// Option configures a Scheduler.
type Option func(*Scheduler)

// WithClock sets the clock (default: the wall clock).
func WithClock(c Clock) Option { return func(s *Scheduler) { s.clock = c } }

// WithSchedules sets the schedules from the config file. A schedule of the
// same name in the bucket overrides one of these while it exists.
func WithSchedules(ss []Schedule) Option {
	return func(s *Scheduler) { s.config = append(s.config, ss...) }
}

// WithOnFire sets an observer called after every publish attempt (metrics,
// tests). It must not block.
func WithOnFire(f func(Fire)) Option { return func(s *Scheduler) { s.onFire = f } }

// WithOnMissed sets an observer called with a schedule's name whenever the
// leader skips ticks older than the grace period (metrics). n is the number
// of ticks skipped when it is known, else 1. It must not block.
func WithOnMissed(f func(schedule string, n int)) Option {
	return func(s *Scheduler) { s.onMissed = f }
}

// WithName sets the replica's name, in its logs and in the lease while it
// leads (default host-pid).
func WithName(name string) Option { return func(s *Scheduler) { s.name = name } }

// Scheduler publishes the ticks of its schedules. Create it with New and
// start it with Run.
type Scheduler struct {
	woken    sync.Map // agent -> struct{}: its wake-up consumer exists
	js       jetstream.JetStream
	log      zerolog.Logger
	clock    Clock
	config   []Schedule
	grace    time.Duration
	onFire   func(Fire)
	onMissed func(schedule string, n int)
	name     string

	leaseTTL, leaseRenew time.Duration
	lease                *lease
	// lead is the context of this replica's leadership, nil while it
	// follows; schedules run under it only.
	lead context.Context

	kv       jetstream.KeyValue
	fromConf map[string]*compiled
	fromKV   map[string]*compiled
	running  map[string]*runner
	wg       sync.WaitGroup

	// SetSchedules hands a new config set to Run through these.
	confMu      sync.Mutex
	pendingConf map[string]*compiled
	confChanged chan struct{}
}

type runner struct {
	c      *compiled
	source Source
	raw    []byte // the definition, to tell a real change from a re-put
	cancel context.CancelFunc
	done   chan struct{}
}

// New returns a scheduler publishing through js. It fails if a config
// schedule is invalid or two share a name.
func New(js jetstream.JetStream, log zerolog.Logger, opts ...Option) (*Scheduler, error) {
	s := &Scheduler{
		js:       js,
		clock:    realClock{},
		grace:    defaultGrace,
		leaseTTL: DefaultLease, leaseRenew: DefaultRenew,
		fromConf: map[string]*compiled{},
		fromKV:   map[string]*compiled{},
		running:  map[string]*runner{},

		confChanged: make(chan struct{}, 1),
	}
	for _, o := range opts {
		o(s)
	}
	if s.name == "" {
		s.name = defaultName()
	}
	s.log = log.With().Str("component", "scheduler").Str("replica", s.name).Logger()
	s.lease = newLease(js.Conn(), s.clock, s.log, s.name, s.leaseTTL, s.leaseRenew)
	var err error
	if s.fromConf, err = compileAll(s.config); err != nil {
		return nil, err
	}
	return s, nil
}

// compileAll compiles the config file's schedules, refusing an invalid one
// or two of one name.
func compileAll(ss []Schedule) (map[string]*compiled, error) {
	out := make(map[string]*compiled, len(ss))
	for i := range ss {
		c, err := ss[i].compile()
		if err != nil {
			return nil, fmt.Errorf("schedules[%d]: %w", i, err)
		}
		if _, dup := out[c.Name]; dup {
			return nil, fmt.Errorf("schedules[%d]: %w: name %q is used twice", i, ErrInvalidSchedule, c.Name)
		}
		out[c.Name] = c
	}
	return out, nil
}

// ValidateSet checks a set of config schedules as New and SetSchedules
// would: each valid, no two of one name.
func ValidateSet(ss []Schedule) error {
	_, err := compileAll(ss)
	return err
}

// SetSchedules replaces the config file's schedules (a configuration
// reload), as WithSchedules set them. It validates the whole set first: on
// error nothing changes. Run then starts the added schedules, restarts the
// changed ones and stops the removed ones; the others keep running
// untouched, and a bucket schedule of the same name still overrides. It
// returns before Run has applied the set, and may be called before Run.
func (s *Scheduler) SetSchedules(ss []Schedule) error {
	m, err := compileAll(ss)
	if err != nil {
		return err
	}
	s.confMu.Lock()
	s.pendingConf = m
	s.confMu.Unlock()
	select {
	case s.confChanged <- struct{}{}:
	default: // Run has a notice pending; it reads the latest set
	}
	return nil
}

// applyConf puts the set from SetSchedules in place and, once Run has
// started its schedules, reconciles every name it adds, changes or drops.
func (s *Scheduler) applyConf(started bool) {
	s.confMu.Lock()
	m := s.pendingConf
	s.pendingConf = nil
	s.confMu.Unlock()
	if m == nil {
		return
	}
	old := s.fromConf
	s.fromConf = m
	if !started {
		return
	}
	for name := range old {
		if m[name] == nil {
			s.reconcile(name)
		}
	}
	for name := range m {
		s.reconcile(name)
	}
}

// Run publishes ticks until ctx ends, while this replica holds the lease. It
// watches the schedules bucket and starts, restarts or stops a schedule as
// soon as it is added, changed or removed. It returns nil when ctx ends,
// after stopping its schedules and releasing the lease, or an error if the
// bucket cannot be reached at start. Call it once per Scheduler.
func (s *Scheduler) Run(ctx context.Context) error {
	kv, err := bucket(ctx, s.js)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	s.kv = kv

	w, err := kv.Watch(ctx, defPrefix+">")
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("watch schedules: %w", err)
	}
	s.lease.kv = kv
	leaseCtx, stopLease := context.WithCancel(ctx)
	leaseDone := make(chan struct{})
	go func() {
		defer close(leaseDone)
		s.lease.run(leaseCtx)
	}()
	// Stop publishing, then hand the lease over: the next leader reads the
	// last fires recorded by then.
	defer func() {
		stopLease()
		<-leaseDone
		s.stopAll()
		s.lead = nil
		s.lease.release(context.WithoutCancel(ctx))
	}()

	initial := true
	for {
		select {
		case <-ctx.Done():
			_ = w.Stop()
			return nil
		case <-s.confChanged:
			s.applyConf(!initial)
		case <-s.lease.notify:
			lead := s.lease.current()
			if lead == s.lead {
				continue
			}
			s.stopAll()
			s.lead = lead
			if lead != nil && !initial {
				s.reconcileAll()
			}
		case e, ok := <-w.Updates():
			if !ok {
				// The watcher ended without us asking; start a new one.
				if ctx.Err() != nil {
					return nil
				}
				s.log.Warn().Msg("schedules watch ended; re-watching")
				w, err = s.rewatch(ctx, kv)
				if err != nil {
					return nil // ctx ended
				}
				continue
			}
			if e == nil { // initial values delivered
				if initial {
					initial = false
					s.reconcileAll()
					s.log.Info().Int("config", len(s.fromConf)).Int("kv", len(s.fromKV)).Bool("leading", s.lead != nil).Msg("scheduler started")
				}
				continue
			}
			name := s.applyEntry(e)
			if name != "" && !initial {
				s.reconcile(name)
			}
		}
	}
}

func (s *Scheduler) rewatch(ctx context.Context, kv jetstream.KeyValue) (jetstream.KeyWatcher, error) {
	b := backoff.WithContext(backoff.NewExponentialBackOff(backoff.WithMaxElapsedTime(0)), ctx)
	var w jetstream.KeyWatcher
	err := backoff.Retry(func() error {
		var err error
		w, err = kv.Watch(ctx, defPrefix+">", jetstream.UpdatesOnly())
		if err != nil {
			s.log.Warn().Err(err).Msg("re-watch schedules")
		}
		return err
	}, b)
	if err != nil {
		return nil, err
	}
	// Updates missed while not watching: reload the whole set.
	s.reload(ctx, kv)
	return w, nil
}

// reload re-reads every definition and reconciles all schedules.
func (s *Scheduler) reload(ctx context.Context, kv jetstream.KeyValue) {
	es, err := streams.ReadBucket(ctx, kv, defPrefix+">")
	if err != nil {
		s.log.Warn().Err(err).Msg("reload schedules")
		return
	}
	seen := map[string]bool{}
	for _, e := range es {
		if name := s.applyEntry(e); name != "" {
			seen[name] = true
		}
	}
	for name := range s.fromKV {
		if !seen[name] {
			delete(s.fromKV, name)
		}
	}
	for name := range s.running {
		s.reconcile(name)
	}
	for name := range s.fromKV {
		s.reconcile(name)
	}
}

// applyEntry records a bucket change and returns the schedule name it
// concerns ("" if it cannot tell).
func (s *Scheduler) applyEntry(e jetstream.KeyValueEntry) string {
	tok := e.Key()[len(defPrefix):]
	name, err := subjects.UnescapeToken(tok)
	if err != nil {
		s.log.Warn().Str("key", e.Key()).Msg("schedules bucket: key is not an escaped name; ignored")
		return ""
	}
	if e.Operation() != jetstream.KeyValuePut {
		delete(s.fromKV, name)
		return name
	}
	var sc Schedule
	if err := json.Unmarshal(e.Value(), &sc); err != nil {
		s.log.Error().Err(err).Str("schedule", name).Msg("schedules bucket: bad definition; ignored")
		delete(s.fromKV, name)
		return name
	}
	sc.Name = name
	c, err := sc.compile()
	if err != nil {
		s.log.Error().Err(err).Str("schedule", name).Msg("schedules bucket: invalid schedule; ignored")
		delete(s.fromKV, name)
		return name
	}
	s.fromKV[name] = c
	return name
}

func (s *Scheduler) reconcileAll() {
	for name := range s.fromConf {
		s.reconcile(name)
	}
	for name := range s.fromKV {
		s.reconcile(name)
	}
}

// reconcile makes the running schedule of this name match its definition:
// the bucket's if any, else the config file's, else none. A follower runs
// none; it only keeps the definitions, to start them when it leads.
func (s *Scheduler) reconcile(name string) {
	if s.lead == nil {
		return
	}
	want, src := s.fromKV[name], SourceKV
	if want == nil {
		want, src = s.fromConf[name], SourceConfig
	} else if s.fromConf[name] != nil {
		s.log.Info().Str("schedule", name).Msg("bucket schedule overrides the config file's")
	}
	cur := s.running[name]
	var raw []byte
	if want != nil {
		raw, _ = json.Marshal(want.Schedule)
		if cur != nil && cur.source == src && bytes.Equal(cur.raw, raw) {
			return
		}
	}
	if cur != nil {
		cur.cancel()
		<-cur.done
		delete(s.running, name)
		if want == nil {
			s.log.Info().Str("schedule", name).Msg("schedule removed")
		}
	}
	if want == nil {
		return
	}
	rctx, cancel := context.WithCancel(s.lead)
	r := &runner{c: want, source: src, raw: raw, cancel: cancel, done: make(chan struct{})}
	s.running[name] = r
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(r.done)
		s.runSchedule(rctx, r)
	}()
}

func (s *Scheduler) stopAll() {
	for name, r := range s.running {
		r.cancel()
		delete(s.running, name)
	}
	s.wg.Wait()
}

// runSchedule is one schedule's timing loop, run by the leader. prev is
// the last tick dealt with; the loop takes the ticks after it one by one, so
// neither a slow wake-up nor a change of leader skips a tick that is still
// on time (within the grace period): they are published late, each once.
// Older ticks were missed and follow the schedule's Missed policy.
func (s *Scheduler) runSchedule(ctx context.Context, r *runner) {
	c := r.c
	log := s.log.With().Str("schedule", c.Name).Str("subject", c.subject).Logger()
	now := s.clock.Now()
	prev := now
	var last time.Time
	st, err := getStatus(ctx, s.kv, c.key)
	if err != nil && ctx.Err() == nil {
		log.Warn().Err(err).Msg("read schedule status; missed ticks cannot be told")
	}
	if st != nil {
		last = st.LastFire
	}
	// A leader that died between publishing a tick and recording it left
	// the tick in the stream only.
	if t := s.lastStored(ctx, c); t.After(last) && now.Sub(t) <= s.grace {
		last = t
	}
	if !last.IsZero() {
		switch floor := now.Add(-s.grace); {
		case c.Missed == MissedOnce && last.Before(floor):
			prev = last // ticks after it were missed: the loop fires the latest once
		case last.After(floor):
			prev = last // a restart or a new leader: ticks due since are still on time
		default:
			s.missed(c, last, floor) // ticks past the grace while no replica led
			prev = floor
		}
	}
	log.Debug().Time("from", prev).Str("source", string(r.source)).Msg("schedule running")
	for {
		now = s.clock.Now()
		next := c.next(prev)
		if next.IsZero() {
			log.Warn().Msg("spec has no future tick; idle")
			<-ctx.Done()
			return
		}
		if next.After(now) {
			t := s.clock.NewTimer(next.Sub(now))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C():
			}
			continue
		}
		tick, catchUp := next, false
		if now.Sub(next) > s.grace {
			// Missed: next and maybe more, up to the last tick past the grace.
			missed := c.latest(prev, now.Add(-s.grace))
			if after := c.next(missed); !after.IsZero() && !after.After(now) {
				log.Warn().Time("tick", missed).Time("last", prev).Msg("missed ticks skipped; the next is still on time")
				s.missed(c, prev, missed)
				prev = missed
				continue
			}
			if c.Missed != MissedOnce {
				log.Warn().Time("tick", missed).Msg("missed tick skipped (policy skip)")
				s.missed(c, prev, missed)
				prev = missed
				continue
			}
			log.Info().Time("tick", missed).Time("last", prev).Msg("firing once for missed ticks (policy once)")
			if n := s.countTicks(c, prev, missed) - 1; n > 0 && s.onMissed != nil {
				s.onMissed(c.Name, n) // the latest fires; the ones before it are missed
			}
			tick, catchUp = missed, true
		}
		if !s.lease.hold(ctx) {
			return // leadership ended: the next leader takes it from here
		}
		s.fire(ctx, r, tick, now, catchUp, log)
		prev = tick
		if ctx.Err() != nil {
			return
		}
	}
}

// lastStored returns the scheduled time of this schedule's newest tick in
// the stream its subject is bound to, or the zero time if it cannot tell
// (none there, consumed from a work queue, or another publisher's message
// came after it).
func (s *Scheduler) lastStored(ctx context.Context, c *compiled) time.Time {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	name, err := s.js.StreamNameBySubject(ctx, c.subject)
	if err != nil {
		return time.Time{}
	}
	st, err := s.js.Stream(ctx, name)
	if err != nil {
		return time.Time{}
	}
	m, err := st.GetLastMsgForSubject(ctx, c.subject)
	if err != nil || m.Header.Get(HeaderSchedule) != c.Name {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339, m.Header.Get(HeaderScheduledAt))
	if err != nil {
		return time.Time{}
	}
	return t
}

func (s *Scheduler) message(c *compiled, tick, now time.Time) *nats.Msg {
	msg := nats.NewMsg(c.subject)
	for k, v := range c.Headers {
		msg.Header.Set(k, v)
	}
	msg.Header.Set(HeaderSchedule, c.Name)
	msg.Header.Set(HeaderScheduledAt, tick.UTC().Format(time.RFC3339))
	msg.Header.Set(subjects.HeaderCallID, c.MsgID(tick))
	if c.isCall {
		timeout := c.Timeout.D()
		if timeout <= 0 {
			timeout = DefaultCallTimeout
		}
		msg.Header.Set(subjects.HeaderDeadline, subjects.FormatDeadline(now.Add(timeout)))
	}
	switch {
	case len(c.Payload) > 0:
		msg.Data = c.Payload
	case c.isCall:
		msg.Data = []byte("{}")
	default:
		msg.Data, _ = json.Marshal(map[string]any{
			"schedule":     c.Name,
			"kind":         c.Kind,
			"scheduled_at": tick.UTC().Format(time.RFC3339),
		})
	}
	return msg
}

// fire publishes one tick, retrying while NATS is unreachable for at most
// the grace period, and records the status when this replica's copy is the
// one stored.
// ensureWake makes sure the agent of a wake schedule has its durable
// wake-up consumer before the first tick for it, so an agent that is
// offline gets its wake-ups when it comes back (client.Wakeups).
func (s *Scheduler) ensureWake(ctx context.Context, c *compiled) error {
	if c.Kind != KindWake {
		return nil
	}
	if _, ok := s.woken.Load(c.Agent); ok {
		return nil
	}
	if err := broker.EnsureWakeConsumer(ctx, s.js, c.Agent); err != nil {
		return fmt.Errorf("wake-up consumer of agent %q: %w", c.Agent, err)
	}
	s.woken.Store(c.Agent, struct{}{})
	return nil
}

func (s *Scheduler) fire(ctx context.Context, r *runner, tick, now time.Time, catchUp bool, log zerolog.Logger) {
	c := r.c
	msg := s.message(c, tick, now)
	f := Fire{Name: c.Name, Scheduled: tick, Subject: c.subject, MsgID: msg.Header.Get(subjects.HeaderCallID), CatchUp: catchUp}
	var ack *jetstream.PubAck
	b := backoff.NewExponentialBackOff(backoff.WithInitialInterval(100*time.Millisecond), backoff.WithMaxElapsedTime(s.grace))
	f.Err = backoff.Retry(func() error {
		if ctx.Err() != nil {
			return backoff.Permanent(context.Cause(ctx))
		}
		if !s.lease.holding() {
			return backoff.Permanent(ErrNotLeader)
		}
		if !s.lease.connected() {
			return errDisconnected // published now, it would go out on reconnect, maybe no longer ours
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := s.ensureWake(pctx, c); err != nil {
			return err
		}
		var err error
		ack, err = s.js.PublishMsg(pctx, msg)
		if errors.Is(err, jetstream.ErrNoStreamResponse) {
			return backoff.Permanent(fmt.Errorf("%w (is %s bound to a stream?)", err, c.subject))
		}
		return err
	}, backoff.WithContext(b, ctx))
	if f.Err != nil {
		switch {
		case errors.Is(f.Err, ErrNotLeader):
			log.Info().Time("tick", tick).Msg("tick left to the next leader: this replica lost the lease")
		case ctx.Err() == nil:
			log.Error().Err(f.Err).Time("tick", tick).Msg("tick not published")
		}
		s.observe(f)
		return
	}
	f.Duplicate, f.Seq = ack.Duplicate, ack.Sequence
	if !ack.Duplicate {
		log.Info().Time("tick", tick).Str("msg_id", f.MsgID).Uint64("seq", ack.Sequence).Msg("tick published")
		st := Status{Schedule: c.Schedule, Source: r.source, LastFire: tick.UTC(), FiredAt: s.clock.Now().UTC(), MsgID: f.MsgID, Subject: c.subject, Seq: ack.Sequence}
		b, _ := json.Marshal(st)
		// Recorded even if leadership ends meanwhile: the next leader
		// starts from it.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if _, err := s.kv.Put(sctx, statusPrefix+c.key, b); err != nil {
			log.Warn().Err(err).Msg("record schedule status")
		}
		cancel()
	} else {
		log.Debug().Time("tick", tick).Str("msg_id", f.MsgID).Msg("tick already published by another replica")
	}
	s.observe(f)
}

// missed reports the ticks after prev up to and including last as missed.
func (s *Scheduler) missed(c *compiled, prev, last time.Time) {
	if s.onMissed != nil {
		s.onMissed(c.Name, s.countTicks(c, prev, last))
	}
}

// maxCountedTicks bounds the ticks counted one by one (an "@every 1s"
// schedule down for a day); beyond it the count is that bound.
const maxCountedTicks = 10000

// countTicks counts the ticks after prev up to and including last.
func (s *Scheduler) countTicks(c *compiled, prev, last time.Time) int {
	n := 0
	for t := c.next(prev); !t.IsZero() && !t.After(last) && n < maxCountedTicks; t = c.next(t) {
		n++
	}
	return n
}

func (s *Scheduler) observe(f Fire) {
	if s.onFire != nil {
		s.onFire(f)
	}
}
