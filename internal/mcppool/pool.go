// Package mcppool owns the MCP sessions a worker uses: it dials stdio, SSE
// and streamable HTTP servers lazily, shares one session per server among
// concurrent calls, caps in-flight calls per server, reconnects with
// exponential backoff behind a per-server breaker, and closes idle sessions.
//
// Failures come in three kinds, kept apart: *TransportError (retryable; the
// session is dropped), *ProtocolError (the server answered with a JSON-RPC
// error; not retryable), and a tool's own error, which is a result with
// isError set and no Go error.
package mcppool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/toolbus-dev/toolbus/internal/registry"
	"github.com/toolbus-dev/toolbus/subjects"
)

// Option configures a Pool.
type Option func(*Pool)

// WithHTTPClients makes the http.Client of each sse or http server with f
// (given the connections to keep per host) instead of NewHTTPClient: the
// bench uses it to speak HTTP/2 without TLS to its MCP server.
func WithHTTPClients(f func(maxConnsPerHost int) *http.Client) Option {
	return func(p *Pool) { p.newHTTPClient = f }
}

// WithDiscoverTimeout bounds the server/discover probe of servers whose
// protocol is negotiated (default: mcp-go's 5s). Pin ProtocolVersion to skip
// the probe altogether.
func WithDiscoverTimeout(d time.Duration) Option { return func(p *Pool) { p.discoverTimeout = d } }

// WithIdleCheck sets how often the janitor looks for idle sessions
// (default 30s).
func WithIdleCheck(interval time.Duration) Option {
	return func(p *Pool) {
		if interval > 0 {
			p.idleCheck = interval
		}
	}
}

// WithBackoff sets the exponential backoff between reconnect attempts once a
// server's breaker is open (default 500ms doubling to 30s).
func WithBackoff(initial, max time.Duration) Option {
	return func(p *Pool) {
		if initial > 0 {
			p.backoffInitial = initial
		}
		if max > 0 {
			p.backoffMax = max
		}
	}
}

// WithBreaker sets how many consecutive connect/transport failures mark a
// server down (default 3), and the least time it then stays down before a
// probe (default 0: the backoff alone decides).
func WithBreaker(failures int, openFor time.Duration) Option {
	return func(p *Pool) {
		if failures > 0 {
			p.breakerFailures = failures
		}
		if openFor > 0 {
			p.breakerOpenFor = openFor
		}
	}
}

// Pool holds one lazily dialled MCP session per registered server. It is
// safe for concurrent use. The zero value is not usable; call New.
type Pool struct {
	log             zerolog.Logger
	discoverTimeout time.Duration
	tracer          trace.Tracer // nil: tracing off
	idleCheck       time.Duration
	backoffInitial  time.Duration
	backoffMax      time.Duration
	breakerFailures int
	breakerOpenFor  time.Duration
	newHTTPClient   func(maxConns int) *http.Client

	ctx    context.Context // ends on Close; bounds dials
	cancel context.CancelFunc
	wg     sync.WaitGroup // janitor, dials, watchers, closers
	tokens atomic.Uint64
	notify atomic.Pointer[[]func(server string, n mcp.JSONRPCNotification)]

	mu      sync.RWMutex
	servers map[string]*server
	closed  bool
}

// New returns a Pool with no servers. Add them with Upsert. It starts the
// idle janitor; Close stops it.
func New(log zerolog.Logger, opts ...Option) *Pool {
	p := &Pool{
		log:             log,
		idleCheck:       30 * time.Second,
		backoffInitial:  500 * time.Millisecond,
		backoffMax:      30 * time.Second,
		breakerFailures: 3,
		servers:         make(map[string]*server),
	}
	for _, o := range opts {
		o(p)
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.wg.Add(1)
	go p.janitor()
	return p
}

// Upsert adds or replaces the definition of srv.Name. When the definition
// changed, the old session is closed once its in-flight calls finish, and
// the next call dials afresh with a clean breaker.
func (p *Pool) Upsert(srv registry.Server) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	old := p.servers[srv.Name]
	if old != nil && reflect.DeepEqual(old.def, srv) {
		return
	}
	p.servers[srv.Name] = p.newServer(srv)
	if old != nil {
		old.remove("definition changed")
	}
}

