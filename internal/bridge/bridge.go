// Package bridge is toolbus's webhook bridge: POST /hooks/<name> turns an
// inbound HTTP request (Zapier-style JSON or form body, authenticated by an
// HMAC signature — toolbus's own, GitHub's, Stripe's or Slack's — or a
// bearer token) into an event on events.webhook.<name>, an agent wake-up,
// or a tool call.
//
// A request is acknowledged (202, with the event id) only after JetStream's
// PubAck, so an accepted event is durable; anything else — a bad signature,
// a body too large or unmappable, NATS unreachable — is refused with nothing
// published, and the sender retries. The event id is the Nats-Msg-Id and is
// derived from what the signature covers (see Hook), so a sender's retries
// and a replayed request give one event, and the repeat is answered 202
// "duplicate".
package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	gosync "sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/toolbus-dev/toolbus/internal/broker"
	"github.com/toolbus-dev/toolbus/internal/httpserve"
	"github.com/toolbus-dev/toolbus/subjects"
)

// HeaderHook names the hook on every message the bridge publishes.
const HeaderHook = "Toolbus-Hook"

// pathPrefix is where hooks are served: POST /hooks/<name>.
const pathPrefix = "/hooks/"

// defaultPublishTimeout bounds the wait for JetStream's PubAck before the
// bridge answers 503.
const defaultPublishTimeout = 2 * time.Second

// retryAfter is the Retry-After (seconds) sent with a 503.
const retryAfter = 5

// Error codes in error responses.
const (
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeUnauthorized     = "unauthorized"
	CodeTooLarge         = "too_large"
	CodeBadRequest       = "bad_request"
	CodeUnavailable      = "unavailable"
)

// Option configures a Bridge.
type Option func(*Bridge)

// WithOnRequest sets an observer called after every request with the
// hook's name ("" when the path names no configured hook, so callers
// cannot grow the set of names) and the HTTP status answered (metrics). It
// must not block.
func WithOnRequest(f func(hook string, status int)) Option {
	return func(b *Bridge) { b.onRequest = f }
}

// WithOther serves requests outside /hooks/ with h (for /metrics,
// /healthz, /readyz on the bridge's listener) instead of answering 404.
func WithOther(h http.Handler) Option { return func(b *Bridge) { b.other = h } }

// Bridge is the webhook endpoint: an http.Handler for POST /hooks/<name>.
type Bridge struct {
	js         jetstream.JetStream
	log        zerolog.Logger
	hooks      atomic.Pointer[map[string]*hook] // swapped whole by SetHooks
	pubTimeout time.Duration
	now        func() time.Time
	memory     *memory
	woken      gosync.Map // agent -> struct{}: its wake-up consumer exists
	onRequest  func(hook string, status int)
	other      http.Handler
}

// hook is a validated Hook with its secrets resolved.
type hook struct {
	Hook
	secret  []byte
	token   []byte
	subject string
}

// New validates the hooks, resolves their secrets and returns the bridge.
// For the 503-while-unreachable promise to hold strictly, js's connection
// should not buffer while reconnecting (nats.ReconnectBufSize(-1)):
// otherwise a request refused with 503 may still be published on reconnect.
func New(js jetstream.JetStream, hooks []Hook, log zerolog.Logger, opts ...Option) (*Bridge, error) {
	b := &Bridge{
		js:         js,
		log:        log.With().Str("component", "bridge").Logger(),
		pubTimeout: defaultPublishTimeout,
		now:        time.Now,
		memory:     newMemory(memoryCap),
	}
	for _, o := range opts {
		o(b)
	}
	if err := b.SetHooks(hooks); err != nil {
		return nil, err
	}
	return b, nil
}

// SetHooks validates hooks, resolves their secrets and, if every one is
// good, puts them in place of the bridge's hooks at once (a configuration
// reload). On error nothing changes. A request already being handled
// finishes with the hook it started with; the next one sees the new set, so
// a removed hook answers 404 and a changed secret applies.
func (b *Bridge) SetHooks(hooks []Hook) error {
	m, err := compileHooks(hooks)
	if err != nil {
		return err
	}
	b.hooks.Store(&m)
	return nil
}

// hook returns the hook named name, nil when there is none.
func (b *Bridge) hook(name string) *hook { return (*b.hooks.Load())[name] }

