package bridge

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"gopkg.in/yaml.v3"

	"github.com/toolbus-dev/toolbus/internal/natstest"
	"github.com/toolbus-dev/toolbus/internal/testutil"
	"github.com/toolbus-dev/toolbus/subjects"
)

// The signers below follow each provider's documentation, written apart
// from the verifier so that a shared mistake cannot pass.

// hmacHex is hex(HMAC-SHA256(secret, msg)).
func hmacHex(secret []byte, msg string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

// sigForm writes the hex signature into its header value; the malformed
// cases replace it.
type sigForm func(prefix, hexSig string) string

func wellFormed(prefix, hexSig string) string { return prefix + hexSig }

// A provider's way of signing a request.
type provider struct {
	scheme Scheme
	// sign returns the headers of body signed at `at`.
	sign func(secret, body []byte, at time.Time, form sigForm) map[string]string
	// headers are the auth headers a request without them lacks.
	headers []string
	// timestamped: the scheme signs a time and refuses a stale one.
	timestamped bool
}

var providers = []provider{
	{
		// toolbus: X-Toolbus-Signature: sha256=hex(HMAC(secret, "<ts>.<body>")).
		scheme: SchemeGeneric,
		sign: func(secret, body []byte, at time.Time, form sigForm) map[string]string {
			ts := strconv.FormatInt(at.Unix(), 10)
			return map[string]string{
				"X-Toolbus-Timestamp": ts,
				"X-Toolbus-Signature": form("sha256=", hmacHex(secret, ts+"."+string(body))),
			}
		},
		headers:     []string{"X-Toolbus-Signature", "X-Toolbus-Timestamp"},
		timestamped: true,
	},
	{
		// GitHub: X-Hub-Signature-256: sha256=hex(HMAC(secret, body)); the
		// delivery id and event name ride unsigned.
		scheme: SchemeGitHub,
		sign: func(secret, body []byte, at time.Time, form sigForm) map[string]string {
			return map[string]string{
				"X-Hub-Signature-256": form("sha256=", hmacHex(secret, string(body))),
				"X-GitHub-Delivery":   "72d3162e-cc78-11e3-81ab-4c9367dc0958",
				"X-GitHub-Event":      "issues",
			}
		},
		headers: []string{"X-Hub-Signature-256"},
	},
	{
		// Stripe: Stripe-Signature: t=<unix>,v1=hex(HMAC(secret, "<t>.<body>")),
		// with a v0 entry that must be ignored.
		scheme: SchemeStripe,
		sign: func(secret, body []byte, at time.Time, form sigForm) map[string]string {
			t := strconv.FormatInt(at.Unix(), 10)
			return map[string]string{
				"Stripe-Signature": "t=" + t + "," + form("v1=", hmacHex(secret, t+"."+string(body))) + ",v0=" + hmacHex([]byte("other"), "x"),
			}
		},
		headers:     []string{"Stripe-Signature"},
		timestamped: true,
	},
	{
		// Slack: X-Slack-Signature: v0=hex(HMAC(secret, "v0:<ts>:<body>")),
		// X-Slack-Request-Timestamp: <ts>.
		scheme: SchemeSlack,
		sign: func(secret, body []byte, at time.Time, form sigForm) map[string]string {
			ts := strconv.FormatInt(at.Unix(), 10)
			return map[string]string{
				"X-Slack-Request-Timestamp": ts,
				"X-Slack-Signature":         form("v0=", hmacHex(secret, "v0:"+ts+":"+string(body))),
			}
		},
		headers:     []string{"X-Slack-Signature", "X-Slack-Request-Timestamp"},
		timestamped: true,
	},
}

func with(h map[string]string, k, v string) map[string]string {
	out := map[string]string{}
	for a, b := range h {
		out[a] = b
	}
	out[k] = v
	return out
}

// TestSchemes sends each provider's requests, signed as the provider
// documents, and the ways they go wrong.
func TestSchemes(t *testing.T) {
	t.Parallel()
	for _, p := range providers {
		t.Run(string(p.scheme), func(t *testing.T) {
			t.Parallel()
			srv := natstest.Start(t)
			name := string(p.scheme)
			url := startBridge(t, srv.JS, []Hook{{Name: name, Auth: AuthHMAC, Scheme: p.scheme, Secret: string(secret)}}) + "/hooks/" + name
			events := func() int { return len(testutil.StreamMsgs(t, srv.JS, subjects.StreamEvents, "events.webhook."+name)) }
			now := time.Now()
			body := []byte(`{"id":"evt_1","type":"issue.opened","n":1}`)

			refusals := []struct {
				what string
				body []byte
				hdr  map[string]string
				say  string
			}{
				{"wrong secret", body, p.sign([]byte("wrong"), body, now, wellFormed), "bad signature"},
				{"body tampered", []byte(`{"id":"evt_1","type":"issue.opened","n":2}`), p.sign(secret, body, now, wellFormed), "bad signature"},
				{"no prefix", body, p.sign(secret, body, now, func(_, h string) string { return h }), "malformed"},
				{"short", body, p.sign(secret, body, now, func(p, h string) string { return p + h[:63] }), "malformed"},
				{"long", body, p.sign(secret, body, now, func(p, h string) string { return p + h + "0" }), "malformed"},
				{"not hex", body, p.sign(secret, body, now, func(p, h string) string { return p + "zz" + h[2:] }), "malformed"},
				{"sha1 prefix", body, p.sign(secret, body, now, func(_, h string) string { return "sha1=" + h }), "malformed"},
			}
			for _, name := range p.headers {
				hdr := p.sign(secret, body, now, wellFormed)
				delete(hdr, name)
				refusals = append(refusals, struct {
					what string
					body []byte
					hdr  map[string]string
					say  string
				}{"no " + name, body, hdr, "missing"})
			}
			if p.timestamped {
				refusals = append(refusals,
					struct {
						what string
						body []byte
						hdr  map[string]string
						say  string
					}{"stale", body, p.sign(secret, body, now.Add(-6*time.Minute), wellFormed), "tolerance"},
					struct {
						what string
						body []byte
						hdr  map[string]string
						say  string
					}{"future", body, p.sign(secret, body, now.Add(6*time.Minute), wellFormed), "tolerance"},
				)
			}
			for _, c := range refusals {
				r := post(t, url, c.body, c.hdr)
				if r.status != 401 || r.err.Code != CodeUnauthorized || !strings.Contains(r.err.Error, c.say) {
					t.Errorf("%s: %d %+v, want 401 %q", c.what, r.status, r.err, c.say)
				}
			}
			if n := events(); n != 0 {
				t.Fatalf("%d events stored from refused requests", n)
			}

			// Accepted; an identical replay is the same event, answered as a
			// duplicate; so is the replay carrying a new, unsigned
			// Idempotency-Key.
			sent := p.sign(secret, body, now.Add(-time.Minute), wellFormed)
			first := post(t, url, body, sent)
			if first.status != 202 || first.acc.Duplicate {
				t.Fatalf("signed request: %+v", first)
			}
			for _, hdr := range []map[string]string{sent, with(sent, "Idempotency-Key", "attacker-1"), with(sent, "Idempotency-Key", "attacker-2")} {
				r := post(t, url, body, hdr)
				if r.status != 202 || !r.acc.Duplicate || r.acc.EventID != first.acc.EventID {
					t.Fatalf("replay %v: %+v, want a duplicate of %s", hdr, r, first.acc.EventID)
				}
			}
			if n := events(); n != 1 {
				t.Fatalf("%d events after replays, want 1", n)
			}

			// Two other events delivered in reverse order are two events.
			a, b := []byte(`{"id":"evt_2","n":2}`), []byte(`{"id":"evt_3","n":3}`)
			rb := post(t, url, b, p.sign(secret, b, now.Add(-10*time.Second), wellFormed))
			ra := post(t, url, a, p.sign(secret, a, now.Add(-40*time.Second), wellFormed))
			if ra.status != 202 || rb.status != 202 || ra.acc.Duplicate || rb.acc.Duplicate || ra.acc.EventID == rb.acc.EventID {
				t.Fatalf("reordered: %+v %+v", ra, rb)
			}
			if n := events(); n != 3 {
				t.Fatalf("%d events, want 3", n)
			}
		})
	}
}

// TestDocumentedVectors checks the verifier against the examples GitHub
// and Slack publish, input and signature as printed in their docs.
func TestDocumentedVectors(t *testing.T) {
	t.Parallel()
	// docs.github.com, "Validating webhook deliveries": secret "It's a
	// Secret to Everybody", payload "Hello, World!".
	gh := &hook{Hook: Hook{Name: "gh", Auth: AuthHMAC, Scheme: SchemeGitHub, Secret: "x"}, secret: []byte("It's a Secret to Everybody")}
	gh.setDefaults()
	req := httptest.NewRequest(http.MethodPost, "/hooks/gh", nil)
	req.Header.Set("X-Hub-Signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
	if _, herr := gh.authenticate(req, []byte("Hello, World!"), time.Now()); herr != nil {
		t.Errorf("GitHub's example: %v", herr)
	}
	if _, herr := gh.authenticate(req, []byte("Hello, World?"), time.Now()); herr == nil {
		t.Error("GitHub's signature accepted for another body")
	}

	// api.slack.com, "Verifying requests from Slack": a slash command,
	// through the whole bridge, at a clock inside the example's window.
	const (
		slackSecret = "8f742231b10e8888abcd99yyyzzz85a5"
		slackTS     = "1531420618"
		slackBody   = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
		slackSig    = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
	)
	if got := "v0=" + hmacHex([]byte(slackSecret), "v0:"+slackTS+":"+slackBody); got != slackSig {
		t.Fatalf("the test's Slack signer gives %s", got)
	}
	srv := natstest.Start(t)
	then := time.Unix(1531420618+40, 0)
	url := startBridge(t, srv.JS, []Hook{{Name: "slash", Auth: AuthHMAC, Scheme: SchemeSlack, Secret: slackSecret}}, withNow(func() time.Time { return then })) + "/hooks/slash"
	hdr := map[string]string{"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": slackTS, "X-Slack-Signature": slackSig}
	if r := post(t, url, []byte(slackBody), hdr); r.status != 202 {
		t.Fatalf("Slack's example: %+v", r)
	}
	msgs := testutil.StreamMsgs(t, srv.JS, subjects.StreamEvents, "events.webhook.slash")
	var ev Event
	if len(msgs) != 1 || json.Unmarshal(msgs[0].Data, &ev) != nil || ev.Body.(map[string]any)["command"] != "/webhook-collect" {
		t.Fatalf("%d events: %+v", len(msgs), ev)
	}
	if _, leaked := ev.Headers["X-Slack-Signature"]; leaked {
		t.Error("signature kept in the event")
	}
}

// TestSenderRetries: a sender that re-signs its retry (a new timestamp) and
// names the event in the signed body gets one event and a 202.
func TestSenderRetries(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	url := startBridge(t, srv.JS, []Hook{
		{Name: "stripe", Auth: AuthHMAC, Scheme: SchemeStripe, Secret: "whsec_test"},
		{Name: "orders", Auth: AuthHMAC, Secret: string(secret), IdempotencyField: "order.id"},
	}) + "/hooks/"
	signStripe := func(b []byte, at time.Time) map[string]string {
		return providers[2].sign([]byte("whsec_test"), b, at, wellFormed)
	}
	signGeneric := func(b []byte, at time.Time) map[string]string {
		return providers[0].sign(secret, b, at, wellFormed)
	}
	now := time.Now()
	cases := []struct {
		hook                string
		sign                func(body []byte, at time.Time) map[string]string
		first, retry, other []byte
		field               string
	}{
		// Stripe retries an event with a new t and signature; the body's id
		// names it.
		{"stripe", signStripe, []byte(`{"id":"evt_1Nq","type":"invoice.paid"}`),
			[]byte(`{"id":"evt_1Nq","type":"invoice.paid"}`), []byte(`{"id":"evt_2Nq","type":"invoice.paid"}`), "id"},
		// A toolbus sender names its event in idempotency_field; a retry
		// body may differ elsewhere (an attempt counter).
		{"orders", signGeneric, []byte(`{"order":{"id":42},"attempt":1}`),
			[]byte(`{"order":{"id":42},"attempt":2}`), []byte(`{"order":{"id":43},"attempt":1}`), "order.id"},
	}
	for _, c := range cases {
		first := post(t, url+c.hook, c.first, c.sign(c.first, now.Add(-2*time.Minute)))
		retry := post(t, url+c.hook, c.retry, c.sign(c.retry, now))
		if first.status != 202 || retry.status != 202 || first.acc.Duplicate || !retry.acc.Duplicate || retry.acc.EventID != first.acc.EventID {
			t.Fatalf("%s: first %+v, retry %+v", c.hook, first, retry)
		}
		if r := post(t, url+c.hook, c.other, c.sign(c.other, now)); r.status != 202 || r.acc.Duplicate {
			t.Fatalf("%s: another event: %+v", c.hook, r)
		}
		if n := len(testutil.StreamMsgs(t, srv.JS, subjects.StreamEvents, "events.webhook."+c.hook)); n != 2 {
			t.Fatalf("%s: %d events, want 2", c.hook, n)
		}
		// A body without the field is refused, naming it.
		noField := []byte(`{"type":"x"}`)
		if r := post(t, url+c.hook, noField, c.sign(noField, now)); r.status != 400 || !strings.Contains(r.err.Error, `"`+c.field+`"`) {
			t.Fatalf("%s: body without the field: %+v", c.hook, r)
		}
	}
}

// TestIdempotencyKeyNeedsCoverage: the header names the event only where
// the authentication covers it; on a signed hook it is neither used nor
// kept in the event.
func TestIdempotencyKeyNeedsCoverage(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	url := startBridge(t, srv.JS, []Hook{
		{Name: "signed", Auth: AuthHMAC, Secret: string(secret)},
		{Name: "field", Auth: AuthBearer, Token: "t0ken", IdempotencyField: "id"},
	}) + "/hooks/"
	body := []byte(`{"id":"a"}`)
	now := time.Now()
	// Re-signed with the same key: the key does not count, so two requests
	// signed at different times are two events.
	a := post(t, url+"signed", body, signed(body, now.Add(-time.Second), map[string]string{"Idempotency-Key": "k"}))
	b := post(t, url+"signed", body, signed(body, now, map[string]string{"Idempotency-Key": "k"}))
	if a.status != 202 || b.status != 202 || b.acc.Duplicate || a.acc.EventID == b.acc.EventID {
		t.Fatalf("%+v %+v", a, b)
	}
	msgs := testutil.StreamMsgs(t, srv.JS, subjects.StreamEvents, "events.webhook.signed")
	var ev Event
	if len(msgs) != 2 || json.Unmarshal(msgs[0].Data, &ev) != nil {
		t.Fatalf("%d events", len(msgs))
	}
	if _, kept := ev.Headers["Idempotency-Key"]; kept {
		t.Errorf("an unsigned Idempotency-Key was kept: %v", ev.Headers)
	}
	// The body field wins over the header.
	auth := map[string]string{"Authorization": "Bearer t0ken"}
	x := post(t, url+"field", body, with(auth, "Idempotency-Key", "k1"))
	y := post(t, url+"field", body, with(auth, "Idempotency-Key", "k2"))
	z := post(t, url+"field", []byte(`{"id":"b"}`), with(auth, "Idempotency-Key", "k1"))
	if !y.acc.Duplicate || y.acc.EventID != x.acc.EventID || z.acc.Duplicate || z.acc.EventID == x.acc.EventID {
		t.Fatalf("field over header: %+v %+v %+v", x, y, z)
	}
}

// TestGitHubEventHeaders: a GitHub event keeps the event name and delivery
// id, never the signature.
func TestGitHubEventHeaders(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	url := startBridge(t, srv.JS, []Hook{{Name: "gh", Auth: AuthHMAC, Scheme: SchemeGitHub, Secret: string(secret)}}) + "/hooks/gh"
	body := []byte(`{"action":"opened","issue":{"number":7}}`)
	hdr := providers[1].sign(secret, body, time.Now(), wellFormed)
	hdr["X-Hub-Signature"] = "sha1=" + strings.Repeat("0", 40)
	if r := post(t, url, body, hdr); r.status != 202 {
		t.Fatalf("%+v", r)
	}
	// GitHub's redelivery: same body, same delivery id, same signature.
	if r := post(t, url, body, hdr); r.status != 202 || !r.acc.Duplicate {
		t.Fatalf("redelivery: %+v", r)
	}
	msgs := testutil.StreamMsgs(t, srv.JS, subjects.StreamEvents, "events.webhook.gh")
	var ev Event
	if len(msgs) != 1 || json.Unmarshal(msgs[0].Data, &ev) != nil {
		t.Fatalf("%d events", len(msgs))
	}
	if ev.Headers["X-Github-Event"] != "issues" || ev.Headers["X-Github-Delivery"] == "" {
		t.Errorf("headers %v", ev.Headers)
	}
	for _, h := range []string{"X-Hub-Signature-256", "X-Hub-Signature"} {
		if _, kept := ev.Headers[h]; kept {
			t.Errorf("%s kept in the event", h)
		}
	}
}

func TestSlackURLVerification(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	url := startBridge(t, srv.JS, []Hook{{Name: "slack", Auth: AuthHMAC, Scheme: SchemeSlack, Secret: string(secret)}}) + "/hooks/slack"
	body := []byte(`{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}`)
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(string(body)))
	for k, v := range providers[3].sign(secret, body, time.Now(), wellFormed) {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != 200 || got["challenge"] != "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" {
		t.Fatalf("%d %v %v", resp.StatusCode, got, err)
	}
	// Unsigned, it is refused like any request.
	if r := post(t, url, body, nil); r.status != 401 {
		t.Fatalf("unsigned challenge: %+v", r)
	}
	if n := len(testutil.StreamMsgs(t, srv.JS, subjects.StreamEvents, "events.webhook.slack")); n != 0 {
		t.Fatalf("%d events", n)
	}
}

func TestParseStripeSignature(t *testing.T) {
	sig := strings.Repeat("ab", 32)
	good := []struct {
		in   string
		ts   string
		sigs int
	}{
		{"t=1492774577,v1=" + sig, "1492774577", 1},
		{"t=1492774577,v1=" + sig + ",v1=" + sig + ",v0=" + sig, "1492774577", 2},
		{"v1=" + sig + ",t=1", "1", 1},
		{"t=1,v1=" + sig + ",v0=short,x=y", "1", 1},
	}
	for _, c := range good {
		ts, sigs, err := parseStripeSignature(c.in)
		if err != nil || ts != c.ts || len(sigs) != c.sigs {
			t.Errorf("%q: %q %d %v", c.in, ts, len(sigs), err)
		}
	}
	for _, bad := range []string{"", "t=1", "v1=" + sig, "t=1,t=2,v1=" + sig, "t=1,v1=" + sig[:63], "t=1,v1=" + sig + "00", "t=1,v1=zz" + sig[2:], "t=1," + sig, "t=1, v1=" + sig} {
		if _, _, err := parseStripeSignature(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParseStripeSignature(f *testing.F) {
	f.Add("t=1492774577,v1=" + strings.Repeat("ab", 32) + ",v0=x")
	f.Add("t=,v1=,=,,")
	f.Fuzz(func(t *testing.T, s string) {
		ts, sigs, err := parseStripeSignature(s)
		if err != nil {
			return
		}
		if len(sigs) == 0 || strings.Contains(ts, ",") {
			t.Fatalf("%q: %q %d", s, ts, len(sigs))
		}
		for _, sig := range sigs {
			if len(sig) != sha256.Size {
				t.Fatalf("%q: signature of %d bytes", s, len(sig))
			}
		}
	})
}

func TestValidateSchemes(t *testing.T) {
	cases := []struct {
		field string
		hook  Hook
	}{
		{"scheme", Hook{Name: "h", Auth: AuthHMAC, Secret: "s", Scheme: "gitlab"}},
		{"scheme", Hook{Name: "h", Auth: AuthBearer, Token: "t", Scheme: SchemeGitHub}},
		{"signature_header", Hook{Name: "h", Auth: AuthHMAC, Secret: "s", Scheme: SchemeStripe, SignatureHeader: "X-Sig"}},
		{"timestamp_header", Hook{Name: "h", Auth: AuthBearer, Token: "t", TimestampHeader: "X-Ts"}},
		{"signature_header", Hook{Name: "h", Auth: AuthHMAC, Secret: "s", SignatureHeader: "X Sig"}},
		{"secret", Hook{Name: "h", Auth: AuthBearer, Token: "t", Secret: "s"}},
		{"token", Hook{Name: "h", Auth: AuthHMAC, Secret: "s", Token: "t"}},
		{"secret", Hook{Name: "h", Auth: AuthHMAC, Scheme: SchemeSlack}},
	}
	for _, c := range cases {
		err := c.hook.Validate()
		if !errors.Is(err, ErrInvalidHook) || !strings.Contains(err.Error(), `hook "h": `+c.field+": ") {
			t.Errorf("%s %+v: %v", c.field, c.hook, err)
		}
	}
	for _, s := range []Scheme{"", SchemeGeneric, SchemeGitHub, SchemeStripe, SchemeSlack} {
		h := Hook{Name: "h", Auth: AuthHMAC, Secret: "s", Scheme: s}
		if err := h.Validate(); err != nil {
			t.Errorf("scheme %q: %v", s, err)
		}
		h.setDefaults()
		if err := h.Validate(); err != nil {
			t.Errorf("scheme %q after defaults: %v", s, err)
		}
	}
	stripe := Hook{Name: "h", Auth: AuthHMAC, Secret: "s", Scheme: SchemeStripe}
	stripe.setDefaults()
	if stripe.IdempotencyField != "id" {
		t.Errorf("stripe's idempotency field is %q by default, want id", stripe.IdempotencyField)
	}
	if _, err := New(nil, []Hook{{Name: "h", Auth: AuthHMAC, Scheme: SchemeGitHub, Secret: "env:TOOLBUS_SURELY_UNSET"}}, zerolog.Nop()); err == nil || !strings.Contains(err.Error(), `hook "h"`) || !strings.Contains(err.Error(), "TOOLBUS_SURELY_UNSET") {
		t.Errorf("unset env secret: %v", err)
	}
}

func TestSchemesFromYAML(t *testing.T) {
	var hooks []Hook
	err := yaml.Unmarshal([]byte(`
- name: github
  auth: hmac
  scheme: github
  secret: env:GITHUB_WEBHOOK_SECRET
  tolerance: 1h
- name: stripe
  auth: hmac
  scheme: stripe
  secret: env:STRIPE_WEBHOOK_SECRET
- name: slack
  auth: hmac
  scheme: slack
  secret: env:SLACK_SIGNING_SECRET
  idempotency_field: event_id
- name: zapier
  auth: hmac
  secret: env:ZAPIER_SECRET
  idempotency_field: id
`), &hooks)
	if err != nil {
		t.Fatal(err)
	}
	want := []Scheme{SchemeGitHub, SchemeStripe, SchemeSlack, ""}
	for i, h := range hooks {
		if err := h.Validate(); err != nil || h.Scheme != want[i] {
			t.Errorf("%s: %q %v", h.Name, h.Scheme, err)
		}
	}
}

// ExampleSign shows the headers a sender of the generic scheme sets.
func ExampleSign() {
	body := []byte(`{"order":42}`)
	ts := int64(1767225600) // time.Now().Unix()
	fmt.Println("X-Toolbus-Timestamp:", ts)
	fmt.Println("X-Toolbus-Signature:", Sign([]byte("s3cret"), ts, body))
	// Output:
	// X-Toolbus-Timestamp: 1767225600
	// X-Toolbus-Signature: sha256=f259fb6b46b7039b5fb7a2bc1ad92df67b6085c0d41ddda43b3a661c0c41d7d4
}
