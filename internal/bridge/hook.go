package bridge

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/toolbus-dev/toolbus/internal/streams"
	"github.com/toolbus-dev/toolbus/subjects"
)

// Auth is how a hook authenticates its sender.
type Auth string

const (
	// AuthHMAC: an HMAC-SHA256 signature with the shared Secret, in the
	// format of the hook's Scheme (default generic).
	AuthHMAC Auth = "hmac"
	// AuthBearer: "Authorization: Bearer <Token>".
	AuthBearer Auth = "bearer"
	// AuthNone accepts anyone who can reach the address.
	AuthNone Auth = "none"
)

// Scheme is the signature format of an auth hmac hook: whose webhooks it
// receives. Every signature is HMAC-SHA256 with the hook's Secret, sent as
// exactly 64 hex digits after the scheme's prefix, and compared in constant
// time.
type Scheme string

const (
	// SchemeGeneric is toolbus's own (the default): SignatureHeader (default
	// X-Toolbus-Signature) carries "sha256=<hex>" of "<timestamp>.<body>",
	// where <timestamp> is TimestampHeader's value (default
	// X-Toolbus-Timestamp), Unix seconds within Tolerance of now. Sign
	// computes it.
	SchemeGeneric Scheme = "generic"
	// SchemeGitHub: "X-Hub-Signature-256: sha256=<hex>" of the body alone.
	// GitHub signs no timestamp, so a replay is refused only while the
	// bridge remembers the signature (Tolerance).
	SchemeGitHub Scheme = "github"
	// SchemeStripe: "Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]", each
	// v1 of "<t>.<body>"; one matching v1 is enough (Stripe sends two while a
	// secret rolls), other entries (v0) are ignored. The secret is the whole
	// "whsec_…" string. The body's "id" (the Stripe event id) identifies the
	// event unless IdempotencyField says otherwise.
	SchemeStripe Scheme = "stripe"
	// SchemeSlack: "X-Slack-Signature: v0=<hex>" of "v0:<ts>:<body>", <ts>
	// being X-Slack-Request-Timestamp. A url_verification request is
	// answered with its challenge and publishes nothing.
	SchemeSlack Scheme = "slack"
)

// Route is where a hook's requests go.
type Route string

const (
	// RouteEvent publishes the event on events.webhook.<name> (the default).
	RouteEvent Route = "event"
	// RouteWake publishes the event on agent.wake.<agent>.
	RouteWake Route = "wake"
	// RouteTool publishes a tool call on tool.call.<agent>.<server>.<tool>, its
	// arguments mapped from body fields.
	RouteTool Route = "tool"
)

// Defaults of a Hook's optional fields.
const (
	DefaultSignatureHeader = "X-Toolbus-Signature"
	DefaultTimestampHeader = "X-Toolbus-Timestamp"
	DefaultTolerance       = 5 * time.Minute
	DefaultMaxBody         = 1 << 20
	// DefaultAgent is the agent a hook's tool calls run as when it names
	// none; nats.conf's bridge user may publish tool.call.bridge.>.
	DefaultAgent = "bridge"
)

// callAgent is the agent a route-tool hook's calls run as.
func (h *Hook) callAgent() string {
	if h.Agent != "" {
		return h.Agent
	}
	return DefaultAgent
}