// compileHooks validates hooks and resolves their secrets and subjects.
func compileHooks(hooks []Hook) (map[string]*hook, error) {
	out := make(map[string]*hook, len(hooks))
	for i := range hooks {
		h := &hook{Hook: hooks[i]}
		if err := h.Validate(); err != nil {
			return nil, fmt.Errorf("hooks[%d]: %w", i, err)
		}
		h.setDefaults()
		if _, dup := out[h.Name]; dup {
			return nil, fmt.Errorf("hooks[%d]: %w: name %q is used twice", i, ErrInvalidHook, h.Name)
		}
		var err error
		switch h.Auth {
		case AuthHMAC:
			var s string
			if s, err = resolve("secret", h.Secret); err == nil {
				h.secret = []byte(s)
			}
		case AuthBearer:
			var s string
			if s, err = resolve("token", h.Token); err == nil {
				h.token = []byte(s)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("hooks[%d]: %w: hook %q: %w", i, ErrInvalidHook, h.Name, err)
		}
		switch h.Route {
		case RouteEvent:
			h.subject, err = subjects.Webhook(h.Name)
		case RouteWake:
			h.subject, err = subjects.AgentWake(h.Agent)
		case RouteTool:
			h.subject, err = subjects.ToolCall(h.callAgent(), h.Server, h.Tool)
		}
		if err != nil {
			return nil, fmt.Errorf("hooks[%d]: %w", i, err)
		}
		out[h.Name] = h
	}
	return out, nil
}

// Accepted is the body of a 202.
type Accepted struct {
	EventID string `json:"event_id"`
	// Duplicate: an event with this id was already accepted (a retry or a
	// replay); nothing new was published.
	Duplicate bool `json:"duplicate,omitempty"`

	// challenge, when set, is echoed in a 200 instead (Slack's
	// url_verification).
	challenge string
}

// ErrorBody is the body of every error response.
type ErrorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// Event is the body published for routes event and wake.
type Event struct {
	EventID    string            `json:"event_id"`
	Hook       string            `json:"hook"`
	ReceivedAt time.Time         `json:"received_at"`
	Headers    map[string]string `json:"headers,omitempty"`
	Body       any               `json:"body"`
}

// httpError is a refusal: status, code and message.
type httpError struct {
	status int
	code   string
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func refuse(status int, code, format string, a ...any) *httpError {
	return &httpError{status: status, code: code, msg: fmt.Sprintf(format, a...)}
}

// ServeHTTP handles POST /hooks/<name>.
func (b *Bridge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if b.other != nil && !strings.HasPrefix(r.URL.Path, pathPrefix) {
		b.other.ServeHTTP(w, r)
		return
	}
	if b.onRequest == nil {
		b.serve(w, r)
		return
	}
	sw := &statusWriter{ResponseWriter: w}
	b.serve(sw, r)
	name := ""
	if h := b.hook(strings.TrimPrefix(r.URL.Path, pathPrefix)); h != nil {
		name = h.Name
	}
	if sw.status == 0 {
		sw.status = http.StatusOK
	}
	b.onRequest(name, sw.status)
}

// statusWriter remembers the status a handler answered.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (b *Bridge) serve(w http.ResponseWriter, r *http.Request) {
	start := b.now()
	name, ok := strings.CutPrefix(r.URL.Path, pathPrefix)
	h := b.hook(name)
	if !ok || h == nil {
		writeError(w, refuse(http.StatusNotFound, CodeNotFound, "no hook at %s", r.URL.Path))
		return
	}
	log := b.log.With().Str("hook", h.Name).Logger()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, refuse(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "use POST"))
		return
	}
	acc, herr := b.handle(r, h, start)
	if herr != nil {
		if herr.status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
			log.Warn().Str("outcome", herr.code).Msg(herr.msg)
		} else {
			log.Info().Int("status", herr.status).Str("outcome", herr.code).Msg(herr.msg)
		}
		writeError(w, herr)
		return
	}
	if acc.challenge != "" {
		log.Info().Msg("answered Slack's url_verification challenge")
		writeJSON(w, http.StatusOK, map[string]string{"challenge": acc.challenge})
		return
	}
	log.Debug().Str("event_id", acc.EventID).Bool("duplicate", acc.Duplicate).Str("subject", h.subject).
		Float64("duration_ms", float64(b.now().Sub(start).Microseconds())/1000).Msg("accepted")
	writeJSON(w, http.StatusAccepted, acc)
}

