// Package client is the Go client for agents: it calls MCP tools through
// toolbus and receives the agents' wake-ups.
//
// A Client acts as one agent over one NATS connection. Call publishes a
// tool call on JetStream (tool.call.<agent>.<server>.<tool>, the call id as
// Nats-Msg-Id, so a re-sent call is answered with the first result) and
// waits for its result on the one subscription the client holds,
// tool.reply.<agent>.*, falling back to a direct get of the stored result
// when the delivery was missed. The result is a subjects.Result: the MCP CallToolResult as the
// server sent it, or an error with a stable code (package subjects is the
// wire contract). Wakeups consumes the agent's wake-ups from the scheduler
// and the webhook bridge.
//
// With NATS authentication on, the connection's permissions decide which
// agent a client may act as; the README's nats.conf shows the roles.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	gosync "sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/toolbus-dev/toolbus/internal/claim"
	"github.com/toolbus-dev/toolbus/internal/streams"
	"github.com/toolbus-dev/toolbus/subjects"
)

// DefaultTimeout (60s) is a call's deadline when neither the context nor
// WithTimeout sets one; a worker gives a call that carries no deadline the
// same.
const DefaultTimeout = streams.DefaultCallTimeout

// ErrNoResult is returned when no result arrived by the call's deadline
// (plus a short grace for the worker's own timeout result).
var ErrNoResult = errors.New("no result")

// Client calls tools as one agent. It is safe for concurrent use; make one
// per process.
type Client struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	agent    string
	sub      *nats.Subscription // tool.reply.<agent>.*: every result of this agent, as stored
	poll     time.Duration
	log      zerolog.Logger
	maxClaim int64  // cap on a body read or written through the Object Store
	prefix   string // "tool.reply.<agent>."
	dgetPfx  string // the direct get subject prefix for this agent's results

	mu      gosync.Mutex
	waiters map[string]waiter
}

// waiter is a call waiting for its result, with what the result must say.
type waiter struct {
	server, tool string
	ch           chan *subjects.Result
}

// Option configures a Client.
type Option func(*Client)

// WithAgent sets the agent this client calls as (default: the connection's
// user name when it is a valid agent id, else subjects.DefaultAgent). With
// NATS authentication on, it must be the agent the connection's
// permissions grant (tool.call.<agent>.>).
func WithAgent(id string) Option { return func(c *Client) { c.agent = id } }

// WithResultPoll sets how often a waiting call also looks for its stored
// result in TOOL_RESULTS, in case the delivery was missed (default 2s).
func WithResultPoll(d time.Duration) Option { return func(c *Client) { c.poll = d } }

// WithLogger receives the client's warnings, such as a result dropped
// because it does not match its call (default: none).
func WithLogger(l zerolog.Logger) Option { return func(c *Client) { c.log = l } }

// WithMaxClaimBytes caps arguments and results that travel through the
// Object Store because they are too large for a message (default 64 MiB).
func WithMaxClaimBytes(n int64) Option { return func(c *Client) { c.maxClaim = n } }

// New returns a client on nc with one subscription, to
// tool.reply.<agent>.*, for all its calls. It fails when NATS refuses that
// subscription: the connection is not allowed to act as the agent.
func New(nc *nats.Conn, opts ...Option) (*Client, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	c := &Client{nc: nc, js: js, poll: 2 * time.Second, log: zerolog.Nop(), waiters: map[string]waiter{}, maxClaim: claim.DefaultMaxBytes}
	c.agent = subjects.DefaultAgent
	if u := userOf(nc); subjects.ValidateAgent(u) == nil {
		c.agent = u
	}
	for _, o := range opts {
		o(c)
	}
	if err := subjects.ValidateAgent(c.agent); err != nil {
		return nil, err
	}
	c.prefix = subjects.ToolReply(c.agent, "")
	c.dgetPfx = subjects.ResultDirectGet(c.agent, "")
	results := subjects.ToolReplies(c.agent)
	c.sub, err = nc.Subscribe(results, c.onResult)
	if err != nil {
		return nil, fmt.Errorf("subscribe to %s: %w", results, err)
	}
	_ = c.sub.SetPendingLimits(-1, -1)
	// A refused subscription is reported asynchronously; the flush's
	// round trip brings the refusal back first.
	if err := nc.Flush(); err != nil {
		_ = c.sub.Unsubscribe()
		return nil, fmt.Errorf("subscribe to %s: %w", results, err)
	}
	if err := nc.LastError(); errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), results) {
		_ = c.sub.Unsubscribe()
		return nil, fmt.Errorf("NATS refused this connection the results of agent %q (%w): connect as that agent's user, or name the agent the connection is allowed to act as (client.WithAgent, toolbus call --agent)", c.agent, err)
	}
	return c, nil
}

