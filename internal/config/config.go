// Package config reads toolbus.yaml: NATS settings, the worker's knobs, the
// MCP servers (toolbus's own `servers:` map, or the `mcpServers` JSON that
// Claude Desktop and Cursor use, so people can bring what they have),
// webhook hooks and schedules. Errors name the file, the field and what is
// wrong.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/toolbus-dev/toolbus/internal/registry"
	"github.com/toolbus-dev/toolbus/internal/streams"
	"github.com/toolbus-dev/toolbus/subjects"
)

// DefaultFile is read when it exists in the working directory and no
// --config is given.
const DefaultFile = "toolbus.yaml"

// Config is the whole file. Zero values take the defaults of the package
// that uses them.
type Config struct {
	NATS   NATS   `yaml:"nats"`
	Worker Worker `yaml:"worker"`
	// Servers maps a server name to its definition.
	Servers map[string]registry.Server `yaml:"servers"`
	// MCPServers is Claude Desktop's / Cursor's format.
	MCPServers map[string]MCPServer `yaml:"mcpServers"`
	Bridge     Bridge               `yaml:"bridge"`
	// Hooks and Schedules are passed as they are to the bridge and scheduler.
	Hooks     []yaml.Node `yaml:"hooks"`
	Schedules []yaml.Node `yaml:"schedules"`
	Sync      Sync        `yaml:"sync"`
	// MCP configures the MCP front door (toolbus gateway, toolbus mcp, and
	// /mcp on serve's listener).
	MCP FrontDoor `yaml:"mcp"`

	// Path is the file this was read from ("" for the built-in default).
	Path string `yaml:"-"`
}

// NATS is where the bus lives.
type NATS struct {
	// URL of an external NATS; empty runs the embedded server (serve only).
	URL string `yaml:"url"`
	// DataDir of the embedded server's JetStream (default ./data).
	DataDir string `yaml:"data_dir"`
	// Host and Port the embedded server listens on (default 127.0.0.1:4222).
	Host string `yaml:"host"`
	Port int    `yaml:"port"`
	// Replicas per stream (1; use 3 on a cluster).
	Replicas int `yaml:"replicas"`
	// ResultMaxAge is how long results are kept (default 24h).
	ResultMaxAge subjects.Duration `yaml:"result_max_age"`
	// ResultMaxBytes caps the stored results; past it the oldest go first
	// (default 64 MiB; -1: no cap). The NATS server holds an index entry in
	// memory per stored result, so this also bounds its memory.
	ResultMaxBytes int64 `yaml:"result_max_bytes"`
	// LedgerMaxAge is how long the start marks of non-idempotent calls are
	// kept (default result_max_age).
	LedgerMaxAge subjects.Duration `yaml:"ledger_max_age"`
	// LedgerMaxBytes caps the call ledger; past it the oldest marks go
	// first (default 16 MiB; -1: no cap).
	LedgerMaxBytes int64 `yaml:"ledger_max_bytes"`
	// DuplicateWindow is how long a call id is remembered to drop a
	// duplicate publish (default 2m). The NATS server keeps every call id
	// of the window in memory.
	DuplicateWindow subjects.Duration `yaml:"duplicate_window"`
	// SyncAlways makes the embedded server fsync every JetStream write before
	// confirming it: nothing confirmed is lost to a crash of the machine or
	// a kill -9, at a large cost in throughput (see `toolbus bench --sync-always`).
	SyncAlways bool `yaml:"sync_always"`
}

// Worker tunes workers; see worker.Config for the defaults.
type Worker struct {
	Concurrency    int               `yaml:"concurrency"`
	MaxAckPending  int               `yaml:"max_ack_pending"`
	AckWait        subjects.Duration `yaml:"ack_wait"`
	MaxDeliver     int               `yaml:"max_deliver"`
	DefaultTimeout subjects.Duration `yaml:"default_timeout"`
	Grace          subjects.Duration `yaml:"grace"`
	MaxResultBytes int               `yaml:"max_result_bytes"`
	MaxClaimBytes  int               `yaml:"max_claim_bytes"`
	RetryFor       subjects.Duration `yaml:"retry_for"`
	// QueueTimeout: see worker.Config.QueueTimeout (default 5m; negative:
	// a call without a deadline waits in the queue forever).
	QueueTimeout subjects.Duration `yaml:"queue_timeout"`
	// MemoryLimit is the soft memory limit serve and worker set for the Go
	// runtime when GOMEMLIMIT is unset (default 192MiB; "off": none).
	MemoryLimit string `yaml:"memory_limit"`
}

