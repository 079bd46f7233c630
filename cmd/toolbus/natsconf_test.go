package main_test

import (
	"bytes"
	"context"
	"encoding/json"
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
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/toolbus-dev/toolbus/client"
	"github.com/toolbus-dev/toolbus/internal/broker"
	"github.com/toolbus-dev/toolbus/internal/claim"
	"github.com/toolbus-dev/toolbus/internal/demo"
	"github.com/toolbus-dev/toolbus/internal/testbin"
	"github.com/toolbus-dev/toolbus/internal/testutil"
	"github.com/toolbus-dev/toolbus/subjects"
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
	testutil.CheckFor(t, 30*time.Second, func() error {
		b, _ := os.ReadFile(path)
		if !bytes.Contains(b, []byte(want)) {
			return fmt.Errorf("%s: no %q yet", filepath.Base(path), want)
		}
		return nil
	})
}

// natsConf runs a standalone nats-server with the repository's nats.conf
// (listening on a free loopback port, JetStream in a temp dir), an admin
// that provisions once, and a worker with the WORKER role serving the demo
// server over stdio and demo-http over streamable HTTP. It returns the
// toolbus binary, the work dir, a URL builder per user, and the logs.
type natsConfRig struct {
	bin, dir        string
	url             func(user, pass string) string
	plainURL        string // without credentials
	serverLog, wlog string
}

