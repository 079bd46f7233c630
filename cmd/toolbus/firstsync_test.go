package main_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/toolbus-dev/toolbus/internal/testbin"
	"github.com/toolbus-dev/toolbus/internal/testutil"
)

// Under `toolbus serve` a stdio server runs once: the catalog sync lists
// its tools over the worker's session, and the call runs in that same
// process. A server whose first sync failed is refused with
// catalog_unavailable and the reason, never called unchecked.
func TestServeOneProcessPerStdioServer(t *testing.T) {
	bin := testbin.Build(t, "github.com/toolbus-dev/toolbus/cmd/toolbus")
	srv := testbin.Build(t, "github.com/toolbus-dev/toolbus/internal/mcppool/testdata/stdiosrv")
	dir := t.TempDir()
	spawnLog := filepath.Join(dir, "spawns")
	cfg := fmt.Sprintf(`
servers:
  mem:
    command: %s
    env: {STDIOSRV_SPAWN_LOG: %s}
  broken:
    command: sh
    args: ["-c", "echo cannot start >&2; exit 3"]
`, srv, spawnLog)
	if err := os.WriteFile(filepath.Join(dir, "toolbus.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"NATS_URL=" + serve(t, bin, dir, "--bridge", "off")}

	testutil.CheckFor(t, 30*time.Second, func() error {
		if out, _, _ := tb(t, env, "tools", "mem"); !strings.Contains(out, "pid") {
			return fmt.Errorf("tools mem: %s", out)
		}
		return nil
	})
	out, errOut, code := tb(t, env, "call", "mem", "pid", `{}`)
	if code != 0 {
		t.Fatalf("call mem pid: exit %d, %s", code, errOut)
	}
	b, err := os.ReadFile(spawnLog)
	if err != nil {
		t.Fatal(err)
	}
	if pids := strings.Fields(string(b)); len(pids) != 1 || pids[0] != strings.TrimSpace(out) {
		t.Fatalf("processes started %v, the call ran in %s: want one, the same", pids, strings.TrimSpace(out))
	}

	// broken's first sync failed: its calls are refused, retryably, with why.
	testutil.CheckFor(t, 30*time.Second, func() error {
		_, errOut, code := tb(t, env, "call", "broken", "anything", `{}`)
		if code != 1 || !strings.Contains(errOut, "catalog_unavailable") || !strings.Contains(errOut, "process_exited") {
			return fmt.Errorf("call broken: exit %d, %q", code, errOut)
		}
		if !strings.Contains(errOut, "toolbus sync broken") {
			return fmt.Errorf("no hint in %q", errOut)
		}
		return nil
	})
}