func (b *Bridge) handle(r *http.Request, h *hook, now time.Time) (*Accepted, *httpError) {
	if r.ContentLength > h.MaxBody {
		return nil, refuse(http.StatusRequestEntityTooLarge, CodeTooLarge, "body of %d bytes exceeds the limit of %d", r.ContentLength, h.MaxBody)
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, h.MaxBody+1))
	if err != nil {
		return nil, refuse(http.StatusBadRequest, CodeBadRequest, "reading body: %v", err)
	}
	if int64(len(raw)) > h.MaxBody {
		return nil, refuse(http.StatusRequestEntityTooLarge, CodeTooLarge, "body exceeds the limit of %d bytes", h.MaxBody)
	}
	pr, herr := h.authenticate(r, raw, now)
	if herr != nil {
		return nil, herr
	}
	body, herr := parseBody(r.Header.Get("Content-Type"), raw)
	if herr != nil {
		return nil, herr
	}
	if challenge, ok := h.slackChallenge(body); ok {
		return &Accepted{challenge: challenge}, nil
	}
	d, herr := h.deliveryOf(r, body, pr, now)
	if herr != nil {
		return nil, herr
	}
	id := d.id
	if !d.until.IsZero() && b.memory.seen(id, now) {
		return &Accepted{EventID: id, Duplicate: true}, nil
	}
	msg := nats.NewMsg(h.subject)
	msg.Header.Set(subjects.HeaderCallID, id)
	msg.Header.Set(HeaderHook, h.Name)
	switch h.Route {
	case RouteTool:
		args, herr := h.arguments(body)
		if herr != nil {
			return nil, herr
		}
		if msg.Data, err = json.Marshal(args); err != nil {
			return nil, refuse(http.StatusBadRequest, CodeBadRequest, "arguments: %v", err)
		}
		msg.Header.Set(subjects.HeaderDeadline, subjects.FormatDeadline(now.Add(h.CallTimeout.D())))
	default:
		ev := Event{EventID: id, Hook: h.Name, ReceivedAt: now.UTC(), Headers: h.keep(r.Header), Body: body}
		if msg.Data, err = json.Marshal(ev); err != nil {
			return nil, refuse(http.StatusBadRequest, CodeBadRequest, "body: %v", err)
		}
	}
	if h.Route == RouteWake {
		if herr := b.ensureWake(r.Context(), h.Agent); herr != nil {
			return nil, herr
		}
	}
	acc, herr := b.publish(r.Context(), msg, id)
	if herr == nil && !d.until.IsZero() {
		b.memory.remember(id, d.until, now)
	}
	return acc, herr
}

// ensureWake makes sure agent's durable wake-up consumer exists before the
// first wake-up the bridge publishes for it, so an agent that is offline
// gets it when it comes back (client.Wakeups).
func (b *Bridge) ensureWake(ctx context.Context, agent string) *httpError {
	if _, ok := b.woken.Load(agent); ok || b.js == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, b.pubTimeout)
	defer cancel()
	if err := broker.EnsureWakeConsumer(ctx, b.js, agent); err != nil {
		return refuse(http.StatusServiceUnavailable, CodeUnavailable, "cannot prepare the wake-up consumer of agent %q: %v; retry later", agent, err)
	}
	b.woken.Store(agent, struct{}{})
	return nil
}

// publish waits for the PubAck; anything short of one is a 503. A
// connection that is not up is refused before publishing, so a reconnect
// cannot deliver a message whose request was refused.
func (b *Bridge) publish(ctx context.Context, msg *nats.Msg, id string) (*Accepted, *httpError) {
	if nc := b.js.Conn(); nc != nil && !nc.IsConnected() {
		return nil, refuse(http.StatusServiceUnavailable, CodeUnavailable, "event store unreachable (NATS %s); retry later", nc.Status())
	}
	ctx, cancel := context.WithTimeout(ctx, b.pubTimeout)
	defer cancel()
	ack, err := b.js.PublishMsg(ctx, msg)
	if errors.Is(err, nats.ErrMaxPayload) {
		return nil, refuse(http.StatusRequestEntityTooLarge, CodeTooLarge, "event exceeds the NATS server's max_payload")
	}
	if err != nil {
		return nil, refuse(http.StatusServiceUnavailable, CodeUnavailable, "event not stored: %v; retry later", err)
	}
	return &Accepted{EventID: id, Duplicate: ack.Duplicate}, nil
}

