package main_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	gosync "sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"toolbus/internal/natstest"
	"toolbus/internal/testbin"
)

// background runs a process until stop or the end of the test (SIGTERM,
// then kill), logging to dir/<name>.log, whose path it returns. stop
// returns how the process ended.
func background(t *testing.T, dir, name string, cmdline ...string) (logPath string, stop func() error) {
	t.Helper()
	logPath = filepath.Join(dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(cmdline[0], cmdline[1:]...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	var once gosync.Once
	var stopErr error
	stop = func() error {
		once.Do(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
				stopErr = waitErr
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				stopErr = fmt.Errorf("%s did not stop on SIGTERM", name)
			}
		})
		return stopErr
	}
	t.Cleanup(func() {
		_ = stop()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s.log:\n%s", name, b)
		}
	})
	return logPath, stop
}

func waitLog(t *testing.T, path, want string) {
	t.Helper()
	natstest.CheckFor(t, 30*time.Second, func() error {
		b, _ := os.ReadFile(path)
		if !bytes.Contains(b, []byte(want)) {
			return fmt.Errorf("%s: no %q yet", filepath.Base(path), want)
		}
		return nil
	})
}

// nats.conf's roles are enough for what each part does: the admin
// provisions, a worker with the WORKER permissions runs calls (catalog sync,
// ledger, results), and an agent with the AGENT permissions calls tools —
// against a standalone nats-server running the repository's nats.conf.
func TestNatsConfPermissions(t *testing.T) {
	ns := os.Getenv("TOOLBUS_NATS_SERVER")
	if ns == "" {
		t.Skip("TOOLBUS_NATS_SERVER not set: run via `make test` (it installs bin/nats-server)")
	}
	bin := testbin.Build(t, "toolbus/cmd/toolbus")
	dir := t.TempDir()
	port := freePort(t)
	conf, err := os.ReadFile("../../nats.conf")
	if err != nil {
		t.Fatal(err)
	}
	conf = regexp.MustCompile(`(?m)^listen: .*$`).ReplaceAll(conf, fmt.Appendf(nil, "listen: 127.0.0.1:%d", port))
	conf = regexp.MustCompile(`(?m)^http: .*$`).ReplaceAll(conf, nil)
	conf = regexp.MustCompile(`store_dir: ".*"`).ReplaceAll(conf, fmt.Appendf(nil, "store_dir: %q", filepath.Join(dir, "js")))
	if err := os.WriteFile(filepath.Join(dir, "nats.conf"), conf, 0o644); err != nil {
		t.Fatal(err)
	}
	serverLog, _ := background(t, dir, "nats-server", ns, "-c", filepath.Join(dir, "nats.conf"))
	url := func(user, pass string) string { return fmt.Sprintf("nats://%s:%s@127.0.0.1:%d", user, pass, port) }
	natstest.CheckFor(t, 20*time.Second, func() error {
		nc, err := nats.Connect(url("admin", "change-me-admin"))
		if err == nil {
			nc.Close()
		}
		return err
	})
	cfg := fmt.Sprintf("servers:\n  demo:\n    command: %s\n    args: [demo]\n    protocol_version: \"2025-11-25\"\n", bin)
	if err := os.WriteFile(filepath.Join(dir, "toolbus.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}

	// The admin provisions streams and buckets once, then steps aside.
	admin, stopAdmin := background(t, dir, "admin-worker", bin, "worker", "--config", "toolbus.yaml", "--name", "admin", "--nats-url", url("admin", "change-me-admin"))
	waitLog(t, admin, "worker consuming tool calls")
	if err := stopAdmin(); err != nil {
		t.Fatalf("admin worker: %v", err)
	}

	// A worker with the WORKER role only runs every call from here on.
	wlog, _ := background(t, dir, "worker", bin, "worker", "--config", "toolbus.yaml", "--name", "w-role", "--nats-url", url("worker", "change-me-worker"))
	waitLog(t, wlog, "worker consuming tool calls")
	asAdmin := []string{"NATS_URL=" + url("admin", "change-me-admin")}
	natstest.CheckFor(t, 30*time.Second, func() error {
		out, _, _ := run(t, asAdmin, bin, "tools", "demo")
		if !strings.Contains(out, "destroy") {
			return fmt.Errorf("catalog not synced yet: %s", out)
		}
		return nil
	})

	// An agent with the AGENT role calls tools.
	asAgent := []string{"NATS_URL=" + url("agent1", "change-me-agent1"), "NATS_INBOX_PREFIX=_INBOX.agent1"}
	out, errOut, code := run(t, asAgent, bin, "call", "demo", "add", `{"a":2,"b":3}`, "--json")
	if code != 0 || !strings.Contains(out, `"text": "5"`) || !strings.Contains(out, `"worker": "w-role"`) {
		t.Fatalf("agent call: exit %d\n%s%s", code, out, errOut)
	}
	// A destructive tool writes the call ledger.
	out, errOut, code = run(t, asAgent, bin, "call", "demo", "destroy", `{"key":"k1"}`)
	if code != 0 || !strings.Contains(out, "destroyed k1") {
		t.Fatalf("destroy: exit %d\n%s%s", code, out, errOut)
	}
	_, errOut, code = run(t, asAgent, bin, "call", "demo", "add", `{"a":"two"}`)
	if code != 1 || !strings.Contains(errOut, `argument "a": got string, want number`) {
		t.Fatalf("bad arguments: exit %d %s", code, errOut)
	}
	for _, p := range []string{serverLog, wlog} {
		b, _ := os.ReadFile(p)
		if bytes.Contains(b, []byte("Violation")) || bytes.Contains(b, []byte("permissions violation")) {
			t.Fatalf("%s reports a permissions violation:\n%s", filepath.Base(p), b)
		}
	}
}

// SIGTERM drains (in-flight calls may finish); a second SIGTERM exits at
// once, with status 130.
func TestSecondSigtermExitsNow(t *testing.T) {
	bin := testbin.Build(t, "toolbus/cmd/toolbus")
	dir := t.TempDir()
	port := freePort(t)
	logPath := filepath.Join(dir, "serve.log")
	logf, _ := os.Create(logPath)
	serveCmd := exec.Command(bin, "serve", "--port", fmt.Sprint(port), "--bridge", "off")
	serveCmd.Dir = dir
	serveCmd.Stdout, serveCmd.Stderr = logf, logf
	if err := serveCmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- serveCmd.Wait() }()
	defer func() { _ = serveCmd.Process.Kill() }()
	waitLog(t, logPath, "worker consuming tool calls")

	// A long call in flight, so the first SIGTERM has something to wait for.
	var callErr syncBuffer
	call := exec.Command(bin, "call", "demo", "sleep", `{"ms":60000,"steps":60}`, "--progress", "--timeout", "90s")
	call.Env = append(os.Environ(), fmt.Sprintf("NATS_URL=nats://127.0.0.1:%d", port))
	call.Stderr = &callErr
	if err := call.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = call.Process.Kill(); _ = call.Wait() }()
	natstest.CheckFor(t, 30*time.Second, func() error {
		if !strings.Contains(callErr.String(), "progress") {
			return fmt.Errorf("call not running yet")
		}
		return nil
	})

	_ = serveCmd.Process.Signal(syscall.SIGTERM)
	waitLog(t, logPath, "draining")
	select {
	case err := <-exited:
		t.Fatalf("serve exited on the first SIGTERM with a call in flight: %v", err)
	default:
	}
	_ = serveCmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 130 {
			t.Fatalf("second SIGTERM: %v, want exit status 130", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not exit on the second SIGTERM")
	}
}
