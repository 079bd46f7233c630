package bridge

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The providers' headers; http.CanonicalHeaderKey spelling.
const (
	headerGitHubSignature     = "X-Hub-Signature-256"
	headerGitHubSignatureSHA1 = "X-Hub-Signature" // legacy, never trusted
	headerGitHubEvent         = "X-Github-Event"
	headerGitHubDelivery      = "X-Github-Delivery"
	headerStripeSignature     = "Stripe-Signature"
	headerSlackSignature      = "X-Slack-Signature"
	headerSlackTimestamp      = "X-Slack-Request-Timestamp"
)

// macHexLen is the length of a hex HMAC-SHA256: every scheme's signature
// has exactly this many hex digits after its prefix.
const macHexLen = 2 * sha256.Size

// proof is what authentication established about a request.
type proof struct {
	// mac is the verified signature (auth hmac), the request's identity
	// when nothing else names the event; nil for bearer and none.
	mac []byte
	// signedAt is the signed timestamp; zero when the scheme has none.
	signedAt time.Time
}

// Sign returns the generic scheme's signature header value of body at
// timestamp ts (Unix seconds) under secret: "sha256=" and the hex
// HMAC-SHA256 of "<ts>.<body>". Senders compute the same.
func Sign(secret []byte, ts int64, body []byte) string {
	return "sha256=" + hex.EncodeToString(mac(secret, strconv.AppendInt(nil, ts, 10), []byte{'.'}, body))
}

func mac(secret []byte, parts ...[]byte) []byte {
	m := hmac.New(sha256.New, secret)
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

func unauthorized(format string, a ...any) *httpError {
	return refuse(http.StatusUnauthorized, CodeUnauthorized, format, a...)
}

func (h *hook) authenticate(r *http.Request, body []byte, now time.Time) (proof, *httpError) {
	switch h.Auth {
	case AuthBearer:
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), h.token) != 1 {
			return proof{}, unauthorized("missing or wrong bearer token")
		}
	case AuthHMAC:
		switch h.Scheme {
		case SchemeGitHub:
			return h.verifyGitHub(r.Header, body)
		case SchemeStripe:
			return h.verifyStripe(r.Header, body, now)
		case SchemeSlack:
			return h.verifySlack(r.Header, body, now)
		default:
			return h.verifyGeneric(r.Header, body, now)
		}
	}
	return proof{}, nil
}

// verifyGeneric: SignatureHeader "sha256=<hex>" of "<timestamp>.<body>",
// the timestamp as sent in TimestampHeader.
func (h *hook) verifyGeneric(hdr http.Header, body []byte, now time.Time) (proof, *httpError) {
	ts, signedAt, herr := h.timestamp(hdr, h.TimestampHeader, now)
	if herr != nil {
		return proof{}, herr
	}
	got, herr := signature(hdr, h.SignatureHeader, "sha256=")
	if herr != nil {
		return proof{}, herr
	}
	return h.check(signedAt, mac(h.secret, []byte(ts), []byte{'.'}, body), got)
}

// verifyGitHub: X-Hub-Signature-256 "sha256=<hex>" of the body.
func (h *hook) verifyGitHub(hdr http.Header, body []byte) (proof, *httpError) {
	got, herr := signature(hdr, headerGitHubSignature, "sha256=")
	if herr != nil {
		return proof{}, herr
	}
	return h.check(time.Time{}, mac(h.secret, body), got)
}

// verifySlack: X-Slack-Signature "v0=<hex>" of "v0:<ts>:<body>", ts as sent
// in X-Slack-Request-Timestamp.
func (h *hook) verifySlack(hdr http.Header, body []byte, now time.Time) (proof, *httpError) {
	ts, signedAt, herr := h.timestamp(hdr, headerSlackTimestamp, now)
	if herr != nil {
		return proof{}, herr
	}
	got, herr := signature(hdr, headerSlackSignature, "v0=")
	if herr != nil {
		return proof{}, herr
	}
	return h.check(signedAt, mac(h.secret, []byte("v0:"+ts+":"), body), got)
}

// verifyStripe: Stripe-Signature "t=<unix>,v1=<hex>,…", any v1 of
// "<t>.<body>".
func (h *hook) verifyStripe(hdr http.Header, body []byte, now time.Time) (proof, *httpError) {
	v, herr := single(hdr, headerStripeSignature)
	if herr != nil {
		return proof{}, herr
	}
	ts, sigs, err := parseStripeSignature(v)
	if err != nil {
		return proof{}, unauthorized("malformed %s: %v", headerStripeSignature, err)
	}
	signedAt, herr := h.fresh(headerStripeSignature+" t", ts, now)
	if herr != nil {
		return proof{}, herr
	}
	want := mac(h.secret, []byte(ts), []byte{'.'}, body)
	ok := 0
	for _, got := range sigs {
		ok |= subtle.ConstantTimeCompare(got, want)
	}
	if ok != 1 {
		return proof{}, unauthorized("bad signature")
	}
	return proof{mac: want, signedAt: signedAt}, nil
}

