package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/rs/zerolog"

	"github.com/toolbus-dev/toolbus/subjects"
)

// DefaultLease is how long the leader's lease lasts unless renewed. The
// leader renews it every third of it (DefaultRenew), so one lost renewal
// costs nothing and a dead leader is replaced within a lease and a renewal.
const (
	DefaultLease = 3 * time.Second
	DefaultRenew = time.Second
)

// leaderKey is the lease's key in the schedules bucket.
const leaderKey = "leader"

// Leader is the value of the lease key: which replica publishes the ticks.
type Leader struct {
	// Name is the replica's name (WithName; default host-pid).
	Name string `json:"name"`
	// ID tells apart two replicas given the same name, and a replica's
	// own lease after a restart from someone else's.
	ID string `json:"id"`
	// Since is when it took the lease, RenewedAt when it last renewed it,
	// both by its own clock.
	Since     time.Time `json:"since"`
	RenewedAt time.Time `json:"renewed_at"`
	// Lease is how long the lease holds without a renewal.
	Lease subjects.Duration `json:"lease"`
}

// LeaderInfo is the lease holder as `toolbus schedules list` shows it.
type LeaderInfo struct {
	Leader
	// Expired: not renewed for a whole lease by the reader's clock. The
	// holder is gone (or cut off from NATS) and publishes nothing; the next
	// replica to look takes the lease over.
	Expired bool `json:"expired,omitempty"`
}

// CurrentLeader returns the replica holding the lease, or nil if none does
// (no scheduler ran yet, or the last one stopped and released it).
func CurrentLeader(ctx context.Context, js jetstream.JetStream, now time.Time) (*LeaderInfo, error) {
	kv, err := bucket(ctx, js)
	if err != nil {
		return nil, err
	}
	e, err := kv.Get(ctx, leaderKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the scheduler lease: %w", err)
	}
	var l LeaderInfo
	if err := json.Unmarshal(e.Value(), &l.Leader); err != nil {
		return nil, fmt.Errorf("key %s: %w", leaderKey, err)
	}
	l.Expired = now.Sub(l.RenewedAt) >= l.Lease.D()
	return &l, nil
}

func defaultName() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}

// lease elects the one replica that publishes ticks. The lease is the key
// "leader" of the schedules bucket: taken with an atomic Create (or, once
// expired, an Update expecting the revision that expired), renewed with an
// Update expecting the holder's own last revision, released with a delete
// expecting it too. Every write is a compare-and-set on the key's revision,
// so two replicas never both succeed from the same state.
//
// Expiry is judged by revisions and local clocks, not by a TTL on the
// server or by comparing the holder's clock with ours: a follower takes the
// lease over when it has seen the same revision for a whole lease by its own
// clock. The holder counts its lease from before each renewal was sent and
// stops publishing a renewal period before it ends; the follower counts
// from after it saw that renewal. So the old leader has stopped before the
// new one starts, however far apart their clocks are set.
type lease struct {
	kv    jetstream.KeyValue
	nc    *nats.Conn
	clock Clock
	log   zerolog.Logger
	name  string
	id    string
	ttl   time.Duration
	every time.Duration

	// kick asks the loop for a renewal now (a runner found the lease
	// expired by its clock); notify tells Run that leadership changed.
	kick   chan struct{}
	notify chan struct{}

	mu         sync.Mutex
	leading    bool
	rev        uint64
	since      time.Time
	validUntil time.Time
	lctx       context.Context // ends when leadership does
	cancel     context.CancelCauseFunc
	changed    chan struct{} // closed at every renewal or change

	// The loop's view of someone else's lease.
	seenRev  uint64
	seenAt   time.Time
	seenName string
}

// newLease returns the lease of one replica; Run sets kv before running it.
func newLease(nc *nats.Conn, clock Clock, log zerolog.Logger, name string, ttl, every time.Duration) *lease {
	return &lease{
		nc: nc, clock: clock, log: log, name: name, id: nuid.Next(), ttl: ttl, every: every,
		kick: make(chan struct{}, 1), notify: make(chan struct{}, 1), changed: make(chan struct{}),
	}
}