// userOf returns the connection's user name: the user option, else the
// user in the connected URL.
func userOf(nc *nats.Conn) string {
	if nc.Opts.User != "" {
		return nc.Opts.User
	}
	if u, err := url.Parse(nc.ConnectedUrl()); err == nil && u.User != nil {
		return u.User.Username()
	}
	return ""
}

// Agent returns the agent this client calls as.
func (c *Client) Agent() string { return c.agent }

// Close ends the results subscription; the connection stays the caller's.
func (c *Client) Close() error { return c.sub.Unsubscribe() }

// onResult hears every result stored for this agent and hands each to the
// call waiting for it, if the result is about that call.
func (c *Client) onResult(m *nats.Msg) {
	id, ok := strings.CutPrefix(m.Subject, c.prefix)
	if !ok {
		return
	}
	c.mu.Lock()
	w, ok := c.waiters[id]
	c.mu.Unlock()
	if !ok {
		return
	}
	res, err := c.accept(m.Data, id, w.server, w.tool)
	if err != nil {
		c.log.Warn().Err(err).Str("call_id", id).Str("subject", m.Subject).Msg("result dropped")
		return
	}
	c.mu.Lock()
	if cur, ok := c.waiters[id]; ok && cur.ch == w.ch {
		delete(c.waiters, id)
		w.ch <- res // buffered, and only the first valid result is sent
	}
	c.mu.Unlock()
}

// accept decodes a result and checks that it answers the call it is meant
// for: the same call id, agent, server and tool. Anything else is dropped.
func (c *Client) accept(data []byte, id, server, tool string) (*subjects.Result, error) {
	res, err := decode(data)
	if err != nil {
		return nil, err
	}
	// A cancel answered before any worker took the call may not know its
	// server and tool.
	early := res.Error != nil && (res.Error.Code == subjects.CodeCancelled || res.Error.Code == subjects.CodeTimeout) && res.Server == "" && res.Tool == ""
	if res.CallID != id || res.Agent != c.agent || (server != "" && !early && (res.Server != server || res.Tool != tool)) {
		return nil, fmt.Errorf("%w: it answers call %q of agent %q (%s/%s), not call %q of agent %q (%s/%s)",
			ErrMismatch, res.CallID, res.Agent, res.Server, res.Tool, id, c.agent, server, tool)
	}
	return res, nil
}

// ErrMismatch is the reason a result that does not answer its call is
// dropped.
var ErrMismatch = errors.New("result does not match its call")

type callOpts struct {
	id          string
	timeout     time.Duration
	traceparent string
	progress    func(subjects.Progress)
}

// CallOption configures one call.
type CallOption func(*callOpts)

// WithCallID sets the call id (default: 128 random bits, URL-safe base64).
// Call ids are scoped to the agent. Re-sending a call with the same id
// inside JetStream's duplicate window stores it once; after it, the stored
// result is the answer.
func WithCallID(id string) CallOption { return func(o *callOpts) { o.id = id } }

// WithTimeout sets the call's deadline relative to now (default: the
// context's deadline, else DefaultTimeout).
func WithTimeout(d time.Duration) CallOption { return func(o *callOpts) { o.timeout = d } }

// WithTraceparent passes a W3C traceparent along. Without it, the
// OpenTelemetry span in the call's ctx, when there is one, is the parent.
func WithTraceparent(tp string) CallOption { return func(o *callOpts) { o.traceparent = tp } }

// WithProgress receives the tool's progress notifications.
func WithProgress(f func(subjects.Progress)) CallOption { return func(o *callOpts) { o.progress = f } }

// NewCallID returns a fresh, unguessable call id.
func NewCallID() string { return subjects.NewCallID() }

