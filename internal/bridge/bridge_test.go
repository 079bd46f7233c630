package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"gopkg.in/yaml.v3"

	"github.com/toolbus-dev/toolbus/internal/broker"
	"github.com/toolbus-dev/toolbus/internal/natstest"
	"github.com/toolbus-dev/toolbus/internal/streams"
	"github.com/toolbus-dev/toolbus/internal/testutil"
	"github.com/toolbus-dev/toolbus/subjects"
)

var secret = []byte("s3cret")

func startBridge(t testing.TB, js jetstream.JetStream, hooks []Hook, opts ...Option) string {
	t.Helper()
	b, err := New(js, hooks, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel), opts...)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(b)
	t.Cleanup(srv.Close)
	return srv.URL
}

type reply struct {
	status int
	header http.Header
	acc    Accepted
	err    ErrorBody
}

func post(t testing.TB, url string, body []byte, hdr map[string]string) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, header: resp.Header}
	if resp.StatusCode == http.StatusAccepted {
		err = json.Unmarshal(raw, &r.acc)
	} else {
		err = json.Unmarshal(raw, &r.err)
	}
	if err != nil {
		t.Fatalf("status %d, body %q: %v", resp.StatusCode, raw, err)
	}
	return r
}

func signed(body []byte, ts time.Time, extra map[string]string) map[string]string {
	h := map[string]string{
		DefaultTimestampHeader: strconv.FormatInt(ts.Unix(), 10),
		DefaultSignatureHeader: Sign(secret, ts.Unix(), body),
	}
	for k, v := range extra {
		h[k] = v
	}
	return h
}

// bearer returns the headers of a request with the bearer token "t0ken".
func bearer(extra map[string]string) map[string]string {
	h := map[string]string{"Authorization": "Bearer t0ken"}
	for k, v := range extra {
		h[k] = v
	}
	return h
}