// run takes, renews and watches the lease until ctx ends.
func (l *lease) run(ctx context.Context) {
	for {
		if l.isLeading() {
			l.renew(ctx)
		} else {
			l.acquire(ctx)
		}
		t := l.clock.NewTimer(l.every)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		case <-l.kick:
			t.Stop()
		}
	}
}

func (l *lease) isLeading() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.leading
}

// current returns the context of the present leadership, nil while
// following.
func (l *lease) current() context.Context {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.leading {
		return nil
	}
	return l.lctx
}

// holding reports whether the lease is held and still valid by our clock.
func (l *lease) holding() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.leading && l.clock.Now().Before(l.validUntil)
}

// hold reports whether this replica may publish now. Past its lease by
// its own clock (a pause, a slow NATS), a leader first renews it: a
// renewal that succeeds proves no one took over meanwhile.
func (l *lease) hold(ctx context.Context) bool {
	for {
		if ctx.Err() != nil {
			return false // a runner of a leadership that ended
		}
		l.mu.Lock()
		leading, valid, changed := l.leading, l.clock.Now().Before(l.validUntil), l.changed
		l.mu.Unlock()
		if !leading {
			return false
		}
		if valid {
			return true
		}
		select {
		case l.kick <- struct{}{}:
		default:
		}
		select {
		case <-ctx.Done():
			return false
		case <-changed:
		}
	}
}

func (l *lease) value(now, since time.Time) []byte {
	b, _ := json.Marshal(Leader{Name: l.name, ID: l.id, Since: since.UTC(), RenewedAt: now.UTC(), Lease: subjects.Duration(l.ttl)})
	return b
}

// connected is false while the connection is down: a write then would sit
// in the reconnect buffer and go out later, when it may no longer be ours
// to make.
func (l *lease) connected() bool { return l.nc == nil || l.nc.IsConnected() }

var errDisconnected = errors.New("not connected to NATS")

func (l *lease) renew(ctx context.Context) {
	l.mu.Lock()
	rev, since := l.rev, l.since
	l.mu.Unlock()
	sent := l.clock.Now()
	rctx, cancel := context.WithTimeout(ctx, l.every)
	defer cancel()
	err := errDisconnected
	var next uint64
	if l.connected() {
		next, err = l.kv.Update(rctx, leaderKey, l.value(sent, since), rev)
	}
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		// Someone took it over, or a renewal of ours went through after
		// we stopped waiting for its answer: the value tells.
		h, e := l.read(rctx)
		if e == nil && h != nil && h.ID == l.id {
			next, err = l.kv.Update(rctx, leaderKey, l.value(sent, since), h.rev)
		}
		if err != nil {
			reason := "the lease changed hands"
			switch {
			case e == nil && h == nil:
				reason = "the lease was deleted"
			case e == nil && h.ID != l.id:
				reason = "taken over by " + h.Name
			}
			l.lose(ctx, reason)
			return
		}
	}
	if err == nil {
		l.mu.Lock()
		l.rev, l.validUntil = next, sent.Add(l.ttl-l.every)
		l.broadcast()
		l.mu.Unlock()
		return
	}
	if ctx.Err() != nil {
		return
	}
	l.mu.Lock()
	expired := !l.clock.Now().Before(l.validUntil)
	l.mu.Unlock()
	if expired {
		l.lose(ctx, fmt.Sprintf("not renewed in time: %v", err))
		return
	}
	l.log.Warn().Err(err).Msg("renew the scheduler lease; retrying")
}

type holder struct {
	Leader
	rev uint64
}