// parseBody reads a JSON body, or a form body as an object of strings (a
// repeated key gives an array of strings). An empty body is {}. A body
// labelled as a form that is a JSON object or array is read as JSON: curl
// -d and some senders label JSON that way, and no real form starts so.
func parseBody(contentType string, raw []byte) (any, *httpError) {
	mt, _, _ := mime.ParseMediaType(contentType)
	trimmed := bytes.TrimSpace(raw)
	looksJSON := len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') && json.Valid(trimmed)
	if mt == "application/x-www-form-urlencoded" && !looksJSON {
		vals, err := url.ParseQuery(string(raw))
		if err != nil {
			return nil, refuse(http.StatusBadRequest, CodeBadRequest, "form body: %v", err)
		}
		obj := make(map[string]any, len(vals))
		for k, v := range vals {
			if len(v) == 1 {
				obj[k] = v[0]
			} else {
				obj[k] = v
			}
		}
		return obj, nil
	}
	if len(trimmed) == 0 {
		return map[string]any{}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, refuse(http.StatusBadRequest, CodeBadRequest, "body is not JSON (Content-Type %q): %v", contentType, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, refuse(http.StatusBadRequest, CodeBadRequest, "body holds more than one JSON value")
	}
	return v, nil
}

// arguments maps body fields to tool arguments, or takes the whole body.
func (h *hook) arguments(body any) (map[string]any, *httpError) {
	if len(h.Args) == 0 {
		obj, ok := body.(map[string]any)
		if !ok {
			return nil, refuse(http.StatusBadRequest, CodeBadRequest, "body must be a JSON object: it is the tool's arguments")
		}
		return obj, nil
	}
	args := make(map[string]any, len(h.Args))
	for arg, path := range h.Args {
		v, err := lookup(body, path)
		if err != nil {
			return nil, refuse(http.StatusBadRequest, CodeBadRequest, "field %q (argument %q): %v", path, arg, err)
		}
		args[arg] = v
	}
	return args, nil
}

// lookup follows a dot path through objects (and arrays, by index).
func lookup(v any, path string) (any, error) {
	for seg := range strings.SplitSeq(path, ".") {
		switch cur := v.(type) {
		case map[string]any:
			next, ok := cur[seg]
			if !ok {
				return nil, errors.New("missing from the body")
			}
			v = next
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(cur) {
				return nil, errors.New("missing from the body")
			}
			v = cur[i]
		default:
			return nil, errors.New("missing from the body")
		}
	}
	if v == nil {
		return nil, errors.New("is null")
	}
	return v, nil
}

func (h *hook) keep(hdr http.Header) map[string]string {
	out := map[string]string{}
	add := func(name string) {
		if v := hdr.Get(name); v != "" && !h.dropped(name) {
			out[http.CanonicalHeaderKey(name)] = v
		}
	}
	for _, n := range keptHeaders {
		add(n)
	}
	for _, n := range schemeHeaders[h.Scheme] {
		add(n)
	}
	for _, n := range h.Headers {
		add(n)
	}
	return out
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, e *httpError) {
	writeJSON(w, e.status, ErrorBody{Error: e.msg, Code: e.code})
}

// Run serves the bridge on addr until ctx ends, then shuts down gracefully:
// requests in flight get up to 10 seconds to finish.
func (b *Bridge) Run(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("bridge: listen on %s: %w", addr, err)
	}
	return b.Serve(ctx, ln)
}

// Serve is Run on a listener the caller opened.
func (b *Bridge) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           b,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	b.checkDuplicateWindow(ctx)
	b.log.Info().Str("addr", ln.Addr().String()).Int("hooks", len(*b.hooks.Load())).Msg("webhook bridge listening")
	if err := httpserve.Run(ctx, srv, ln, 10*time.Second); err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	return nil
}