// Remove forgets the server and closes its session once in-flight calls end.
func (p *Pool) Remove(name string) {
	p.mu.Lock()
	s := p.servers[name]
	delete(p.servers, name)
	p.mu.Unlock()
	if s != nil {
		s.remove("removed")
	}
}

// Server returns the definition registered under name.
func (p *Pool) Server(name string) (registry.Server, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	s, ok := p.servers[name]
	if !ok {
		return registry.Server{}, false
	}
	return s.def, true
}

// Names returns the registered server names, sorted.
func (p *Pool) Names() []string {
	p.mu.RLock()
	names := make([]string, 0, len(p.servers))
	for n := range p.servers {
		names = append(names, n)
	}
	p.mu.RUnlock()
	slices.Sort(names)
	return names
}

// CallOptions are the per-call extras of Call.
type CallOptions struct {
	// AgentID is sent as the HTTP header x-agent-id (sse/http only), on this
	// call's request alone.
	AgentID string
	// Progress, when set, asks the server for progress: the request carries
	// a unique _meta.progressToken and notifications/progress for it are
	// passed here until Call returns. It runs on the transport's reader, so
	// it must not block.
	Progress func(progress, total float64, message string)
}

// Call runs tools/call on server. It returns the MCP CallToolResult as the
// server sent it, unknown fields included, and whether the tool reported an
// error (isError): a tool error is a result, not a Go error. err is a
// *TransportError, a *ProtocolError, ErrUnknownServer / ErrClosed (wrapped),
// or the context's error (wrapped); ClassOf tells which. A ctx without
// deadline gets the server's call timeout (default 60s).
func (p *Pool) Call(ctx context.Context, server, tool string, args json.RawMessage, co CallOptions) (raw json.RawMessage, isErr bool, err error) {
	s, err := p.server(server)
	if err != nil {
		_, span := p.startSpan(ctx, server, tool)
		endSpan(span, false, err)
		return nil, false, err
	}
	c := p.startCall(ctx, s, tool)
	if err := c.acquire(); err != nil {
		return nil, false, err
	}
	header, traceMeta := p.prepare(c, co)
	defer func() { c.done(isErr, err) }()
	return c.settle(c.sess.conn.callRaw(c.ctx, c.id, tool, args, header, c.token, traceMeta))
}

// CallThen is Call, for a caller that does not wait: then gets Call's
// outcome, on a goroutine of its own, never the caller's. When the server
// has a session and a free call slot, the caller's goroutine writes the
// request; otherwise a goroutine of the call's own waits for the dial or
// the slot, writes it and ends. A call waiting for its server over
// streamable HTTP then holds a goroutine of a few frames
// (httpTransport.callThen). then runs exactly once unless CallThen panics.
func (p *Pool) CallThen(ctx context.Context, server, tool string, args json.RawMessage, co CallOptions, then func(json.RawMessage, bool, error)) {
	s, err := p.server(server)
	if err != nil {
		go func() { then(p.Call(ctx, server, tool, args, co)) }() // its error, as Call words it
		return
	}
	c := p.startCall(ctx, s, tool)
	if c.sess = s.tryAcquire(); c.sess != nil {
		p.callThen(c, tool, args, co, then)
		return
	}
	go func() {
		defer func() {
			// p.callThen gave nothing on (it panics only then): the call
			// is answered, as on the caller's goroutine the caller's
			// recover would answer it.
			if v := recover(); v != nil {
				then(nil, false, bugError(v))
			}
		}()
		if err := c.acquire(); err != nil {
			then(nil, false, err)
			return
		}
		p.callThen(c, tool, args, co, then)
	}()
}

// callThen is CallThen with the slot and session taken.
//
// A panic in it (a bug) gives the slot and session back before it goes on:
// every way callRawThen hands the call on is its last statement, so a
// panic out of it means then will not run.
func (p *Pool) callThen(c *call, tool string, args json.RawMessage, co CallOptions, then func(json.RawMessage, bool, error)) {
	defer func() {
		if v := recover(); v != nil {
			c.done(false, bugError(v))
			panic(v)
		}
	}()
	header, traceMeta := p.prepare(c, co)
	c.sess.conn.callRawThen(c.ctx, c.id, tool, args, header, c.token, traceMeta, func(raw json.RawMessage, isErr bool, err error) {
		then(c.finish(raw, isErr, err))
	})
}

