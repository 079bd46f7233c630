package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/toolbus-dev/toolbus/internal/demo"
	"github.com/toolbus-dev/toolbus/internal/natstest"
	"github.com/toolbus-dev/toolbus/internal/testutil"
	"github.com/toolbus-dev/toolbus/subjects"
)

// The floor's call id names its result's subject: a call whose id is not
// one plain token is terminated, and nothing is published for it.
func TestFloorRefusesBadCallID(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := natstest.StartBare(t)
	url, stop, err := demo.Serve(ctx, demo.TransportHTTP, "127.0.0.1:0", demo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	f, err := startFloor(ctx, s.JS, Options{ProtocolVersion: mcp.ProtocolVersion20251125}, url)
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	if !f.marks("echo_plain") || f.marks("echo") {
		t.Errorf("marks echo_plain %v, echo %v: want only the tool without annotations", f.marks("echo_plain"), f.marks("echo"))
	}
	replies, err := s.NC.SubscribeSync(floorReplyPre + ">")
	if err != nil {
		t.Fatal(err)
	}
	subj, _ := floorCall("agent1", "echo_plain")
	for _, id := range []string{"a.b", "*", "", "good"} {
		m := nats.NewMsg(subj)
		m.Data = []byte(`{"message":"hi"}`)
		if id != "" {
			m.Header.Set(subjects.HeaderCallID, id)
		}
		if _, err := s.JS.PublishMsg(ctx, m); err != nil {
			t.Fatalf("publish %q: %v", id, err)
		}
	}
	r, err := replies.NextMsg(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r.Subject != floorReplyPre+"agent1.good" || r.Header.Get(subjects.HeaderStatus) != "ok" {
		t.Fatalf("reply on %s, status %q: %s", r.Subject, r.Header.Get(subjects.HeaderStatus), r.Data)
	}
	// Every call settled, and the good one's is the only result stored.
	testutil.CheckFor(t, 30*time.Second, func() error {
		cs, err := s.JS.Stream(ctx, floorCalls)
		if err != nil {
			return err
		}
		ci, err := cs.Info(ctx, jetstream.WithSubjectFilter(floorCallPre+">")) // not the keepers
		if err != nil {
			return err
		}
		ri, err := s.JS.Stream(ctx, floorResults)
		if err != nil {
			return err
		}
		if len(ci.State.Subjects) != 0 || ri.CachedInfo().State.Msgs != 1 {
			return fmt.Errorf("calls left %v, %d results stored", ci.State.Subjects, ri.CachedInfo().State.Msgs)
		}
		return nil
	})
}
