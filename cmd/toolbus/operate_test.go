package main_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/toolbus-dev/toolbus/internal/demo"
	"github.com/toolbus-dev/toolbus/internal/status"
	"github.com/toolbus-dev/toolbus/internal/testbin"
	"github.com/toolbus-dev/toolbus/internal/testutil"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// `toolbus serve` as an operator runs it: metrics and health on the
// bridge's listener and on --metrics, the embedded NATS's monitoring port,
// the worker in the control service, and `toolbus status` reading it all.
func TestServeOperatorSurface(t *testing.T) {
	bin := testbin.Build(t, "github.com/toolbus-dev/toolbus/cmd/toolbus")
	bridge := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	metrics := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	monitor := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	url := serve(t, bin, t.TempDir(), "--bridge", bridge, "--metrics", metrics, "--nats-monitor", monitor, "--name", "op-worker")
	env := []string{"NATS_URL=" + url}

	if out, errOut, code := run(t, env, bin, "call", "demo", "add", `{"a":2,"b":3}`); code != 0 || out != "5\n" {
		t.Fatalf("call: exit %d %q %q", code, out, errOut)
	}
	// With --metrics they are served there only, never on the bridge's
	// listener, which may face the internet.
	if code, _ := get(t, "http://"+bridge+"/metrics"); code != http.StatusNotFound {
		t.Errorf("/metrics on the bridge with --metrics set: %d", code)
	}
	for _, base := range []string{"http://" + metrics} {
		if code, body := get(t, base+"/healthz"); code != http.StatusOK {
			t.Errorf("%s/healthz: %d %q", base, code, body)
		}
		if code, body := get(t, base+"/readyz"); code != http.StatusOK || body != "ready\n" {
			t.Errorf("%s/readyz: %d %q", base, code, body)
		}
		code, body := get(t, base+"/metrics")
		for _, want := range []string{"toolbus_calls_in_flight", fmt.Sprintf(`toolbus_catalog_tools{server="demo"} %d`, len(demo.SafeTools)), "toolbus_queue_pending 0", "go_goroutines"} {
			if code != http.StatusOK || !strings.Contains(body, want) {
				t.Errorf("%s/metrics lacks %q (status %d)", base, want, code)
			}
		}
	}
	if code, body := get(t, "http://"+monitor+"/jsz"); code != http.StatusOK || !strings.Contains(body, "store_dir") {
		t.Errorf("--nats-monitor /jsz: %d %q", code, body)
	}

	// The worker has a second by default to answer discovery; a loaded
	// machine may need more, and discovery ends soon after it answers.
	out, errOut, code := tb(t, env, "status", "--json", "--discover-wait", "30s")
	var r status.Report
	if code != 0 || json.Unmarshal([]byte(out), &r) != nil {
		t.Fatalf("status --json: exit %d %q %q", code, out, errOut)
	}
	if len(r.Workers) != 1 || r.Workers[0].Name != "op-worker" || r.Workers[0].Status == nil || len(r.Servers) != 1 ||
		r.Servers[0].Name != "demo" || r.Servers[0].Health != "ok" || len(r.Errors) != 0 {
		t.Fatalf("status: %s", out)
	}
	out, _, code = tb(t, env, "status", "--discover-wait", "30s")
	if code != 0 || !strings.Contains(out, "op-worker") || !strings.Contains(out, "queued 0") {
		t.Fatalf("status text: exit %d\n%s", code, out)
	}

	if cli := os.Getenv("TOOLBUS_NATS_CLI"); cli != "" {
		out, errOut, code = run(t, []string{"NATS_CONTEXT=", "HOME=" + t.TempDir()}, cli, "--server", url, "micro", "ls", "toolbus")
		if code != 0 || !strings.Contains(out, r.Workers[0].ID) {
			t.Fatalf("nats micro ls toolbus: exit %d\n%s%s", code, out, errOut)
		}
	}
}