// TestIdempotencyKeyGivesOneEvent: on a bearer hook, whose token covers
// the whole request, the Idempotency-Key header names the event.
func TestIdempotencyKeyGivesOneEvent(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	url := startBridge(t, srv.JS, []Hook{{Name: "zap", Auth: AuthBearer, Token: "t0ken"}}) + "/hooks/zap"
	body := []byte(`{"order":{"id":42,"total":"9.99"}}`)
	first := post(t, url, body, bearer(map[string]string{"Idempotency-Key": "delivery-1"}))
	second := post(t, url, body, bearer(map[string]string{"Idempotency-Key": "delivery-1"}))
	if first.status != 202 || second.status != 202 {
		t.Fatalf("statuses %d %d: %+v %+v", first.status, second.status, first.err, second.err)
	}
	if first.acc.EventID != second.acc.EventID || first.acc.Duplicate || !second.acc.Duplicate {
		t.Fatalf("first %+v, second %+v", first.acc, second.acc)
	}
	if err := subjects.ValidateCallID(first.acc.EventID); err != nil {
		t.Fatal(err)
	}
	msgs := testutil.StreamMsgs(t, srv.JS, subjects.StreamEvents, "events.webhook.zap")
	if len(msgs) != 1 {
		t.Fatalf("%d events stored, want 1", len(msgs))
	}
	var ev struct {
		EventID    string            `json:"event_id"`
		Hook       string            `json:"hook"`
		ReceivedAt time.Time         `json:"received_at"`
		Headers    map[string]string `json:"headers"`
		Body       map[string]any    `json:"body"`
	}
	if err := json.Unmarshal(msgs[0].Data, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.EventID != first.acc.EventID || ev.Hook != "zap" || ev.ReceivedAt.IsZero() || ev.Headers["Idempotency-Key"] != "delivery-1" {
		t.Fatalf("event %+v", ev)
	}
	if _, leaked := ev.Headers["Authorization"]; leaked {
		t.Fatal("token copied into the event")
	}
	if ev.Body["order"].(map[string]any)["id"] != float64(42) {
		t.Fatalf("body %v", ev.Body)
	}
	if msgs[0].Header.Get(subjects.HeaderCallID) != first.acc.EventID {
		t.Fatalf("msg id %q", msgs[0].Header.Get(subjects.HeaderCallID))
	}

	// A different key is a different event; no key is a fresh event each time.
	if r := post(t, url, body, bearer(map[string]string{"Idempotency-Key": "delivery-2"})); r.status != 202 || r.acc.EventID == first.acc.EventID {
		t.Fatalf("second key: %+v", r)
	}
	a, b := post(t, url, body, bearer(nil)), post(t, url, body, bearer(nil))
	if a.acc.EventID == b.acc.EventID || a.acc.Duplicate || b.acc.Duplicate {
		t.Fatalf("keyless: %+v %+v", a.acc, b.acc)
	}
	if n := len(testutil.StreamMsgs(t, srv.JS, subjects.StreamEvents, "events.webhook.zap")); n != 4 {
		t.Fatalf("%d events, want 4", n)
	}
}

func TestIdempotencyField(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	url := startBridge(t, srv.JS, []Hook{{Name: "crm", Auth: AuthNone, IdempotencyField: "data.id"}}) + "/hooks/crm"
	a := post(t, url, []byte(`{"data":{"id":"c-7"},"n":1}`), nil)
	b := post(t, url, []byte(`{"data":{"id":"c-7"},"n":2}`), nil)
	if a.status != 202 || b.status != 202 || a.acc.EventID != b.acc.EventID || !b.acc.Duplicate {
		t.Fatalf("%+v %+v", a, b)
	}
	r := post(t, url, []byte(`{"data":{}}`), nil)
	if r.status != 400 || !strings.Contains(r.err.Error, `"data.id"`) {
		t.Fatalf("missing field: %+v", r)
	}
	if n := len(testutil.StreamMsgs(t, srv.JS, subjects.StreamEvents, "events.webhook.crm")); n != 1 {
		t.Fatalf("%d events, want 1", n)
	}
}

func TestRefusals(t *testing.T) {
	t.Setenv("TOOLBUS_TEST_TOKEN", "t0ken") // resolved by New; t.Setenv rules out t.Parallel
	srv := natstest.Start(t)
	base := startBridge(t, srv.JS, []Hook{
		{Name: "signed", Auth: AuthHMAC, Secret: string(secret), MaxBody: 64},
		{Name: "tok", Auth: AuthBearer, Token: "env:TOOLBUS_TEST_TOKEN"},
	})
	body := []byte(`{"a":1}`)
	now := time.Now()
	cases := []struct {
		name   string
		path   string
		body   []byte
		hdr    map[string]string
		status int
		code   string
		say    string
	}{
		{"bad signature", "signed", body, map[string]string{DefaultTimestampHeader: strconv.FormatInt(now.Unix(), 10), DefaultSignatureHeader: Sign([]byte("wrong"), now.Unix(), body)}, 401, CodeUnauthorized, "bad signature"},
		{"body tampered", "signed", []byte(`{"a":2}`), signed(body, now, nil), 401, CodeUnauthorized, "bad signature"},
		{"no signature", "signed", body, map[string]string{DefaultTimestampHeader: strconv.FormatInt(now.Unix(), 10)}, 401, CodeUnauthorized, "missing"},
		{"replayed old timestamp", "signed", body, signed(body, now.Add(-10*time.Minute), nil), 401, CodeUnauthorized, "tolerance"},
		{"future timestamp", "signed", body, signed(body, now.Add(10*time.Minute), nil), 401, CodeUnauthorized, "tolerance"},
		{"too large", "signed", bytes.Repeat([]byte("x"), 65), nil, 413, CodeTooLarge, "limit"},
		{"not json", "signed", []byte(`{"a":`), signed([]byte(`{"a":`), now, nil), 400, CodeBadRequest, "not JSON"},
		{"unknown hook", "nope", body, nil, 404, CodeNotFound, "no hook"},
		{"wrong token", "tok", body, map[string]string{"Authorization": "Bearer nope"}, 401, CodeUnauthorized, "token"},
		{"no token", "tok", body, nil, 401, CodeUnauthorized, "token"},
	}
	for _, c := range cases {
		r := post(t, base+"/hooks/"+c.path, c.body, c.hdr)
		if r.status != c.status || r.err.Code != c.code || !strings.Contains(r.err.Error, c.say) {
			t.Errorf("%s: %d %+v, want %d %s %q", c.name, r.status, r.err, c.status, c.code, c.say)
		}
	}
	// A body too large without Content-Length (chunked) is refused too.
	req, _ := http.NewRequest(http.MethodPost, base+"/hooks/signed", io.MultiReader(bytes.NewReader(bytes.Repeat([]byte("x"), 100))))
	req.ContentLength = -1
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Errorf("chunked too large: %d", resp.StatusCode)
	}
	// GET is 405.
	resp, err = http.Get(base + "/hooks/signed")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET: %d", resp.StatusCode)
	}
	if r := post(t, base+"/hooks/tok", body, map[string]string{"Authorization": "Bearer t0ken"}); r.status != 202 {
		t.Errorf("good token: %+v", r)
	}
	if r := post(t, base+"/hooks/signed", body, signed(body, now.Add(-4*time.Minute), nil)); r.status != 202 {
		t.Errorf("timestamp within tolerance: %+v", r)
	}
	// Only the two accepted requests were published.
	if n := len(testutil.StreamMsgs(t, srv.JS, subjects.StreamEvents, "events.webhook.signed")); n != 1 {
		t.Errorf("%d events on signed, want 1", n)
	}
	if n := len(testutil.StreamMsgs(t, srv.JS, subjects.StreamEvents, "events.webhook.tok")); n != 1 {
		t.Errorf("%d events on tok, want 1", n)
	}
}

