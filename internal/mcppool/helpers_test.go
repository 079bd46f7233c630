package mcppool

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"
	"github.com/rs/zerolog"

	"github.com/toolbus-dev/toolbus/internal/registry"
	"github.com/toolbus-dev/toolbus/subjects"
)

// progressKeys holds, per key, a signal for each progress notification a
// test's client has seen (see the progress tool).
var progressKeys sync.Map // string → chan struct{}

func progressSeen(key string) chan struct{} {
	ch, _ := progressKeys.LoadOrStore(key, make(chan struct{}, 64))
	return ch.(chan struct{})
}

// stdioBin is the test MCP server built from testdata/stdiosrv.
var stdioBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mcppool-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	stdioBin = filepath.Join(dir, "stdiosrv")
	cmd := exec.Command("go", "build", "-o", stdioBin, "./testdata/stdiosrv")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building testdata/stdiosrv:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// checkFor polls cond until it holds or d passes.
func checkFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testLog(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
}

// newMCPServer is the in-process MCP server behind the HTTP and SSE tests.
func newMCPServer() *mcpserver.MCPServer {
	s := mcpserver.NewMCPServer("testsrv", "1", mcpserver.WithToolCapabilities(false))
	s.AddTool(mcp.NewTool("echo"), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		raw, _ := json.Marshal(req.GetArguments())
		return mcp.NewToolResultText(string(raw)), nil
	})
	s.AddTool(mcp.NewTool("fail"), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultError("the tool said no"), nil
	})
	s.AddTool(mcp.NewTool("rich"), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		r := mcp.NewToolResultStructured(map[string]any{"n": 42, "list": []any{"a", "b"}}, `{"n":42}`)
		r.IsError = true
		r.Meta = mcp.NewMetaFromMap(map[string]any{"trace": "t-1"})
		return r, nil
	})
	s.AddTool(mcp.NewTool("progress", mcp.WithNumber("steps")), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		steps := req.GetInt("steps", 3)
		var token any
		if req.Params.Meta != nil {
			token = req.Params.Meta.ProgressToken
		}
		if token == nil {
			return mcp.NewToolResultError("no progress token"), nil
		}
		for i := 1; i <= steps; i++ {
			err := mcpserver.ServerFromContext(ctx).SendNotificationToClient(ctx, "notifications/progress", map[string]any{
				"progressToken": token, "progress": i, "total": steps, "message": fmt.Sprintf("step %d", i),
			})
			if err != nil {
				return mcp.NewToolResultError("progress: " + err.Error()), nil
			}
		}
		// mcp-go's servers queue notifications apart from responses, so the
		// last one could trail the result, and the pool drops it: its call is
		// over. With a key, wait until the test's client has seen them all.
		if key := req.GetString("key", ""); key != "" {
			for i := 1; i <= steps; i++ {
				select {
				case <-progressSeen(key):
				case <-ctx.Done():
					return nil, ctx.Err()
				case <-time.After(10 * time.Second):
					return mcp.NewToolResultError(fmt.Sprintf("the client saw %d of %d notifications", i-1, steps)), nil
				}
			}
		}
		return mcp.NewToolResultText("done"), nil
	})
	s.AddTool(mcp.NewTool("sleep", mcp.WithNumber("ms")), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		select {
		case <-time.After(time.Duration(req.GetInt("ms", 1000)) * time.Millisecond):
			return mcp.NewToolResultText("slept"), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	for i := range 3 { // for pagination
		s.AddTool(mcp.NewTool(fmt.Sprintf("extra_%d", i)), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultText("x"), nil
		})
	}
	return s
}

// httpServer is a real MCP server on a loopback port that counts the
// JSON-RPC methods it receives and the x-agent-id headers of tool calls.
type httpServer struct {
	t              *testing.T
	kind           registry.Transport
	addr           string
	ignoreDiscover bool

	mu      sync.Mutex
	methods map[string]int
	agents  map[string]bool
	srv     *http.Server
	sse     *mcpserver.SSEServer
}

func startHTTP(t *testing.T, kind registry.Transport, ignoreDiscover bool) *httpServer {
	t.Helper()
	h := &httpServer{t: t, kind: kind, ignoreDiscover: ignoreDiscover, methods: map[string]int{}, agents: map[string]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	h.serve(ln)
	t.Cleanup(h.stop)
	return h
}

func (h *httpServer) url() string {
	if h.kind == registry.TransportSSE {
		return "http://" + h.addr + "/sse"
	}
	return "http://" + h.addr + "/mcp"
}

func (h *httpServer) serve(ln net.Listener) {
	mcpSrv := newMCPServer()
	var inner http.Handler
	if h.kind == registry.TransportSSE {
		h.sse = mcpserver.NewSSEServer(mcpSrv, mcpserver.WithBaseURL("http://"+h.addr))
		inner = h.sse
	} else {
		inner = mcpserver.NewStreamableHTTPServer(mcpSrv)
	}
	h.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			var msg struct {
				Method string `json:"method"`
			}
			_ = json.Unmarshal(body, &msg)
			h.mu.Lock()
			h.methods[msg.Method]++
			if msg.Method == "tools/call" {
				if a := r.Header.Get(subjects.AgentHTTPHeader); a != "" {
					h.agents[a] = true
				}
			}
			h.mu.Unlock()
			if msg.Method == "server/discover" && h.ignoreDiscover {
				<-r.Context().Done()
				return
			}
		}
		inner.ServeHTTP(w, r)
	})}
	go h.srv.Serve(ln)
}

func (h *httpServer) stop() {
	if h.srv != nil {
		if h.sse != nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = h.sse.Shutdown(ctx)
			cancel()
		}
		_ = h.srv.Close()
		h.srv, h.sse = nil, nil
	}
}

// restart serves again on the same port.
func (h *httpServer) restart() {
	h.t.Helper()
	var ln net.Listener
	var err error
	checkFor(h.t, 5*time.Second, "the port to be free again", func() bool {
		ln, err = net.Listen("tcp", h.addr)
		return err == nil
	})
	h.serve(ln)
}

func (h *httpServer) count(method string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.methods[method]
}

// sessions is how many handshakes the server saw: initialize (legacy) or
// server/discover (2026-07-28).
func (h *httpServer) sessions() int { return h.count("initialize") + h.count("server/discover") }

func (h *httpServer) sawAgent(a string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.agents[a]
}

func httpDef(name string, h *httpServer) registry.Server {
	return registry.Server{Name: name, Transport: h.kind, URL: h.url()}
}

func stdioDef(name string) registry.Server {
	return registry.Server{Name: name, Transport: registry.TransportStdio, Command: stdioBin}
}

// text returns the first text content of a CallToolResult JSON.
func text(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	s, err := textOf(raw)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// textOf is text for goroutines other than the test's: it returns the error.
func textOf(raw json.RawMessage) (string, error) {
	var r struct {
		Content []struct {
			Text string `json:"text"`
		} `json:"content"`
	}
	if err := json.Unmarshal(raw, &r); err != nil || len(r.Content) == 0 {
		return "", fmt.Errorf("bad result %s: %v", raw, err)
	}
	return r.Content[0].Text, nil
}