// finish is settle, then done, on a goroutine of the pool's: a panic (a
// bug) is the call's error (bugError), and the call's slot and session are
// given back all the same.
func (c *call) finish(raw json.RawMessage, isErr bool, err error) (r json.RawMessage, ie bool, e error) {
	defer func() { c.done(ie, e) }() // last: with the outcome, a panic's included
	defer func() {
		if v := recover(); v != nil {
			r, ie, e = nil, false, bugError(v)
		}
	}()
	return c.settle(raw, isErr, err)
}

// call is one tools/call of Call or CallThen: its context and span, and,
// once taken, its slot and session.
type call struct {
	s      *server
	sess   *session
	ctx    context.Context
	cancel context.CancelFunc
	span   trace.Span
	id     uint64
	token  string // the progress token, if the caller asked for progress
}

// startCall starts a call to s: its span, and its context, which has the
// server's call timeout unless ctx has a deadline.
func (p *Pool) startCall(ctx context.Context, s *server, tool string) *call {
	ctx, span := p.startSpan(ctx, s.def.Name, tool)
	ctx, cancel := s.callContext(ctx)
	return &call{s: s, ctx: ctx, cancel: cancel, span: span}
}

// acquire takes the call's slot and session, waiting (acquire) for them;
// when it cannot, the call is ended with the error.
func (c *call) acquire() error {
	sess, err := c.s.acquire(c.ctx)
	if err != nil {
		c.cancel()
		endSpan(c.span, false, err)
		return err
	}
	c.sess = sess
	return nil
}

// prepare gives the call its id and progress token, and returns the
// headers and the trace's _meta its request carries (not kept: the request
// holds them).
func (p *Pool) prepare(c *call, co CallOptions) (header http.Header, traceMeta []byte) {
	s := c.s
	if co.AgentID != "" && s.def.Transport != registry.TransportStdio {
		header = make(http.Header, 2)
		header.Set(subjects.AgentHTTPHeader, co.AgentID)
	}
	if s.def.Transport != registry.TransportStdio && header == nil && trace.SpanContextFromContext(c.ctx).IsValid() {
		header = make(http.Header, 1)
	}
	header, traceMeta = traceContext(c.ctx, header)
	if co.Progress != nil {
		c.token = "tb-" + strconv.FormatUint(p.tokens.Add(1), 36)
		c.sess.progress.Store(c.token, co.Progress)
	}
	c.id = p.tokens.Add(1)
	return header, traceMeta
}

// settle is the call's outcome, as Call returns it, with the server's
// health told of it.
func (c *call) settle(raw json.RawMessage, isErr bool, err error) (json.RawMessage, bool, error) {
	if err != nil {
		return nil, false, c.s.failed(c.ctx, c.sess, err)
	}
	c.s.succeeded()
	return raw, isErr, nil
}

// done gives back what the call took: its progress token, session and slot,
// context and span.
func (c *call) done(isErr bool, err error) {
	if c.token != "" {
		c.sess.progress.Delete(c.token)
	}
	c.s.release(c.sess)
	c.cancel()
	endSpan(c.span, isErr, err)
}

// ListTools lists every tool of server, following pagination.
func (p *Pool) ListTools(ctx context.Context, server string) ([]mcp.Tool, error) {
	s, err := p.server(server)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.callContext(ctx)
	defer cancel()
	sess, err := s.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer s.release(sess)
	res, err := sess.conn.client.ListTools(ctx, mcp.ListToolsRequest{})
	if err != nil {
		return nil, s.failed(ctx, sess, err)
	}
	s.succeeded()
	return res.Tools, nil
}

// OnNotification adds f to the functions that receive the notifications
// servers send on the pool's sessions, other than notifications/progress
// (which goes to the call that asked for it) — tools/list_changed, for
// one. f runs on the session's reader and must not block. A session is
// open only while the server is in use (see registry.Server.IdleTimeout),
// and the pool does not open a subscriptions/listen stream, so on protocol
// 2026-07-28 a server sends no list changes here.
func (p *Pool) OnNotification(f func(server string, n mcp.JSONRPCNotification)) {
	for {
		old := p.notify.Load()
		var fs []func(string, mcp.JSONRPCNotification)
		if old != nil {
			fs = append(fs, *old...)
		}
		fs = append(fs, f)
		if p.notify.CompareAndSwap(old, &fs) {
			return
		}
	}
}