func TestFormBody(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	url := startBridge(t, srv.JS, []Hook{{Name: "form", Auth: AuthHMAC, Secret: string(secret)}}) + "/hooks/form"
	body := []byte("name=Ada+Lovelace&email=ada%40example.com&tag=a&tag=b")
	r := post(t, url, body, signed(body, time.Now(), map[string]string{"Content-Type": "application/x-www-form-urlencoded"}))
	if r.status != 202 {
		t.Fatalf("%+v", r)
	}
	msgs := testutil.StreamMsgs(t, srv.JS, subjects.StreamEvents, "events.webhook.form")
	if len(msgs) != 1 {
		t.Fatalf("%d events", len(msgs))
	}
	var ev Event
	if err := json.Unmarshal(msgs[0].Data, &ev); err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(ev.Body)
	if string(got) != `{"email":"ada@example.com","name":"Ada Lovelace","tag":["a","b"]}` {
		t.Fatalf("body %s", got)
	}
}

func TestWakeRoute(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	url := startBridge(t, srv.JS, []Hook{{Name: "gh", Auth: AuthNone, Route: RouteWake, Agent: "triage"}}) + "/hooks/gh"
	if r := post(t, url, []byte(`{"issue":1}`), nil); r.status != 202 {
		t.Fatalf("%+v", r)
	}
	if n := len(testutil.StreamMsgs(t, srv.JS, subjects.StreamEvents, "agent.wake.triage")); n != 1 {
		t.Fatalf("%d wake-ups", n)
	}
}