// Bridge configures the webhook bridge's listener.
type Bridge struct {
	// Addr to listen on (default 127.0.0.1:8088; "off" disables it in serve).
	Addr string `yaml:"addr"`
}

// Sync configures the catalog sync.
type Sync struct {
	// HoldChanged keeps a tool whose definition changed out of use until
	// `toolbus tools approve`.
	HoldChanged bool `yaml:"hold_changed"`
	// Interval of the default resync schedule (default 15m; "0s" disables).
	Interval *subjects.Duration `yaml:"interval"`
}

// FrontDoor configures the MCP front door: one MCP server (streamable HTTP
// at /mcp, or stdio) over the whole catalog, each call a durable bus call.
type FrontDoor struct {
	// Listen is the address of the streamable HTTP endpoint (default
	// 127.0.0.1:8088, the webhook bridge's listener when they are the
	// same); "off" disables it. Without tokens it must be a loopback
	// address.
	Listen string `yaml:"listen"`
	// Path of the endpoint (default /mcp); named views are served at
	// <path>/<view>.
	Path string `yaml:"path"`
	// Agent the calls run as when no tokens are configured (default
	// "default").
	Agent string `yaml:"agent"`
	// CallTimeout is a tools/call's deadline (default 60s); TaskTimeout a
	// task-augmented call's, unless the task asks for a shorter ttl
	// (default 1h).
	CallTimeout subjects.Duration `yaml:"call_timeout"`
	TaskTimeout subjects.Duration `yaml:"task_timeout"`
	// Tokens are the bearer tokens clients present; each maps to an agent
	// and may narrow what that client sees. With tokens configured every
	// request needs one.
	Tokens []FrontDoorToken `yaml:"tokens"`
	// Views are named subsets served at <path>/<view>.
	Views map[string]FrontDoorPolicy `yaml:"views"`
}

// FrontDoorToken is one bearer token of the front door.
type FrontDoorToken struct {
	// Name labels the token in logs (default: its agent).
	Name string `yaml:"name"`
	// Token is the secret: "env:NAME" reads it from the environment (a
	// plain value works but is discouraged).
	Token string `yaml:"token"`
	// Agent is the agent its calls run as.
	Agent string `yaml:"agent"`
	// Views, when set, are the only views this token may use ("" is the
	// endpoint itself).
	Views           []string `yaml:"views"`
	FrontDoorPolicy `yaml:",inline"`
}

// FrontDoorPolicy narrows and shapes the tools a token or view exposes.
// Tools are named "<server>/<tool>" in its keys.
type FrontDoorPolicy struct {
	// Allow lists the tools exposed: "<server>" (all its tools),
	// "<server>/<tool>", globs allowed ("github/list_*"). Empty: all.
	Allow []string `yaml:"allow"`
	// Rename gives a tool another name in tools/list.
	Rename map[string]string `yaml:"rename"`
	// Describe replaces a tool's description.
	Describe map[string]string `yaml:"describe"`
	// Pin fixes arguments: hidden from the listed schema, injected into
	// every call, never settable by the client. String values may use
	// {{agent}}, {{view}}, {{server}}, {{tool}} and {{call_id}}.
	Pin map[string]map[string]any `yaml:"pin"`
}

// MCPServer is one entry of Claude Desktop's / Cursor's mcpServers.
type MCPServer struct {
	Command string            `yaml:"command"`
	Args    []string          `yaml:"args"`
	Env     map[string]string `yaml:"env"`
	URL     string            `yaml:"url"`
	Headers map[string]string `yaml:"headers"`
	// Type (or transport) is "stdio", "sse", "http" or "streamable-http";
	// guessed when absent: command → stdio, URL ending in /sse → sse, else http.
	Type      string `yaml:"type"`
	Transport string `yaml:"transport"`
	// Disabled entries are skipped, as Claude Desktop does.
	Disabled bool `yaml:"disabled"`
}

// Load reads path; an empty path reads ./toolbus.yaml when present and
// otherwise returns Default.
func Load(path string) (*Config, error) {
	if path == "" {
		if _, err := os.Stat(DefaultFile); err != nil {
			return Default(), nil
		}
		path = DefaultFile
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.Path = path
	return c, nil
}

// Parse reads YAML or JSON (JSON is YAML). Unknown fields are errors, with
// their line.
func Parse(data []byte) (*Config, error) {
	c := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return nil, cleanYAMLError(err)
	}
	if err := c.normalize(); err != nil {
		return nil, err
	}
	return c, nil
}

func cleanYAMLError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.ReplaceAll(msg, "unmarshal errors:\n  ", "")
	msg = strings.ReplaceAll(msg, "in type config.Config", "")
	return errors.New(msg)
}