// Close closes every session (stdio: close stdin, wait, SIGTERM, kill) and
// stops the janitor. Calls after Close fail with ErrClosed. Closing twice is
// fine.
func (p *Pool) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	servers := p.servers
	p.servers = map[string]*server{}
	p.mu.Unlock()

	p.cancel()
	for _, s := range servers {
		s.mu.Lock()
		s.removed = true
		sess := s.sess
		s.sess = nil
		if sess != nil {
			sess.retired = true
			p.closeAsync(sess, "pool closed")
		}
		s.mu.Unlock()
	}
	p.wg.Wait()
	for _, s := range servers {
		s.closeIdleIfRemoved() // those without a session
	}
	return nil
}

// State is a server's connection state, as Health reports it.
type State string

const (
	StateUnknown    State = "unknown"    // no such server
	StateIdle       State = "idle"       // no session; the next call dials
	StateConnecting State = "connecting" // a dial is in flight
	StateConnected  State = "connected"  // a session is open
	StateFailing    State = "failing"    // recent failures, below the breaker's threshold
	StateDown       State = "down"       // breaker open: calls fail fast until NextRetry
)

// Health is a server's connection health.
type Health struct {
	State               State
	ConsecutiveFailures int
	LastError           error     // the last connect/transport failure, nil after a success
	NextRetry           time.Time // when a down server is probed again
}

// Health reports the connection health of server name.
func (p *Pool) Health(name string) Health {
	p.mu.RLock()
	s := p.servers[name]
	p.mu.RUnlock()
	if s == nil {
		return Health{State: StateUnknown}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h := Health{ConsecutiveFailures: s.failures, LastError: s.lastErr, NextRetry: s.nextTry}
	switch {
	case s.failures >= p.breakerFailures:
		h.State = StateDown
	case s.dialing != nil:
		h.State = StateConnecting
	case s.sess != nil:
		h.State = StateConnected
	case s.failures > 0:
		h.State = StateFailing
	default:
		h.State = StateIdle
	}
	return h
}

// ServerStats is a server's load and connection state, as Stats reports it.
type ServerStats struct {
	State               State // the breaker's view, as Health says
	ConsecutiveFailures int
	Sessions            int // live sessions: 0 or 1, shared by all calls (a retired one finishing its calls is not counted)
	InFlight            int // calls holding a slot (running, or connecting)
}

// Stats reports every registered server's load and state, by name.
func (p *Pool) Stats() map[string]ServerStats {
	p.mu.RLock()
	servers := make(map[string]*server, len(p.servers))
	for n, s := range p.servers {
		servers[n] = s
	}
	p.mu.RUnlock()
	out := make(map[string]ServerStats, len(servers))
	for n, s := range servers {
		h := p.Health(n)
		s.mu.Lock()
		st := ServerStats{State: h.State, ConsecutiveFailures: h.ConsecutiveFailures, InFlight: len(s.sem)}
		if s.sess != nil {
			st.Sessions++
		}
		s.mu.Unlock()
		out[n] = st
	}
	return out
}

func (p *Pool) server(name string) (*server, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return nil, ErrClosed
	}
	s, ok := p.servers[name]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownServer, name)
	}
	return s, nil
}

func (p *Pool) janitor() {
	defer p.wg.Done()
	t := time.NewTicker(p.idleCheck)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case now := <-t.C:
			p.mu.RLock()
			servers := make([]*server, 0, len(p.servers))
			for _, s := range p.servers {
				servers = append(servers, s)
			}
			p.mu.RUnlock()
			for _, s := range servers {
				s.closeIfIdle(now)
			}
		}
	}
}

// closeAsync closes sess off the caller's path; Close waits for it.
func (p *Pool) closeAsync(sess *session, why string) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		sess.close(why)
		sess.server.closeIdleIfRemoved()
	}()
}

// ---- one server ----

