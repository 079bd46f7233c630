package frontdoor_test

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	mcpclient "github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/toolbus-dev/toolbus/internal/config"
	"github.com/toolbus-dev/toolbus/internal/frontdoor"
	"github.com/toolbus-dev/toolbus/subjects"
)

const (
	aliceToken = "alice-0123456789-secret"
	bobToken   = "bob-0123456789-secret"
)

func viewsConfig(t *testing.T) frontdoor.Config {
	t.Helper()
	t.Setenv("FRONTDOOR_TEST_BOB", bobToken)
	cfg, err := frontdoor.FromConfig(config.FrontDoor{
		Tokens: []config.FrontDoorToken{
			{Token: aliceToken, Agent: "alice", FrontDoorPolicy: config.FrontDoorPolicy{
				Allow:  []string{"demo/add", "demo/echo"},
				Rename: map[string]string{"demo/add": "plus"},
				Pin:    map[string]map[string]any{"demo/echo": {"message": "from {{agent}}"}},
			}},
			{Token: "env:FRONTDOOR_TEST_BOB", Agent: "bob", FrontDoorPolicy: config.FrontDoorPolicy{Allow: []string{"demo/sleep", "demo/add"}}},
		},
		Views: map[string]config.FrontDoorPolicy{"math": {Allow: []string{"demo/add"}, Describe: map[string]string{"demo/add": "Adds two numbers."}}},
	}, "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func listed(t *testing.T, c *mcpclient.Client) []string {
	names := toolNames(t, c)
	slices.Sort(names)
	return names
}

// Two tokens see different tools; a pinned argument is hidden, injected
// and cannot be overridden; a call outside the allowlist is refused; a
// view narrows further; no token, no entry.
func TestTokensAndViews(t *testing.T) {
	b := startBus(t)
	_, url := b.gateway(t, viewsConfig(t))
	alice := connect(t, url, mcp.ProtocolVersion20251125, aliceToken)
	bob := connect(t, url, mcp.ProtocolVersion20251125, bobToken)
	if got := listed(t, alice); !slices.Equal(got, []string{"demo__echo", "plus"}) {
		t.Errorf("alice sees %v", got)
	}
	if got := listed(t, bob); !slices.Equal(got, []string{"demo__add", "demo__sleep"}) {
		t.Errorf("bob sees %v", got)
	}
	res, err := alice.ListTools(context.Background(), mcp.ListToolsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tl := range res.Tools {
		if tl.Name == "demo__echo" && strings.Contains(string(tl.RawInputSchema)+tl.InputSchema.Type, "message") {
			t.Errorf("pinned argument listed: %s", tl.RawInputSchema)
		}
	}
	out, err := callTool(alice, "demo__echo", nil)
	if err != nil || text(out) != "from alice" {
		t.Fatalf("pinned echo = %v, %v; want \"from alice\"", out, err)
	}
	if _, err := callTool(alice, "demo__echo", map[string]any{"message": "mine"}); err == nil || !strings.Contains(err.Error(), "pinned") {
		t.Fatalf("overriding a pinned argument: err %v", err)
	}
	if out, err := callTool(alice, "plus", map[string]any{"a": 1, "b": 2}); err != nil || text(out) != "3" {
		t.Fatalf("renamed add = %v, %v", out, err)
	}
	if _, err := callTool(alice, "demo__sleep", map[string]any{"ms": 1}); err == nil || !strings.Contains(err.Error(), "unknown tool") {
		t.Fatalf("alice calling outside her allowlist: err %v", err)
	}
	math := connect(t, url+"/math", mcp.ProtocolVersion20251125, aliceToken)
	res, err = math.ListTools(context.Background(), mcp.ListToolsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Tools) != 1 || res.Tools[0].Name != "plus" || res.Tools[0].Description != "Adds two numbers." {
		t.Errorf("alice on /mcp/math sees %+v", res.Tools)
	}
	c, err := mcpclient.NewStreamableHttpClient(url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.Start(context.Background())
	req := mcp.InitializeRequest{}
	req.Params.ProtocolVersion = mcp.ProtocolVersion20251125
	if _, err := c.Initialize(context.Background(), req); err == nil {
		t.Fatal("a client without a token was let in")
	}
}

func TestListenNeedsTokensOffLoopback(t *testing.T) {
	if err := frontdoor.CheckListen("0.0.0.0:8088", frontdoor.Config{}); err == nil || !strings.Contains(err.Error(), "mcp.tokens") {
		t.Fatalf("0.0.0.0 without tokens: %v", err)
	}
	if err := frontdoor.CheckListen("127.0.0.1:8088", frontdoor.Config{}); err != nil {
		t.Fatal(err)
	}
	if err := frontdoor.CheckListen("0.0.0.0:8088", viewsConfig(t)); err != nil {
		t.Fatal(err)
	}
}

func TestToolNames(t *testing.T) {
	long := strings.Repeat("x", 80)
	for _, c := range []struct{ server, tool string }{{"demo", "add"}, {"fs", "read.file"}, {"s", long}, {"é", "t"}} {
		n := frontdoor.ToolName(c.server, c.tool)
		if !frontdoor.ValidName(n) || n != frontdoor.ToolName(c.server, c.tool) {
			t.Errorf("ToolName(%q, %q) = %q", c.server, c.tool, n)
		}
	}
	if frontdoor.ToolName("demo", "add") != "demo__add" {
		t.Error("a valid short pair is not kept readable")
	}
	if frontdoor.ToolName("fs", "read.file") == frontdoor.ToolName("fs", "read_file") {
		t.Error("sanitized names collide")
	}
}

// Attacks on the message filter: a differently cased params key cannot
// carry a pinned argument past it, a page reached by DNS rebinding is
// refused before any method is answered, and a client cannot pick its call
// id.
func TestFilterAttacks(t *testing.T) {
	b := startBus(t)
	_, url := b.gateway(t, viewsConfig(t))
	session := ""
	post := func(host, body string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("MCP-Protocol-Version", "2025-11-25")
		req.Header.Set("Authorization", "Bearer "+aliceToken)
		if host != "" {
			req.Host = host
		}
		if session != "" {
			req.Header.Set("Mcp-Session-Id", session)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if s := resp.Header.Get("Mcp-Session-Id"); s != "" {
			session = s
		}
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
	if code, out := post("", `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`); code != http.StatusOK {
		t.Fatalf("initialize: %d %s", code, out)
	}
	code, out := post("", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"demo__echo","Arguments":{"message":"mine"}}}`)
	if code != http.StatusOK || !strings.Contains(out, `unexpected key \"Arguments\"`) {
		t.Fatalf("a cased Arguments key: %d %s", code, out)
	}
	code, out = post("evil.example:80", `{"jsonrpc":"2.0","id":1,"method":"tasks/list","params":{}}`)
	if code != http.StatusForbidden {
		t.Fatalf("DNS rebinding Host: %d %s", code, out)
	}
	results := b.replies(t, "alice")
	code, out = post("", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"demo__echo","_meta":{"dev.toolbus/callId":"chosen-by-client"}}}`)
	if code != http.StatusOK || !strings.Contains(out, "from alice") {
		t.Fatalf("echo: %d %s", code, out)
	}
	r := waitResult(t, results, "echo", func(*subjects.Result) bool { return true })
	if r.CallID == "chosen-by-client" {
		t.Fatal("the client chose the bus call id")
	}
}
