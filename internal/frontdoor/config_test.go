package frontdoor_test

import (
	"strings"
	"testing"

	"github.com/toolbus-dev/toolbus/internal/config"
	"github.com/toolbus-dev/toolbus/internal/frontdoor"
)

const mcpYAML = `
mcp:
  listen: 0.0.0.0:8088
  path: /tools
  call_timeout: 30s
  tokens:
    - token: env:FRONTDOOR_TEST_TOKEN
      agent: alice
      views: [math]
      allow: [demo, "github/list_*"]
      rename: {demo/add: plus}
      describe: {demo/echo: "Say it."}
      pin: {demo/echo: {message: "from {{agent}}", tags: ["{{view}}"]}}
  views:
    math:
      allow: [demo/add]
`

// The mcp section of toolbus.yaml reads into a front door configuration,
// env: references resolved.
func TestConfigSection(t *testing.T) {
	t.Setenv("FRONTDOOR_TEST_TOKEN", "a-long-enough-secret-value")
	c, err := config.Parse([]byte(mcpYAML))
	if err != nil {
		t.Fatal(err)
	}
	fc, err := frontdoor.FromConfig(c.MCP, "toolbus.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.MCP.Listen != "0.0.0.0:8088" || fc.Path != "/tools" || fc.CallTimeout.String() != "30s" || len(fc.Tokens) != 1 || len(fc.Views) != 1 {
		t.Fatalf("read %+v / %+v", c.MCP, fc)
	}
	tok := fc.Tokens[0]
	if tok.Agent != "alice" || tok.Policy.Rename["demo/add"] != "plus" || tok.Policy.Pin["demo/echo"]["message"] != "from {{agent}}" || len(tok.Views) != 1 {
		t.Fatalf("token %+v", tok)
	}
	if err := frontdoor.CheckListen(c.MCP.Listen, fc); err != nil {
		t.Fatalf("with tokens any address may be used: %v", err)
	}
}

// Mistakes get errors that name the file and the field.
func TestConfigErrors(t *testing.T) {
	t.Setenv("FRONTDOOR_TEST_EMPTY", "")
	for _, c := range []struct{ yaml, want string }{
		{"mcp:\n  tokens:\n    - token: env:FRONTDOOR_TEST_EMPTY\n      agent: a\n", "toolbus.yaml: mcp.tokens[0].token: environment variable FRONTDOOR_TEST_EMPTY is empty or unset"},
		{"mcp:\n  tokens:\n    - token: short\n      agent: a\n", "shorter than 16"},
		{"mcp:\n  tokens:\n    - token: a-long-enough-secret-value\n", "mcp.tokens[0].agent: missing"},
		{"mcp:\n  tokens:\n    - token: a-long-enough-secret-value\n      agent: a\n      views: [nope]\n", `no view "nope"`},
		{"mcp:\n  views:\n    v:\n      rename: {demo/add: \"bad name\"}\n", "not a valid tool name"},
		{"mcp:\n  views:\n    v:\n      pin: {demo: {a: 1}}\n", `"<server>/<tool>"`},
		{"mcp:\n  path: tools\n", "must start with /"},
	} {
		cfg, err := config.Parse([]byte(c.yaml))
		if err != nil {
			t.Fatalf("%q: %v", c.yaml, err)
		}
		_, err = frontdoor.FromConfig(cfg.MCP, "toolbus.yaml")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q", c.yaml, err, c.want)
		}
	}
}