// Hook is one webhook endpoint, POST /hooks/<name>.
//
// Which requests are one event: the event id (also the Nats-Msg-Id, so
// JetStream stores one copy per duplicate window, across bridge replicas)
// is derived only from what the hook's authentication covers, the first of:
//
//  1. IdempotencyField, a body field: every scheme signs the body;
//  2. auth hmac: the verified signature itself, so a repeat of the same
//     signed request (a replay, or GitHub's redelivery) is the same event;
//  3. auth bearer or none: the Idempotency-Key header;
//  4. otherwise a random id: every request is a new event.
//
// An Idempotency-Key header on an auth hmac hook is ignored (and not kept
// in the event): no scheme signs it, so a captured body re-sent with a new
// key would otherwise be a new event. A sender that re-signs its retries
// (a new timestamp, as Stripe and Slack do) must name the event in the body
// and configure IdempotencyField.
//
// A repeat is answered 202 with the first event's id and "duplicate": true,
// never an error, so a sender whose first answer was lost stops retrying;
// nothing new is published. The bridge remembers each accepted id for
// Tolerance (from the signed timestamp, when the scheme has one) and
// answers a repeat from memory, so a replay is refused for as long as its
// timestamp is valid even when that is longer than the stream's duplicate
// window; across replicas, only the duplicate window applies.
type Hook struct {
	// Name is the path segment and the subject token of events.webhook.<name>.
	Name string `json:"name" yaml:"name"`
	// Auth is hmac, bearer or none; required, so no hook is open by accident.
	Auth Auth `json:"auth" yaml:"auth"`
	// Scheme is the signature format of auth hmac: generic (default),
	// github, stripe or slack.
	Scheme Scheme `json:"scheme,omitempty" yaml:"scheme,omitempty"`
	// Secret is the HMAC key (auth hmac). "env:NAME" reads it from the
	// environment variable NAME when the bridge starts.
	Secret string `json:"secret,omitempty" yaml:"secret,omitempty"`
	// SignatureHeader carries "sha256=<hex>" (scheme generic only; default
	// X-Toolbus-Signature).
	SignatureHeader string `json:"signature_header,omitempty" yaml:"signature_header,omitempty"`
	// TimestampHeader carries Unix seconds (scheme generic only; default
	// X-Toolbus-Timestamp).
	TimestampHeader string `json:"timestamp_header,omitempty" yaml:"timestamp_header,omitempty"`
	// Tolerance (default 5m) is how far a signed timestamp may be from now,
	// and how long an accepted event id is remembered, so a repeat is
	// answered as a duplicate without publishing.
	Tolerance subjects.Duration `json:"tolerance,omitempty" yaml:"tolerance,omitempty"`
	// Token is the bearer token (auth bearer); "env:NAME" as for Secret.
	Token string `json:"token,omitempty" yaml:"token,omitempty"`
	// IdempotencyField is a body field (dot path) whose value identifies the
	// event; when set it wins over everything else, and a body without it
	// is refused (400). Default "id" for scheme stripe, else none.
	IdempotencyField string `json:"idempotency_field,omitempty" yaml:"idempotency_field,omitempty"`
	// Route is event (default), wake or tool.
	Route Route `json:"route,omitempty" yaml:"route,omitempty"`
	// Agent is the agent to wake (route wake), or the calling agent of a
	// tool call (route tool, optional).
	Agent string `json:"agent,omitempty" yaml:"agent,omitempty"`
	// Server and Tool name the tool to call (route tool).
	Server string `json:"server,omitempty" yaml:"server,omitempty"`
	Tool   string `json:"tool,omitempty" yaml:"tool,omitempty"`
	// Args maps each tool argument to a body field (dot path, "a.b.0.c").
	// Empty: the whole body, which must be an object, is the arguments.
	Args map[string]string `json:"args,omitempty" yaml:"args,omitempty"`
	// Reply is the subject the tool's result is sent to (route tool, optional).
	Reply string `json:"reply,omitempty" yaml:"reply,omitempty"`
	// CallTimeout is the tool call's deadline from receipt (default 60s, streams.DefaultCallTimeout).
	CallTimeout subjects.Duration `json:"call_timeout,omitempty" yaml:"call_timeout,omitempty"`
	// Headers lists request headers kept in the event, besides Content-Type,
	// User-Agent, X-Request-Id, Idempotency-Key (not for auth hmac) and, for
	// scheme github, X-GitHub-Event and X-GitHub-Delivery. Auth headers
	// never are.
	Headers []string `json:"headers,omitempty" yaml:"headers,omitempty"`
	// MaxBody is the largest body accepted, in bytes (default 1 MiB).
	MaxBody int64 `json:"max_body,omitempty" yaml:"max_body,omitempty"`
}

func (h *Hook) errf(field, format string, a ...any) error {
	name := h.Name
	if name == "" {
		name = "(unnamed)"
	}
	return fmt.Errorf("%w: hook %q: %s: %s", ErrInvalidHook, name, field, fmt.Sprintf(format, a...))
}

// setDefaults fills the optional fields.
func (h *Hook) setDefaults() {
	if h.Auth == AuthHMAC && h.Scheme == "" {
		h.Scheme = SchemeGeneric
	}
	if h.Scheme == SchemeGeneric {
		if h.SignatureHeader == "" {
			h.SignatureHeader = DefaultSignatureHeader
		}
		if h.TimestampHeader == "" {
			h.TimestampHeader = DefaultTimestampHeader
		}
	}
	if h.Scheme == SchemeStripe && h.IdempotencyField == "" {
		h.IdempotencyField = "id"
	}
	if h.Tolerance == 0 {
		h.Tolerance = subjects.Duration(DefaultTolerance)
	}
	if h.Route == "" {
		h.Route = RouteEvent
	}
	if h.CallTimeout == 0 {
		h.CallTimeout = subjects.Duration(streams.DefaultCallTimeout)
	}
	if h.MaxBody == 0 {
		h.MaxBody = DefaultMaxBody
	}
}