func TestToolRoute(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	hook := Hook{Name: "echo-hook", Auth: AuthNone, Route: RouteTool, Server: "demo", Tool: "echo",
		Args: map[string]string{"text": "message.text", "count": "n", "first": "items.0"}, Agent: "zapier",
		CallTimeout: subjects.Duration(30 * time.Second)}
	url := startBridge(t, srv.JS, []Hook{hook}) + "/hooks/echo-hook"
	before := time.Now()
	r := post(t, url, []byte(`{"message":{"text":"hi"},"n":3,"items":["x","y"],"ignored":true}`), map[string]string{"Idempotency-Key": "k1"})
	if r.status != 202 {
		t.Fatalf("%+v", r)
	}
	msgs := testutil.StreamMsgs(t, srv.JS, subjects.StreamCalls, "tool.call.zapier.demo.echo")
	if len(msgs) != 1 {
		t.Fatalf("%d calls", len(msgs))
	}
	m := msgs[0]
	if string(m.Data) != `{"count":3,"first":"x","text":"hi"}` {
		t.Errorf("arguments %s", m.Data)
	}
	id := m.Header.Get(subjects.HeaderCallID)
	if err := subjects.ValidateCallID(id); err != nil || id != r.acc.EventID {
		t.Errorf("call id %q (event %q): %v", id, r.acc.EventID, err)
	}
	dl, err := subjects.ParseDeadline(m.Header.Get(subjects.HeaderDeadline))
	if err != nil || dl.Before(before.Add(29*time.Second)) || dl.After(time.Now().Add(31*time.Second)) {
		t.Errorf("deadline %v %v", dl, err)
	}
	if m.Subject != "tool.call.zapier.demo.echo" || m.Header.Get(HeaderHook) != "echo-hook" {
		t.Errorf("headers %v", m.Header)
	}
	// A missing mapped field is a 400 naming it, and nothing is published.
	r = post(t, url, []byte(`{"message":{},"n":3,"items":["x"]}`), nil)
	if r.status != 400 || !strings.Contains(r.err.Error, `"message.text"`) || !strings.Contains(r.err.Error, `"text"`) {
		t.Fatalf("missing field: %+v", r)
	}
	if n := len(testutil.StreamMsgs(t, srv.JS, subjects.StreamCalls, "tool.call.zapier.demo.echo")); n != 1 {
		t.Fatalf("%d calls after refusal", n)
	}
}

// restartable is a nats-server this test can stop and start again on the
// same port and store directory.
type restartable struct {
	opts *server.Options
	srv  *server.Server
}

