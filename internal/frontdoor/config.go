package frontdoor

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/toolbus-dev/toolbus/internal/config"
	"github.com/toolbus-dev/toolbus/subjects"
)

// Defaults of Config.
const (
	DefaultListen      = "127.0.0.1:8088"
	DefaultPath        = "/mcp"
	DefaultCallTimeout = 60 * time.Second
	DefaultTaskTimeout = time.Hour
	// DefaultDebounce gathers catalog changes into one
	// notifications/tools/list_changed.
	DefaultDebounce = 250 * time.Millisecond
)

// Config is the front door's configuration, secrets resolved (see
// FromConfig).
type Config struct {
	// Path of the HTTP endpoint (default /mcp); views at Path/<view>.
	Path string
	// Agent calls run as without tokens (default "default").
	Agent string
	// Tokens, when any, are required on every HTTP request.
	Tokens []Token
	// Views are the named subsets.
	Views map[string]Policy
	// CallTimeout is a call's deadline; TaskTimeout a task's.
	CallTimeout time.Duration
	TaskTimeout time.Duration
	// Debounce gathers catalog changes before list_changed is sent.
	Debounce time.Duration
	// Version is the server version initialize names: toolbus's build
	// (default "0.0.0").
	Version string
}

// Token is one bearer token: who it calls as and what it sees.
type Token struct {
	Name  string
	Agent string
	// Views the token may use; nil: all ("" is the endpoint itself).
	Views  []string
	Policy Policy
	secret [sha256.Size]byte
}

// SetSecret sets the token's secret (kept only as a hash).
func (t *Token) SetSecret(s string) { t.secret = sha256.Sum256([]byte(s)) }

// Policy narrows and shapes the tools a token or a view exposes; keys are
// "<server>/<tool>".
type Policy struct {
	Allow    []string
	Rename   map[string]string
	Describe map[string]string
	Pin      map[string]map[string]any
}

// FromConfig resolves the mcp section of toolbus.yaml: env: references are
// read now, and every field is checked. file names the config file in
// errors.
func FromConfig(c config.FrontDoor, file string) (Config, error) {
	if file == "" {
		file = "config"
	}
	errf := func(field, format string, a ...any) error {
		return fmt.Errorf("%s: mcp.%s: %s", file, field, fmt.Sprintf(format, a...))
	}
	cfg := Config{Path: c.Path, Agent: c.Agent, CallTimeout: c.CallTimeout.D(), TaskTimeout: c.TaskTimeout.D(), Views: map[string]Policy{}}
	if cfg.Path != "" && (!strings.HasPrefix(cfg.Path, "/") || strings.ContainsAny(cfg.Path, " ?#")) {
		return cfg, errf("path", "%q must start with / and hold no spaces, ? or #", cfg.Path)
	}
	if cfg.Agent != "" {
		if err := subjects.ValidateAgent(cfg.Agent); err != nil {
			return cfg, errf("agent", "%v", err)
		}
	}
	for name, v := range c.Views {
		if !ValidName(name) {
			return cfg, errf("views."+name, "a view name is 1-64 of [A-Za-z0-9_-]")
		}
		p := Policy(v)
		if err := p.validate(); err != nil {
			return cfg, errf("views."+name, "%v", err)
		}
		cfg.Views[name] = p
	}
	seen := map[[sha256.Size]byte]int{}
	for i, tc := range c.Tokens {
		field := fmt.Sprintf("tokens[%d]", i)
		if tc.Agent == "" {
			return cfg, errf(field+".agent", "missing: name the agent this token calls as")
		}
		if err := subjects.ValidateAgent(tc.Agent); err != nil {
			return cfg, errf(field+".agent", "%v", err)
		}
		secret := tc.Token
		if name, ok := strings.CutPrefix(secret, "env:"); ok {
			secret = os.Getenv(name)
			if secret == "" {
				return cfg, errf(field+".token", "environment variable %s is empty or unset", name)
			}
		}
		if len(secret) < 16 {
			return cfg, errf(field+".token", "missing or shorter than 16 characters; use a long random value, e.g. `openssl rand -base64 32`, given as env:NAME")
		}
		for _, v := range tc.Views {
			if _, ok := c.Views[v]; !ok && v != "" {
				return cfg, errf(field+".views", "no view %q under mcp.views", v)
			}
		}
		t := Token{Name: tc.Name, Agent: tc.Agent, Views: tc.Views, Policy: Policy(tc.FrontDoorPolicy)}
		if t.Name == "" {
			t.Name = tc.Agent
		}
		if err := t.Policy.validate(); err != nil {
			return cfg, errf(field, "%v", err)
		}
		t.SetSecret(secret)
		if j, dup := seen[t.secret]; dup {
			return cfg, errf(field+".token", "the same secret as tokens[%d]", j)
		}
		seen[t.secret] = i
		cfg.Tokens = append(cfg.Tokens, t)
	}
	return cfg, nil
}