type server struct {
	p    *Pool
	def  registry.Server
	log  zerolog.Logger
	sem  chan struct{}
	hc   *http.Client
	idle time.Duration

	mu        sync.Mutex
	sess      *session
	dialing   *dialCall
	removed   bool
	failures  int
	lastErr   error
	lastClass Class
	nextTry   time.Time
	probing   bool
	bo        *backoff.ExponentialBackOff
	// connected: a dial succeeded since Upsert, so a package runner has
	// its package and later dials get the usual connect timeout.
	connected bool
}

type dialCall struct {
	done chan struct{}
	err  error
}

func (p *Pool) newServer(def registry.Server) *server {
	n := def.MaxConcurrency
	if n <= 0 {
		n = DefaultMaxConcurrency
	}
	idle := def.IdleTimeout.D()
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	s := &server{
		p: p, def: def, log: p.log.With().Str("server", def.Name).Logger(),
		sem: make(chan struct{}, n), idle: idle,
		bo: backoff.NewExponentialBackOff(
			backoff.WithInitialInterval(p.backoffInitial),
			backoff.WithMaxInterval(p.backoffMax),
			backoff.WithMaxElapsedTime(0),
		),
	}
	if def.Transport == registry.TransportHTTP || def.Transport == registry.TransportSSE {
		newHC := p.newHTTPClient
		if newHC == nil {
			newHC = NewHTTPClient
		}
		s.hc = newHC(max(256, 2*n))
	}
	return s
}

func (s *server) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	d := s.def.CallTimeout.D()
	if d <= 0 {
		d = DefaultCallTimeout
	}
	return context.WithTimeout(ctx, d)
}

// acquire takes a concurrency slot and a reference on the live session,
// dialling one (single-flight) when there is none.
func (s *server) acquire(ctx context.Context) (*session, error) {
	select {
	case s.sem <- struct{}{}:
	default:
		select {
		case s.sem <- struct{}{}:
		case <-ctx.Done():
			return nil, ctxError(ctx, s.def.Name, "waiting for a free call slot")
		}
	}
	sess, err := s.session(ctx)
	if err != nil {
		<-s.sem
		return nil, err
	}
	return sess, nil
}

// tryAcquire is acquire when it needs no wait: a free slot and a live
// session; nil otherwise.
func (s *server) tryAcquire() *session {
	select {
	case s.sem <- struct{}{}:
	default:
		return nil
	}
	s.mu.Lock()
	sess := s.sess
	if s.removed || sess == nil {
		s.mu.Unlock()
		<-s.sem
		return nil
	}
	sess.refs++
	s.mu.Unlock()
	return sess
}

func (s *server) session(ctx context.Context) (*session, error) {
	s.mu.Lock()
	for {
		if s.removed {
			s.mu.Unlock()
			if s.p.ctx.Err() != nil {
				return nil, ErrClosed
			}
			return nil, fmt.Errorf("%w %q (removed or redefined)", ErrUnknownServer, s.def.Name)
		}
		if sess := s.sess; sess != nil {
			sess.refs++
			s.mu.Unlock()
			return sess, nil
		}
		d := s.dialing
		if d == nil {
			now := time.Now()
			if s.failures >= s.p.breakerFailures {
				if now.Before(s.nextTry) || s.probing {
					class := s.lastClass
					if !class.Transport() {
						class = ClassTransport // down after a refused handshake: still not reachable
					}
					err := &TransportError{Server: s.def.Name, Class: class, Err: s.lastErr, Down: true, NextRetry: s.nextTry}
					s.mu.Unlock()
					return nil, err
				}
				s.probing = true // this dial is the half-open probe
			}
			d = &dialCall{done: make(chan struct{})}
			s.dialing = d
			s.p.wg.Add(1)
			go s.dial(d)
		}
		s.mu.Unlock()
		select {
		case <-d.done:
		case <-ctx.Done():
			return nil, ctxError(ctx, s.def.Name, "connecting")
		}
		if d.err != nil {
			return nil, d.err
		}
		s.mu.Lock()
	}
}