// Call runs tool on server with args (any JSON-encodable value, or
// json.RawMessage / []byte as they are) and returns its result. An error
// result (Status "error") is a result, not a Go error: check res.Err(). The
// Go error is for the call not getting through or no result arriving.
func (c *Client) Call(ctx context.Context, server, tool string, args any, opts ...CallOption) (*subjects.Result, error) {
	var o callOpts
	for _, f := range opts {
		f(&o)
	}
	if o.id == "" {
		o.id = NewCallID()
	} else if err := subjects.ValidateCallID(o.id); err != nil {
		return nil, err
	}
	subject, err := subjects.ToolCall(c.agent, server, tool)
	if err != nil {
		return nil, err
	}
	body, err := encodeArgs(args)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(DefaultTimeout)
	if o.timeout > 0 {
		deadline = time.Now().Add(o.timeout)
	} else if d, ok := ctx.Deadline(); ok {
		deadline = d
	}

	msg := nats.NewMsg(subject)
	msg.Data = body
	msg.Header.Set(subjects.HeaderCallID, o.id)
	msg.Header.Set(subjects.HeaderDeadline, subjects.FormatDeadline(deadline))
	if o.traceparent != "" {
		msg.Header.Set(subjects.HeaderTraceparent, o.traceparent)
	} else if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		// The caller's span is the parent of the worker's toolbus.call.
		msg.Header.Set(subjects.HeaderTraceparent, subjects.FormatTraceparent(sc.TraceID(), sc.SpanID(), byte(sc.TraceFlags())))
		if ts := sc.TraceState().String(); ts != "" {
			msg.Header.Set(subjects.HeaderTracestate, ts)
		}
	}
	if max := c.nc.MaxPayload(); max > 0 && int64(len(body)+512) > max {
		// Too large for a message: a claim-check. The arguments go to the
		// Object Store as this call's object; the call names it.
		if int64(len(body)) > c.maxClaim {
			return nil, fmt.Errorf("%w: arguments are %d bytes, over the %d-byte limit of the object store path (client.WithMaxClaimBytes)", errTooLarge, len(body), c.maxClaim)
		}
		pctx, cancel := context.WithDeadline(ctx, deadline)
		cl, err := claim.Put(pctx, c.js, claim.ChunkSize(c.nc), c.agent, o.id, subjects.ClaimArgs, body, false)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("arguments are %d bytes, over the %d-byte max payload, and could not be put in object store bucket %s (is it provisioned, and may this connection publish %s?): %w", len(body), max, subjects.BucketBlobs, subjects.BlobChunksOf(c.agent), err)
		}
		claim.SetHeader(msg.Header, cl)
		msg.Data = nil
	}

	if o.progress != nil {
		sub, err := c.nc.Subscribe(subjects.ToolProgress(c.agent, o.id), func(m *nats.Msg) {
			var p subjects.Progress
			if json.Unmarshal(m.Data, &p) == nil && p.CallID == o.id {
				o.progress(p)
			}
		})
		if err != nil {
			return nil, err
		}
		defer sub.Unsubscribe()
	}

	// Listen before publishing: the result is delivered as it is stored.
	ch := make(chan *subjects.Result, 1)
	c.mu.Lock()
	if _, busy := c.waiters[o.id]; busy {
		c.mu.Unlock()
		return nil, fmt.Errorf("call id %s is already waiting for its result in this client", o.id)
	}
	c.waiters[o.id] = waiter{server: server, tool: tool, ch: ch}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		if cur, ok := c.waiters[o.id]; ok && cur.ch == ch {
			delete(c.waiters, o.id)
		}
		c.mu.Unlock()
	}()

	pub, err := c.js.PublishMsgAsync(msg)
	if err != nil {
		return nil, fmt.Errorf("publish call: %w", err)
	}
	// The worker answers a call that runs past its deadline with a timeout
	// result; wait a little beyond it for that answer. A call still queued
	// at its deadline is answered at once when the client asks for it.
	wait, cancel := context.WithDeadline(ctx, deadline.Add(3*time.Second))
	defer cancel()
	tick := time.NewTicker(c.poll)
	defer tick.Stop()
	expired := time.NewTimer(time.Until(deadline))
	defer expired.Stop()
	acked := pub.Ok()
	lookup := func(ctx context.Context) (*subjects.Result, bool) {
		data, err := c.stored(ctx, o.id)
		if err != nil {
			return nil, false
		}
		res, err := c.accept(data, o.id, server, tool)
		if err != nil {
			c.log.Warn().Err(err).Str("call_id", o.id).Msg("stored result dropped")
			return nil, false
		}
		return res, true
	}
	for {
		select {
		case res := <-ch:
			return c.resolve(ctx, res, o.id, server, tool)
		case <-acked:
			acked = nil
		case <-expired.C:
			_ = c.cancel(o.id, subjects.CancelDeadline)
		case err := <-pub.Err():
			return nil, fmt.Errorf("call not accepted by JetStream (is `toolbus serve` running, the TOOL_CALLS stream there, and may this connection publish %s?): %w", subject, err)
		case <-tick.C:
			if res, ok := lookup(wait); ok {
				return c.resolve(ctx, res, o.id, server, tool)
			}
		case <-wait.Done():
			if res, ok := lookup(context.Background()); ok {
				return c.resolve(context.WithoutCancel(ctx), res, o.id, server, tool)
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("%w for call %s by its deadline %s: is a worker running (`toolbus worker` or `toolbus serve`)?", ErrNoResult, o.id, subjects.FormatDeadline(deadline))
		}
	}
}

