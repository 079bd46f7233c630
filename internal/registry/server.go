package registry

import (
	"fmt"
	"net/url"

	"github.com/toolbus-dev/toolbus/subjects"
)

// Transport names an MCP transport.
type Transport string

const (
	TransportStdio Transport = "stdio"
	TransportSSE   Transport = "sse"
	TransportHTTP  Transport = "http" // streamable HTTP
)

// Server is one registered MCP server: the entry stored in the servers KV
// bucket and the unit the config file lists. Secret values (AuthToken,
// secret headers, secret env) are stored as references ("env:NAME") or
// ciphertext ("enc:..."), never in plain text; see the package doc.
type Server struct {
	Name      string    `json:"name" yaml:"name"`
	Transport Transport `json:"transport" yaml:"transport"`

	// stdio
	Command string            `json:"command,omitempty" yaml:"command,omitempty"`
	Args    []string          `json:"args,omitempty" yaml:"args,omitempty"`
	Env     map[string]string `json:"env,omitempty" yaml:"env,omitempty"`
	Dir     string            `json:"dir,omitempty" yaml:"dir,omitempty"`

	// sse and http
	URL        string            `json:"url,omitempty" yaml:"url,omitempty"`
	Headers    map[string]string `json:"headers,omitempty" yaml:"headers,omitempty"`
	AuthHeader string            `json:"auth_header,omitempty" yaml:"auth_header,omitempty"` // default "Authorization"
	AuthToken  string            `json:"auth_token,omitempty" yaml:"auth_token,omitempty"`   // sent as "Bearer <token>" under Authorization

	// ProtocolVersion pins the MCP protocol version ("2025-11-25", ...).
	// Empty means negotiate: probe 2026-07-28, fall back to the handshake.
	ProtocolVersion string `json:"protocol_version,omitempty" yaml:"protocol_version,omitempty"`

	// CallTimeout bounds a call that carries no deadline (default 60s).
	CallTimeout subjects.Duration `json:"call_timeout,omitempty" yaml:"call_timeout,omitempty"`
	// ConnectTimeout bounds connect plus handshake (default 15s).
	ConnectTimeout subjects.Duration `json:"connect_timeout,omitempty" yaml:"connect_timeout,omitempty"`
	// IdleTimeout closes a session unused this long (default 5m).
	IdleTimeout subjects.Duration `json:"idle_timeout,omitempty" yaml:"idle_timeout,omitempty"`
	// MaxConcurrency caps in-flight calls to this server per worker (default 64).
	MaxConcurrency int `json:"max_concurrency,omitempty" yaml:"max_concurrency,omitempty"`
	// RetryUnsafe lets a destructive, non-idempotent tool run again after a
	// worker died mid-call, instead of ending outcome_unknown.
	RetryUnsafe bool `json:"retry_unsafe,omitempty" yaml:"retry_unsafe,omitempty"`
}

// Validate checks the fields a transport needs, naming the field at fault.
func (s *Server) Validate() error {
	if _, err := subjects.EscapeToken(s.Name); err != nil {
		return fmt.Errorf("name: %w", err)
	}
	switch s.Transport {
	case TransportStdio:
		if s.Command == "" {
			return fmt.Errorf("server %q: command: required for transport stdio", s.Name)
		}
	case TransportSSE, TransportHTTP:
		if s.URL == "" {
			return fmt.Errorf("server %q: url: required for transport %s", s.Name, s.Transport)
		}
		u, err := url.Parse(s.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("server %q: url: %q is not an http(s) URL", s.Name, RedactURL(s.URL))
		}
	case "":
		return fmt.Errorf("server %q: transport: required (stdio, sse or http)", s.Name)
	default:
		return fmt.Errorf("server %q: transport: %q is not one of stdio, sse, http", s.Name, s.Transport)
	}
	if s.MaxConcurrency < 0 {
		return fmt.Errorf("server %q: max_concurrency: must not be negative", s.Name)
	}
	return nil
}

// RedactURL returns u fit for logs and printing: a password in it becomes
// "xxxxx" and every query value "REDACTED" (API keys often travel there).
// Text that is not a URL is returned as it is.
func RedactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return u
	}
	if p.RawQuery != "" {
		q := p.Query()
		for k := range q {
			q[k] = []string{"REDACTED"}
		}
		p.RawQuery = q.Encode()
	}
	return p.Redacted()
}
