package client_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// agentProgram is a program of another module: all it knows of toolbus is
// the client package and the wire contract.
const agentProgram = `package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/toolbus-dev/toolbus/client"
	"github.com/toolbus-dev/toolbus/subjects"
)

func main() {
	nc, err := nats.Connect(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer nc.Close()
	c, err := client.New(nc, client.WithAgent("outsider"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := c.Call(ctx, "demo", "add", map[string]int{"a": 2, "b": 40})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var out struct {
		Content []struct{ Text string } ` + "`json:\"content\"`" + `
	}
	_ = json.Unmarshal(res.Result, &out)
	fmt.Println(res.Status == subjects.StatusOK, res.Agent, out.Content[0].Text)
}
`

// TestImportFromAnotherModule builds a program in a module of its own that
// requires github.com/toolbus-dev/toolbus (replaced by this checkout) and
// runs it against a running toolbus: the client is importable and works
// from outside. The build is offline: dependencies come from the module
// cache this checkout's build filled.
func TestImportFromAnotherModule(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	ourMod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	// The outsider requires what toolbus requires, as `go mod tidy` would
	// write it: then the module graph it loads is pruned as ours is, and
	// every go.mod it reads is one our build read (an older version of a
	// dependency's dependency is not, and the build is offline).
	module, rest, ok := strings.Cut(string(ourMod), "\n")
	if !ok || !strings.HasPrefix(module, "module ") || !strings.Contains(rest, "\ngo ") {
		t.Fatal("go.mod does not start with its module line, or has no go directive")
	}
	dir := t.TempDir()
	goMod := "module example.com/outsider\n" + rest + "\n" +
		"require github.com/toolbus-dev/toolbus v0.0.0\n\n" +
		"replace github.com/toolbus-dev/toolbus => " + root + "\n"
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string][]byte{"go.mod": []byte(goMod), "go.sum": sum, "main.go": []byte(agentProgram)} {
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "outsider")
	build := exec.Command(goBin, "build", "-o", bin, ".")
	build.Dir = dir
	build.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build a program of another module: %v\n%s", err, out)
	}

	url, stop, err := startToolbus()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, url).CombinedOutput()
	if err != nil {
		t.Fatalf("run it: %v\n%s", err, out)
	}
	if got, want := strings.TrimSpace(string(out)), "true outsider 42"; got != want {
		t.Fatalf("it printed %q, want %q", got, want)
	}
}
