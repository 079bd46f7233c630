package mcppool

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
)

func TestStdioEnvTable(t *testing.T) {
	t.Parallel()
	environ := []string{
		"PATH=/usr/bin", "HOME=/home/u", "USER=u", "LOGNAME=u", "SHELL=/bin/sh", "TERM=xterm",
		"LANG=en_US.UTF-8", "LC_ALL=C", "LC_TIME=de_DE", "TMPDIR=/tmp/x", "TEMP=/tmp/y", "TMP=/tmp/z",
		"TOOLBUS_SECRET_KEY=k", "GITHUB_TOKEN=ghp_x", "AWS_SECRET_ACCESS_KEY=a", "NATS_URL=nats://u:p@h",
		"LCX=1", "PATHS=1", "XHOME=1", "BASH_FUNC_f%%=() { :; }", "SHELL_FN=x",
		"noequals", "=C:=C:\\",
	}
	if win := inheritedEnv("windows"); !slices.Contains(win, "SYSTEMROOT") {
		t.Errorf("the Windows list lacks SYSTEMROOT: %v", win)
	}
	cases := []struct {
		name       string
		environ    []string
		configured map[string]string
		want       []string
	}{
		{"only the allowed list", environ, nil, []string{
			"PATH=/usr/bin", "HOME=/home/u", "USER=u", "LOGNAME=u", "SHELL=/bin/sh", "TERM=xterm",
			"LANG=en_US.UTF-8", "LC_ALL=C", "LC_TIME=de_DE", "TMPDIR=/tmp/x", "TEMP=/tmp/y", "TMP=/tmp/z",
		}},
		{"configured added, sorted, and winning", []string{"PATH=/usr/bin", "HOME=/h", "GITHUB_TOKEN=ghp_x"},
			map[string]string{"PATH": "/opt/bin", "API_KEY": "k", "GITHUB_TOKEN": "mine"},
			[]string{"HOME=/h", "API_KEY=k", "GITHUB_TOKEN=mine", "PATH=/opt/bin"}},
		{"exported shell functions skipped", []string{"TERM=() { echo pwned; }", "HOME=/h"}, nil, []string{"HOME=/h"}},
		{"empty environment is empty, not nil", nil, nil, []string{}},
	}
	for _, tc := range cases {
		got := stdioEnv(tc.environ, tc.configured)
		if got == nil {
			t.Errorf("%s: nil environment (exec would inherit all of ours)", tc.name)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

// childEnviron dials a stdiosrv and returns the environment it runs in.
func childEnviron(t *testing.T, configured map[string]string) map[string][]string {
	t.Helper()
	def := stdioDef("env")
	def.Env = configured
	p := New(testLog(t))
	defer p.Close()
	p.Upsert(def)
	raw, _, err := p.Call(context.Background(), "env", "environ", nil, CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var list []string
	if err := json.Unmarshal([]byte(text(t, raw)), &list); err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, kv := range list {
		k, v, _ := strings.Cut(kv, "=")
		out[k] = append(out[k], v)
	}
	return out
}

// TestStdioEnvMinimal runs a real stdio server with secrets in our own
// environment: it sees only the allowed variables and its configured env.
func TestStdioEnvMinimal(t *testing.T) {
	t.Setenv("TOOLBUS_SECRET_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
	t.Setenv("GITHUB_TOKEN", "ghp_not_for_this_server")
	t.Setenv("LC_TIME", "C")
	t.Setenv("TMPDIR", t.TempDir())
	got := childEnviron(t, map[string]string{"MCPPOOL_TEST": "v1", "API_KEY": "for-this-server"})
	for _, leaked := range []string{"TOOLBUS_SECRET_KEY", "GITHUB_TOKEN"} {
		if v, ok := got[leaked]; ok {
			t.Errorf("the child sees %s=%q", leaked, v)
		}
	}
	for k := range got {
		if !inherited(k) && k != "MCPPOOL_TEST" && k != "API_KEY" {
			t.Errorf("the child sees %s, which is neither allowed nor configured", k)
		}
	}
	want := map[string]string{
		"MCPPOOL_TEST": "v1", "API_KEY": "for-this-server",
		"PATH": os.Getenv("PATH"), "LC_TIME": "C", "TMPDIR": os.Getenv("TMPDIR"),
	}
	for k, v := range want {
		if !slices.Equal(got[k], []string{v}) {
			t.Errorf("the child sees %s=%q, want %q", k, got[k], v)
		}
	}
}

// TestStdioEnvConfiguredWins: a server's env overrides an inherited
// variable, once, with no second entry of ours.
func TestStdioEnvConfiguredWins(t *testing.T) {
	t.Setenv("PATH", os.Getenv("PATH"))
	t.Setenv("HOME", t.TempDir())
	path := "/nonexistent/toolbus-test:" + os.Getenv("PATH")
	got := childEnviron(t, map[string]string{"PATH": path, "HOME": "/srv/home"})
	if !slices.Equal(got["PATH"], []string{path}) {
		t.Errorf("PATH = %q, want only %q", got["PATH"], path)
	}
	if !slices.Equal(got["HOME"], []string{"/srv/home"}) {
		t.Errorf("HOME = %q, want only /srv/home", got["HOME"])
	}
}
