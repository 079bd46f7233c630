package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/toolbus-dev/toolbus/internal/claim"
	"github.com/toolbus-dev/toolbus/subjects"
)

// settle is the one place that acknowledges a call. Order matters: store
// the result (await the PubAck), then ack. Storing is the reply: the
// caller subscribes to tool.reply.<agent>.<call_id> before it publishes,
// and TOOL_RESULTS republishes the result there once stored (a write the
// stream refuses reaches nobody). No worker publishes anywhere a caller
// chose. A crash (or an ack a restarted NATS server forgot) before
// the ack leaves a redelivery; it finds the stored result and acks
// without storing again. No call id of an agent has two stored answers.
// answered says the call was answered and acked.
//
// ack settles the call; msg, its message, is needed only to bury it (nil
// once the call ran: dropMessage).
func (w *Worker) settle(ack *ackSubject, msg jetstream.Msg, out outcome, start time.Time) (answered bool) {
	switch out.action {
	case handBack:
		_ = ack.Nak()
		return false
	case retryLater:
		_ = ack.NakWithDelay(time.Second)
		return false
	case bury:
		if msg == nil { // a call that ran had an agent and a call id: a bug
			w.log.Error().Str("call_id", out.res.CallID).Msg("a bug in toolbus: a call that ran has no address; handing it back")
			_ = ack.NakWithDelay(time.Second)
			return false
		}
		w.settleUnaddressable(msg, out.res)
		return false
	}
	res := out.res
	if out.stored != nil {
		if err := json.Unmarshal(out.stored, res); err != nil {
			w.log.Error().Err(err).Str("call_id", res.CallID).Msg("stored result unreadable")
		}
		if out.announce {
			w.announce(res, out.stored, out.storedSeq)
		}
	} else if _, err := w.record(res, start); err != nil {
		// Not stored: do not ack. The next attempt tries again.
		w.log.Error().Err(err).Str("call_id", res.CallID).Msg("could not store the result; the call will be redelivered")
		_ = ack.NakWithDelay(time.Second)
		return false
	}
	if err := ack.Ack(); err != nil {
		w.log.Warn().Err(err).Str("call_id", res.CallID).Msg("ack not sent; the redelivery will find the stored result")
	}
	w.acks.Add(1)
	ev := w.log.Debug()
	if res.Status == subjects.StatusError && res.Error != nil {
		ev = w.log.Info().Str("code", string(res.Error.Code)).Str("error", res.Error.Message)
	}
	ev.Str("call_id", res.CallID).Str("agent_id", res.Agent).Str("server", res.Server).Str("tool", res.Tool).Int("attempt", res.Attempt).
		Str("outcome", string(res.Status)).Float64("duration_ms", res.DurationMS).Msg("call done")
	return true
}

// settleUnaddressable moves a call with no valid agent or call id to
// TOOL_DEAD with the reason, then acks it: nobody can be answered, and the
// operator finds it with `toolbus dlq list`. If the dead letter cannot be
// written, the call is handed back to try again later.
func (w *Worker) settleUnaddressable(msg jetstream.Msg, res *subjects.Result) {
	reason := "the call cannot be answered: no valid agent and call id"
	if res.Error != nil {
		reason += ": " + res.Error.Message
	}
	md, _ := msg.Metadata()
	var seq, deliveries uint64
	if md != nil {
		seq, deliveries = md.Sequence.Stream, md.NumDelivered
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.AckWait)
	defer cancel()
	if err := w.bury(ctx, msg.Subject(), msg.Headers(), msg.Data(), seq, deliveries, reason); err != nil {
		w.log.Error().Err(err).Str("subject", msg.Subject()).Msg("could not move an unanswerable call to the dead letters; retrying later")
		_ = msg.NakWithDelay(time.Second)
		return
	}
	_ = msg.Ack()
	w.observer.DeadLettered(res.Server, res.Tool, reason)
	w.log.Warn().Str("subject", msg.Subject()).Str("reason", reason).Msg("call moved to dead letters")
}

// record encodes res and stores it on tool.result.<agent>.<id>. Results are
// write-once: if another attempt already stored one for this call, that
// one is returned (and res updated to it) with raced set, so a caller never
// reads two different answers.
func (w *Worker) record(res *subjects.Result, start time.Time) (raced bool, err error) {
	res.DurationMS = float64(time.Since(start).Microseconds()) / 1000
	data, hdr := w.encode(res), resultHeader(res)
	if len(data) > w.cfg.MaxResultBytes {
		data, hdr = w.claimResult(res, data) // too large for a message: a claim-check (claim.go)
	}
	stored, seq, err := w.store(subjects.ToolResult(res.Agent, res.CallID), hdr, data)
	if err != nil {
		return false, err
	}
	if stored != nil {
		_ = json.Unmarshal(stored, res)
		if res.Attempt == 1 {
			// A first delivery that lost to an earlier result: its call id
			// was re-sent (a tool safe to re-run skips the lookup), and its
			// caller listens for that earlier answer.
			w.announce(res, stored, seq)
		}
		return true, nil
	}
	return false, nil
}

