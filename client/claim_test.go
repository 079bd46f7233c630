package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/toolbus-dev/toolbus/client"
	"github.com/toolbus-dev/toolbus/internal/claim"
	"github.com/toolbus-dev/toolbus/internal/natstest"
	"github.com/toolbus-dev/toolbus/internal/streams"
	"github.com/toolbus-dev/toolbus/subjects"
)

// The client resolves a claimed result only when the claim names this
// call's result object and the body read answers this call; otherwise
// Result fails with ErrClaim and says why. The "worker" is the test, which
// stores stubs on tool.result.<agent>.<id> as a worker would. After the
// bucket's max age the object is gone, and the client says so.
func TestClaimedResultChecks(t *testing.T) {
	// The bucket keeps objects an hour while the checks read them (a put
	// and read of 3 MB can take 2 s on a loaded machine); the expiry check
	// at the end cuts its max age to a second.
	ns := natstest.StartWith(t, func(o *server.Options) { o.MaxPayload = 1 << 20 }, streams.Options{BlobMaxAge: time.Hour})
	cl, err := client.New(ns.NC, client.WithAgent("alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	text := strings.Repeat("large ", 500_000)
	full := func(agent, id string) []byte {
		r, _ := json.Marshal(map[string]any{"content": []map[string]string{{"type": "text", "text": text}}})
		b, _ := json.Marshal(subjects.Result{CallID: id, Agent: agent, Server: "demo", Tool: "echo", Status: subjects.StatusOK, Result: r})
		return b
	}
	store := func(id string, c *subjects.Claim) {
		t.Helper()
		stub, _ := json.Marshal(subjects.Result{CallID: id, Agent: "alice", Server: "demo", Tool: "echo", Status: subjects.StatusOK, Claim: c})
		msg := &nats.Msg{Subject: subjects.ToolResult("alice", id), Header: nats.Header{}, Data: stub}
		claim.SetHeader(msg.Header, c)
		if _, err := ns.JS.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	put := func(agent, id, about string) *subjects.Claim {
		t.Helper()
		c, err := claim.Put(ctx, ns.JS, claim.ChunkSize(ns.NC), agent, id, subjects.ClaimResult, full(agent, about), true)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	good := put("alice", "good", "good")
	store("good", good)
	res, err := cl.Result(ctx, "good")
	if err != nil || res.Claim != nil || !strings.Contains(string(res.Result), text) {
		t.Fatalf("a good claim: %v", err)
	}

	store("bobs", put("bob", "bobs", "bobs"))
	store("other-call", put("alice", "other-call", "another")) // the body answers call "another"
	for id, want := range map[string]string{"bobs": `of agent "bob", not`, "other-call": "it answers call \"another\""} {
		if _, err := cl.Result(ctx, id); !errors.Is(err, client.ErrClaim) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want ErrClaim saying %q", id, err, want)
		}
	}

	// Expiry: wait for the bucket to drop the object; the stub (kept as
	// long as results, 24h) still says what happened, and Result says the
	// object expired.
	blobs, err := ns.JS.Stream(ctx, subjects.StreamBlobs)
	if err != nil {
		t.Fatal(err)
	}
	cfg := blobs.CachedInfo().Config
	cfg.MaxAge, cfg.Duplicates = time.Second, time.Second
	if _, err := ns.JS.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	natstest.CheckFor(t, 20*time.Second, func() error {
		_, err := cl.Result(ctx, "good")
		if errors.Is(err, client.ErrClaim) && strings.Contains(err.Error(), "expired") {
			return nil
		}
		return errors.New("still readable")
	})
}
