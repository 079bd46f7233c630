package main_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	mcpclient "github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/toolbus-dev/toolbus/internal/demo"
	"github.com/toolbus-dev/toolbus/internal/natstest"
	"github.com/toolbus-dev/toolbus/internal/testbin"
	"github.com/toolbus-dev/toolbus/internal/testutil"
)

// The binary's exit statuses, through main: bare `toolbus` is a usage error
// (help on stderr, exit 2), --help is not, a failure exits 1. The in-process
// TestExitCodesInProcess covers each kind of error.
func TestBareCommandExits2(t *testing.T) {
	t.Parallel()
	bin := testbin.Build(t, "github.com/toolbus-dev/toolbus/cmd/toolbus")
	out, errOut, code := run(t, nil, bin)
	if code != 2 || out != "" || !strings.Contains(errOut, "Commands:") {
		t.Fatalf("toolbus: exit %d, stdout %q, stderr %q; want help on stderr, exit 2", code, out, errOut)
	}
	out, _, code = run(t, nil, bin, "--help")
	if code != 0 || !strings.Contains(out, "Commands:") {
		t.Fatalf("toolbus --help: exit %d, stdout %q", code, out)
	}
	_, errOut, code = run(t, []string{"NATS_URL=nats://127.0.0.1:1", "NATS_CONTEXT="}, bin, "tools")
	if code != 1 || !strings.Contains(errOut, "toolbus tools: connect to NATS") {
		t.Fatalf("toolbus tools with NATS down: exit %d, stderr %q; want 1", code, errOut)
	}
}

