package worker

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/toolbus-dev/toolbus/internal/natstest"
)

// A settled delivery is settled once, as jetstream.Msg has it: the lease's
// renewal that comes a moment after a delayed nak (the heartbeat took its
// list of leases before the settlement) is not sent, since JetStream would
// restart the ack wait with it and redeliver after AckWait, not the delay;
// and a second settlement is refused.
func TestAckSubjectSettlesOnce(t *testing.T) {
	ns := natstest.StartBare(t)
	ctx := context.Background()
	s, err := ns.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "ACKT", Subjects: []string{"ackt.>"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ns.JS.Publish(ctx, "ackt.1", []byte("x")); err != nil {
		t.Fatal(err)
	}
	cons, err := s.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	fetch := func(wait time.Duration) jetstream.Msg {
		t.Helper()
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(wait))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			return m
		}
		return nil
	}
	msg := fetch(5 * time.Second)
	if msg == nil {
		t.Fatal("no delivery")
	}
	a := &ackSubject{nc: ns.NC, reply: msg.Reply()}
	if err := a.NakWithDelay(300 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := a.InProgress(); !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
		t.Errorf("renewing a settled lease: %v, want %v", err, jetstream.ErrMsgAlreadyAckd)
	}
	if err := a.Ack(); !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
		t.Errorf("a second settlement: %v, want %v", err, jetstream.ErrMsgAlreadyAckd)
	}
	start := time.Now()
	again := fetch(10 * time.Second)
	if again == nil {
		t.Fatal("not delivered again after the nak's delay")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("delivered again after %v, want about the nak's 300ms", took)
	}
	_ = again.Ack()
}