var errTooLarge = errors.New("too large")

// Result fetches a call's stored result from TOOL_RESULTS by a direct get
// of its exact subject, tool.result.<agent>.<call_id> (the only read of
// TOOL_RESULTS an agent's permissions allow). It returns
// jetstream.ErrMsgNotFound while there is none.
func (c *Client) Result(ctx context.Context, callID string) (*subjects.Result, error) {
	if err := subjects.ValidateCallID(callID); err != nil {
		return nil, err
	}
	data, err := c.stored(ctx, callID)
	if err != nil {
		return nil, err
	}
	res, err := c.accept(data, callID, "", "")
	if err != nil {
		return nil, err
	}
	return c.resolve(ctx, res, callID, "", "")
}

// ErrClaim is returned when a result too large for a message was stored in
// the Object Store and cannot be read back: it expired, is over the
// client's cap (WithMaxClaimBytes), or does not match its claim.
var ErrClaim = errors.New("result in the object store cannot be read")

// resolve returns res itself, or, when res is a stub naming its body in
// the Object Store (res.Claim), the whole result read from there. The
// claim must name this call's result object (agent, call id) in toolbus's
// bucket, and the body read must answer the same call, server and tool.
func (c *Client) resolve(ctx context.Context, res *subjects.Result, id, server, tool string) (*subjects.Result, error) {
	if res.Claim == nil {
		return res, nil
	}
	if server == "" {
		server, tool = res.Server, res.Tool
	}
	data, err := claim.Get(ctx, c.nc, res.Claim, c.agent, id, subjects.ClaimResult, c.maxClaim)
	if err != nil {
		return nil, fmt.Errorf("%w: call %s: %s/%s (%d bytes): %w", ErrClaim, id, res.Claim.Bucket, res.Claim.Object, res.Claim.Size, err)
	}
	full, err := c.accept(data, id, server, tool)
	if err != nil {
		return nil, fmt.Errorf("%w: call %s: %w", ErrClaim, id, err)
	}
	if full.Claim != nil {
		return nil, fmt.Errorf("%w: call %s: the object %s names another claim", ErrClaim, id, res.Claim.Object)
	}
	return full, nil
}

// stored reads the stored result of callID, or jetstream.ErrMsgNotFound.
func (c *Client) stored(ctx context.Context, callID string) ([]byte, error) {
	m, err := c.nc.RequestWithContext(ctx, c.dgetPfx+callID, nil)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return nil, fmt.Errorf("stream %s not found (is `toolbus serve` running?): %w", subjects.StreamResults, err)
	case err != nil:
		return nil, err
	}
	switch m.Header.Get("Status") {
	case "":
	case "404":
		return nil, jetstream.ErrMsgNotFound
	default:
		return nil, fmt.Errorf("direct get of %s: status %s %s", subjects.ToolResult(c.agent, callID), m.Header.Get("Status"), m.Header.Get("Description"))
	}
	return m.Data, nil
}

// Cancel asks for callID to stop: a queued call is answered "cancelled" at
// once and never runs; a running one is stopped and answered "cancelled".
// A call that already has a result keeps it. Only this client's agent can
// cancel its calls.
func (c *Client) Cancel(callID string) error {
	if err := subjects.ValidateCallID(callID); err != nil {
		return err
	}
	return c.cancel(callID, "")
}

func (c *Client) cancel(callID, reason string) error {
	why := subjects.Cancel{Reason: reason}
	c.mu.Lock()
	if w, ok := c.waiters[callID]; ok {
		why.Server, why.Tool = w.server, w.tool
	}
	c.mu.Unlock()
	body, _ := json.Marshal(why)
	return c.nc.Publish(subjects.ToolCancel(c.agent, callID), body)
}

func decode(data []byte) (*subjects.Result, error) {
	var r subjects.Result
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("decode result: %w", err)
	}
	return &r, nil
}

func encodeArgs(args any) ([]byte, error) {
	switch a := args.(type) {
	case nil:
		return []byte("{}"), nil
	case json.RawMessage:
		return a, nil
	case []byte:
		return a, nil
	case string:
		return []byte(a), nil
	}
	b, err := json.Marshal(args)
	if err != nil {
		return nil, fmt.Errorf("encode arguments: %w", err)
	}
	return b, nil
}