func (c *Config) setDefaults() {
	if c.Path == "" {
		c.Path = DefaultPath
	}
	c.Path = "/" + strings.Trim(c.Path, "/")
	if c.Agent == "" {
		c.Agent = subjects.DefaultAgent
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = DefaultCallTimeout
	}
	if c.TaskTimeout <= 0 {
		c.TaskTimeout = DefaultTaskTimeout
	}
	if c.Debounce <= 0 {
		c.Debounce = DefaultDebounce
	}
	if c.Views == nil {
		c.Views = map[string]Policy{}
	}
}

// token returns the token whose secret is s (constant time in the secret).
func (c *Config) token(s string) (*Token, bool) {
	h := sha256.Sum256([]byte(s))
	var found *Token
	for i := range c.Tokens {
		if subtle.ConstantTimeCompare(h[:], c.Tokens[i].secret[:]) == 1 {
			found = &c.Tokens[i]
		}
	}
	return found, found != nil
}

// CheckListen refuses an address other clients could reach when no tokens
// are configured: without tokens, anyone who reaches the endpoint calls
// every tool as the configured agent.
func CheckListen(addr string, c Config) error {
	if len(c.Tokens) > 0 || addr == "off" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("mcp.listen %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("the MCP front door would listen on %s, which is not a loopback address, and no mcp.tokens are configured: anyone who reaches it could call every tool as agent %q. Configure mcp.tokens (bearer tokens mapped to agents), or listen on 127.0.0.1", addr, orDefault(c.Agent, subjects.DefaultAgent))
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func (p Policy) validate() error {
	for _, a := range p.Allow {
		if _, err := path.Match(a, ""); err != nil || a == "" {
			return fmt.Errorf("allow: %q is not a valid pattern (\"<server>\", \"<server>/<tool>\", globs allowed)", a)
		}
	}
	keys := func(field string, m map[string]string) error {
		for k, v := range m {
			if !strings.Contains(k, "/") {
				return fmt.Errorf("%s: key %q must be \"<server>/<tool>\"", field, k)
			}
			if field == "rename" && !ValidName(v) {
				return fmt.Errorf("rename: %q for %s is not a valid tool name (1-64 of [A-Za-z0-9_-])", v, k)
			}
		}
		return nil
	}
	if err := keys("rename", p.Rename); err != nil {
		return err
	}
	if err := keys("describe", p.Describe); err != nil {
		return err
	}
	for k := range p.Pin {
		if !strings.Contains(k, "/") {
			return fmt.Errorf("pin: key %q must be \"<server>/<tool>\"", k)
		}
	}
	return nil
}

// allows reports whether the policy exposes r.
func (p Policy) allows(r ref) bool {
	if len(p.Allow) == 0 {
		return true
	}
	for _, a := range p.Allow {
		if strings.Contains(a, "/") {
			if ok, _ := path.Match(a, r.key()); ok {
				return true
			}
			continue
		}
		if ok, _ := path.Match(a, r.server); ok {
			return true
		}
	}
	return false
}

// merge is the policy of a token on a view: a tool must be allowed by both;
// the token's renames, descriptions and pins win over the view's.
type merged struct{ view, token Policy }

func (m merged) allows(r ref) bool { return m.view.allows(r) && m.token.allows(r) }

func (m merged) rename(r ref) (string, bool) {
	if n, ok := m.token.Rename[r.key()]; ok {
		return n, true
	}
	n, ok := m.view.Rename[r.key()]
	return n, ok
}

func (m merged) describe(r ref) (string, bool) {
	if d, ok := m.token.Describe[r.key()]; ok {
		return d, true
	}
	d, ok := m.view.Describe[r.key()]
	return d, ok
}

// pins returns the pinned arguments of r, view's then token's.
func (m merged) pins(r ref) map[string]any {
	var out map[string]any
	for _, p := range []Policy{m.view, m.token} {
		for k, v := range p.Pin[r.key()] {
			if out == nil {
				out = map[string]any{}
			}
			out[k] = v
		}
	}
	return out
}

// pinNames returns the names of r's pinned arguments, sorted.
func pinNames(pins map[string]any) []string {
	out := make([]string, 0, len(pins))
	for k := range pins {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// expand fills {{agent}}, {{view}}, {{server}}, {{tool}} and {{call_id}}
// into the string values of v.
func expand(v any, r *strings.Replacer) any {
	switch x := v.(type) {
	case string:
		return r.Replace(x)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = expand(e, r)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = expand(e, r)
		}
		return out
	}
	return v
}
