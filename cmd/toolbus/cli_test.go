package main_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	toolbus "github.com/toolbus-dev/toolbus/cmd/toolbus"
	"github.com/toolbus-dev/toolbus/internal/testbin"
	"github.com/toolbus-dev/toolbus/internal/testutil"
)

// syncBuffer is a bytes.Buffer safe to write from several goroutines (a
// subprocess, or a command's NATS callbacks) while it is read.
type syncBuffer = testutil.SyncBuffer

// tb runs `toolbus args...` in this process, as the binary would, with env
// (NAME=value) over the process's environment, and returns its stdout,
// stderr and exit status.
func tb(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return tbIn(t, "", env, args...)
}

// tbIn is tb with stdin.
func tbIn(t *testing.T, stdin string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	getenv := func(k string) string {
		if v, ok := vars[k]; ok {
			return v
		}
		return os.Getenv(k)
	}
	var o, e syncBuffer
	code = toolbus.Execute(ctx, args, getenv, strings.NewReader(stdin), &o, &e)
	return o.String(), e.String(), code
}

// Usage errors exit 2 with a hint, failures exit 1, help and --version 0;
// nothing needs a NATS server to tell usage from failure.
func TestExitCodesInProcess(t *testing.T) {
	t.Parallel()
	down := []string{"NATS_URL=nats://127.0.0.1:1", "NATS_CONTEXT="}
	for _, c := range []struct {
		args []string
		code int
		want string // in stdout+stderr
	}{
		{nil, 2, "Commands:"},
		{[]string{"--help"}, 0, "Commands:"},
		{[]string{"help", "call"}, 0, "--detach"},
		{[]string{"--version"}, 0, "toolbus "},
		{[]string{"sevrers"}, 2, `unknown command "sevrers"; did you mean servers?`},
		{[]string{"servers"}, 2, "want a subcommand: add, list, rm, show"},
		{[]string{"servers", "bogus"}, 2, `unknown subcommand "bogus"`},
		{[]string{"dlq"}, 2, "want a subcommand"},
		{[]string{"completion"}, 2, "want a subcommand: bash, fish, powershell, zsh"},
		{[]string{"call", "--bogus", "demo", "add"}, 2, "unknown flag: --bogus"},
		{[]string{"call", "demo"}, 2, "want <server> <tool>"},
		{[]string{"call", "demo", "add", `{"a":`}, 2, "not valid JSON"},
		{[]string{"call", "--timeout", "soon", "demo", "add"}, 2, `invalid argument "soon"`},
		{[]string{"servers", "rm"}, 2, "want one server name"},
		{[]string{"servers", "add", "x", "--local", "--no-wait"}, 2, "--local runs the first sync here"},
		{[]string{"dlq", "show"}, 2, "wants a dead letter's sequence number"},
		{[]string{"dlq", "show", "x"}, 2, `"x" is not a sequence number`},
		{[]string{"demo", "--exec-log", "x.log"}, 2, "--faults"},
		{[]string{"sync", "--log-level", "loud"}, 2, "want debug, info, warn or error"},
		{[]string{"serve", "extra"}, 2, "unexpected arguments"},
		{[]string{"status", "--interval", "0s"}, 2, "--interval 0s: want a positive duration"},
		{[]string{"bench", "--soak", "1s", "--serve-bin", "x"}, 2, "not --soak"},
		{[]string{"bench", "--inflight", "10", "--inflight-tool", "echo"}, 2, `--inflight-tool "echo": want sleep or sleep_plain`},
		{[]string{"status", "--json"}, 1, "127.0.0.1:1"},
		{[]string{"tools"}, 1, "127.0.0.1:1"},
		{[]string{"tools", "--nats-url", "nats://127.0.0.1:2"}, 1, "127.0.0.1:2"}, // the flag wins over NATS_URL
		{[]string{"--context", "nope", "tools"}, 1, `unknown NATS context "nope"`},
		{[]string{"result", "-Zx3b9kR2TgWmV7nYp0aLs"}, 2, `goes after --: toolbus result -- <id>`},
		{[]string{"result", "--", "-Zx3b9kR2TgWmV7nYp0aLs"}, 1, "127.0.0.1:1"},
	} {
		out, errOut, code := tb(t, down, c.args...)
		if code != c.code || !strings.Contains(out+errOut, c.want) {
			t.Errorf("toolbus %s: exit %d, want %d and %q in\n%s%s", strings.Join(c.args, " "), code, c.code, c.want, out, errOut)
		}
		if c.code == 2 && len(c.args) > 0 && c.args[0] != "--help" && !strings.Contains(errOut, "--help") {
			t.Errorf("toolbus %s: usage error without a hint to --help: %q", strings.Join(c.args, " "), errOut)
		}
	}
}

