package frontdoor_test

import (
	"context"
	"strings"
	"testing"
	"time"

	mcpclient "github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/toolbus-dev/toolbus/internal/frontdoor"
)

func connect(t *testing.T, url, version, token string, topts ...transport.StreamableHTTPCOption) *mcpclient.Client {
	t.Helper()
	c, _ := connectInfo(t, url, version, token, topts...)
	return c
}

// connectInfo is connect, with what initialize answered.
func connectInfo(t *testing.T, url, version, token string, topts ...transport.StreamableHTTPCOption) (*mcpclient.Client, *mcp.InitializeResult) {
	t.Helper()
	if token != "" {
		topts = append(topts, transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + token}))
	}
	c, err := mcpclient.NewStreamableHttpClient(url, topts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	req := mcp.InitializeRequest{}
	req.Params.ProtocolVersion = version
	req.Params.ClientInfo = mcp.Implementation{Name: "frontdoor-test", Version: "1"}
	res, err := c.Initialize(ctx, req)
	if err != nil {
		t.Fatalf("initialize (%s): %v", version, err)
	}
	if res.Capabilities.Tools == nil || res.Capabilities.Resources != nil || res.Capabilities.Prompts != nil {
		t.Fatalf("initialize advertises %+v; want tools only (and tasks)", res.Capabilities)
	}
	return c, res
}

func toolNames(t *testing.T, c *mcpclient.Client) []string {
	t.Helper()
	res, err := c.ListTools(context.Background(), mcp.ListToolsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, tl := range res.Tools {
		out = append(out, tl.Name)
	}
	return out
}

func callTool(c *mcpclient.Client, name string, args map[string]any) (*mcp.CallToolResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = args
	return c.CallTool(ctx, req)
}

func text(r *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range r.Content {
		if tc, ok := c.(mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

// An mcp-go client on both protocol versions lists the catalog and calls
// through the bus; a tool error stays a result, unknown tools and bad
// arguments are JSON-RPC errors with the bus's words.
func TestMCPGoClientBothVersions(t *testing.T) {
	b := startBus(t)
	_, url := b.gateway(t, frontdoor.Config{Version: "9.8.7"})
	for _, v := range []string{mcp.ProtocolVersion20251125, "2026-07-28"} {
		t.Run(v, func(t *testing.T) {
			c, init := connectInfo(t, url, v, "")
			if init.ServerInfo.Name != frontdoor.ServerName || init.ServerInfo.Version != "9.8.7" {
				t.Errorf("initialize names %+v, want toolbus 9.8.7 (Config.Version)", init.ServerInfo)
			}
			res, err := c.ListTools(context.Background(), mcp.ListToolsRequest{})
			if err != nil {
				t.Fatal(err)
			}
			var add *mcp.Tool
			for i, tl := range res.Tools {
				if !frontdoor.ValidName(tl.Name) {
					t.Errorf("listed name %q is not a valid tool name", tl.Name)
				}
				if tl.Name == "demo__add" {
					add = &res.Tools[i]
				}
			}
			if add == nil {
				t.Fatalf("demo__add not listed: %v", toolNames(t, c))
			}
			if add.Description != "Returns a+b." || add.Annotations.ReadOnlyHint == nil || !*add.Annotations.ReadOnlyHint {
				t.Errorf("demo__add listed as %+v", add)
			}
			out, err := callTool(c, "demo__add", map[string]any{"a": 2, "b": 3})
			if err != nil {
				t.Fatal(err)
			}
			if text(out) != "5" || out.IsError {
				t.Fatalf("add = %q (isError %v)", text(out), out.IsError)
			}
			out, err = callTool(c, "demo__fail", map[string]any{"message": "nope"})
			if err != nil || !out.IsError || !strings.Contains(text(out), "nope") {
				t.Fatalf("fail = %+v, %v; want an isError result", out, err)
			}
			if _, err := callTool(c, "demo__nosuch", nil); err == nil || !strings.Contains(err.Error(), "unknown tool") {
				t.Fatalf("unknown tool: err %v", err)
			}
			_, err = callTool(c, "demo__add", map[string]any{"a": "two", "b": 3})
			if err == nil || !strings.Contains(err.Error(), "invalid arguments") {
				t.Fatalf("bad arguments: err %v", err)
			}
		})
	}
}

// A call that runs past the front door's deadline is an isError result
// saying it timed out.
func TestTimeoutIsAnErrorResult(t *testing.T) {
	b := startBus(t)
	_, url := b.gateway(t, frontdoor.Config{CallTimeout: time.Second})
	c := connect(t, url, mcp.ProtocolVersion20251125, "")
	out, err := callTool(c, "demo__sleep", map[string]any{"ms": 30000})
	if err != nil {
		t.Fatal(err)
	}
	if !out.IsError || !strings.Contains(text(out), "timed out") {
		t.Fatalf("got %q (isError %v); want a timeout result", text(out), out.IsError)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