// parseStripeSignature reads "t=<unix>,v1=<hex>[,v1=<hex>…][,v0=…]": one t,
// at least one v1, every v1 exactly 64 hex digits; other keys are ignored.
func parseStripeSignature(v string) (ts string, sigs [][]byte, err error) {
	seenT := false
	for item := range strings.SplitSeq(v, ",") {
		k, val, ok := strings.Cut(item, "=")
		if !ok {
			return "", nil, fmt.Errorf("%q is not key=value", item)
		}
		switch k {
		case "t":
			if seenT {
				return "", nil, errors.New("t given twice")
			}
			ts, seenT = val, true
		case "v1":
			sig, err := decodeMAC(val)
			if err != nil {
				return "", nil, fmt.Errorf("v1: %v", err)
			}
			sigs = append(sigs, sig)
		}
	}
	if !seenT {
		return "", nil, errors.New("no t=")
	}
	if len(sigs) == 0 {
		return "", nil, errors.New("no v1= signature")
	}
	return ts, sigs, nil
}

// check compares the signature sent with the one computed, in constant
// time.
func (h *hook) check(signedAt time.Time, want, got []byte) (proof, *httpError) {
	if !hmac.Equal(got, want) {
		return proof{}, unauthorized("bad signature")
	}
	return proof{mac: want, signedAt: signedAt}, nil
}

// timestamp reads the header's Unix seconds and checks them against the
// tolerance; it returns the text as sent, which is what was signed.
func (h *hook) timestamp(hdr http.Header, name string, now time.Time) (string, time.Time, *httpError) {
	ts, herr := single(hdr, name)
	if herr != nil {
		return "", time.Time{}, herr
	}
	at, herr := h.fresh(name, ts, now)
	return ts, at, herr
}

// fresh parses Unix seconds (ASCII digits only) and refuses a time further
// than the tolerance from now: a replay of an old request, or a skewed clock.
func (h *hook) fresh(name, ts string, now time.Time) (time.Time, *httpError) {
	if ts == "" || len(ts) > 18 || strings.Trim(ts, "0123456789") != "" {
		return time.Time{}, unauthorized("%s is not Unix seconds", name)
	}
	sec, _ := strconv.ParseInt(ts, 10, 64) // 18 digits cannot overflow
	at := time.Unix(sec, 0)
	if d := now.Sub(at).Abs(); d > h.Tolerance.D() {
		return time.Time{}, unauthorized("timestamp is %v away from now, beyond the %v tolerance (replayed or clock skew)", d.Round(time.Second), h.Tolerance.D())
	}
	return at, nil
}

// signature reads "<prefix><64 hex digits>" from the header, exactly.
func signature(hdr http.Header, name, prefix string) ([]byte, *httpError) {
	v, herr := single(hdr, name)
	if herr != nil {
		return nil, herr
	}
	hexed, ok := strings.CutPrefix(v, prefix)
	if !ok {
		return nil, unauthorized("malformed %s: does not start with %q", name, prefix)
	}
	sig, err := decodeMAC(hexed)
	if err != nil {
		return nil, unauthorized("malformed %s: %v", name, err)
	}
	return sig, nil
}

// single returns the header's one value: a missing or repeated auth header
// is refused rather than guessed at.
func single(hdr http.Header, name string) (string, *httpError) {
	vs := hdr.Values(name)
	switch {
	case len(vs) == 0 || vs[0] == "":
		return "", unauthorized("missing %s header", name)
	case len(vs) > 1:
		return "", unauthorized("%s header sent %d times", name, len(vs))
	}
	return vs[0], nil
}

func decodeMAC(s string) ([]byte, error) {
	if len(s) != macHexLen {
		return nil, fmt.Errorf("%d hex digits, want %d", len(s), macHexLen)
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, errors.New("not hex")
	}
	return b, nil
}

// slackChallenge returns the challenge of Slack's url_verification request,
// which Slack sends, signed, when an Events API URL is registered, and
// which must be echoed in a 200.
func (h *hook) slackChallenge(body any) (string, bool) {
	if h.Scheme != SchemeSlack {
		return "", false
	}
	obj, ok := body.(map[string]any)
	if !ok || obj["type"] != "url_verification" {
		return "", false
	}
	ch, ok := obj["challenge"].(string)
	return ch, ok && ch != ""
}