// Every command and subcommand has a one-line summary, examples, and a
// --help that lists its flags and the global NATS flags.
func TestHelpOfEveryCommand(t *testing.T) {
	t.Parallel()
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		for _, sub := range c.Commands() {
			if sub.Hidden || sub.Name() == "help" {
				continue
			}
			p := append(slices.Clone(path), sub.Name())
			walk(sub, p)
			out, errOut, code := tb(t, nil, append(p, "--help")...)
			name := strings.Join(p, " ")
			if code != 0 || !strings.Contains(out, "Usage:\n  toolbus "+name) {
				t.Errorf("toolbus %s --help: exit %d\n%s%s", name, code, out, errOut)
				continue
			}
			sub.LocalFlags().VisitAll(func(f *pflag.Flag) {
				if !strings.Contains(out, "--"+f.Name) {
					t.Errorf("toolbus %s --help does not list --%s", name, f.Name)
				}
			})
			if !strings.Contains(out, "--nats-url") || !strings.Contains(out, "--context") {
				t.Errorf("toolbus %s --help does not list the NATS flags", name)
			}
			if p[0] == "completion" {
				continue // cobra's own
			}
			if sub.Short == "" || sub.Example == "" {
				t.Errorf("toolbus %s: want a summary and examples", name)
			}
		}
	}
	walk(toolbus.Root(), nil)
}

// `toolbus completion <shell>` prints cobra's script for each shell; bash
// accepts the bash one.
func TestCompletion(t *testing.T) {
	t.Parallel()
	for shell, want := range map[string]string{
		"bash":       "__start_toolbus",
		"zsh":        "#compdef toolbus",
		"fish":       "complete -c toolbus",
		"powershell": "Register-ArgumentCompleter",
	} {
		out, errOut, code := tb(t, nil, "completion", shell)
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("completion %s: exit %d, %q not in the script; stderr %q", shell, code, want, errOut)
		}
		if shell == "bash" {
			if bash, err := exec.LookPath("bash"); err == nil {
				check := exec.Command(bash, "-n")
				check.Stdin = strings.NewReader(out)
				if msg, err := check.CombinedOutput(); err != nil {
					t.Errorf("bash -n on the completion script: %v\n%s", err, msg)
				}
			}
		}
	}
	// Completion of subcommands and flags comes from the command tree.
	out, _, _ := tb(t, nil, "__complete", "serv")
	if !strings.Contains(out, "servers") || !strings.Contains(out, "serve") {
		t.Errorf("completing 'serv': %q", out)
	}
	out, _, _ = tb(t, nil, "__complete", "call", "--det")
	if !strings.Contains(out, "--detach") {
		t.Errorf("completing 'call --det': %q", out)
	}
}

// --version and `toolbus version` print the build's module version, and the
// VCS revision the go tool stamped in the binary, when it did.
func TestVersion(t *testing.T) {
	t.Parallel()
	v, _, code := tb(t, nil, "--version")
	v2, _, code2 := tb(t, nil, "version")
	if code != 0 || code2 != 0 || v != v2 || !strings.HasPrefix(v, "toolbus ") || !strings.Contains(v, runtime.Version()) {
		t.Fatalf("--version (exit %d) %q and version (exit %d) %q", code, v, code2, v2)
	}
	out, _, code := tb(t, nil, "version", "--json")
	var info struct {
		Module, Go string
	}
	if code != 0 || json.Unmarshal([]byte(out), &info) != nil || info.Module != "github.com/toolbus-dev/toolbus" || info.Go != runtime.Version() {
		t.Fatalf("version --json: exit %d %q", code, out)
	}

	bin := testbin.Build(t, "github.com/toolbus-dev/toolbus/cmd/toolbus")
	out, errOut, code := run(t, nil, bin, "--version")
	if code != 0 || !strings.HasPrefix(out, "toolbus ") {
		t.Fatalf("%s --version: exit %d %q %q", bin, code, out, errOut)
	}
	meta, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(meta), "\n") {
		if rev, ok := strings.CutPrefix(strings.TrimSpace(line), "build\tvcs.revision="); ok && !strings.Contains(out, "revision "+rev) {
			t.Errorf("--version %q lacks the stamped revision %s", out, rev)
		}
		if mod, ok := strings.CutPrefix(strings.TrimSpace(line), "mod\t"); ok && !strings.Contains(out, strings.Fields(mod)[1]) {
			t.Errorf("--version %q lacks the module version of %q", out, mod)
		}
	}
}
