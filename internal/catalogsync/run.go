package catalogsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/toolbus-dev/toolbus/internal/registry"
	"github.com/toolbus-dev/toolbus/subjects"
)

// Run serves sync requests until ctx ends: it consumes CATALOG_RESYNC
// through the shared durable consumer subjects.ConsumerSync (created if
// missing), so replicas split the work, and, unless Config.NoListen, keeps a
// session to every registered server that offers
// notifications/tools/list_changed and turns each burst of them into one
// queued sync (with a pool, a stdio server's changes are heard on the
// pool's session instead). It returns nil when ctx ends.
func (s *Syncer) Run(ctx context.Context) error {
	cons, err := s.consumer(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it started
		}
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	s.debMu.Lock()
	s.debStopped = false
	s.debMu.Unlock()
	defer s.stopDebouncers() // after the listeners are gone: nothing new
	var wg sync.WaitGroup
	defer wg.Wait()

	sem := make(chan struct{}, s.cfg.Concurrency)
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return // not acked: redelivered to another replica
		}
		wg.Go(func() {
			defer func() { <-sem }()
			s.handle(ctx, msg)
		})
	}, jetstream.PullMaxMessages(s.cfg.Concurrency))
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("consume %s: %w", subjects.StreamResync, err)
	}
	defer func() {
		cc.Stop()
		<-cc.Closed()
	}()

	if !s.cfg.NoListen {
		wg.Go(func() { s.listenAll(ctx) })
	}
	<-ctx.Done()
	return nil
}

