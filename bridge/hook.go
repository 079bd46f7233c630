package bridge

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"toolbus/subjects"
)

// Auth is how a hook authenticates its sender.
type Auth string

const (
	// AuthHMAC: an HMAC-SHA256 signature of "<timestamp>.<body>" with the
	// shared Secret, in SignatureHeader as "sha256=<hex>", and the Unix
	// timestamp in TimestampHeader, within Tolerance of now.
	AuthHMAC Auth = "hmac"
	// AuthBearer: "Authorization: Bearer <Token>".
	AuthBearer Auth = "bearer"
	// AuthNone accepts anyone who can reach the address.
	AuthNone Auth = "none"
)

// Route is where a hook's requests go.
type Route string

const (
	// RouteEvent publishes the event on events.webhook.<name> (the default).
	RouteEvent Route = "event"
	// RouteWake publishes the event on agent.wake.<agent>.
	RouteWake Route = "wake"
	// RouteTool publishes a tool call on tool.call.<server>.<tool>, its
	// arguments mapped from body fields.
	RouteTool Route = "tool"
)

// Defaults of a Hook's optional fields.
const (
	DefaultSignatureHeader = "X-Toolbus-Signature"
	DefaultTimestampHeader = "X-Toolbus-Timestamp"
	DefaultTolerance       = 5 * time.Minute
	DefaultMaxBody         = 1 << 20
	DefaultCallTimeout     = time.Minute
)

// Hook is one webhook endpoint, POST /hooks/<name>.
type Hook struct {
	// Name is the path segment and the subject token of events.webhook.<name>.
	Name string `json:"name" yaml:"name"`
	// Auth is hmac, bearer or none; required, so no hook is open by accident.
	Auth Auth `json:"auth" yaml:"auth"`
	// Secret is the HMAC key (auth hmac). "env:NAME" reads it from the
	// environment variable NAME when the bridge starts.
	Secret string `json:"secret,omitempty" yaml:"secret,omitempty"`
	// SignatureHeader carries "sha256=<hex>" (default X-Toolbus-Signature).
	SignatureHeader string `json:"signature_header,omitempty" yaml:"signature_header,omitempty"`
	// TimestampHeader carries Unix seconds (default X-Toolbus-Timestamp).
	TimestampHeader string `json:"timestamp_header,omitempty" yaml:"timestamp_header,omitempty"`
	// Tolerance is how far the timestamp may be from now (default 5m);
	// older signed requests are refused as replays.
	Tolerance subjects.Duration `json:"tolerance,omitempty" yaml:"tolerance,omitempty"`
	// Token is the bearer token (auth bearer); "env:NAME" as for Secret.
	Token string `json:"token,omitempty" yaml:"token,omitempty"`
	// IdempotencyField is a body field (dot path) whose value identifies the
	// event when the request has no Idempotency-Key header: a sender's
	// retries within the stream's duplicate window (2m) give one event.
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
	// CallTimeout is the tool call's deadline from receipt (default 1m).
	CallTimeout subjects.Duration `json:"call_timeout,omitempty" yaml:"call_timeout,omitempty"`
	// Headers lists request headers kept in the event, besides Content-Type,
	// User-Agent, Idempotency-Key and X-Request-Id. Auth headers never are.
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
	if h.SignatureHeader == "" {
		h.SignatureHeader = DefaultSignatureHeader
	}
	if h.TimestampHeader == "" {
		h.TimestampHeader = DefaultTimestampHeader
	}
	if h.Tolerance == 0 {
		h.Tolerance = subjects.Duration(DefaultTolerance)
	}
	if h.Route == "" {
		h.Route = RouteEvent
	}
	if h.CallTimeout == 0 {
		h.CallTimeout = subjects.Duration(DefaultCallTimeout)
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
	for _, f := range []struct{ name, v string }{{"signature_header", h.SignatureHeader}, {"timestamp_header", h.TimestampHeader}} {
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
		if h.Server == "" {
			return h.errf("server", "required for route tool")
		}
		if h.Tool == "" {
			return h.errf("tool", "required for route tool")
		}
		if _, err := subjects.ToolCall(h.Server, h.Tool); err != nil {
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
		if h.Reply != "" && !subjects.ValidPublishSubject(h.Reply) {
			return h.errf("reply", "%q is not a literal subject", h.Reply)
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
var keptHeaders = []string{"Content-Type", "User-Agent", "Idempotency-Key", "X-Request-Id"}

func (h *Hook) secretHeader(name string) bool {
	name = http.CanonicalHeaderKey(name)
	return name == "Authorization" || name == http.CanonicalHeaderKey(h.SignatureHeader) || name == "Cookie"
}
