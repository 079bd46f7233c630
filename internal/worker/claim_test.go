package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/toolbus-dev/toolbus/client"
	"github.com/toolbus-dev/toolbus/internal/claim"
	"github.com/toolbus-dev/toolbus/internal/demo"
	"github.com/toolbus-dev/toolbus/internal/mcppool"
	"github.com/toolbus-dev/toolbus/internal/natstest"
	"github.com/toolbus-dev/toolbus/internal/registry"
	"github.com/toolbus-dev/toolbus/internal/streams"
	"github.com/toolbus-dev/toolbus/internal/worker"
	"github.com/toolbus-dev/toolbus/subjects"
)

// natsDefaultPayload is a stock nats-server's max_payload (1 MB): the
// claim tests run against it, so 5 MB is well over a message.
func natsDefaultPayload(o *server.Options) { o.MaxPayload = 1 << 20 }

// filesystem returns npm's @modelcontextprotocol/server-filesystem, or skips.
func filesystem(t *testing.T) (node, script string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed: skipping @modelcontextprotocol/server-filesystem (install Node.js, run make test-deps)")
	}
	script, _ = filepath.Abs("../../testdata/node/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js")
	if _, err := os.Stat(script); err != nil {
		t.Skip("server-filesystem not installed: run `make test-deps`")
	}
	return node, script
}

// text of n bytes: lines of letters and digits, nothing JSON escapes.
func lines(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	const alpha = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	for i := range b {
		if i%100 == 99 {
			b[i] = '\n'
		} else {
			b[i] = alpha[r.IntN(len(alpha))]
		}
	}
	return b
}

// storedRaw reads the message stored on tool.result.<agent>.<id>, as a
// client that does not resolve claims sees it.
func storedRaw(t *testing.T, nc *nats.Conn, agent, id string) *nats.Msg {
	t.Helper()
	m, err := nc.Request(subjects.ResultDirectGet(agent, id), nil, 5*time.Second)
	if err != nil || m.Header.Get("Status") != "" {
		t.Fatalf("direct get of the stored result: %v %v", err, m)
	}
	return m
}

// A real third-party MCP server (npm's server-filesystem, over stdio)
// reads 2.5 MiB and 25 MiB files; its results carry the text twice
// (content and structuredContent), about 5 MB and 50 MB. A NATS server with
// the stock 1 MB max_payload cannot carry those in a message, so the
// worker stores them in the Object Store and the client reads them back,
// byte for byte.
func TestLargeResultsFromServerFilesystem(t *testing.T) {
	node, script := filesystem(t)
	dir := t.TempDir()
	ns := natstest.StartWith(t, natsDefaultPayload, streams.Options{})
	pool := mcppool.New(testLog(t))
	t.Cleanup(func() { pool.Close() })
	pool.Upsert(registry.Server{Name: "fs", Transport: registry.TransportStdio, Command: node, Args: []string{script, dir}})
	startWorker(t, ns.Conn(t), pool, worker.Config{}, testLog(t))
	cl, err := client.New(ns.NC)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	for i, size := range []int{5 << 19, 25 << 20} {
		content := lines(size, uint64(i+1))
		path := filepath.Join(dir, "big.txt")
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		id := client.NewCallID()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		start := time.Now()
		res, err := cl.Call(ctx, "fs", "read_text_file", map[string]string{"path": path}, client.WithCallID(id), client.WithTimeout(3*time.Minute))
		cancel()
		t.Logf("file of %d bytes: result in %v", size, time.Since(start))
		if err != nil {
			t.Fatalf("%d bytes: %v", size, err)
		}
		if res.Status != subjects.StatusOK || res.Claim != nil {
			t.Fatalf("%d bytes: got %s %+v", size, res.Status, res.Error)
		}
		if got := text(t, res); !bytes.Equal([]byte(got), content) {
			t.Fatalf("%d bytes: the result's text (%d bytes) differs from the file", size, len(got))
		}
		// What is stored is a small stub that still says what happened,
		// with the claim in its headers.
		m := storedRaw(t, ns.NC, cl.Agent(), id)
		if n, _ := strconv.Atoi(m.Header.Get(subjects.HeaderClaimSize)); n < 2*size {
			t.Fatalf("%d bytes: the claimed result is %d bytes, want at least %d", size, n, 2*size)
		}
		if len(m.Data) > 4096 || m.Header.Get(subjects.HeaderClaim) == "" || m.Header.Get(subjects.HeaderStatus) != "ok" {
			t.Fatalf("%d bytes: stored %d bytes, headers %v", size, len(m.Data), m.Header)
		}
		for _, want := range []string{`"call_id":"` + id + `"`, `"server":"fs"`, `"tool":"read_text_file"`, `"status":"ok"`, `"claim":{"bucket":"toolbus_blobs"`} {
			if !strings.Contains(string(m.Data), want) {
				t.Fatalf("stub %s lacks %s", m.Data, want)
			}
		}
		// The direct-get path resolves too.
		again, err := cl.Result(context.Background(), id)
		if err != nil || !bytes.Equal([]byte(text(t, again)), content) {
			t.Fatalf("%d bytes: Result: %v", size, err)
		}
	}
}

