// Package client is the Go client for agents: Call publishes a tool call on
// JetStream and waits for its result on one long-lived inbox, falling back
// to the stored result in TOOL_RESULTS when the reply was missed.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	gosync "sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"toolbus/subjects"
)

// DefaultTimeout is a call's deadline when neither the context nor
// WithTimeout sets one.
const DefaultTimeout = 60 * time.Second

// ErrNoResult is returned when no result arrived by the call's deadline
// (plus a short grace for the worker's own timeout result).
var ErrNoResult = errors.New("no result")

// Client calls tools. It is safe for concurrent use; make one per process.
type Client struct {
	nc    *nats.Conn
	js    jetstream.JetStream
	agent string
	inbox string // "<prefix>.<nuid>"; replies arrive on inbox.<call_id>
	sub   *nats.Subscription
	poll  time.Duration

	mu      gosync.Mutex
	waiters map[string]chan *nats.Msg

	resultsMu gosync.Mutex
	results   jetstream.Stream // TOOL_RESULTS, looked up on first use
}

// Option configures a Client.
type Option func(*Client)

// WithInboxPrefix sets the inbox prefix replies arrive under (default: the
// connection's nats.CustomInboxPrefix, else "_INBOX"). For per-agent NATS
// permissions set nats.CustomInboxPrefix on the connection instead: it
// covers the PubAcks and stream lookups too.
func WithInboxPrefix(p string) Option { return func(c *Client) { c.inbox = p } }

// WithAgent sets the default agent id sent with every call.
func WithAgent(id string) Option { return func(c *Client) { c.agent = id } }

// WithResultPoll sets how often a waiting call also looks for its stored
// result in TOOL_RESULTS, in case the reply was missed (default 2s).
func WithResultPoll(d time.Duration) Option { return func(c *Client) { c.poll = d } }

// New returns a client on nc with one inbox subscription for all calls.
func New(nc *nats.Conn, opts ...Option) (*Client, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	prefix := "_INBOX"
	if p := nc.Opts.InboxPrefix; p != "" {
		prefix = p // nats.CustomInboxPrefix: replies share it with PubAcks
	}
	c := &Client{nc: nc, js: js, inbox: prefix, poll: 2 * time.Second, waiters: map[string]chan *nats.Msg{}}
	for _, o := range opts {
		o(c)
	}
	c.inbox = c.inbox + "." + nuid.Next()
	c.sub, err = nc.Subscribe(c.inbox+".*", c.onReply)
	if err != nil {
		return nil, fmt.Errorf("subscribe to inbox: %w", err)
	}
	_ = c.sub.SetPendingLimits(-1, -1)
	return c, nil
}

// Close ends the inbox subscription; the connection stays the caller's.
func (c *Client) Close() error { return c.sub.Unsubscribe() }

func (c *Client) onReply(m *nats.Msg) {
	id := m.Subject[len(c.inbox)+1:]
	c.mu.Lock()
	ch := c.waiters[id]
	delete(c.waiters, id)
	c.mu.Unlock()
	if ch != nil {
		ch <- m
	}
}

type callOpts struct {
	id          string
	agent       string
	timeout     time.Duration
	traceparent string
	progress    func(subjects.Progress)
}

// CallOption configures one call.
type CallOption func(*callOpts)

// WithCallID sets the call id (default: 128 random bits, URL-safe base64).
// Re-sending a call with the same id inside JetStream's duplicate window
// stores it once.
func WithCallID(id string) CallOption { return func(o *callOpts) { o.id = id } }

// WithCallAgent sets this call's agent id.
func WithCallAgent(id string) CallOption { return func(o *callOpts) { o.agent = id } }

// WithTimeout sets the call's deadline relative to now (default: the
// context's deadline, else DefaultTimeout).
func WithTimeout(d time.Duration) CallOption { return func(o *callOpts) { o.timeout = d } }