// demoTools lists the tools of `toolbus demo args...` over stdio.
func demoTools(t *testing.T, bin string, args ...string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	c := mcpclient.NewClient(transport.NewStdio(bin, nil, append([]string{"demo"}, args...)...))
	if err := c.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Initialize(ctx, mcp.InitializeRequest{}); err != nil {
		t.Fatal(err)
	}
	list, err := c.ListTools(ctx, mcp.ListToolsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range list.Tools {
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	return names
}

// `toolbus demo` offers the fault-injection tools only with --faults, and
// its help says so.
func TestDemoFaultsFlag(t *testing.T) {
	t.Parallel()
	bin := testbin.Build(t, "github.com/toolbus-dev/toolbus/cmd/toolbus")
	if got, want := demoTools(t, bin), slices.Sorted(slices.Values(demo.SafeTools)); !slices.Equal(got, want) {
		t.Errorf("toolbus demo lists %v, want %v", got, want)
	}
	got := demoTools(t, bin, "--faults")
	for _, name := range append(slices.Clone(demo.SafeTools), demo.FaultTools...) {
		if !slices.Contains(got, name) {
			t.Errorf("toolbus demo --faults: %s not listed in %v", name, got)
		}
	}
	out, errOut, code := tb(t, nil, "demo", "--help")
	if code != 0 || !strings.Contains(out+errOut, "--faults") || !strings.Contains(out+errOut, "for tests only") {
		t.Errorf("demo --help: exit %d, want --faults documented as for tests only:\n%s%s", code, out, errOut)
	}
	_, errOut, code = tb(t, nil, "demo", "--exec-log", t.TempDir()+"/x.log")
	if code != 2 || !strings.Contains(errOut, "--faults") {
		t.Errorf("demo --exec-log without --faults: exit %d %q, want 2", code, errOut)
	}
}

// The default `toolbus serve` (no config) registers the demo without its
// fault tools: kill_parent is an unknown tool and serve lives on. Commands
// that could not do what was asked exit non-zero: `servers add` whose first
// sync fails (the server stays registered), `tools` and `sync --queue` of an
// unregistered server.
func TestDefaultServeRefusesFaultsAndServersAddExitCodes(t *testing.T) {
	bin := testbin.Build(t, "github.com/toolbus-dev/toolbus/cmd/toolbus")
	url := serve(t, bin, t.TempDir(), "--bridge", "off")
	env := []string{"NATS_URL=" + url}
	testutil.CheckFor(t, 30*time.Second, func() error {
		out, _, _ := tb(t, env, "tools", "demo")
		if !strings.Contains(out, "add") {
			return fmt.Errorf("demo not synced yet: %s", out)
		}
		return nil
	})
	out, _, _ := tb(t, env, "tools", "demo")
	for _, name := range demo.FaultTools {
		if strings.Contains(out, name) {
			t.Errorf("default demo lists fault tool %s:\n%s", name, out)
		}
	}
	_, errOut, code := tb(t, env, "call", "demo", "kill_parent")
	if code != 1 || !strings.Contains(errOut, "unknown_tool") {
		t.Fatalf("call demo kill_parent: exit %d, stderr %q; want unknown_tool, exit 1", code, errOut)
	}
	out, errOut, code = tb(t, env, "call", "demo", "add", `{"a":2,"b":3}`)
	if code != 0 || out != "5\n" {
		t.Fatalf("serve did not survive kill_parent: exit %d %q %q", code, out, errOut)
	}

	t.Run("servers add", func(t *testing.T) {
		out, errOut, code := tb(t, env, "servers", "add", "broken", "--command", "/nonexistent/mcp-server")
		if code != 1 || !strings.Contains(out, "registered broken") || !strings.Contains(errOut, "first sync failed") || !strings.Contains(errOut, "stays registered and will be retried") {
			t.Fatalf("servers add with a failing first sync: exit %d\n%s%s", code, out, errOut)
		}
		if out, _, _ := tb(t, env, "servers", "list"); !strings.Contains(out, "broken") {
			t.Fatalf("broken not registered after its failed sync:\n%s", out)
		}
		_, errOut, code = tb(t, env, "tools", "broken")
		if code != 1 || !strings.Contains(errOut, "last sync failed") {
			t.Fatalf("tools broken: exit %d %q", code, errOut)
		}
		out, errOut, code = tb(t, env, "servers", "add", "broken2", "--command", "/nonexistent/mcp-server", "--no-wait")
		if code != 0 || !strings.Contains(out, "sync queued") {
			t.Fatalf("servers add --no-wait: exit %d\n%s%s", code, out, errOut)
		}
		_, errOut, code = tb(t, env, "servers", "add", "broken3", "--command", "/nonexistent/mcp-server", "--local")
		if code != 1 || !strings.Contains(errOut, "first sync failed") {
			t.Fatalf("servers add --local: exit %d %q", code, errOut)
		}
		_, _, code = tb(t, env, "servers", "add", "broken4", "--command", "/nonexistent/mcp-server", "--local", "--no-wait")
		if code != 2 {
			t.Fatalf("servers add --local --no-wait: exit %d, want 2", code)
		}
		out, errOut, code = tb(t, env, "servers", "add", "echo2", "--command", bin, "--arg", "demo")
		if code != 0 || !strings.Contains(out, fmt.Sprintf("synced echo2: %d tools", len(demo.SafeTools))) {
			t.Fatalf("servers add of a working server: exit %d\n%s%s", code, out, errOut)
		}
	})
	t.Run("unregistered server", func(t *testing.T) {
		if _, errOut, code := tb(t, env, "tools", "nope"); code != 1 || !strings.Contains(errOut, `no server "nope" is registered`) {
			t.Errorf("tools nope: exit %d %q", code, errOut)
		}
		if _, errOut, code := tb(t, env, "sync", "--queue", "nope"); code != 1 || !strings.Contains(errOut, `no server "nope" is registered`) {
			t.Errorf("sync --queue nope: exit %d %q", code, errOut)
		}
	})
}

// `servers add` exits 1 when no sync replica answers within --wait.
func TestServersAddWithoutReplicaExits1(t *testing.T) {
	t.Parallel()
	bin := testbin.Build(t, "github.com/toolbus-dev/toolbus/cmd/toolbus")
	ns := natstest.Start(t)
	env := []string{"NATS_URL=" + ns.URL}
	out, errOut, code := tb(t, env, "servers", "add", "lonely", "--command", bin, "--arg", "demo", "--wait", "1s")
	if code != 1 || !strings.Contains(out, "registered lonely") || !strings.Contains(errOut, "no sync replica answered") {
		t.Fatalf("servers add with no replica: exit %d\n%s%s", code, out, errOut)
	}
}