// dial opens a session for the server, bounded by ConnectTimeout and the
// pool's life, not by the first caller's context: others may be waiting.
func (s *server) dial(d *dialCall) {
	defer s.p.wg.Done()
	sess := &session{server: s, done: make(chan struct{})}
	s.mu.Lock()
	redial := s.connected
	s.mu.Unlock()
	o := DialOptions{
		Log:             s.p.log, // dial adds the server key itself
		HTTPClient:      s.hc,
		OnNotification:  sess.onNotification,
		DiscoverTimeout: s.p.discoverTimeout,
		Redial:          redial,
	}
	start := time.Now()
	c, err := dial(s.p.ctx, s.def, o, true)

	s.mu.Lock()
	defer s.mu.Unlock()
	defer close(d.done)
	s.dialing = nil
	if err == nil && s.removed {
		// Removed or redefined while dialling. This goroutine still counts
		// in p.wg, so adding to it here cannot race Close's Wait.
		s.p.wg.Add(1)
		go func() {
			defer s.p.wg.Done()
			_ = c.close()
		}()
	}
	switch {
	case s.removed && s.p.ctx.Err() != nil:
		d.err = ErrClosed
		return
	case s.removed:
		d.err = fmt.Errorf("%w %q (removed or redefined)", ErrUnknownServer, s.def.Name)
		return
	case err != nil:
		d.err = err
		s.recordFailureLocked(err)
		return
	}
	sess.conn = c
	sess.lastUsed = time.Now()
	s.sess = sess
	s.connected = true
	s.resetLocked()
	s.log.Info().Str("protocol", c.client.ProtocolVersion()).Float64("duration_ms", ms(time.Since(start))).Msg("mcp session connected")
	s.p.wg.Add(1)
	go s.watch(sess)
}

// watch retires the session as soon as the transport reports it gone (a
// dead stdio child, a dropped SSE stream), so the next call reconnects
// instead of failing on a dead session.
func (s *server) watch(sess *session) {
	defer s.p.wg.Done()
	select {
	case <-sess.done:
	case <-sess.conn.lost:
		s.mu.Lock()
		if sess.retired {
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		// stdio: close now (the child is gone) and learn how it ended.
		class, _ := transportClass(sess.conn.lostErr)
		if sess.conn.child != nil {
			class = ClassProcessExited
		} else if class == "" {
			class = ClassReset
		}
		err := &TransportError{Server: s.def.Name, Class: class, Err: sess.conn.exitError(describe(sess.conn.target, sess.conn.lostErr))}
		s.mu.Lock()
		if !sess.retired {
			s.retireLocked(sess, err, true)
		}
		s.mu.Unlock()
	}
}

func (s *server) release(sess *session) {
	s.mu.Lock()
	sess.refs--
	sess.lastUsed = time.Now()
	closeNow := sess.retired && sess.refs == 0
	s.mu.Unlock()
	<-s.sem
	if closeNow {
		s.p.closeAsync(sess, "drained")
	}
}

// failed classifies a failed request on sess and, for a transport failure,
// drops the session and counts the failure.
func (s *server) failed(ctx context.Context, sess *session, err error) error {
	if ctx.Err() != nil {
		return ctxError(ctx, s.def.Name, "call")
	}
	cerr := classify(ctx, s.def.Name, sess.conn.target, err)
	te, ok := cerr.(*TransportError)
	if !ok {
		return cerr
	}
	if sess.conn.child != nil && (errors.Is(err, transport.ErrTransportClosed) || errors.Is(err, syscall.EPIPE)) {
		te.Err = sess.conn.exitError(err)
		te.Class = ClassProcessExited
	}
	// A refused connection or a write to a dead child never reached the
	// server; anything else (a reset, an EOF, a child that died while
	// working) may have been after it ran the request.
	te.MaybeDelivered = !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.EPIPE)
	s.mu.Lock()
	if !sess.retired {
		s.retireLocked(sess, te, sess.conn.child != nil)
	}
	s.mu.Unlock()
	return te
}

func (s *server) succeeded() {
	s.mu.Lock()
	if s.failures != 0 {
		s.resetLocked()
	}
	s.mu.Unlock()
}

// retireLocked takes sess out of service after a transport failure and
// counts it; it is closed at once when now is set or nothing runs on it,
// else when its last call returns.
func (s *server) retireLocked(sess *session, err error, now bool) {
	sess.retired = true
	if s.sess == sess {
		s.sess = nil
	}
	s.recordFailureLocked(err)
	if now || sess.refs == 0 {
		s.p.closeAsync(sess, "transport failure")
	}
}