// WithTraceparent passes a W3C traceparent along.
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
	o := callOpts{agent: c.agent}
	for _, f := range opts {
		f(&o)
	}
	if o.id == "" {
		o.id = NewCallID()
	} else if err := subjects.ValidateCallID(o.id); err != nil {
		return nil, err
	}
	subject, err := subjects.ToolCall(server, tool)
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
	msg.Header.Set(subjects.HeaderReply, c.inbox+"."+o.id)
	msg.Header.Set(subjects.HeaderDeadline, subjects.FormatDeadline(deadline))
	if o.agent != "" {
		msg.Header.Set(subjects.HeaderAgent, o.agent)
	}
	if o.traceparent != "" {
		msg.Header.Set(subjects.HeaderTraceparent, o.traceparent)
	}
	if max := c.nc.MaxPayload(); max > 0 && int64(len(body)+512) > max {
		return nil, fmt.Errorf("%w: arguments are %d bytes; the NATS server accepts messages up to %d bytes", errTooLarge, len(body), max)
	}

	if o.progress != nil {
		sub, err := c.nc.Subscribe(subjects.ToolProgress(o.id), func(m *nats.Msg) {
			var p subjects.Progress
			if json.Unmarshal(m.Data, &p) == nil {
				o.progress(p)
			}
		})
		if err != nil {
			return nil, err
		}
		defer sub.Unsubscribe()
	}

	ch := make(chan *nats.Msg, 1)
	c.mu.Lock()
	c.waiters[o.id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waiters, o.id)
		c.mu.Unlock()
	}()

	pub, err := c.js.PublishMsgAsync(msg)
	if err != nil {
		return nil, fmt.Errorf("publish call: %w", err)
	}
	// The worker answers a call that runs past its deadline with a timeout
	// result; wait a little beyond it for that answer.
	wait, cancel := context.WithDeadline(ctx, deadline.Add(3*time.Second))
	defer cancel()
	tick := time.NewTicker(c.poll)
	defer tick.Stop()
	acked := pub.Ok()
	for {
		select {
		case m := <-ch:
			return decode(m.Data)
		case <-acked:
			acked = nil
		case err := <-pub.Err():
			return nil, fmt.Errorf("call not accepted by JetStream (is `toolbus serve` running and the TOOL_CALLS stream there?): %w", err)
		case <-tick.C:
			if res, err := c.Result(wait, o.id); err == nil {
				return res, nil
			}
		case <-wait.Done():
			if res, err := c.Result(context.Background(), o.id); err == nil {
				return res, nil
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("%w for call %s by its deadline %s: is a worker running (`toolbus worker` or `toolbus serve`)?", ErrNoResult, o.id, subjects.FormatDeadline(deadline))
		}
	}
}

var errTooLarge = errors.New("too large")

// Result fetches a call's stored result from TOOL_RESULTS by exact subject.
// It returns jetstream.ErrMsgNotFound while there is none.
func (c *Client) Result(ctx context.Context, callID string) (*subjects.Result, error) {
	if err := subjects.ValidateCallID(callID); err != nil {
		return nil, err
	}
	// A failed lookup (a reconnect, an expired ctx) is not remembered: the
	// next fallback poll tries again.
	c.resultsMu.Lock()
	results := c.results
	if results == nil {
		s, err := c.js.Stream(ctx, subjects.StreamResults)
		if err != nil {
			c.resultsMu.Unlock()
			return nil, err
		}
		c.results, results = s, s
	}
	c.resultsMu.Unlock()
	m, err := results.GetLastMsgForSubject(ctx, subjects.ToolResult(callID))
	if err != nil {
		return nil, err
	}
	return decode(m.Data)
}

// Cancel asks the worker running callID to stop; its result will be
// "cancelled".
func (c *Client) Cancel(callID string) error {
	if err := subjects.ValidateCallID(callID); err != nil {
		return err
	}
	return c.nc.Publish(subjects.ToolCancel(callID), nil)
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
