package main_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/toolbus-dev/toolbus/internal/broker"
	"github.com/toolbus-dev/toolbus/internal/streams"
)

// A context saved by the real natscli (`nats context save`) connects toolbus
// to a NATS server with users, named by --context or NATS_CONTEXT; a flag
// or its environment variable wins over the context's setting.
func TestNATSContextFromNatscli(t *testing.T) {
	natsCLI := os.Getenv("TOOLBUS_NATS_CLI")
	if natsCLI == "" {
		t.Skip("TOOLBUS_NATS_CLI not set: run via `make test` (it builds bin/nats)")
	}
	t.Parallel()
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		Users: []*server.User{{Username: "alice", Password: "s3cret"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	url := srv.ClientURL()
	nc, err := nats.Connect(url, nats.UserInfo("alice", "s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := broker.Provision(ctx, js, streams.Options{}, streams.WorkerConsumer(0, 0, 0)); err != nil {
		t.Fatal(err)
	}

	xdg := t.TempDir()
	save := func(name string, args ...string) {
		t.Helper()
		out, errOut, code := run(t, []string{"XDG_CONFIG_HOME=" + xdg, "NATS_URL=", "NATS_CONTEXT="}, natsCLI, append([]string{"context", "save", name}, args...)...)
		if code != 0 {
			t.Fatalf("nats context save %s: exit %d\n%s%s", name, code, out, errOut)
		}
	}
	save("alice", "--server", url, "--user", "alice", "--password", "s3cret", "--description", "toolbus test")
	save("mallory", "--server", url, "--user", "alice", "--password", "wrong")
	save("tlsfirst", "--server", url, "--tlsfirst")
	env := func(kv ...string) []string {
		return append([]string{"XDG_CONFIG_HOME=" + xdg, "NATS_URL=", "NATS_CONTEXT=", "NATS_USER=", "NATS_PASSWORD="}, kv...)
	}
	ok := func(env []string, args ...string) {
		t.Helper()
		out, errOut, code := tb(t, env, args...)
		if code != 0 || !strings.Contains(out, "no servers registered") {
			t.Errorf("toolbus %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
	}
	refused := func(want string, env []string, args ...string) {
		t.Helper()
		out, errOut, code := tb(t, env, args...)
		if code != 1 || !strings.Contains(errOut, want) {
			t.Errorf("toolbus %s: exit %d, want 1 and %q in\n%s%s", strings.Join(args, " "), code, want, out, errOut)
		}
	}

	ok(env(), "--context", "alice", "servers", "list")
	ok(env("NATS_CONTEXT=alice"), "servers", "list")
	ok(env(), "--context", filepath.Join(xdg, "nats", "context", "alice.json"), "servers", "list")
	// Without the context's credentials the server refuses.
	refused("Authorization Violation", env("NATS_URL="+url), "servers", "list")
	refused("Authorization Violation", env(), "--context", "mallory", "servers", "list")
	// A flag wins over the context, and so does its environment variable.
	ok(env(), "--context", "mallory", "--nats-password", "s3cret", "servers", "list")
	ok(env("NATS_PASSWORD=s3cret"), "--context", "mallory", "servers", "list")
	refused("Authorization Violation", env(), "--context", "alice", "--nats-password", "wrong", "servers", "list")
	refused("127.0.0.1:1", env("NATS_URL=nats://127.0.0.1:1"), "--context", "alice", "servers", "list")
	// What toolbus cannot honour is refused, not half applied.
	refused("sets tls_first, which toolbus does not support", env(), "--context", "tlsfirst", "servers", "list")
	refused(`unknown NATS context "bob"`, env("NATS_CONTEXT=bob"), "servers", "list")
	refused("not a context name", env(), "--context", "../alice", "servers", "list")
	// Contexts live under ~/.config without XDG_CONFIG_HOME.
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, ".config"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(xdg, "nats"), filepath.Join(home, ".config", "nats")); err != nil {
		t.Fatal(err)
	}
	ok([]string{"XDG_CONFIG_HOME=", "HOME=" + home, "NATS_URL=", "NATS_CONTEXT="}, "--context", "alice", "servers", "list")
}
