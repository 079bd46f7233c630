package catalogsync

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/toolbus-dev/toolbus/internal/catalog"
	"github.com/toolbus-dev/toolbus/internal/registry"
	"github.com/toolbus-dev/toolbus/internal/testutil"
	"github.com/toolbus-dev/toolbus/subjects"
)

// TestServerEverything syncs npm's reference MCP server over stdio.
func TestServerEverything(t *testing.T) {
	t.Parallel()
	npx, err := exec.LookPath("npx")
	if err != nil {
		t.Skip("npx not on PATH; install Node.js to run this test")
	}
	dir, _ := filepath.Abs("../../testdata/node")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@modelcontextprotocol", "server-everything")); err != nil {
		t.Skip("@modelcontextprotocol/server-everything not installed; run `cd testdata/node && npm install` (the Makefile's npm step)")
	}
	h := newHarness(t)
	h.put(registry.Server{
		Name: "everything", Transport: registry.TransportStdio,
		Command: npx, Args: []string{"--no-install", "mcp-server-everything", "stdio"}, Dir: dir,
		ConnectTimeout: subjects.Duration(30 * time.Second),
	})
	d, err := h.syncer(Config{}).SyncServer(ctx(t), "everything")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Added) < 5 {
		t.Fatalf("only %d tools: %v", len(d.Added), d.Added)
	}
	es, _ := h.reg.Tools(ctx(t), "everything")
	health := map[subjects.ToolHealth]int{}
	for _, e := range es {
		health[e.Health]++
	}
	t.Logf("server-everything: %d tools, health %v", len(es), health)

	cat := h.catalog()
	testutil.CheckFor(t, 20*time.Second, func() error {
		if _, ok := cat.Lookup("everything", "echo"); !ok {
			return errors.New("echo not in catalog")
		}
		return nil
	})
	if _, err := cat.Check("everything", "echo", json.RawMessage(`{"message":"hi"}`)); err != nil {
		t.Errorf("echo valid args: %v", err)
	}
	if _, err := cat.Check("everything", "echo", json.RawMessage(`{"message":1}`)); !errors.Is(err, catalog.ErrInvalidArguments) {
		t.Errorf("echo invalid args: %v", err)
	}
}