// announce stores the already stored result once more, unchanged, so a
// caller that re-sent its call id and subscribed again receives it. The
// expected sequence keeps it write-once: if anything else was stored
// meanwhile, nothing is written.
func (w *Worker) announce(res *subjects.Result, data []byte, seq uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.AckWait)
	defer cancel()
	msg := &nats.Msg{Subject: subjects.ToolResult(res.Agent, res.CallID), Header: resultHeader(res), Data: data}
	if _, err := w.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(seq)); err != nil {
		w.log.Warn().Err(err).Str("call_id", res.CallID).Msg("stored result not announced again; the caller can read it by direct get")
	}
}

// encode marshals a result, replacing one over the claim cap (or, with
// claims off, too large to publish) with a too_large error. The MCP
// result is spliced in as it came: it is already compact JSON, and
// encoding/json would scan and copy it again.
func (w *Worker) encode(res *subjects.Result) []byte {
	raw := res.Result
	res.Result = nil
	data, err := json.Marshal(res)
	if err != nil {
		res.Status = subjects.StatusError
		res.Error = &subjects.Error{Code: subjects.CodeInternal, Message: "result could not be encoded: " + err.Error()}
		data, _ = json.Marshal(res)
		raw = nil
	}
	if len(raw) > 0 {
		out := make([]byte, 0, len(data)+len(raw)+12)
		out = append(out, data[:len(data)-1]...)
		out = append(out, `,"result":`...)
		out = append(out, raw...)
		data = append(out, '}')
		res.Result = raw
	}
	if limit, knob := w.cfg.MaxClaimBytes, "max_claim_bytes"; len(data) > max(limit, w.cfg.MaxResultBytes) {
		if limit < w.cfg.MaxResultBytes {
			limit, knob = w.cfg.MaxResultBytes, "max_result_bytes"
		}
		n := len(data)
		res.Status, res.Result = subjects.StatusError, nil
		res.Error = &subjects.Error{Code: subjects.CodeTooLarge, Message: fmt.Sprintf("the tool's result is %d bytes, over the %d-byte limit (worker %s); ask the tool for less (paging, filters)", n, limit, knob)}
		data, _ = json.Marshal(res)
	}
	return data
}

// store publishes the result to subject only if none is stored there yet,
// and waits for the PubAck. Each try has its own timeout, and tries go on
// through NATS reconnects and leader changes for storeBudget (at least
// twice AckWait; the lease is renewed meanwhile): a finished result is not
// thrown away while there is time to store it. When a result already
// exists it returns that one.
func (w *Worker) store(subject string, hdr nats.Header, data []byte) (existing []byte, seq uint64, err error) {
	msg := &nats.Msg{Subject: subject, Header: hdr, Data: data}
	err = tryFor(context.Background(), max(storeBudget, 2*w.cfg.AckWait), attemptTimeout, func(ctx context.Context) error {
		// Write-once by the expected last sequence, not by a message id:
		// the subject is the call id, and the server keeps no id map.
		_, err := w.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(0))
		var apiErr *jetstream.APIError
		if !errors.As(err, &apiErr) || apiErr.ErrorCode != jetstream.JSErrCodeStreamWrongLastSequence {
			return err
		}
		m, err := w.results.GetLastMsgForSubject(ctx, msg.Subject)
		if err != nil {
			return err
		}
		if !bytes.Equal(m.Data, data) {
			existing, seq = m.Data, m.Sequence
		} // else ours: an earlier try stored it, its PubAck was lost
		return nil
	})
	return existing, seq, err
}

func resultHeader(res *subjects.Result) nats.Header {
	hdr := nats.Header{subjects.HeaderStatus: []string{string(res.Status)}}
	if res.Status == subjects.StatusError && res.Error != nil {
		hdr[subjects.HeaderServiceError] = []string{oneLine(res.Error.Message)}
		hdr[subjects.HeaderServiceErrorCode] = []string{strconv.Itoa(res.Error.Code.HTTPish())}
	}
	if res.Claim != nil {
		claim.SetHeader(hdr, res.Claim)
	}
	return hdr
}

// oneLine keeps a header value on one line.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}
