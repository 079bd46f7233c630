package claim_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/toolbus-dev/toolbus/internal/claim"
	"github.com/toolbus-dev/toolbus/internal/natstest"
	"github.com/toolbus-dev/toolbus/internal/streams"
	"github.com/toolbus-dev/toolbus/subjects"
)

func onePayload(o *server.Options) { o.MaxPayload = 1 << 20 }

func random(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// A claimed body is a standard Object Store object: Get reads it back by
// direct gets, and so does nats.go's Object Store client (and the nats
// CLI when TOOLBUS_NATS_CLI names it), whole and verified.
func TestClaimRoundTripIsAnObjectStoreObject(t *testing.T) {
	ns := natstest.StartWith(t, onePayload, streams.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	body := random(t, 3<<20+17)
	c, err := claim.Put(ctx, ns.JS, claim.ChunkSize(ns.NC), "alice", "call1", subjects.ClaimResult, body, true)
	if err != nil {
		t.Fatal(err)
	}
	if c.Chunks != 13 || c.Size != int64(len(body)) || c.Bucket != subjects.BucketBlobs {
		t.Fatalf("claim %+v", c)
	}
	got, err := claim.Get(ctx, ns.NC, c, "alice", "call1", subjects.ClaimResult, claim.DefaultMaxBytes)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("Get: %v (%d bytes)", err, len(got))
	}

	obs, err := ns.JS.ObjectStore(ctx, subjects.BucketBlobs)
	if err != nil {
		t.Fatal(err)
	}
	got, err = obs.GetBytes(ctx, c.Object)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("Object Store client: %v (%d bytes)", err, len(got))
	}
	info, err := obs.GetInfo(ctx, c.Object)
	if err != nil || info.Metadata["toolbus-agent"] != "alice" || info.Digest != c.Digest {
		t.Fatalf("object info %+v: %v", info, err)
	}

	if cli := os.Getenv("TOOLBUS_NATS_CLI"); cli != "" {
		out := filepath.Join(t.TempDir(), "body")
		cmd := exec.CommandContext(ctx, cli, "--server", ns.URL, "object", "get", subjects.BucketBlobs, c.Object, "--output", out, "--force")
		if msg, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nats object get: %v\n%s", err, msg)
		}
		if got, _ := os.ReadFile(out); !bytes.Equal(got, body) {
			t.Fatalf("nats object get: %d bytes differ", len(got))
		}

	}
}

// Get reads only what the claim may name: the reader's own call's object
// of the right kind, in toolbus's bucket, within the cap, matching size and
// digest.
func TestClaimRefusesWhatIsNotThisCalls(t *testing.T) {
	ns := natstest.StartWith(t, onePayload, streams.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	body := random(t, 1<<20)
	c, err := claim.Put(ctx, ns.JS, 0, "bob", "call1", subjects.ClaimArgs, body, false)
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(*subjects.Claim)) *subjects.Claim { x := *c; f(&x); return &x }
	cases := []struct {
		name            string
		c               *subjects.Claim
		agent, id, kind string
		max             int64
		want            error
	}{
		{"another agent", c, "mallory", "call1", subjects.ClaimArgs, 1 << 30, claim.ErrForeign},
		{"another call", c, "bob", "call2", subjects.ClaimArgs, 1 << 30, claim.ErrForeign},
		{"another kind", c, "bob", "call1", subjects.ClaimResult, 1 << 30, claim.ErrForeign},
		{"another bucket", edit(func(x *subjects.Claim) { x.Bucket = "toolbus_ledger" }), "bob", "call1", subjects.ClaimArgs, 1 << 30, claim.ErrForeign},
		{"a wildcard", edit(func(x *subjects.Claim) { x.Object = "bob.call1.args.*" }), "bob", "call1", subjects.ClaimArgs, 1 << 30, subjects.ErrInvalidClaim},
		{"over the cap", c, "bob", "call1", subjects.ClaimArgs, 1000, claim.ErrTooLarge},
		{"a wrong digest", edit(func(x *subjects.Claim) { x.Digest = "SHA-256=AAAA" }), "bob", "call1", subjects.ClaimArgs, 1 << 30, claim.ErrCorrupt},
		{"a smaller size", edit(func(x *subjects.Claim) { x.Size-- }), "bob", "call1", subjects.ClaimArgs, 1 << 30, claim.ErrCorrupt},
		{"more chunks", edit(func(x *subjects.Claim) { x.Chunks++ }), "bob", "call1", subjects.ClaimArgs, 1 << 30, claim.ErrMissing},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := claim.Get(ctx, ns.NC, tc.c, tc.agent, tc.id, tc.kind, tc.max)
			if !errors.Is(err, tc.want) || got != nil {
				t.Fatalf("got %d bytes, %v; want %v", len(got), err, tc.want)
			}
			t.Log(err)
		})
	}
}

// Claimed bodies expire with the bucket's max age (about the results'):
// readable at first, then Get says the object is gone.
func TestClaimExpires(t *testing.T) {
	// The max age is cut to a second only once the fresh read is done: a
	// 2 MiB put and read can take a second on a loaded machine.
	ns := natstest.StartWith(t, onePayload, streams.Options{BlobMaxAge: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	body := random(t, 2<<20)
	c, err := claim.Put(ctx, ns.JS, 0, "alice", "call1", subjects.ClaimResult, body, true)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := claim.Get(ctx, ns.NC, c, "alice", "call1", subjects.ClaimResult, claim.DefaultMaxBytes); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("fresh: %v", err)
	}
	st, err := ns.JS.Stream(ctx, subjects.StreamBlobs)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.MaxAge, cfg.Duplicates = time.Second, time.Second
	if _, err := ns.JS.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	natstest.CheckFor(t, 20*time.Second, func() error {
		_, err := claim.Get(ctx, ns.NC, c, "alice", "call1", subjects.ClaimResult, claim.DefaultMaxBytes)
		if errors.Is(err, claim.ErrMissing) {
			return nil
		}
		return errors.New("still readable")
	})
	// Get misses the object as soon as one of its messages expired; each
	// expires at its own age, so the last ones may follow a moment later.
	natstest.CheckFor(t, 20*time.Second, func() error {
		info, err := st.Info(ctx)
		if err != nil {
			return err
		}
		if n := info.State.Msgs; n != 0 {
			return fmt.Errorf("%d messages left in %s", n, subjects.StreamBlobs)
		}
		return nil
	})
}
