package mcppool

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/toolbus-dev/toolbus/internal/registry"
	"github.com/toolbus-dev/toolbus/subjects"
)

func TestConnectTimeout(t *testing.T) {
	t.Parallel()
	stdio := func(cmd string) registry.Server {
		return registry.Server{Name: "s", Transport: registry.TransportStdio, Command: cmd}
	}
	explicit := stdio("npx")
	explicit.ConnectTimeout = subjects.Duration(30 * time.Second)
	cases := []struct {
		name  string
		srv   registry.Server
		first bool
		want  time.Duration
	}{
		{"npx first", stdio("npx"), true, DefaultFirstConnectTimeout},
		{"npx later", stdio("npx"), false, DefaultConnectTimeout},
		{"uvx by path", stdio("/home/me/.local/bin/uvx"), true, DefaultFirstConnectTimeout},
		{"bunx", stdio("bunx"), true, DefaultFirstConnectTimeout},
		{"pipx", stdio("pipx"), true, DefaultFirstConnectTimeout},
		{"docker", stdio("/usr/bin/docker"), true, DefaultFirstConnectTimeout},
		{"npx.cmd on Windows", stdio(`C:\Program Files\nodejs\npx.cmd`), true, DefaultFirstConnectTimeout},
		{"node", stdio("node"), true, DefaultConnectTimeout},
		{"npx-like name", stdio("my-npx-wrapper"), true, DefaultConnectTimeout},
		{"explicit wins", explicit, true, 30 * time.Second},
		{"http", registry.Server{Name: "h", Transport: registry.TransportHTTP, URL: "http://127.0.0.1/npx"}, true, DefaultConnectTimeout},
	}
	for _, c := range cases {
		if got := ConnectTimeout(c.srv, c.first); got != c.want {
			t.Errorf("%s: ConnectTimeout = %s, want %s", c.name, got, c.want)
		}
	}
}

// The pool counts a server's dials as first until one succeeds; later ones
// (a respawn, a session closed while idle) get the usual timeout.
func TestPoolFirstConnectUntilConnected(t *testing.T) {
	t.Parallel()
	p := New(testLog(t))
	defer p.Close()
	p.Upsert(stdioDef("s"))
	connected := func() bool {
		p.mu.RLock()
		s := p.servers["s"]
		p.mu.RUnlock()
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.connected
	}
	if connected() {
		t.Fatal("connected before any dial")
	}
	if _, _, err := p.Call(context.Background(), "s", "echo", nil, CallOptions{}); err != nil {
		t.Fatal(err)
	}
	if !connected() {
		t.Fatal("not marked connected after a successful dial")
	}
	// A new definition is a new server: its first dial is first again.
	def := stdioDef("s")
	def.Args = []string{"again"}
	p.Upsert(def)
	if connected() {
		t.Fatal("a redefined server kept the connected mark")
	}
}

// Notifications other than progress reach OnNotification with the server's
// name: a stdio server's tools/list_changed, for one.
func TestOnNotificationListChanged(t *testing.T) {
	t.Parallel()
	p := New(testLog(t))
	defer p.Close()
	got := make(chan string, 16)
	p.OnNotification(func(server string, n mcp.JSONRPCNotification) {
		got <- server + " " + n.Method
	})
	def := stdioDef("lc")
	def.Env = map[string]string{"STDIOSRV_LIST_CHANGED": "1"}
	p.Upsert(def)
	if _, _, err := p.Call(context.Background(), "lc", "addtool", json.RawMessage(`{"name":"fresh"}`), CallOptions{}); err != nil {
		t.Fatal(err)
	}
	want := "lc " + string(mcp.MethodNotificationToolsListChanged)
	for {
		select {
		case g := <-got:
			if g == want {
				tools, err := p.ListTools(context.Background(), "lc")
				if err != nil {
					t.Fatal(err)
				}
				for _, tl := range tools {
					if tl.Name == "fresh" {
						return
					}
				}
				t.Fatalf("list_changed heard, but the new tool is not listed: %v", tools)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no %q within 10s", want)
		}
	}
}
