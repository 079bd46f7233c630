package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/toolbus-dev/toolbus/internal/streams"
	"github.com/toolbus-dev/toolbus/subjects"
)

// deadLetters consumes the advisories JetStream publishes when a call hit
// MaxDeliver or was terminated, and for each: copies the call to
// tool.dead.<agent>.<server>.<tool> with the reason, answers the caller
// with a dead_letter error result, and removes the call from the work queue. The
// advisories are kept in a stream, so one sent while no worker listened is
// handled later; workers share one durable consumer on it.
func (w *Worker) deadLetters(ctx context.Context) {
	var cons jetstream.Consumer
	err := retry(ctx, func() backoff.BackOff { return backoff.NewConstantBackOff(2 * time.Second) }, 0,
		func(err error, _ time.Duration) {
			w.log.Warn().Err(err).Msg("dead letters: cannot get the advisories consumer yet; retrying")
		},
		func(ctx context.Context) (err error) {
			cons, err = w.js.CreateOrUpdateConsumer(ctx, subjects.StreamAdvisories, streams.DeadLetterConsumer())
			return err
		})
	if err != nil {
		return // ctx ended
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if err := w.deadLetter(ctx, m.Data()); err != nil {
			w.log.Error().Err(err).Msg("dead letter not moved; will retry")
			_ = m.NakWithDelay(2 * time.Second)
			return
		}
		_ = m.Ack()
	}, jetstream.PullMaxMessages(16))
	if err != nil {
		w.log.Error().Err(err).Msg("dead letters: consume")
		return
	}
	<-ctx.Done()
	cc.Stop()
	<-cc.Closed()
}

func (w *Worker) deadLetter(ctx context.Context, data []byte) error {
	var adv subjects.Advisory
	if err := json.Unmarshal(data, &adv); err != nil {
		return nil // not ours to fix; drop it
	}
	raw, err := w.calls.GetMsg(ctx, adv.StreamSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil // acked or removed meanwhile
	}
	if err != nil {
		return fmt.Errorf("read call %d: %w", adv.StreamSeq, err)
	}
	reason := fmt.Sprintf("delivered %d times without an answer (the worker running it died or hung each time)", adv.Deliveries)
	if adv.Reason != "" || adv.Type == "io.nats.jetstream.advisory.v1.terminated" {
		reason = "terminated: " + adv.Reason
	}

	if err := w.bury(ctx, raw.Subject, raw.Header, raw.Data, adv.StreamSeq, adv.Deliveries, reason); err != nil {
		return err
	}

	// Store the answer (which delivers it to the caller), then remove the
	// call: a crash before the removal redoes it all (the stored answer is
	// reused); never two answers.
	c, _ := decodeCall(raw.Subject, raw.Header, raw.Data)
	if c.addressable() {
		res := &subjects.Result{CallID: c.id, Agent: c.agent, Server: c.server, Tool: c.tool, Worker: w.cfg.Name, Attempt: int(adv.Deliveries),
			Status: subjects.StatusError, Error: &subjects.Error{Code: subjects.CodeDeadLetter, Message: reason + "; the call is in " + subjects.StreamDead + " (`toolbus dlq list`)"}}
		if _, err := w.record(res, time.Now()); err != nil {
			return fmt.Errorf("store the dead_letter result: %w", err)
		}
	}
	if err := w.calls.DeleteMsg(ctx, adv.StreamSeq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("remove call %d from %s: %w", adv.StreamSeq, subjects.StreamCalls, err)
	}
	w.observer.DeadLettered(c.server, c.tool, reason)
	w.log.Warn().Str("call_id", c.id).Str("agent_id", c.agent).Str("server", c.server).Str("tool", c.tool).Str("reason", reason).Msg("call moved to dead letters")
	return nil
}

// bury copies a call to tool.dead.<agent>.<server>.<tool> with the reason.
// A call whose subject cannot be read goes to tool.dead._invalid._invalid._invalid.
// The dead letter's own id is derived from the call's stream sequence, so
// burying twice (a crash before the ack) stores it once.
func (w *Worker) bury(ctx context.Context, subject string, hdr nats.Header, data []byte, seq, deliveries uint64, reason string) error {
	c, _ := decodeCall(subject, hdr, data)
	agent, server, tool := c.agent, c.server, c.tool
	if agent == "" || server == "" || tool == "" {
		agent, server, tool = "_invalid", "_invalid", "_invalid"
	}
	deadSubj, _ := subjects.ToolDead(agent, server, tool)
	dead := nats.NewMsg(deadSubj)
	// Keep the call's own headers, not JetStream's publish expectations
	// (Nats-Expected-*, Nats-Msg-Id), which would refuse this publish.
	for k, v := range hdr {
		if !strings.HasPrefix(k, "Nats-") {
			dead.Header[k] = v
		}
	}
	dead.Header.Set(subjects.HeaderDeadReason, oneLine(reason))
	dead.Header.Set(subjects.HeaderOrigSubject, subject)
	dead.Header.Set("Toolbus-Deliveries", strconv.FormatUint(deliveries, 10))
	dead.Header.Set(subjects.HeaderCallID, "dead-"+strconv.FormatUint(seq, 10))
	dead.Header.Set(headerOrigCallID, hdr.Get(subjects.HeaderCallID))
	dead.Data = data
	if _, err := w.js.PublishMsg(ctx, dead); err != nil {
		return fmt.Errorf("publish dead letter: %w", err)
	}
	return nil
}
