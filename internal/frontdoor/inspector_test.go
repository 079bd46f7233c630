package frontdoor_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/toolbus-dev/toolbus/internal/testbin"
)

// inspector runs MCP Inspector's CLI mode and returns its output.
func inspector(t *testing.T, args ...string) string {
	t.Helper()
	dir := nodeDir(t)
	bin := filepath.Join(dir, "node_modules", ".bin", "mcp-inspector")
	if _, err := os.Stat(bin); err != nil {
		t.Skip("run `cd testdata/node && npm install` for MCP Inspector")
	}
	home := t.TempDir()
	cmd := exec.Command(node(t), append([]string{bin, "--cli"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+home, "MCP_CATALOG_PATH="+filepath.Join(home, "mcp.json"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("inspector %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// MCP Inspector's CLI lists and calls tools through the front door: over
// streamable HTTP with a bearer token, and over stdio (toolbus mcp).
func TestInspectorCLI(t *testing.T) {
	b := startBus(t)
	_, url := b.gateway(t, viewsConfig(t))
	list := inspector(t, url, "--transport", "http", "--header", "Authorization: Bearer "+bobToken, "--method", "tools/list")
	if !strings.Contains(list, `"demo__sleep"`) || strings.Contains(list, `"demo__echo"`) {
		t.Fatalf("tools/list as bob:\n%s", list)
	}
	call := inspector(t, url, "--transport", "http", "--header", "Authorization: Bearer "+bobToken,
		"--method", "tools/call", "--tool-name", "demo__add", "--tool-arg", "a=2", "b=3")
	if !strings.Contains(call, `"5"`) {
		t.Fatalf("tools/call demo__add as bob:\n%s", call)
	}

	bin := testbin.Build(t, "github.com/toolbus-dev/toolbus/cmd/toolbus")
	call = inspector(t, "--transport", "stdio", "--method", "tools/call", "--tool-name", "demo__add", "--tool-arg", "a=20", "b=22",
		"--", bin, "mcp", "--nats-url", b.ns.URL)
	if !strings.Contains(call, `"42"`) {
		t.Fatalf("tools/call demo__add over stdio:\n%s", call)
	}
}
