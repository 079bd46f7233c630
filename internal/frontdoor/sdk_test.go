package frontdoor_test

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/toolbus-dev/toolbus/internal/frontdoor"
	"github.com/toolbus-dev/toolbus/internal/registry"
	"github.com/toolbus-dev/toolbus/internal/testbin"
	"github.com/toolbus-dev/toolbus/subjects"
)

// nodeDir is testdata/node, where npm installed the SDK and the Inspector.
func nodeDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../../testdata/node")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@modelcontextprotocol", "sdk")); err != nil {
		t.Skip("run `cd testdata/node && npm install` for the MCP TypeScript SDK")
	}
	return dir
}

func node(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed")
	}
	return p
}

// step is one line the SDK script prints.
type step struct {
	Step         string          `json:"step"`
	Names        []string        `json:"names"`
	Text         string          `json:"text"`
	IsError      bool            `json:"isError"`
	Count        int             `json:"count"`
	Error        string          `json:"error"`
	Capabilities json.RawMessage `json:"capabilities"`
	Status       string          `json:"status"`
	Listed       bool            `json:"listed"`
}

// runSDK runs the TypeScript SDK client script with args and checks every
// step: list, add, progress, cancel (the tool stops: the bus answers the
// call cancelled), a task, list_changed after a server is added.
func runSDK(t *testing.T, b *bus, args ...string) {
	t.Helper()
	dir := nodeDir(t)
	results := b.replies(t, subjects.DefaultAgent)
	cmd := exec.Command(node(t), append([]string{filepath.Join(dir, "frontdoor-client.mjs")}, args...)...)
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	seen := map[string]bool{}
	sc := bufio.NewScanner(out)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var s step
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Fatalf("script printed %q", sc.Text())
		}
		seen[s.Step] = true
		switch s.Step {
		case "initialized":
			var caps map[string]json.RawMessage
			_ = json.Unmarshal(s.Capabilities, &caps)
			if caps["tools"] == nil || caps["tasks"] == nil || caps["resources"] != nil || caps["prompts"] != nil {
				t.Errorf("capabilities %s; want tools and tasks only", s.Capabilities)
			}
		case "list":
			if !contains(s.Names, "demo__add") || !contains(s.Names, "demo__sleep") {
				t.Fatalf("tools/list: %v", s.Names)
			}
		case "add":
			if s.Text != "5" || s.IsError {
				t.Fatalf("add: %+v", s)
			}
		case "progress":
			if s.Count < 1 {
				t.Fatalf("no progress from sleep")
			}
		case "cancelled":
			if s.Error == "" {
				t.Fatal("the cancelled call returned")
			}
			waitResult(t, results, "sleep", func(r *subjects.Result) bool {
				return r.Error != nil && r.Error.Code == subjects.CodeCancelled
			})
		case "task":
			if s.Text != "9" || s.Status != "completed" || !s.Listed {
				t.Fatalf("task: %+v", s)
			}
		case "add-server":
			b.addServer(t, registry.Server{Name: "more", Transport: registry.TransportHTTP, URL: startDemo(t), ProtocolVersion: "2025-11-25"})
		case "list-changed":
			if !contains(s.Names, "more__add") {
				t.Fatalf("after list_changed: %v", s.Names)
			}
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("SDK client: %v", err)
	}
	for _, want := range []string{"initialized", "list", "add", "progress", "cancelled", "task", "list-changed", "done"} {
		if !seen[want] {
			t.Errorf("the SDK client never reached %q", want)
		}
	}
}

func TestTypeScriptSDKOverHTTP(t *testing.T) {
	b := startBus(t)
	_, url := b.gateway(t, frontdoor.Config{Debounce: 50e6})
	runSDK(t, b, "http", url)
}

func TestTypeScriptSDKOverStdio(t *testing.T) {
	b := startBus(t)
	bin := testbin.Build(t, "github.com/toolbus-dev/toolbus/cmd/toolbus")
	runSDK(t, b, "stdio", bin, "mcp", "--nats-url", b.ns.URL)
}

// The Claude Desktop entry in the README, pointed at this test's bus, works
// as written: the SDK client starts it as Claude Desktop would.
func TestClaudeDesktopConfigInREADME(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- claude-desktop-config -->\\s*```json\\n(.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README has no Claude Desktop config block after <!-- claude-desktop-config -->")
	}
	var conf struct {
		MCPServers map[string]struct {
			Command string   `json:"command"`
			Args    []string `json:"args"`
		} `json:"mcpServers"`
	}
	if err := json.Unmarshal(m[1], &conf); err != nil {
		t.Fatalf("README's Claude Desktop config is not JSON: %v", err)
	}
	entry, ok := conf.MCPServers["toolbus"]
	if !ok || entry.Command != "toolbus" || len(entry.Args) == 0 || entry.Args[0] != "mcp" {
		t.Fatalf("README's entry: %+v; want command toolbus, args mcp ...", entry)
	}
	b := startBus(t)
	bin := testbin.Build(t, "github.com/toolbus-dev/toolbus/cmd/toolbus")
	args := []string{"stdio", bin}
	for _, a := range entry.Args {
		args = append(args, strings.ReplaceAll(a, "nats://127.0.0.1:4222", b.ns.URL))
	}
	runSDK(t, b, args...)
}
