package catalogsync

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"github.com/nats-io/nats.go"

	"github.com/toolbus-dev/toolbus/internal/catalog"
	"github.com/toolbus-dev/toolbus/internal/natstest"
	"github.com/toolbus-dev/toolbus/internal/registry"
	"github.com/toolbus-dev/toolbus/internal/testutil"
	"github.com/toolbus-dev/toolbus/subjects"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if stdiosrv.dir != "" {
		os.RemoveAll(stdiosrv.dir)
	}
	os.Exit(code)
}

// stdiosrv is mcppool's test MCP server (../mcppool/testdata/stdiosrv),
// built once by the first test that needs it.
var stdiosrv struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// stdioServer returns the path of the built stdiosrv.
func stdioServer(t testing.TB) string {
	t.Helper()
	stdiosrv.once.Do(func() {
		if stdiosrv.dir, stdiosrv.err = os.MkdirTemp("", "sync-test"); stdiosrv.err != nil {
			return
		}
		stdiosrv.bin = filepath.Join(stdiosrv.dir, "stdiosrv")
		out, err := exec.Command("go", "build", "-o", stdiosrv.bin, "../mcppool/testdata/stdiosrv").CombinedOutput()
		if err != nil {
			stdiosrv.err = fmt.Errorf("building stdiosrv: %v\n%s", err, out)
		}
	})
	if stdiosrv.err != nil {
		t.Fatal(stdiosrv.err)
	}
	return stdiosrv.bin
}

type harness struct {
	t   *testing.T
	ns  *natstest.Server
	reg *registry.Registry
	env *testutil.Env
}

func newHarness(t *testing.T, opts ...registry.Option) *harness {
	t.Helper()
	ns := natstest.Start(t)
	e := &testutil.Env{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reg, err := registry.New(ctx, ns.JS, append([]registry.Option{registry.WithGetenv(e.Getenv), registry.WithSecretKey(testutil.SecretKey)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, ns: ns, reg: reg, env: e}
}

func (h *harness) syncer(cfg Config, opts ...Option) *Syncer {
	return New(h.ns.JS, h.reg, cfg, opts...)
}

func (h *harness) put(srv registry.Server) {
	h.t.Helper()
	if err := h.reg.Put(ctx(h.t), srv); err != nil {
		h.t.Fatalf("put %s: %v", srv.Name, err)
	}
}

// waitTools waits up to d until the registry holds n tools of server.
func (h *harness) waitTools(server string, n int, d time.Duration) {
	h.t.Helper()
	testutil.CheckFor(h.t, d, func() error {
		es, err := h.reg.Tools(ctx(h.t), server)
		if err != nil || len(es) != n {
			return fmt.Errorf("%d tools of %s in the catalog, want %d (%v)", len(es), server, n, err)
		}
		return nil
	})
}

// waitResyncsDone waits up to d until no resync request is queued or
// being worked on.
func (h *harness) waitResyncsDone(d time.Duration) {
	h.t.Helper()
	cons, err := h.ns.JS.Consumer(ctx(h.t), subjects.StreamResync, subjects.ConsumerSync)
	if err != nil {
		h.t.Fatal(err)
	}
	testutil.CheckFor(h.t, d, func() error {
		ci, err := cons.Info(ctx(h.t))
		if err != nil {
			return err
		}
		if ci.NumPending+uint64(ci.NumAckPending) != 0 {
			return fmt.Errorf("resyncs pending %d, ack pending %d", ci.NumPending, ci.NumAckPending)
		}
		return nil
	})
}

// catalog starts a worker-side Catalog, stopped at cleanup.
func (h *harness) catalog() *catalog.Catalog {
	h.t.Helper()
	c, err := catalog.New(ctx(h.t), h.ns.JS)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(c.Stop)
	return c
}

// events subscribes to catalog.changed.> and returns a function that waits
// for the next event.
func (h *harness) events() func() subjects.CatalogChange {
	h.t.Helper()
	ch := make(chan *nats.Msg, 64)
	sub, err := h.ns.NC.ChanSubscribe(subjects.CatalogChangedPrefix+">", ch)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { _ = sub.Unsubscribe() })
	return func() subjects.CatalogChange {
		h.t.Helper()
		select {
		case m := <-ch:
			var ev subjects.CatalogChange
			if err := json.Unmarshal(m.Data, &ev); err != nil {
				h.t.Fatal(err)
			}
			return ev
		case <-time.After(20 * time.Second):
			h.t.Fatal("no catalog.changed event within 20s")
		}
		return subjects.CatalogChange{}
	}
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func echo(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	return mcp.NewToolResultText("ok"), nil
}

// mcpServer is an mcp-go server over streamable HTTP on loopback.
type mcpServer struct {
	*server.MCPServer
	URL string
	hs  *httptest.Server
}

// newMCPServer serves an mcp-go server with the given tools at <url>/mcp.
// wrap, when not nil, wraps the handler (auth checks, ...).
func newMCPServer(t testing.TB, wrap func(http.Handler) http.Handler, tools ...mcp.Tool) *mcpServer {
	t.Helper()
	s := server.NewMCPServer("test", "1.0", server.WithToolCapabilities(true), server.WithPaginationLimit(7))
	for _, tl := range tools {
		s.AddTool(tl, echo)
	}
	var h http.Handler = server.NewStreamableHTTPServer(s)
	if wrap != nil {
		h = wrap(h)
	}
	mux := http.NewServeMux()
	mux.Handle("/mcp", h)
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	return &mcpServer{MCPServer: s, URL: hs.URL + "/mcp", hs: hs}
}

// tool builds a simple tool with one required string argument.
func tool(name, desc string) mcp.Tool {
	return mcp.NewTool(name, mcp.WithDescription(desc), mcp.WithString("text", mcp.Required(), mcp.Description("what to echo")))
}

func rawTool(name, schema string) mcp.Tool {
	return mcp.NewToolWithRawSchema(name, "raw "+name, json.RawMessage(schema))
}

func httpServer(name, url string) registry.Server {
	return registry.Server{Name: name, Transport: registry.TransportHTTP, URL: url, ConnectTimeout: subjects.Duration(5 * time.Second)}
}

// closedPort returns a loopback URL nothing listens on.
func closedPort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr + "/mcp"
}

// bearer refuses requests without "Authorization: Bearer <token>".
func bearer(token string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer "+token {
				http.Error(w, "bad token", http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

func names(es []subjects.CatalogEntry) string {
	var out []string
	for _, e := range es {
		out = append(out, e.Tool)
	}
	return strings.Join(out, ",")
}

// runSyncer runs s until the test ends, then checks that Run returns
// promptly and cleanly.
func runSyncer(t *testing.T, s *Syncer) {
	t.Helper()
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(rctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10s of cancel")
		}
	})
}