// claimRig is a worker with the demo server over streamable HTTP, on a NATS
// server with the stock 1 MB max_payload.
func claimRig(t *testing.T, cfg worker.Config) (*natstest.Server, *client.Client) {
	t.Helper()
	ns := natstest.StartWith(t, natsDefaultPayload, streams.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	url, stop, err := demo.Serve(ctx, demo.TransportHTTP, "127.0.0.1:0", demo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	pool := mcppool.New(testLog(t))
	t.Cleanup(func() { pool.Close() })
	pool.Upsert(registry.Server{Name: "demo", Transport: registry.TransportHTTP, URL: url})
	startWorker(t, ns.Conn(t), pool, cfg, testLog(t))
	cl, err := client.New(ns.NC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return ns, cl
}

// Arguments over the max payload go to the Object Store too: the client
// puts them there, the worker reads them before calling the tool, and the
// echo comes back (through a claim as well).
func TestLargeArgumentsEchoed(t *testing.T) {
	_, cl := claimRig(t, worker.Config{})
	msg := string(lines(3<<20, 7))
	res := call(t, cl, "demo", "echo", map[string]string{"message": msg}, client.WithTimeout(time.Minute))
	if res.Status != subjects.StatusOK || text(t, res) != msg {
		t.Fatalf("echo of %d bytes: %s %+v (%d bytes back)", len(msg), res.Status, res.Error, len(res.Result))
	}
}

// A caller names, in its own call's claim header, another agent's object
// (or another bucket, or an object of another of its calls): the worker
// refuses before reading it or calling the tool, and says why.
func TestClaimForgedHeaderRefused(t *testing.T) {
	ns, _ := claimRig(t, worker.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	victimCall := client.NewCallID()
	secret, err := claim.Put(ctx, ns.JS, 0, "victim", victimCall, subjects.ClaimArgs, []byte(`{"message":"the victim's secret"}`), false)
	if err != nil {
		t.Fatal(err)
	}
	subj, _ := subjects.ToolCall("mallory", "demo", "echo")
	ownObject, err := claim.Put(ctx, ns.JS, 0, "mallory", client.NewCallID(), subjects.ClaimArgs, []byte(`{"message":"other call"}`), false)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		c    subjects.Claim
		want string
	}{
		{"another agent's object", *secret, `of agent "victim", not`},
		{"another call's object", *ownObject, ""}, // want: not the args of this call
		{"another bucket", func() subjects.Claim { c := *secret; c.Bucket = "KV_toolbus_servers"; return c }(), `bucket "KV_toolbus_servers"`},
		{"a malformed object", func() subjects.Claim { c := *secret; c.Object = "victim.>"; return c }(), "not <agent>.<call_id>.<kind>.<nonce>"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := client.NewCallID()
			if tc.want == "" {
				tc.want = "not the args of call " + id + ` of agent "mallory"`
			}
			hdr := nats.Header{subjects.HeaderCallID: []string{id}}
			claim.SetHeader(hdr, &tc.c)
			res, _ := publishRaw(t, ns.NC, subj, hdr, nil)
			if res.Status != subjects.StatusError || res.Error.Code != subjects.CodeInvalidRequest || !strings.Contains(res.Error.Message, tc.want) {
				t.Fatalf("got %s %+v, want invalid_request saying %q", res.Status, res.Error, tc.want)
			}
			if strings.Contains(string(res.Result), "secret") {
				t.Fatalf("the victim's arguments leaked: %s", res.Result)
			}
		})
	}
}

// Over the claim cap a result is still too_large, with a message that
// names the limit; with claims off (MaxClaimBytes < 0) the message limit
// is the cap.
func TestResultTooLargeForAClaim(t *testing.T) {
	for _, cfg := range []worker.Config{{MaxClaimBytes: 2 << 20}, {MaxResultBytes: 4096, MaxClaimBytes: -1}} {
		_, cl := claimRig(t, cfg)
		res := call(t, cl, "demo", "echo", map[string]string{"message": string(lines(600<<10, 3))}, client.WithTimeout(time.Minute))
		if cfg.MaxClaimBytes > 0 && res.Status != subjects.StatusOK {
			t.Fatalf("600 KiB under a 2 MiB cap: %s %+v", res.Status, res.Error)
		}
		if cfg.MaxClaimBytes < 0 && (res.Status != subjects.StatusError || res.Error.Code != subjects.CodeTooLarge) {
			t.Fatalf("claims off: got %s %+v, want too_large", res.Status, res.Error)
		}
	}
	// Arguments just under the cap, so the result (the same text wrapped
	// in MCP's and toolbus's JSON) is over it: too_large, naming
	// max_claim_bytes.
	args, _ := json.Marshal(map[string]string{"message": string(lines(1<<20, 4))})
	_, cl := claimRig(t, worker.Config{MaxClaimBytes: len(args) + 16})
	res := call(t, cl, "demo", "echo", json.RawMessage(args), client.WithTimeout(time.Minute))
	if res.Status != subjects.StatusError || res.Error.Code != subjects.CodeTooLarge || !strings.Contains(res.Error.Message, "max_claim_bytes") {
		t.Fatalf("over the cap: got %s %+v", res.Status, res.Error)
	}
}