// consumer binds the shared durable consumer, creating it if missing.
func (s *Syncer) consumer(ctx context.Context) (jetstream.Consumer, error) {
	cons, err := s.js.Consumer(ctx, subjects.StreamResync, subjects.ConsumerSync)
	if err == nil {
		return cons, nil
	}
	if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("consumer %s on %s: %w", subjects.ConsumerSync, subjects.StreamResync, err)
	}
	cons, err = s.js.CreateConsumer(ctx, subjects.StreamResync, jetstream.ConsumerConfig{
		Durable:       subjects.ConsumerSync,
		Description:   "toolbus sync replicas (shared)",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.cfg.AckWait,
		MaxDeliver:    5,
		MaxAckPending: 1024,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if errors.Is(err, jetstream.ErrConsumerExists) {
		return s.js.Consumer(ctx, subjects.StreamResync, subjects.ConsumerSync)
	}
	if err != nil {
		return nil, fmt.Errorf("create consumer %s on %s: %w", subjects.ConsumerSync, subjects.StreamResync, err)
	}
	return cons, nil
}

// handle runs one resync request and decides its ack: a request for all
// servers fans out into one request per server (so replicas share them); a
// request for one server syncs it. A failed sync is acked too — its status
// records the failure, and retrying at once would only fail again; a
// server that never synced has a retry queued by the failure itself. A
// retry is held back for its delay on its first delivery, and dropped when
// it is no longer due (see retry.go).
func (s *Syncer) handle(ctx context.Context, msg jetstream.Msg) {
	name, err := subjects.ParseCatalogResync(msg.Subject())
	if err != nil {
		_ = msg.TermWithReason(err.Error())
		return
	}
	if name == "" {
		srvs, err := s.reg.List(ctx)
		if err != nil {
			_ = msg.NakWithDelay(5 * time.Second)
			return
		}
		for _, srv := range srvs {
			if err := registry.RequestResync(ctx, s.js, srv.Name); err != nil {
				s.log.Warn().Err(err).Str("server", srv.Name).Msg("could not queue a resync")
				_ = msg.NakWithDelay(5 * time.Second)
				return
			}
		}
		_ = msg.Ack()
		return
	}
	var rt retryRequest
	if json.Unmarshal(msg.Data(), &rt) != nil || rt.Attempt < 1 {
		rt = retryRequest{} // any other body (a schedule's, say): a plain request
	}
	if rt.Attempt > 0 && s.settleRetry(ctx, msg, name, rt) {
		return
	}
	// Keep the lease while a slow server is listed.
	done := make(chan struct{})
	var lease sync.WaitGroup
	lease.Go(func() {
		t := time.NewTicker(s.cfg.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	})
	_, err, _ = s.syncCoalesced(ctx, name, rt.Attempt)
	close(done)
	lease.Wait() // no InProgress after the ack below
	switch {
	case ctx.Err() != nil:
		_ = msg.Nak() // shutting down: another replica takes it
	case errors.Is(err, registry.ErrNotFound):
		_ = msg.TermWithReason("server not registered")
	default:
		_ = msg.Ack()
	}
}

// ---- notifications/tools/list_changed ----

// debouncer turns a burst of list_changed notifications into one request.
type debouncer struct {
	timer *time.Timer
	first time.Time
}

// notifyChanged records a list_changed from server; after Debounce quiet
// (or 10 Debounce into a storm) one resync request is queued.
func (s *Syncer) notifyChanged(server string) {
	s.debMu.Lock()
	defer s.debMu.Unlock()
	if s.debStopped {
		return
	}
	now := time.Now()
	d, ok := s.debounce[server]
	if !ok {
		d = &debouncer{first: now}
		d.timer = time.AfterFunc(s.cfg.Debounce, func() { s.fire(server) })
		s.debounce[server] = d
		return
	}
	wait := s.cfg.Debounce
	if limit := d.first.Add(10 * s.cfg.Debounce); now.Add(wait).After(limit) {
		wait = max(limit.Sub(now), 0)
	}
	d.timer.Reset(wait)
}

func (s *Syncer) fire(server string) {
	s.debMu.Lock()
	if s.debStopped {
		s.debMu.Unlock()
		return
	}
	delete(s.debounce, server)
	s.fireWG.Add(1)
	s.debMu.Unlock()
	defer s.fireWG.Done()
	subj, err := subjects.CatalogResync(server)
	if err != nil {
		return
	}
	// Replicas holding sessions to the same server each see the burst; the
	// message id, one per Debounce slot, lets JetStream keep one request.
	slot := time.Now().UnixNano() / int64(s.cfg.Debounce)
	msg := nats.NewMsg(subj)
	msg.Header.Set(nats.MsgIdHdr, fmt.Sprintf("list_changed-%s-%d", subj, slot))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.js.PublishMsg(ctx, msg); err != nil {
		s.log.Warn().Err(err).Str("server", server).Msg("could not queue a resync after tools/list_changed")
		return
	}
	s.log.Debug().Str("server", server).Msg("tools/list_changed: resync queued")
}

// stopDebouncers drops pending bursts and waits for a firing one.
func (s *Syncer) stopDebouncers() {
	s.debMu.Lock()
	s.debStopped = true
	for k, d := range s.debounce {
		d.timer.Stop()
		delete(s.debounce, k)
	}
	s.debMu.Unlock()
	s.fireWG.Wait()
}

// listenAll keeps one listener per registered server, following the
// registry live; with a pool, none for stdio servers.
func (s *Syncer) listenAll(ctx context.Context) {
	type listener struct {
		srv    registry.Server
		cancel context.CancelFunc
		done   chan struct{}
	}
	ls := map[string]*listener{}
	stop := func(name string) {
		if l, ok := ls[name]; ok {
			l.cancel()
			<-l.done
			delete(ls, name)
		}
	}
	defer func() {
		for name := range ls {
			stop(name)
		}
	}()
	err := s.reg.Watch(ctx, func(name string, srv *registry.Server) {
		if srv == nil {
			stop(name)
			return
		}
		if l, ok := ls[name]; ok && reflect.DeepEqual(l.srv, *srv) {
			return
		}
		stop(name)
		if s.pool != nil && srv.Transport == registry.TransportStdio {
			// A listener session would be a second process: the pool's
			// session passes list changes on instead (see WithPool).
			return
		}
		lctx, cancel := context.WithCancel(ctx)
		l := &listener{srv: *srv, cancel: cancel, done: make(chan struct{})}
		ls[name] = l
		go func() {
			defer close(l.done)
			s.listen(lctx, l.srv)
		}()
	}, nil)
	if err != nil && ctx.Err() == nil {
		s.log.Warn().Err(err).Msg("registry watch for list_changed listeners ended")
	}
}

// listen keeps a session to srv open to receive
// notifications/tools/list_changed, reconnecting with backoff. After a
// reconnect it queues a sync, since a change may have been missed.
func (s *Syncer) listen(ctx context.Context, srv registry.Server) {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = time.Second
	bo.MaxInterval = time.Minute
	bo.MaxElapsedTime = 0
	wait := func() bool {
		t := time.NewTimer(bo.NextBackOff())
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	connected := false
	standing := false // a legacy streamable HTTP server: open the GET stream
	for ctx.Err() == nil {
		res, err := s.reg.Resolve(srv)
		if err != nil {
			if !wait() {
				return
			}
			continue
		}
		onNotify := func(n mcp.JSONRPCNotification) {
			if n.Method == string(mcp.MethodNotificationToolsListChanged) {
				s.notifyChanged(srv.Name)
			}
		}
		c, err := s.dl(ctx, res, onNotify, standing)
		if err != nil {
			if !wait() {
				return
			}
			continue
		}
		caps := c.GetServerCapabilities()
		if caps.Tools == nil || !caps.Tools.ListChanged {
			_ = c.Close()
			s.log.Debug().Str("server", srv.Name).Msg("server does not send tools/list_changed; not listening")
			return
		}
		if srv.Transport == registry.TransportHTTP && !mcp.IsModernProtocol(c.ProtocolVersion()) && !standing {
			// Before 2026-07-28, streamable HTTP sends notifications on a
			// standing GET stream: dial again with it open.
			_ = c.Close()
			standing = true
			continue
		}
		lost := make(chan struct{})
		var once sync.Once
		markLost := func(error) { once.Do(func() { close(lost) }) }
		c.OnConnectionLost(markLost)
		pingDone := make(chan struct{})
		if standing {
			// mcp-go re-opens the GET stream by itself but does not say
			// when the session is gone (a restarted server): ping for it.
			go func() { defer close(pingDone); s.pingUntilLost(ctx, c, lost, markLost) }()
		} else {
			close(pingDone)
		}
		stopListen := func() {}
		if mcp.IsModernProtocol(c.ProtocolVersion()) {
			st, err := c.ListenAsync(ctx, mcp.SubscriptionFilter{ToolsListChanged: true}, markLost)
			if err != nil {
				_ = c.Close()
				if !wait() {
					return
				}
				continue
			}
			stopListen = st
		}
		if connected {
			s.notifyChanged(srv.Name) // may have missed a change while away
		}
		connected = true
		bo.Reset()
		s.log.Debug().Str("server", srv.Name).Msg("listening for tools/list_changed")
		if s.onListening != nil {
			s.onListening(srv.Name)
		}
		select {
		case <-ctx.Done():
		case <-lost:
		}
		markLost(nil) // stops the pinger
		<-pingDone
		stopListen()
		_ = c.Close()
		if ctx.Err() == nil && !wait() {
			return
		}
	}
}

// pingInterval is how often a listener on a standing GET stream checks that
// its session still exists.
const pingInterval = 30 * time.Second

// pingUntilLost asks c for a page of tools every pingEvery until a
// request fails (then markLost) or lost or ctx ends. It runs only on legacy
// (before 2026-07-28) sessions, where a request is the way to learn that
// the server forgot the session; a tools page rather than mcp-go's
// deprecated Ping, since the server is known to serve tools.
func (s *Syncer) pingUntilLost(ctx context.Context, c *client.Client, lost <-chan struct{}, markLost func(error)) {
	t := time.NewTicker(s.pingEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-lost:
			return
		case <-t.C:
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := c.ListToolsByPage(pctx, mcp.ListToolsRequest{})
			cancel()
			if err != nil && ctx.Err() == nil {
				markLost(err)
				return
			}
		}
	}
}
