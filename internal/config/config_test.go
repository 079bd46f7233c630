package config

import (
	"strings"
	"testing"

	"github.com/toolbus-dev/toolbus/internal/registry"
)

func TestParseYAML(t *testing.T) {
	c, err := Parse([]byte(`
nats:
  url: nats://127.0.0.1:4333
worker:
  concurrency: 8
  ack_wait: 45s
servers:
  fs:
    command: npx
    args: ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"]
  api:
    transport: http
    url: http://127.0.0.1:9000/mcp
    auth_token: env:API_TOKEN
    protocol_version: "2025-11-25"
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Worker.Concurrency != 8 || c.Worker.AckWait.D().Seconds() != 45 || c.NATS.URL != "nats://127.0.0.1:4333" {
		t.Fatalf("settings: %+v %+v", c.Worker, c.NATS)
	}
	fs := c.Servers["fs"]
	if fs.Name != "fs" || fs.Transport != registry.TransportStdio || len(fs.Args) != 3 {
		t.Fatalf("fs = %+v", fs)
	}
	if api := c.Servers["api"]; api.Transport != registry.TransportHTTP || api.AuthToken != "env:API_TOKEN" {
		t.Fatalf("api = %+v", api)
	}
}

func TestParseClaudeDesktopJSON(t *testing.T) {
	c, err := Parse([]byte(`{
  "mcpServers": {
    "everything": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-everything"], "env": {"A": "1"}},
    "remote": {"url": "https://example.test/mcp", "headers": {"X-Api-Key": "k"}},
    "legacy": {"url": "http://127.0.0.1:8000/sse"},
    "typed": {"type": "streamable-http", "url": "http://127.0.0.1:8001/"},
    "off": {"command": "x", "disabled": true}
  }
}`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]registry.Transport{"everything": "stdio", "remote": "http", "legacy": "sse", "typed": "http"}
	if len(c.Servers) != len(want) {
		t.Fatalf("servers = %v", c.ServerList())
	}
	for name, tr := range want {
		if c.Servers[name].Transport != tr {
			t.Errorf("%s transport = %q, want %q", name, c.Servers[name].Transport, tr)
		}
	}
	if c.Servers["everything"].Env["A"] != "1" || c.Servers["remote"].Headers["X-Api-Key"] != "k" {
		t.Errorf("env/headers lost: %+v", c.Servers)
	}
}

func TestParseErrorsNameTheField(t *testing.T) {
	cases := map[string]string{
		"servers:\n  x:\n    transport: stdio\n":                              "servers.x: command: required for transport stdio",
		"servers:\n  x:\n    transport: smtp\n    command: a\n":               `servers.x: transport: "smtp" is not one of stdio, sse, http`,
		"servers:\n  x:\n    url: ftp://h/\n":                                 `servers.x: url: "ftp://h/" is not an http(s) URL`,
		"mcpServers:\n  y:\n    type: pigeon\n    command: a\n":               `mcpServers.y: type: "pigeon"`,
		"worker:\n  concurrenc: 3\n":                                          "line 2: field concurrenc not found",
		"worker:\n  ack_wait: soon\n":                                         `"soon" is not a duration`,
		"servers:\n  a:\n    command: x\nmcpServers:\n  a:\n    command: y\n": "mcpServers.a: also defined under servers",
	}
	for in, want := range cases {
		_, err := Parse([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) error = %v, want it to contain %q", in, err, want)
		}
	}
}

func TestDefaultHasDemo(t *testing.T) {
	d := Default()
	demo, ok := d.Servers["demo"]
	if !ok || demo.Transport != registry.TransportStdio || demo.Args[0] != "demo" {
		t.Fatalf("default config = %+v", d.Servers)
	}
	if err := demo.Validate(); err != nil {
		t.Fatal(err)
	}
}

// The documented example must stay loadable.
func TestExampleFileLoads(t *testing.T) {
	c, err := Load("../../toolbus.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Servers["demo"].Args[0] != "demo" || len(c.Hooks) == 0 || len(c.Schedules) == 0 {
		t.Fatalf("example config: %+v", c)
	}
}

func TestRetentionKeys(t *testing.T) {
	c, err := Parse([]byte(`
nats:
  result_max_age: 1h
  result_max_bytes: 134217728
  ledger_max_age: 10m
  ledger_max_bytes: -1
  duplicate_window: 30s
`))
	if err != nil {
		t.Fatal(err)
	}
	o := c.NATS.StreamOptions()
	if o.ResultMaxAge.Hours() != 1 || o.ResultMaxBytes != 128<<20 || o.LedgerMaxAge.Minutes() != 10 || o.LedgerMaxBytes != -1 || o.DuplicateWindow.Seconds() != 30 {
		t.Fatalf("stream options: %+v", o)
	}
	_, err = Parse([]byte("nats:\n  result_max_bytes: 1000\n"))
	if err == nil || !strings.Contains(err.Error(), "nats.result_max_bytes") {
		t.Fatalf("err = %v, want one naming nats.result_max_bytes", err)
	}
}

func TestParseMemoryLimit(t *testing.T) {
	for in, want := range map[string]int64{"": DefaultMemoryLimit, "off": -1, "0": -1, "192MiB": 192 << 20, "1GiB": 1 << 30, "500MB": 500e6, "33554432": 32 << 20, " 64 mib ": 64 << 20} {
		if got, err := ParseMemoryLimit(in); err != nil || got != want {
			t.Errorf("ParseMemoryLimit(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"lots", "-5MiB", "1MiB", "12XB", "1.5GiB"} {
		if _, err := ParseMemoryLimit(in); err == nil {
			t.Errorf("ParseMemoryLimit(%q) accepted", in)
		}
	}
	_, err := Parse([]byte("worker:\n  memory_limit: lots\n"))
	if err == nil || !strings.Contains(err.Error(), "worker.memory_limit") {
		t.Fatalf("bad memory_limit: %v", err)
	}
}