// StreamOptions are the stream settings the nats section asks for (zero
// values: the defaults of package streams).
func (n NATS) StreamOptions() streams.Options {
	return streams.Options{
		Replicas:        n.Replicas,
		ResultMaxAge:    n.ResultMaxAge.D(),
		ResultMaxBytes:  n.ResultMaxBytes,
		LedgerMaxAge:    n.LedgerMaxAge.D(),
		LedgerMaxBytes:  n.LedgerMaxBytes,
		DuplicateWindow: n.DuplicateWindow.D(),
	}
}

// normalize folds mcpServers into Servers and validates every server.
func (c *Config) normalize() error {
	if err := c.NATS.StreamOptions().Validate(); err != nil {
		return fmt.Errorf("nats.%w", err)
	}
	if _, err := ParseMemoryLimit(c.Worker.MemoryLimit); err != nil {
		return fmt.Errorf("worker.memory_limit: %w", err)
	}
	if c.Servers == nil {
		c.Servers = map[string]registry.Server{}
	}
	for name, s := range c.Servers {
		if s.Name != "" && s.Name != name {
			return fmt.Errorf("servers.%s.name: %q differs from its key; drop the field", name, s.Name)
		}
		s.Name = name
		if s.Transport == "" {
			s.Transport = guessTransport(s.Command, s.URL)
		}
		if err := s.Validate(); err != nil {
			return fmt.Errorf("servers.%s: %w", name, stripServer(err, name))
		}
		c.Servers[name] = s
	}
	for name, m := range c.MCPServers {
		if m.Disabled {
			continue
		}
		if _, dup := c.Servers[name]; dup {
			return fmt.Errorf("mcpServers.%s: also defined under servers; keep one", name)
		}
		s, err := m.server(name)
		if err != nil {
			return fmt.Errorf("mcpServers.%s: %w", name, err)
		}
		c.Servers[name] = s
	}
	return nil
}

func (m MCPServer) server(name string) (registry.Server, error) {
	t := m.Type
	if t == "" {
		t = m.Transport
	}
	s := registry.Server{Name: name, Command: m.Command, Args: m.Args, Env: m.Env, URL: m.URL, Headers: m.Headers}
	switch strings.ToLower(t) {
	case "":
		s.Transport = guessTransport(m.Command, m.URL)
	case "stdio":
		s.Transport = registry.TransportStdio
	case "sse":
		s.Transport = registry.TransportSSE
	case "http", "streamable-http", "streamablehttp", "streamable_http":
		s.Transport = registry.TransportHTTP
	default:
		return s, fmt.Errorf("type: %q is not one of stdio, sse, http, streamable-http", t)
	}
	if err := s.Validate(); err != nil {
		return s, stripServer(err, name)
	}
	return s, nil
}

func guessTransport(command, url string) registry.Transport {
	switch {
	case command != "":
		return registry.TransportStdio
	case strings.HasSuffix(strings.TrimRight(url, "/"), "/sse"):
		return registry.TransportSSE
	case url != "":
		return registry.TransportHTTP
	}
	return ""
}

// stripServer drops the `server "x": ` prefix Validate adds, since the
// caller already names the server as the field path.
func stripServer(err error, name string) error {
	return errors.New(strings.TrimPrefix(err.Error(), fmt.Sprintf("server %q: ", name)))
}

// ServerList returns the servers sorted by name.
func (c *Config) ServerList() []registry.Server {
	out := make([]registry.Server, 0, len(c.Servers))
	for _, s := range c.Servers {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Decode decodes the hooks or schedules section into out (a pointer to a
// slice of the bridge's or scheduler's type), naming the section on error.
func Decode(section string, nodes []yaml.Node, out any) error {
	seq := yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
	for i := range nodes {
		seq.Content = append(seq.Content, &nodes[i])
	}
	if err := seq.Decode(out); err != nil {
		return fmt.Errorf("%s: %w", section, cleanYAMLError(err))
	}
	return nil
}

// Default is the configuration used when there is no file: the demo MCP
// server, run as a stdio child of this very binary (`toolbus demo`).
func Default() *Config {
	exe, err := os.Executable()
	if err != nil {
		exe = "toolbus"
	} else if abs, err := filepath.EvalSymlinks(exe); err == nil {
		exe = abs
	}
	return &Config{Servers: map[string]registry.Server{
		"demo": {
			Name:      "demo",
			Transport: registry.TransportStdio,
			Command:   exe,
			Args:      []string{"demo", "--transport", "stdio"},
			// The demo server speaks 2025-11-25 and newer; pinning skips the
			// server/discover probe and keeps calls on the faster handshake.
			ProtocolVersion: "2025-11-25",
		},
	}}
}