func startNatsConf(t *testing.T) *natsConfRig {
	t.Helper()
	ns := os.Getenv("TOOLBUS_NATS_SERVER")
	if ns == "" {
		t.Skip("TOOLBUS_NATS_SERVER not set: run via `make test` (it installs bin/nats-server)")
	}
	r := &natsConfRig{bin: testbin.Build(t, "github.com/toolbus-dev/toolbus/cmd/toolbus"), dir: t.TempDir()}
	dir := r.dir
	port := testutil.FreePort(t)
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
	r.serverLog, _ = background(t, dir, "nats-server", ns, "-c", filepath.Join(dir, "nats.conf"))
	r.url = func(user, pass string) string { return fmt.Sprintf("nats://%s:%s@127.0.0.1:%d", user, pass, port) }
	r.plainURL = fmt.Sprintf("nats://127.0.0.1:%d", port)
	testutil.CheckFor(t, 20*time.Second, func() error {
		nc, err := nats.Connect(r.url("admin", "change-me-admin"))
		if err == nil {
			nc.Close()
		}
		return err
	})
	httpURL, stopHTTP, err := demo.Serve(context.Background(), demo.TransportHTTP, "127.0.0.1:0", demo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopHTTP)
	cfg := fmt.Sprintf("servers:\n  demo:\n    command: %s\n    args: [demo, --faults]\n    protocol_version: \"2025-11-25\"\n  demo-http:\n    transport: http\n    url: %s\n    protocol_version: \"2025-11-25\"\n", r.bin, httpURL)
	if err := os.WriteFile(filepath.Join(dir, "toolbus.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}

	// The admin provisions streams and buckets once, then steps aside.
	admin, stopAdmin := background(t, dir, "admin-worker", r.bin, "worker", "--config", "toolbus.yaml", "--name", "admin", "--nats-url", r.url("admin", "change-me-admin"))
	waitLog(t, admin, "worker consuming tool calls")
	if err := stopAdmin(); err != nil {
		t.Fatalf("admin worker: %v", err)
	}

	// A worker with the WORKER role only runs every call from here on.
	r.wlog, _ = background(t, dir, "worker", r.bin, "worker", "--config", "toolbus.yaml", "--name", "w-role", "--nats-url", r.url("worker", "change-me-worker"))
	waitLog(t, r.wlog, "worker consuming tool calls")
	asAdmin := []string{"NATS_URL=" + r.url("admin", "change-me-admin")}
	testutil.CheckFor(t, 30*time.Second, func() error {
		out, _, _ := tb(t, asAdmin, "tools")
		if !strings.Contains(out, "destroy") || !strings.Contains(out, "demo-http") {
			return fmt.Errorf("catalog not synced yet: %s", out)
		}
		return nil
	})
	return r
}

// nats.conf's roles are enough for what each part does: the admin
// provisions, a worker with the WORKER permissions runs calls (catalog sync,
// ledger, results), and an agent with its own permissions calls tools —
// against a standalone nats-server running the repository's nats.conf. The
// README's nats CLI and nats.js examples run as an authenticated agent.
func TestNatsConfPermissions(t *testing.T) {
	r := startNatsConf(t)

	// An agent calls tools as itself; the CLI takes its agent and inbox
	// from the NATS user.
	asAgent := []string{"NATS_URL=" + r.url("agent1", "change-me-agent1")}
	out, errOut, code := tb(t, asAgent, "call", "demo", "add", `{"a":2,"b":3}`, "--json")
	if code != 0 || !strings.Contains(out, `"text": "5"`) || !strings.Contains(out, `"worker": "w-role"`) || !strings.Contains(out, `"agent": "agent1"`) {
		t.Fatalf("agent call: exit %d\n%s%s", code, out, errOut)
	}
	// A destructive tool writes the call ledger.
	out, errOut, code = tb(t, asAgent, "call", "demo", "destroy", `{"key":"k1"}`)
	if code != 0 || !strings.Contains(out, "destroyed k1") {
		t.Fatalf("destroy: exit %d\n%s%s", code, out, errOut)
	}
	// The WORKER role may keep its keeper message in TOOL_CALLS (the admin
	// worker acked no call, so it published none).
	adminNC, err := nats.Connect(r.url("admin", "change-me-admin"))
	if err != nil {
		t.Fatal(err)
	}
	defer adminNC.Close()
	adminJS, _ := jetstream.New(adminNC)
	testutil.CheckFor(t, 30*time.Second, func() error {
		s, err := adminJS.Stream(context.Background(), subjects.StreamCalls)
		if err != nil {
			return err
		}
		if _, err := s.GetLastMsgForSubject(context.Background(), subjects.CallsKeeper); err != nil {
			return fmt.Errorf("no keeper message from the WORKER-role worker: %v", err)
		}
		return nil
	})
	_, errOut, code = tb(t, asAgent, "call", "demo", "add", `{"a":"two"}`)
	if code != 1 || !strings.Contains(errOut, `argument "a": got string, want number`) {
		t.Fatalf("bad arguments: exit %d %s", code, errOut)
	}
	// Calling as another agent is refused with a message that says why.
	_, errOut, code = tb(t, asAgent, "call", "--agent", "agent2", "demo", "add", `{"a":2,"b":3}`)
	if code == 0 || !strings.Contains(errOut, `agent "agent2"`) {
		t.Fatalf("agent1 calling as agent2: exit %d %s", code, errOut)
	}

	t.Run("nats CLI example", func(t *testing.T) {
		cli := os.Getenv("TOOLBUS_NATS_CLI")
		if cli == "" {
			t.Skip("TOOLBUS_NATS_CLI not set: run via `make test` (it builds bin/nats)")
		}
		natsCLIExample(t, cli, r.url("agent1", "change-me-agent1"))
	})
	t.Run("natscli context", func(t *testing.T) {
		natsCLI := os.Getenv("TOOLBUS_NATS_CLI")
		if natsCLI == "" {
			t.Skip("TOOLBUS_NATS_CLI not set: run via `make test` (it builds bin/nats)")
		}
		// agent1's context, saved by natscli, is all `toolbus call` needs:
		// the user is the agent, the inbox _INBOX.agent1.
		xdg := t.TempDir()
		ctxEnv := []string{"XDG_CONFIG_HOME=" + xdg, "NATS_URL=", "NATS_CONTEXT="}
		if out, errOut, code := run(t, ctxEnv, natsCLI, "context", "save", "agent1", "--server", r.plainURL, "--user", "agent1", "--password", "change-me-agent1"); code != 0 {
			t.Fatalf("nats context save: exit %d\n%s%s", code, out, errOut)
		}
		out, errOut, code := tb(t, ctxEnv, "--context", "agent1", "call", "demo", "add", `{"a":2,"b":3}`, "--json")
		if code != 0 || !strings.Contains(out, `"text": "5"`) || !strings.Contains(out, `"agent": "agent1"`) {
			t.Fatalf("call with --context agent1: exit %d\n%s%s", code, out, errOut)
		}
	})
	t.Run("nats.js example", func(t *testing.T) {
		node, err := exec.LookPath("node")
		mods, _ := filepath.Abs("../../testdata/node/node_modules")
		if err != nil {
			t.Skip("node not installed: skipping the nats.js example (install Node.js and run make test-deps)")
		}
		if _, err := os.Stat(filepath.Join(mods, "nats")); err != nil {
			t.Skip("testdata/node/node_modules/nats missing: run `make test-deps`")
		}
		example, _ := filepath.Abs("../../examples/call.js")
		env := []string{"NATS_URL=" + r.plainURL, "NATS_USER=agent1", "NATS_PASSWORD=change-me-agent1", "NODE_PATH=" + mods}
		out, errOut, code := run(t, env, node, example, "demo", "add", `{"a":2,"b":3}`)
		if code != 0 || out != "5\n" {
			t.Fatalf("node example: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		_, errOut, code = run(t, env, node, example, "demo", "add", `[1]`)
		if code != 1 || !strings.Contains(errOut, "invalid_arguments") {
			t.Fatalf("node example with bad args: exit %d, stderr %q", code, errOut)
		}
	})

	t.Run("isolation matrix", func(t *testing.T) { isolationMatrix(t, r) })
	t.Run("nats.js resolves a claim", func(t *testing.T) {
		node, err := exec.LookPath("node")
		mods, _ := filepath.Abs("../../testdata/node/node_modules")
		if err != nil {
			t.Skip("node not installed: skipping the nats.js example (install Node.js and run make test-deps)")
		}
		if _, err := os.Stat(filepath.Join(mods, "nats")); err != nil {
			t.Skip("testdata/node/node_modules/nats missing: run `make test-deps`")
		}
		// agent1 makes a call whose result (9 MiB) is over nats.conf's
		// max_payload; the README's JavaScript reads it back later.
		nc, err := nats.Connect(r.url("agent1", "change-me-agent1"), nats.CustomInboxPrefix("_INBOX.agent1"))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		cl, err := client.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		big := strings.Repeat("fedcba9876543210", 9<<16)
		id := client.NewCallID()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if res, err := cl.Call(ctx, "demo-http", "echo", map[string]string{"message": big}, client.WithCallID(id)); err != nil || res.Status != subjects.StatusOK {
			t.Fatalf("9 MiB echo: %v", err)
		}
		example, _ := filepath.Abs("../../examples/call.js")
		env := []string{"NATS_URL=" + r.plainURL, "NATS_USER=agent1", "NATS_PASSWORD=change-me-agent1", "NODE_PATH=" + mods}
		out, errOut, code := run(t, env, node, example, "--result", id)
		if code != 0 || out != big+"\n" {
			t.Fatalf("node example --result: exit %d, %d bytes out, stderr %q", code, len(out), errOut)
		}
		// agent2 cannot (the isolation matrix tries the chunks themselves).
		env = []string{"NATS_URL=" + r.plainURL, "NATS_USER=agent2", "NATS_PASSWORD=change-me-agent2", "NODE_PATH=" + mods, "TOOLBUS_AGENT=agent2"}
		if out, _, code := run(t, env, node, example, "--result", id); code == 0 || strings.Contains(out, "fedcba") {
			t.Fatalf("agent2 read agent1's result: exit %d", code)
		}
	})
	t.Run("nats CLI wake-ups", func(t *testing.T) {
		cli := os.Getenv("TOOLBUS_NATS_CLI")
		if cli == "" {
			t.Skip("TOOLBUS_NATS_CLI not set: run via `make test` (it builds bin/nats)")
		}
		asAdmin := []string{"NATS_URL=" + r.url("admin", "change-me-admin")}
		if out, errOut, code := tb(t, asAdmin, "agents", "add", "agent1"); code != 0 {
			t.Fatalf("agents add: %d %s%s", code, out, errOut)
		}
		if out, errOut, code := run(t, asAdmin, cli, "pub", "agent.wake.agent1", "wake-from-cli"); code != 0 {
			t.Fatalf("nats pub: %d %s%s", code, out, errOut)
		}
		// The README's command, as agent1.
		out, errOut, code := run(t, asAgent, cli, "--inbox-prefix", "_INBOX.agent1", "consumer", "next", "EVENTS", "wake-agent1", "--ack", "--count", "1", "--wait", "5s")
		if !strings.Contains(out+errOut, "wake-from-cli") {
			t.Fatalf("nats consumer next: %d\n%s%s", code, out, errOut)
		}
	})

	// An admin sees the WORKER-role worker in the control service: it may
	// subscribe there and answer.
	out, errOut, code = run(t, []string{"NATS_URL=" + r.url("admin", "change-me-admin")}, r.bin, "status", "--json", "--discover-wait", "30s")
	if code != 0 || !strings.Contains(out, `"name": "w-role"`) || !strings.Contains(out, `"status": {`) {
		t.Fatalf("toolbus status as admin: exit %d\n%s%s", code, out, errOut)
	}

	for _, p := range []string{r.serverLog, r.wlog} {
		b, _ := os.ReadFile(p)
		// The matrix's own refusals are agent2's; the worker's connection
		// never hits a violation.
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "Violation") && !strings.Contains(line, "agent2") && !strings.Contains(line, "agent1") {
				t.Fatalf("%s reports a permissions violation not caused by the test's agents:\n%s", filepath.Base(p), line)
			}
		}
	}
}

// natsCLIExample runs the README's nats CLI example as an authenticated
// agent: subscribe to its results, publish a call, read the stored result
// by a direct get.
func natsCLIExample(t *testing.T, cli, url string) {
	env := append(os.Environ(), "NATS_URL="+url)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// --count 2: a probe that tells the subscription is live, then the result.
	sub := exec.CommandContext(ctx, cli, "sub", "tool.reply.agent1.>", "--count", "2")
	sub.Env = env
	var subOut syncBuffer
	sub.Stdout, sub.Stderr = &subOut, &subOut
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	defer sub.Process.Kill()
	probe, err := nats.Connect(strings.Replace(url, "agent1:change-me-agent1", "admin:change-me-admin", 1))
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	testutil.CheckFor(t, 30*time.Second, func() error {
		if strings.Contains(subOut.String(), "tool.reply.agent1.probe") {
			return nil
		}
		_ = probe.Publish("tool.reply.agent1.probe", []byte("ping"))
		_ = probe.Flush()
		return fmt.Errorf("nats sub not live yet")
	})
	id := "call-" + nuid.Next()
	out, errOut, code := run(t, []string{"NATS_URL=" + url}, cli, "pub", "tool.call.agent1.demo.add", `{"a":2,"b":3}`, "-H", "Nats-Msg-Id:"+id)
	if code != 0 {
		t.Fatalf("nats pub: %d %s %s", code, out, errOut)
	}
	if err := sub.Wait(); err != nil {
		t.Fatalf("nats sub: %v\n%s", err, subOut.String())
	}
	if !strings.Contains(subOut.String(), `"text":"5"`) || !strings.Contains(subOut.String(), id) {
		t.Fatalf("nats sub got:\n%s", subOut.String())
	}
	out, errOut, code = run(t, []string{"NATS_URL=" + url}, cli, "--inbox-prefix", "_INBOX.agent1", "req", "$JS.API.DIRECT.GET.TOOL_RESULTS.tool.result.agent1."+id, "")
	if code != 0 || !strings.Contains(out, `"call_id":"`+id+`"`) || !strings.Contains(out, `"text":"5"`) {
		t.Fatalf("nats req (direct get): %d\n%s%s", code, out, errOut)
	}
}

// isolationMatrix: every way issue 8 found for one agent to reach another's
// calls is tried by agent2 against agent1, and refused — a permissions
// violation, or a worker that ignores what the caller asked — while agent1's
// own calls still work.
func isolationMatrix(t *testing.T, r *natsConfRig) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	violations := make(chan error, 100)
	connect := func(user, pass string, opts ...nats.Option) *nats.Conn {
		t.Helper()
		opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				select {
				case violations <- err:
				default:
				}
			}
		}))
		nc, err := nats.Connect(r.url(user, pass), opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	admin := connect("admin", "change-me-admin")
	adminJS, _ := jetstream.New(admin)
	victim := connect("agent1", "change-me-agent1", nats.CustomInboxPrefix("_INBOX.agent1"))
	attacker := connect("agent2", "change-me-agent2", nats.CustomInboxPrefix("_INBOX.agent2"))
	victimCl, err := client.New(victim)
	if err != nil {
		t.Fatal(err)
	}
	attackerCl, err := client.New(attacker)
	if err != nil {
		t.Fatal(err)
	}
	if victimCl.Agent() != "agent1" || attackerCl.Agent() != "agent2" {
		t.Fatalf("agents %q and %q, want the NATS users", victimCl.Agent(), attackerCl.Agent())
	}
	// denied waits for NATS to refuse op on subject.
	denied := func(row, op, subject string) {
		t.Helper()
		want := fmt.Sprintf("Permissions Violation for %s to %q", op, subject)
		deadline := time.After(30 * time.Second)
		for {
			select {
			case err := <-violations:
				if strings.Contains(err.Error(), want) {
					return
				}
			case <-deadline:
				t.Errorf("%s: NATS did not refuse %s to %s", row, op, subject)
				return
			}
		}
	}

	// The victim's answered call, and its stored result.
	victimID := client.NewCallID()
	vres, err := victimCl.Call(ctx, "demo", "add", map[string]int{"a": 2, "b": 3}, client.WithCallID(victimID))
	if err != nil || vres.Status != subjects.StatusOK || vres.Agent != "agent1" {
		t.Fatalf("victim call: %+v %v", vres, err)
	}
	results, err := adminJS.Stream(ctx, subjects.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := results.GetLastMsgForSubject(ctx, subjects.ToolResult("agent1", victimID))
	if err != nil {
		t.Fatal(err)
	}

	// Rows 1 and 3: a reply subject chosen by the caller is not a place a
	// worker writes. Each target is watched by the admin while agent2's
	// call with Toolbus-Reply pointing there runs to its end (answered,
	// then acked: the worker publishes nothing after the ack).
	targets := []string{
		subjects.ToolResult("agent1", victimID), subjects.ToolReply("agent1", victimID),
		"$KV.toolbus_servers.demo", "$KV.toolbus_catalog.demo.add", "tool.dead.agent1.demo.add",
		"catalog.resync.demo", "_INBOX.agent1.x",
	}
	watch, err := admin.SubscribeSync("toolbus.matrix.never")
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range targets {
		if err := watch.Unsubscribe(); err != nil {
			t.Fatal(err)
		}
		if watch, err = admin.SubscribeSync(tg); err != nil {
			t.Fatal(err)
		}
		if err := admin.Flush(); err != nil {
			t.Fatal(err)
		}
		id := client.NewCallID()
		msg := nats.NewMsg("tool.call.agent2.demo.echo")
		msg.Header.Set(subjects.HeaderCallID, id)
		msg.Header.Set("Toolbus-Reply", tg)
		msg.Header.Set("Toolbus-Agent", "agent1")
		msg.Data = []byte(`{"message":"forged"}`)
		sub, _ := attacker.SubscribeSync(subjects.ToolReply("agent2", id))
		js, _ := jetstream.New(attacker)
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatalf("agent2's own call: %v", err)
		}
		m, err := sub.NextMsg(20 * time.Second)
		if err != nil {
			t.Fatalf("agent2's call with Toolbus-Reply %s was not answered on its own subject: %v", tg, err)
		}
		var res subjects.Result
		_ = json.Unmarshal(m.Data, &res)
		if res.Agent != "agent2" || res.Status != subjects.StatusOK {
			t.Fatalf("agent2's call: %+v", res)
		}
		testutil.CheckFor(t, 20*time.Second, func() error {
			s, err := adminJS.Stream(ctx, subjects.StreamCalls)
			if err != nil {
				return err
			}
			if n := s.CachedInfo().State.Msgs; n != 0 {
				return fmt.Errorf("%d calls not acked yet", n)
			}
			return nil
		})
		if err := admin.Flush(); err != nil {
			t.Fatal(err)
		}
		if m, err := watch.NextMsg(0); err == nil {
			t.Errorf("Toolbus-Reply %s: the worker published there: %s", tg, m.Data)
		}
	}
	if now, err := results.GetLastMsgForSubject(ctx, subjects.ToolResult("agent1", victimID)); err != nil || now.Sequence != stored.Sequence {
		t.Errorf("the victim's stored result changed: %v %v", now, err)
	}

	// Row 1 and 2, directly: agent2 cannot store, forge or overwrite a
	// result of agent1, nor hear its results or progress.
	_ = attacker.Publish(subjects.ToolResult("agent1", victimID), []byte(`{"forged":true}`))
	denied("overwrite a stored result", "Publish", subjects.ToolResult("agent1", victimID))
	for _, subj := range []string{"tool.progress.*.*", "tool.progress.agent1.>", "tool.reply.agent1.>", "tool.reply.>", "tool.result.agent1.>", "tool.result.agent2.>", "tool.result.>"} {
		if _, err := attacker.SubscribeSync(subj); err != nil {
			t.Fatal(err)
		}
		denied("watch another agent", "Subscription", subj)
	}
	// Row 4 and 5: no subject listing, no reads of another's results, no
	// consumers on TOOL_RESULTS.
	for _, subj := range []string{
		"$JS.API.STREAM.INFO." + subjects.StreamResults,
		"$JS.API.STREAM.INFO." + subjects.StreamCalls,
		subjects.ResultDirectGet("agent1", victimID),
		"$JS.API.DIRECT.GET." + subjects.StreamResults + ".tool.result.>",
		"$JS.API.DIRECT.GET." + subjects.StreamResults,
		"$JS.API.CONSUMER.CREATE." + subjects.StreamResults + ".spy.tool.result.agent1.>",
		"$JS.API.CONSUMER.CREATE." + subjects.StreamResults,
		"$JS.API.STREAM.MSG.GET." + subjects.StreamResults,
	} {
		if err := attacker.PublishRequest(subj, "_INBOX.agent2.x", []byte(`{"subjects_filter":">","last_by_subj":"tool.result.agent1.`+victimID+`"}`)); err != nil {
			t.Fatal(err)
		}
		denied("read another agent's results", "Publish", subj)
	}
	// Row 6: no cancels of another agent's calls; no calls as another agent.
	_ = attacker.Publish(subjects.ToolCancel("agent1", victimID), nil)
	denied("cancel another agent's call", "Publish", subjects.ToolCancel("agent1", victimID))
	_ = attacker.Publish("tool.call.agent1.demo.echo", []byte(`{"message":"as agent1"}`))
	denied("call as another agent", "Publish", "tool.call.agent1.demo.echo")
	if _, err := client.New(attacker, client.WithAgent("agent1")); err == nil {
		t.Errorf("a client on agent2's connection acts as agent1")
	}
	// Row 7: a header naming another agent changes nothing; the HTTP MCP
	// server hears the subject's agent.
	who := nats.NewMsg("tool.call.agent2.demo-http.whoami")
	whoID := client.NewCallID()
	who.Header.Set(subjects.HeaderCallID, whoID)
	who.Header.Set("Toolbus-Agent", "agent1")
	whoSub, _ := attacker.SubscribeSync(subjects.ToolReply("agent2", whoID))
	ajs, _ := jetstream.New(attacker)
	if _, err := ajs.PublishMsg(ctx, who); err != nil {
		t.Fatal(err)
	}
	if m, err := whoSub.NextMsg(20 * time.Second); err != nil {
		t.Errorf("whoami: %v", err)
	} else if !strings.Contains(string(m.Data), `"text":"agent2"`) {
		t.Errorf("the MCP server heard another agent: %s", m.Data)
	}
	// Row 8: agent2 re-sending agent1's call id never gets agent1's
	// result: inside the duplicate window the publish is a duplicate, and
	// agent2 has no way to read tool.result.agent1.* (above). After the
	// window, it is agent2's own call (worker test TestCallIDsAreScopedToTheirAgent).
	dup := nats.NewMsg("tool.call.agent2.demo.add")
	dup.Header.Set(subjects.HeaderCallID, victimID)
	dup.Data = []byte(`{"a":1,"b":1}`)
	if ack, err := ajs.PublishMsg(ctx, dup); err != nil || !ack.Duplicate {
		t.Errorf("agent2 re-sending agent1's id inside the window: %+v %v", ack, err)
	}

	// Wake-ups: agent1 consumes its own from the durable consumer toolbus
	// made (an admin here, as `toolbus agents add` does), even those
	// published before it listened; agent2 can neither read them nor make
	// consumers of its own.
	if err := broker.EnsureWakeConsumer(ctx, adminJS, "agent1"); err != nil {
		t.Fatal(err)
	}
	if _, err := adminJS.Publish(ctx, "agent.wake.agent1", []byte(`{"reason":"matrix"}`)); err != nil {
		t.Fatal(err)
	}
	for _, subj := range []string{
		"$JS.API.CONSUMER.MSG.NEXT.EVENTS.wake-agent1",
		"$JS.API.CONSUMER.INFO.EVENTS.wake-agent1",
		"$JS.API.CONSUMER.CREATE.EVENTS.spy.agent.wake.agent1",
		"$JS.API.CONSUMER.CREATE.EVENTS.wake-agent2.agent.wake.agent2",
		"$JS.ACK.EVENTS.wake-agent1.1.1.1.1.1.1",
	} {
		if err := attacker.PublishRequest(subj, "_INBOX.agent2.y", []byte(`{"batch":1}`)); err != nil {
			t.Fatal(err)
		}
		denied("read another agent's wake-ups", "Publish", subj)
	}
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	var woke []byte
	err = victimCl.Wakeups(wctx, func(_ context.Context, w client.Wakeup) error {
		woke = w.Data
		wcancel()
		return nil
	})
	wcancel()
	if err != nil || string(woke) != `{"reason":"matrix"}` {
		t.Errorf("agent1's wake-ups: %q %v", woke, err)
	}

	// Results and arguments too large for a message (9 MiB, over nats.conf's
	// 8 MB max_payload) go through the Object Store with the narrow rules:
	// agent1 puts its arguments and reads its result; agent2 can neither
	// read nor write agent1's objects, nor make the worker read them.
	bigMsg := strings.Repeat("0123456789abcdef", 9<<16)
	bigID := client.NewCallID()
	bres, err := victimCl.Call(ctx, "demo-http", "echo", map[string]string{"message": bigMsg}, client.WithCallID(bigID))
	if err != nil || bres.Status != subjects.StatusOK || !strings.Contains(string(bres.Result), bigMsg) {
		t.Fatalf("victim's 9 MiB echo: %v", err)
	}
	stub, err := results.GetLastMsgForSubject(ctx, subjects.ToolResult("agent1", bigID))
	if err != nil || stub.Header.Get(subjects.HeaderClaim) == "" {
		t.Fatalf("victim's large result is not a claim: %v", err)
	}
	resultObj := strings.TrimPrefix(stub.Header.Get(subjects.HeaderClaim), subjects.BucketBlobs+"/")
	blobs, err := adminJS.Stream(ctx, subjects.StreamBlobs)
	if err != nil {
		t.Fatal(err)
	}
	binfo, err := blobs.Info(ctx, jetstream.WithSubjectFilter(subjects.BlobChunk("agent1."+bigID+".args.*", 0)))
	if err != nil || len(binfo.State.Subjects) != 1 {
		t.Fatalf("victim's argument object: %v %v", binfo, err)
	}
	var argsObj string
	for subj := range binfo.State.Subjects {
		argsObj = strings.TrimSuffix(strings.TrimPrefix(subj, "$O."+subjects.BucketBlobs+".C."), ".0")
	}
	for _, subj := range []string{
		subjects.BlobChunkDirectGet(resultObj, 0),
		subjects.BlobChunkDirectGet(argsObj, 0),
		"$JS.API.DIRECT.GET." + subjects.StreamBlobs,
		"$JS.API.DIRECT.GET." + subjects.StreamBlobs + "." + subjects.BlobMeta(resultObj),
		"$JS.API.STREAM.INFO." + subjects.StreamBlobs,
		"$JS.API.CONSUMER.CREATE." + subjects.StreamBlobs + ".spy.$O." + subjects.BucketBlobs + ".C.agent1.>",
	} {
		if err := attacker.PublishRequest(subj, "_INBOX.agent2.z", []byte(`{"seq":1}`)); err != nil {
			t.Fatal(err)
		}
		denied("read another agent's objects", "Publish", subj)
	}
	for _, subj := range []string{subjects.BlobChunk(argsObj, 0), subjects.BlobChunk("agent1."+client.NewCallID()+".args.x", 0), subjects.BlobMeta(resultObj)} {
		_ = attacker.Publish(subj, []byte(`{"message":"forged"}`))
		denied("write another agent's objects", "Publish", subj)
	}
	forgedID := client.NewCallID()
	replies, err := attacker.SubscribeSync(subjects.ToolReply("agent2", forgedID))
	if err != nil {
		t.Fatal(err)
	}
	forged := nats.NewMsg("tool.call.agent2.demo-http.echo")
	forged.Header.Set(subjects.HeaderCallID, forgedID)
	claim.SetHeader(forged.Header, &subjects.Claim{Bucket: subjects.BucketBlobs, Object: argsObj, Size: int64(len(bigMsg)) + 14, Chunks: 1, Digest: "SHA-256=x"})
	attackerJS, _ := jetstream.New(attacker)
	if _, err := attackerJS.PublishMsg(ctx, forged); err != nil {
		t.Fatal(err)
	}
	if m, err := replies.NextMsg(20 * time.Second); err != nil {
		t.Errorf("agent2's call naming agent1's argument object: no answer: %v", err)
	} else if !strings.Contains(string(m.Data), `"invalid_request"`) || !strings.Contains(string(m.Data), `of agent \"agent1\", not`) || strings.Contains(string(m.Data), "0123456789abcdef") {
		t.Errorf("agent2's call naming agent1's argument object: %s", m.Data)
	}

	// The victim still works, and still reads its own stored result.
	if res, err := victimCl.Result(ctx, victimID); err != nil || res.Agent != "agent1" || !strings.Contains(string(res.Result), `"5"`) {
		t.Errorf("victim's stored result: %+v %v", res, err)
	}
	if res, err := victimCl.Call(ctx, "demo-http", "whoami", nil); err != nil || !strings.Contains(string(res.Result), `"agent1"`) {
		t.Errorf("victim call after the matrix: %+v %v", res, err)
	}
}

// SIGTERM drains (in-flight calls may finish); a second SIGTERM exits at
// once, with status 130.
func TestSecondSigtermExitsNow(t *testing.T) {
	bin := testbin.Build(t, "github.com/toolbus-dev/toolbus/cmd/toolbus")
	dir := t.TempDir()
	port := testutil.FreePort(t)
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
	testutil.CheckFor(t, 30*time.Second, func() error {
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
