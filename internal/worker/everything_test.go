package worker_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/toolbus-dev/toolbus/client"
	"github.com/toolbus-dev/toolbus/internal/mcppool"
	"github.com/toolbus-dev/toolbus/internal/natstest"
	"github.com/toolbus-dev/toolbus/internal/registry"
	"github.com/toolbus-dev/toolbus/internal/worker"
	"github.com/toolbus-dev/toolbus/subjects"
)

// everything returns the path of npm's @modelcontextprotocol/server-everything
// as installed by `make test-deps`, or skips.
func everything(t *testing.T) (node, script string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed: skipping @modelcontextprotocol/server-everything (install Node.js, run make test-deps)")
	}
	script, _ = filepath.Abs("../../testdata/node/node_modules/@modelcontextprotocol/server-everything/dist/index.js")
	if _, err := os.Stat(script); err != nil {
		t.Skip("server-everything not installed: run `make test-deps`")
	}
	return node, script
}

// A real third-party MCP server from npm, over stdio and streamable HTTP,
// through the bus: it answers the 2026-07-28 probe with an error, so this
// also covers the fallback to the 2025-11-25 handshake.
func TestEverythingServerFromNPM(t *testing.T) {
	node, script := everything(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	httpSrv := exec.Command(node, script, "streamableHttp")
	httpSrv.Env = append(os.Environ(), fmt.Sprintf("PORT=%d", port))
	if err := httpSrv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = httpSrv.Process.Kill(); _ = httpSrv.Wait() })
	natstest.CheckFor(t, 20*time.Second, func() error {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
		}
		return err
	})

	ns := natstest.Start(t)
	pool := mcppool.New(testLog(t))
	t.Cleanup(func() { pool.Close() })
	pool.Upsert(registry.Server{Name: "everything", Transport: registry.TransportStdio, Command: node, Args: []string{script, "stdio"}})
	pool.Upsert(registry.Server{Name: "everything-http", Transport: registry.TransportHTTP, URL: fmt.Sprintf("http://127.0.0.1:%d/mcp", port)})
	startWorker(t, ns.Conn(t), pool, worker.Config{}, testLog(t))
	cl, _ := client.New(ns.NC)
	defer cl.Close()

	for _, server := range []string{"everything", "everything-http"} {
		t.Run(server, func(t *testing.T) {
			res := call(t, cl, server, "echo", `{"message":"hi from toolbus"}`, client.WithTimeout(30*time.Second))
			if res.Status != subjects.StatusOK || !strings.Contains(text(t, res), "hi from toolbus") {
				t.Fatalf("echo: %+v %s", res, res.Result)
			}
			res = call(t, cl, server, "get-sum", `{"a":2,"b":3}`)
			if res.Status != subjects.StatusOK || !strings.Contains(text(t, res), "5") {
				t.Fatalf("get-sum: %+v %s", res, res.Result)
			}
			var mu gosync.Mutex
			n := 0
			res = call(t, cl, server, "trigger-long-running-operation", `{"duration":1,"steps":4}`, client.WithProgress(func(subjects.Progress) {
				mu.Lock()
				n++
				mu.Unlock()
			}))
			if res.Status != subjects.StatusOK {
				t.Fatalf("long-running: %+v", res)
			}
			mu.Lock()
			defer mu.Unlock()
			if n == 0 {
				t.Fatalf("no progress notifications")
			}
			// The TypeScript SDK answers an unknown tool with an isError
			// result, not a JSON-RPC error; without a catalog that is what
			// the caller sees (the catalog refuses it before the server).
			res = call(t, cl, server, "no-such-tool", `{}`)
			if res.Status != subjects.StatusToolError || !strings.Contains(text(t, res), "not found") {
				t.Fatalf("unknown tool: %+v %s", res, res.Result)
			}
		})
	}
}