func (r *restartable) start(t *testing.T) {
	t.Helper()
	srv, err := server.NewServer(r.opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	r.srv = srv
	if r.opts.Port == -1 {
		r.opts.Port = srv.Addr().(*net.TCPAddr).Port
	}
}

func (r *restartable) stop() {
	r.srv.Shutdown()
	r.srv.WaitForShutdown()
}

func TestNATSDownGives503ThenAccepts(t *testing.T) {
	t.Parallel()
	rs := &restartable{opts: &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true}}
	rs.start(t)
	t.Cleanup(func() { rs.stop() })
	nc, err := nats.Connect(rs.srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.ReconnectBufSize(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := broker.Provision(ctx, js, streams.Options{}, streams.WorkerConsumer(0, 0, 0)); err != nil {
		t.Fatal(err)
	}
	// While NATS is down the bridge refuses before publishing, so the
	// publish timeout only bounds the PubAck after the restart: a short one
	// could turn a slow ack of a stored event into a 503, and the retry
	// into a duplicate.
	url := startBridge(t, js, []Hook{{Name: "zap", Auth: AuthHMAC, Secret: string(secret)}}, withPublishTimeout(30*time.Second)) + "/hooks/zap"
	body := []byte(`{"x":1}`)
	// The sender retries the same signed request, which names one event.
	sent := signed(body, time.Now(), nil)

	rs.stop()
	testutil.CheckFor(t, 20*time.Second, func() error {
		if nc.IsConnected() {
			return errors.New("client still connected")
		}
		return nil
	})
	r := post(t, url, body, sent)
	if r.status != 503 || r.err.Code != CodeUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("NATS down: %+v", r)
	}

	rs.start(t)
	// The sender retries until accepted.
	var acc Accepted
	testutil.CheckFor(t, 15*time.Second, func() error {
		r := post(t, url, body, sent)
		if r.status != 202 {
			return fmt.Errorf("%d %+v", r.status, r.err)
		}
		acc = r.acc
		return nil
	})
	if acc.Duplicate {
		t.Fatal("the refused request was stored after all")
	}
	if n := len(testutil.StreamMsgs(t, js, subjects.StreamEvents, "events.webhook.zap")); n != 1 {
		t.Fatalf("%d events, want 1", n)
	}
}

func TestRunShutsDown(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	b, err := New(srv.JS, []Hook{{Name: "h", Auth: AuthNone}}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Serve(ctx, ln) }()
	if r := post(t, "http://"+ln.Addr().String()+"/hooks/h", []byte(`{}`), nil); r.status != 202 {
		t.Fatalf("%+v", r)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestValidate(t *testing.T) {
	ok := Hook{Name: "h", Auth: AuthNone}
	cases := []struct {
		field string
		mut   func(*Hook)
	}{
		{"name", func(h *Hook) { h.Name = "" }},
		{"auth", func(h *Hook) { h.Auth = "" }},
		{"auth", func(h *Hook) { h.Auth = "basic" }},
		{"secret", func(h *Hook) { h.Auth = AuthHMAC }},
		{"token", func(h *Hook) { h.Auth = AuthBearer }},
		{"route", func(h *Hook) { h.Route = "email" }},
		{"agent", func(h *Hook) { h.Route = RouteWake }},
		{"server", func(h *Hook) { h.Route = RouteTool }},
		{"tool", func(h *Hook) { h.Route, h.Server = RouteTool, "s" }},
		{"args.x", func(h *Hook) { h.Route, h.Server, h.Tool, h.Args = RouteTool, "s", "t", map[string]string{"x": "a..b"} }},
		{"agent", func(h *Hook) { h.Route, h.Server, h.Tool, h.Agent = RouteTool, "s", "t", "a.b" }},
		{"route", func(h *Hook) { h.Server = "s" }},
		{"idempotency_field", func(h *Hook) { h.IdempotencyField = "." }},
		{"max_body", func(h *Hook) { h.MaxBody = -1 }},
	}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		h := ok
		c.mut(&h)
		err := h.Validate()
		if !errors.Is(err, ErrInvalidHook) || !strings.Contains(err.Error(), ": "+c.field+": ") {
			t.Errorf("%s: %v", c.field, err)
		}
	}
	if _, err := New(nil, []Hook{{Name: "h", Auth: AuthBearer, Token: "env:TOOLBUS_SURELY_UNSET"}}, zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "TOOLBUS_SURELY_UNSET") {
		t.Errorf("unset env secret: %v", err)
	}
}

func TestParseBody(t *testing.T) {
	cases := []struct{ ct, body, want string }{
		{"application/json", `{"a":1.50}`, `{"a":1.50}`},
		{"", ``, `{}`},
		{"application/x-www-form-urlencoded", `a=1&b=x+y`, `{"a":"1","b":"x y"}`},
		// curl -d labels JSON as a form.
		{"application/x-www-form-urlencoded", `{"a":1}`, `{"a":1}`},
		{"application/json; charset=utf-8", `[1,2]`, `[1,2]`},
	}
	for _, c := range cases {
		v, herr := parseBody(c.ct, []byte(c.body))
		if herr != nil {
			t.Errorf("%s %q: %v", c.ct, c.body, herr)
			continue
		}
		got, _ := json.Marshal(v)
		if string(got) != c.want {
			t.Errorf("%s %q = %s, want %s", c.ct, c.body, got, c.want)
		}
	}
	for _, bad := range []string{`{"a":`, `{} {}`, `nope`} {
		if _, herr := parseBody("application/json", []byte(bad)); herr == nil || herr.status != 400 {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestHookFromYAML(t *testing.T) {
	var hooks []Hook
	err := yaml.Unmarshal([]byte(`
- name: orders
  auth: hmac
  secret: env:ORDERS_SECRET
  tolerance: 2m
  idempotency_field: id
- name: summarize
  auth: bearer
  token: env:SUMMARIZE_TOKEN
  route: tool
  server: demo
  tool: echo
  args: {message: data.text}
  call_timeout: 30s
`), &hooks)
	if err != nil {
		t.Fatal(err)
	}
	if len(hooks) != 2 || hooks[0].Tolerance.D() != 2*time.Minute || hooks[1].Args["message"] != "data.text" || hooks[1].CallTimeout.D() != 30*time.Second {
		t.Fatalf("%+v", hooks)
	}
	for _, h := range hooks {
		if err := h.Validate(); err != nil {
			t.Fatal(err)
		}
	}
}
