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

	"toolbus/subjects"
)

// settle is the one place that acknowledges a call. Order matters: store
// the result (await the PubAck), reply, ack. A crash (or an ack a restarted
// NATS server forgot) before the ack leaves a redelivery; it finds the
// stored result and acks without replying, because the first attempt may
// have replied already. A caller that missed its reply reads
// tool.result.<call_id> (the Go client does so by itself). No call id is
// answered twice.
func (w *Worker) settle(msg jetstream.Msg, out outcome, start time.Time) {
	switch out.action {
	case handBack:
		_ = msg.Nak()
		return
	case retryLater:
		_ = msg.NakWithDelay(time.Second)
		return
	}
	res := out.res
	data := out.stored
	if data != nil {
		if err := json.Unmarshal(data, res); err != nil {
			w.log.Error().Err(err).Str("call_id", res.CallID).Msg("stored result unreadable")
		}
	} else {
		var err error
		var raced bool
		if data, raced, err = w.record(res, start); err != nil {
			// Not stored: do not ack. The next attempt tries again.
			w.log.Error().Err(err).Str("call_id", res.CallID).Msg("could not store the result; the call will be redelivered")
			_ = msg.NakWithDelay(time.Second)
			return
		}
		// Another attempt stored first: it answers, this one stays silent.
		out.silent = out.silent || raced
	}
	if !out.silent {
		w.reply(out.reply, res, data)
	}
	if err := msg.Ack(); err != nil {
		w.log.Warn().Err(err).Str("call_id", res.CallID).Msg("ack not sent; the redelivery will find the stored result")
	}
	ev := w.log.Debug()
	if res.Status == subjects.StatusError && res.Error != nil {
		ev = w.log.Info().Str("code", string(res.Error.Code)).Str("error", res.Error.Message)
	}
	ev.Str("call_id", res.CallID).Str("server", res.Server).Str("tool", res.Tool).Int("attempt", res.Attempt).
		Str("outcome", string(res.Status)).Float64("duration_ms", res.DurationMS).Msg("call done")
}

// record encodes res and stores it on tool.result.<id>. Results are
// write-once: if another attempt already stored one for this call id, that
// one is returned (and res updated to it) with raced set, so a caller never
// hears two different answers. A result without a call id (the call had
// none) is only encoded.
func (w *Worker) record(res *subjects.Result, start time.Time) (data []byte, raced bool, err error) {
	res.DurationMS = float64(time.Since(start).Microseconds()) / 1000
	data = w.encode(res)
	if res.CallID == "" {
		return data, false, nil
	}
	stored, err := w.store(res.CallID, resultHeader(res), data)
	if err != nil {
		return nil, false, err
	}
	if stored != nil {
		_ = json.Unmarshal(stored, res)
		return stored, true, nil
	}
	return data, false, nil
}

func (w *Worker) reply(subject string, res *subjects.Result, data []byte) {
	if subject == "" {
		return
	}
	if err := w.nc.PublishMsg(&nats.Msg{Subject: subject, Header: resultHeader(res), Data: data}); err != nil {
		w.log.Warn().Err(err).Str("call_id", res.CallID).Msg("reply not sent; the caller can read tool.result.<call_id>")
	}
}

// encode marshals a result, replacing one that is too large to publish
// with a too_large error. The MCP result is spliced in as it came: it is
// already compact JSON, and encoding/json would scan and copy it again.
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
	if len(data) > w.cfg.MaxResultBytes {
		n := len(data)
		res.Status, res.Result = subjects.StatusError, nil
		res.Error = &subjects.Error{Code: subjects.CodeTooLarge, Message: fmt.Sprintf("the tool's result is %d bytes, over the %d-byte limit; ask the tool for less (paging, filters)", n, w.cfg.MaxResultBytes)}
		data, _ = json.Marshal(res)
	}
	return data
}

// store publishes the result to tool.result.<id> only if none is stored
// there yet, and waits for the PubAck, retrying through a NATS reconnect for
// up to AckWait. When a result already exists it returns that one.
func (w *Worker) store(id string, hdr nats.Header, data []byte) (existing []byte, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.AckWait)
	defer cancel()
	msg := &nats.Msg{Subject: subjects.ToolResult(id), Header: hdr, Data: data}
	for attempt := 0; ; attempt++ {
		// Write-once by the expected last sequence, not by a message id:
		// the subject is the call id, and the server keeps no id map.
		_, err := w.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(0))
		var apiErr *jetstream.APIError
		switch {
		case err == nil:
			return nil, nil
		case errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence:
			m, gerr := w.results.GetLastMsgForSubject(ctx, msg.Subject)
			if gerr == nil {
				if bytes.Equal(m.Data, data) {
					return nil, nil // ours: an earlier try stored it, its PubAck was lost
				}
				return m.Data, nil
			}
			err = gerr
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(min(time.Duration(attempt+1)*100*time.Millisecond, time.Second)):
		}
	}
}

func resultHeader(res *subjects.Result) nats.Header {
	hdr := nats.Header{subjects.HeaderStatus: []string{string(res.Status)}}
	if res.Status == subjects.StatusError && res.Error != nil {
		hdr[subjects.HeaderServiceError] = []string{oneLine(res.Error.Message)}
		hdr[subjects.HeaderServiceErrorCode] = []string{strconv.Itoa(res.Error.Code.HTTPish())}
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
