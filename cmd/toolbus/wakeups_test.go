package main_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/toolbus-dev/toolbus/internal/testbin"
	"github.com/toolbus-dev/toolbus/internal/testutil"
)

// A webhook routed to an agent's wake-ups reaches the agent even though it
// was offline when the webhook arrived, once (a sender's retry with the same
// Idempotency-Key is one event), in order; the README's example agent calls
// a tool on each and acknowledges it, so a second run gets only what came
// after.
func TestWakeupsReachAnOfflineAgent(t *testing.T) {
	bin := testbin.Build(t, "github.com/toolbus-dev/toolbus/cmd/toolbus")
	agentBin := testbin.Build(t, "github.com/toolbus-dev/toolbus/examples/agent")
	dir := t.TempDir()
	bridgePort := testutil.FreePort(t)
	cfg := fmt.Sprintf(`
bridge:
  addr: 127.0.0.1:%d
servers:
  demo:
    command: %s
    args: [demo]
    protocol_version: "2025-11-25"
hooks:
  - name: wake-a1
    auth: bearer
    token: s3cret
    route: wake
    agent: a1
`, bridgePort, bin)
	if err := os.WriteFile(filepath.Join(dir, "toolbus.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	url := serve(t, bin, dir)
	post := func(body, key string) {
		t.Helper()
		req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/hooks/wake-a1", bridgePort), strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer s3cret")
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("webhook answered %d", resp.StatusCode)
		}
	}
	// The agent is offline: two events, one retried by its sender.
	post(`{"n":"first"}`, "k1")
	post(`{"n":"second"}`, "k2")
	post(`{"n":"first"}`, "k1")
	env := []string{"NATS_URL=" + url}
	testutil.CheckFor(t, 30*time.Second, func() error {
		out, _, _ := tb(t, env, "agents", "list", "--json")
		if !strings.Contains(out, `"agent": "a1"`) || !strings.Contains(out, `"pending": 2`) {
			return fmt.Errorf("agents list: %s", out)
		}
		return nil
	})

	out, errOut, code := run(t, env, agentBin, "--agent", "a1", "--count", "2")
	if code != 0 {
		t.Fatalf("agent: exit %d\n%s%s", code, out, errOut)
	}
	first, second := strings.Index(out, "first"), strings.Index(out, "second")
	if strings.Count(out, "woke (agent.wake.a1") != 2 || first < 0 || second < first {
		t.Fatalf("agent output, want first then second, each once:\n%s", out)
	}
	// Acknowledged: the next run sees only what arrives after.
	post(`{"n":"third"}`, "k3")
	out, errOut, code = run(t, env, agentBin, "--agent", "a1", "--count", "1")
	if code != 0 || strings.Contains(out, "first") || strings.Contains(out, "second") || !strings.Contains(out, "third") {
		t.Fatalf("second run: exit %d\n%s%s", code, out, errOut)
	}
	out, _, _ = tb(t, env, "agents", "list", "--json")
	if !strings.Contains(out, `"agent": "a1"`) || !strings.Contains(out, `"pending": 0`) {
		t.Fatalf("agents list after: %s", out)
	}
}