// Validate checks the hook and names the field at fault. Secret references
// ("env:NAME") are resolved by New, not here.
func (h *Hook) Validate() error {
	if _, err := subjects.EscapeToken(h.Name); err != nil {
		return h.errf("name", "%v", err)
	}
	if strings.Contains(h.Name, "/") {
		return h.errf("name", "must not contain '/'")
	}
	switch h.Auth {
	case AuthHMAC:
		if h.Secret == "" {
			return h.errf("secret", "required for auth hmac")
		}
		switch h.Scheme {
		case "", SchemeGeneric, SchemeGitHub, SchemeStripe, SchemeSlack:
		default:
			return h.errf("scheme", "%q is not one of generic, github, stripe, slack", h.Scheme)
		}
	case AuthBearer:
		if h.Token == "" {
			return h.errf("token", "required for auth bearer")
		}
	case AuthNone:
	case "":
		return h.errf("auth", "required (hmac, bearer or none)")
	default:
		return h.errf("auth", "%q is not one of hmac, bearer, none", h.Auth)
	}
	if h.Scheme != "" && h.Auth != AuthHMAC {
		return h.errf("scheme", "needs auth hmac")
	}
	if h.Secret != "" && h.Auth != AuthHMAC {
		return h.errf("secret", "is for auth hmac (auth %s)", h.Auth)
	}
	if h.Token != "" && h.Auth != AuthBearer {
		return h.errf("token", "is for auth bearer (auth %s)", h.Auth)
	}
	generic := h.Auth == AuthHMAC && (h.Scheme == "" || h.Scheme == SchemeGeneric)
	for _, f := range []struct{ name, v string }{{"signature_header", h.SignatureHeader}, {"timestamp_header", h.TimestampHeader}} {
		if f.v != "" && !generic {
			return h.errf(f.name, "only for auth hmac with scheme generic; the other schemes use their provider's headers")
		}
		if f.v != "" && strings.ContainsAny(f.v, " :\r\n") {
			return h.errf(f.name, "%q is not a header name", f.v)
		}
	}
	if h.Tolerance < 0 {
		return h.errf("tolerance", "must not be negative")
	}
	if h.MaxBody < 0 {
		return h.errf("max_body", "must not be negative")
	}
	if h.CallTimeout < 0 {
		return h.errf("call_timeout", "must not be negative")
	}
	if err := checkPath(h.IdempotencyField); h.IdempotencyField != "" && err != nil {
		return h.errf("idempotency_field", "%v", err)
	}
	switch h.Route {
	case "", RouteEvent:
	case RouteWake:
		if h.Agent == "" {
			return h.errf("agent", "required for route wake")
		}
		if _, err := subjects.AgentWake(h.Agent); err != nil {
			return h.errf("agent", "%v", err)
		}
	case RouteTool:
		if h.Agent != "" {
			if err := subjects.ValidateAgent(h.Agent); err != nil {
				return h.errf("agent", "%v", err)
			}
		}
		if h.Server == "" {
			return h.errf("server", "required for route tool")
		}
		if h.Tool == "" {
			return h.errf("tool", "required for route tool")
		}
		if _, err := subjects.ToolCall(h.callAgent(), h.Server, h.Tool); err != nil {
			return h.errf("server/tool", "%v", err)
		}
		for arg, path := range h.Args {
			if arg == "" {
				return h.errf("args", "empty argument name")
			}
			if err := checkPath(path); err != nil {
				return h.errf("args."+arg, "%v", err)
			}
		}
	default:
		return h.errf("route", "%q is not one of event, wake, tool", h.Route)
	}
	if h.Route != RouteTool && (len(h.Args) > 0 || h.Server != "" || h.Tool != "") {
		return h.errf("route", "server, tool and args need route tool")
	}
	for _, name := range h.Headers {
		if name == "" || strings.ContainsAny(name, " :\r\n") {
			return h.errf("headers", "%q is not a header name", name)
		}
	}
	return nil
}

func checkPath(p string) error {
	if p == "" {
		return fmt.Errorf("empty field path")
	}
	for seg := range strings.SplitSeq(p, ".") {
		if seg == "" {
			return fmt.Errorf("field path %q has an empty segment", p)
		}
	}
	return nil
}

// resolve returns v, or the environment variable it names as "env:NAME".
func resolve(field, v string) (string, error) {
	name, ok := strings.CutPrefix(v, "env:")
	if !ok {
		return v, nil
	}
	s := os.Getenv(name)
	if s == "" {
		return "", fmt.Errorf("%s: environment variable %s is empty or unset", field, name)
	}
	return s, nil
}

// keptHeaders are copied into every event, when present.
var keptHeaders = []string{"Content-Type", "User-Agent", subjects.HeaderIdempotencyKey, "X-Request-Id"}

// schemeHeaders are kept too, for hooks of the scheme: GitHub names the
// kind of event only in X-GitHub-Event.
var schemeHeaders = map[Scheme][]string{
	SchemeGitHub: {headerGitHubEvent, headerGitHubDelivery},
}

// dropped tells the headers never copied into an event: credentials, the
// signature (with it and the body, a reader of the stream could replay the
// request), and an Idempotency-Key that no signature covers.
func (h *Hook) dropped(name string) bool {
	switch name = http.CanonicalHeaderKey(name); name {
	case "Authorization", "Cookie":
		return true
	case subjects.HeaderIdempotencyKey:
		return h.Auth == AuthHMAC
	}
	switch h.Scheme {
	case SchemeGeneric:
		return name == http.CanonicalHeaderKey(h.SignatureHeader)
	case SchemeGitHub:
		return name == headerGitHubSignature || name == headerGitHubSignatureSHA1
	case SchemeStripe:
		return name == headerStripeSignature
	case SchemeSlack:
		return name == headerSlackSignature
	}
	return false
}