func (s *server) recordFailureLocked(err error) {
	var te *TransportError
	s.lastClass = ClassOf(err)
	if errors.As(err, &te) {
		err = te.Err
	}
	s.failures++
	s.lastErr = err
	s.probing = false
	wait := s.bo.NextBackOff()
	if wait == backoff.Stop {
		wait = s.p.backoffMax
	}
	if s.failures >= s.p.breakerFailures && wait < s.p.breakerOpenFor {
		wait = s.p.breakerOpenFor
	}
	s.nextTry = time.Now().Add(wait)
	ev := s.log.Warn()
	if s.failures >= s.p.breakerFailures {
		ev = s.log.Error().Bool("down", true)
	}
	ev.Int("failures", s.failures).Int64("retry_in_ms", wait.Milliseconds()).Err(err).Msg("mcp server failure")
}

func (s *server) resetLocked() {
	if s.failures >= s.p.breakerFailures {
		s.log.Info().Int("failures", s.failures).Msg("mcp server back up")
	}
	s.failures = 0
	s.lastErr = nil
	s.lastClass = ""
	s.nextTry = time.Time{}
	s.probing = false
	s.bo.Reset()
}

func (s *server) closeIfIdle(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.sess
	if sess == nil || sess.refs > 0 || now.Sub(sess.lastUsed) < s.idle {
		return
	}
	sess.retired = true
	s.sess = nil
	s.p.closeAsync(sess, "idle")
}

// remove takes the server out of service: no new calls, and its session
// closes when in-flight calls finish.
func (s *server) remove(why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removed = true
	sess := s.sess
	s.sess = nil
	if sess == nil {
		if s.hc != nil {
			s.hc.CloseIdleConnections()
		}
		return
	}
	sess.retired = true
	if sess.refs == 0 {
		s.p.closeAsync(sess, why)
	}
}

// closeIdleIfRemoved closes the idle HTTP connections of a removed server,
// once its session has closed (the session's close, a DELETE, may use one):
// before, they stayed for the idle timeout (90 s).
func (s *server) closeIdleIfRemoved() {
	s.mu.Lock()
	removed := s.removed
	s.mu.Unlock()
	if removed && s.hc != nil {
		s.hc.CloseIdleConnections()
	}
}

// ---- one session ----

type session struct {
	server   *server
	conn     *conn
	progress sync.Map // token → func(progress, total float64, message string)
	done     chan struct{}
	once     sync.Once

	// guarded by server.mu
	refs     int
	lastUsed time.Time
	retired  bool
}

func (sess *session) close(why string) {
	sess.once.Do(func() {
		close(sess.done)
		start := time.Now()
		err := sess.conn.close()
		ev := sess.server.log.Info()
		if err != nil && why != "transport failure" {
			ev = ev.AnErr("close_error", err)
		}
		ev.Str("reason", why).Float64("duration_ms", ms(time.Since(start))).Msg("mcp session closed")
	})
}

func (sess *session) onNotification(n mcp.JSONRPCNotification) {
	if n.Method != string(mcp.MethodNotificationProgress) {
		if fs := sess.server.p.notify.Load(); fs != nil {
			for _, f := range *fs {
				f(sess.server.def.Name, n)
			}
		}
		return
	}
	f := n.Params.AdditionalFields
	token, ok := f["progressToken"].(string)
	if !ok {
		return
	}
	fn, ok := sess.progress.Load(token)
	if !ok {
		return
	}
	progress, _ := f["progress"].(float64)
	total, _ := f["total"].(float64)
	msg, _ := f["message"].(string)
	fn.(func(float64, float64, string))(progress, total, msg)
}

// ctxError is ctx's error, wrapped so errors.Is finds both context.Canceled /
// DeadlineExceeded and a cancellation cause.
func ctxError(ctx context.Context, server, doing string) error {
	err, cause := ctx.Err(), context.Cause(ctx)
	if cause != nil && cause != err {
		return fmt.Errorf("server %q: %s: %w (%w)", server, doing, err, cause)
	}
	return fmt.Errorf("server %q: %s: %w", server, doing, err)
}