// Wakeup is one wake-up of this client's agent: an event published on
// agent.wake.<agent> by the scheduler, the webhook bridge or anyone allowed
// to.
type Wakeup struct {
	Subject string
	Data    []byte
	Header  nats.Header
	// Seq is the event's sequence in the EVENTS stream; Time when it was
	// stored; Delivered how many times it has been delivered (1 unless
	// an earlier handler failed or its process died).
	Seq       uint64
	Time      time.Time
	Delivered uint64
}

// wakePull bounds one pull request of Wakeups.
const wakePull = 5 * time.Second

// ErrNoWakeConsumer is returned by Wakeups when the agent's wake-up
// consumer does not exist and this connection may not create it.
var ErrNoWakeConsumer = errors.New("no wake-up consumer for this agent")

// Wakeups delivers this agent's wake-ups to handle, one at a time and in
// order, until ctx ends (it then returns nil). They come from the agent's
// durable consumer on EVENTS (subjects.WakeConsumer), so wake-ups published
// while the agent was offline are delivered when it comes back, each once:
// a wake-up is acknowledged when handle returns nil, and delivered again
// (after a short delay) when handle returns an error or the process dies
// before returning. The consumer is created here if missing and the
// connection may (without NATS authentication); with authentication it is
// created by the scheduler or the bridge at their first wake-up for the
// agent, or by an admin (`toolbus agents add`). While NATS is away it waits
// and pulls again (logged); a consumer deleted under it ends it with an
// error.
func (c *Client) Wakeups(ctx context.Context, handle func(context.Context, Wakeup) error) error {
	name := subjects.WakeConsumer(c.agent)
	cons, err := c.js.Consumer(ctx, subjects.StreamEvents, name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		cons, err = c.js.CreateConsumer(ctx, subjects.StreamEvents, streams.WakeConsumerConfig(c.agent))
		if err != nil && !errors.Is(err, jetstream.ErrConsumerExists) {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("%w %q (%s on %s): %v", ErrNoWakeConsumer, c.agent, name, subjects.StreamEvents, err)
		}
		if errors.Is(err, jetstream.ErrConsumerExists) {
			cons, err = c.js.Consumer(ctx, subjects.StreamEvents, name)
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil // ended before it began: nothing was taken
		}
		return fmt.Errorf("wake-up consumer %s: %w", name, err)
	}
	// The connection's unsubscribe of the last pull reaches the server
	// before Wakeups returns: from then on the server delivers nothing to
	// a pull request of this call, and a wake-up published next waits for
	// the next Wakeups, not for the ack wait (30 s) of a delivery nobody
	// reads (the consumer hands out one wake-up at a time).
	defer func() { _ = c.nc.FlushTimeout(5 * time.Second) }()
	bo := backoff.NewExponentialBackOff(backoff.WithInitialInterval(100*time.Millisecond), backoff.WithMaxInterval(5*time.Second), backoff.WithMaxElapsedTime(0))
	for {
		// One wake-up per pull request, each short-lived: no iterator
		// state to go stale, and a pull left behind by a cancelled wait
		// expires within wakePull.
		if ctx.Err() != nil {
			return nil // no pull request for a wait that is over
		}
		fctx, cancel := context.WithTimeout(ctx, wakePull)
		m, err := cons.Next(jetstream.FetchContext(fctx))
		cancel()
		switch {
		case ctx.Err() != nil:
			if m != nil {
				_ = m.Nak() // came as Wakeups ended: the next one has it at once
			}
			return nil
		case errors.Is(err, nats.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
			bo.Reset()
			continue
		case errors.Is(err, jetstream.ErrConsumerDeleted), errors.Is(err, jetstream.ErrConsumerNotFound):
			return fmt.Errorf("wake-ups of %s: %w", c.agent, err)
		case err != nil:
			// NATS away (reconnecting): retry, as the workers' pull does,
			// and say so.
			wait := bo.NextBackOff()
			c.log.Warn().Err(err).Dur("retry_in", wait).Msg("pulling wake-ups failed")
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
			continue
		}
		bo.Reset()
		w := Wakeup{Subject: m.Subject(), Data: m.Data(), Header: m.Headers()}
		if md, err := m.Metadata(); err == nil {
			w.Seq, w.Time, w.Delivered = md.Sequence.Stream, md.Timestamp, md.NumDelivered
		}
		if err := handle(ctx, w); err != nil {
			c.log.Warn().Err(err).Uint64("seq", w.Seq).Msg("wake-up handler failed; it will be delivered again")
			_ = m.NakWithDelay(time.Second)
			continue
		}
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		err = m.DoubleAck(actx)
		cancel()
		if err != nil {
			c.log.Warn().Err(err).Uint64("seq", w.Seq).Msg("wake-up ack not confirmed; it may be delivered again")
		}
	}
}