// read returns the lease's holder, nil if none.
func (l *lease) read(ctx context.Context) (*holder, error) {
	e, err := l.kv.Get(ctx, leaderKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	h := &holder{rev: e.Revision()}
	if err := json.Unmarshal(e.Value(), &h.Leader); err != nil {
		h.Name = "(unreadable lease value)"
	}
	return h, nil
}

func (l *lease) acquire(ctx context.Context) {
	if !l.connected() {
		return
	}
	now := l.clock.Now()
	actx, cancel := context.WithTimeout(ctx, l.every)
	defer cancel()
	h, err := l.read(actx)
	if err != nil {
		if ctx.Err() == nil {
			l.log.Warn().Err(err).Msg("read the scheduler lease")
		}
		return
	}
	var rev uint64
	var from string
	switch {
	case h == nil:
		rev, err = l.kv.Create(actx, leaderKey, l.value(now, now))
		if errors.Is(err, jetstream.ErrKeyExists) {
			return // another replica was quicker
		}
	case h.ID == l.id:
		// Ours: a write whose answer we missed, or a lease we stopped
		// trusting while cut off and nobody has taken since.
		rev, err = l.kv.Update(actx, leaderKey, l.value(now, now), h.rev)
	default:
		if h.rev != l.seenRev {
			l.seenRev, l.seenAt = h.rev, now
			if h.Name != l.seenName {
				l.seenName = h.Name
				l.log.Info().Str("leader", h.Name).Time("since", h.Since).Msg("following the scheduler leader")
			}
			return
		}
		wait := max(l.ttl, h.Lease.D())
		if now.Sub(l.seenAt) < wait {
			return
		}
		from = h.Name
		rev, err = l.kv.Update(actx, leaderKey, l.value(now, now), h.rev)
	}
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return // renewed or taken meanwhile; look again next time
	}
	if err != nil {
		if ctx.Err() == nil {
			l.log.Warn().Err(err).Msg("take the scheduler lease")
		}
		return
	}
	l.gain(ctx, rev, now, from)
}

func (l *lease) gain(ctx context.Context, rev uint64, now time.Time, from string) {
	lctx, cancel := context.WithCancelCause(ctx)
	l.mu.Lock()
	l.leading, l.rev, l.since, l.validUntil = true, rev, now, now.Add(l.ttl-l.every)
	l.lctx, l.cancel = lctx, cancel
	l.broadcast()
	l.mu.Unlock()
	l.seenRev, l.seenName = 0, l.name
	ev := l.log.Info().Time("since", now).Dur("lease", l.ttl)
	if from != "" {
		ev = ev.Str("previous", from).Str("reason", "its lease expired")
	}
	ev.Msg("leading: this replica publishes the ticks")
	l.signal()
}

func (l *lease) lose(ctx context.Context, reason string) {
	l.mu.Lock()
	l.leading = false
	if l.cancel != nil {
		l.cancel(fmt.Errorf("%w: %s", ErrNotLeader, reason))
	}
	l.broadcast()
	l.mu.Unlock()
	l.seenRev = 0
	if ctx.Err() == nil {
		l.log.Info().Str("reason", reason).Msg("lost the scheduler lease: stopped publishing ticks")
	}
	l.signal()
}

// broadcast wakes every hold; l.mu is held.
func (l *lease) broadcast() {
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *lease) signal() {
	select {
	case l.notify <- struct{}{}:
	default:
	}
}

// release hands the lease back on shutdown, once the loop has stopped and
// every tick in flight is recorded, so another replica takes over at its
// next look rather than a lease later. It deletes the key only if the
// value is still ours, whatever this replica believed: a take that ctx cut
// short may still have gone through.
func (l *lease) release(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	l.mu.Lock()
	was := l.leading
	l.leading = false
	if l.cancel != nil {
		l.cancel(context.Canceled)
	}
	l.broadcast()
	l.mu.Unlock()
	if !l.connected() {
		return
	}
	h, err := l.read(ctx)
	if err != nil || h == nil || h.ID != l.id {
		return
	}
	if err := l.kv.Delete(ctx, leaderKey, jetstream.LastRevision(h.rev)); err != nil {
		l.log.Warn().Err(err).Msg("release the scheduler lease")
		return
	}
	if was {
		l.log.Info().Msg("released the scheduler lease")
	}
}
