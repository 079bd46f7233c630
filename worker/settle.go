package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"toolbus/subjects"
)

// settle is the one place that stores and sends a result and acknowledges
// the call. Order matters: store (wait for the PubAck), then reply, then
// ack. A crash between any two steps leaves the call to be redelivered, and
// the redelivery answers from the stored result without running the tool.
func (w *Worker) settle(msg jetstream.Msg, out outcome, start time.Time) {
	if out.action == handBack {
		_ = msg.Nak()
		return
	}
	res := out.res
	data := out.stored
	if data == nil {
		res.DurationMS = float64(time.Since(start).Microseconds()) / 1000
		data = w.encode(res)
	} else if err := json.Unmarshal(data, res); err != nil {
		w.log.Error().Err(err).Str("call_id", res.CallID).Msg("stored result unreadable")
	}
	hdr := resultHeader(res)
	if res.CallID != "" && out.stored == nil {
		if err := w.store(res.CallID, hdr, data); err != nil {
			// Not stored: do not ack. JetStream redelivers the call after
			// AckWait and the next attempt tries again.
			w.log.Error().Err(err).Str("call_id", res.CallID).Msg("could not store the result; the call will be redelivered")
			_ = msg.NakWithDelay(time.Second)
			return
		}
	}
	if out.reply != "" {
		if err := w.nc.PublishMsg(&nats.Msg{Subject: out.reply, Header: hdr, Data: data}); err != nil {
			w.log.Warn().Err(err).Str("call_id", res.CallID).Msg("reply not sent; the caller can read tool.result.<call_id>")
		}
	}
	if err := msg.Ack(); err != nil {
		w.log.Warn().Err(err).Str("call_id", res.CallID).Msg("ack failed; a redelivery will answer from the stored result")
	}
	ev := w.log.Debug()
	if res.Status == subjects.StatusError {
		ev = w.log.Info().Str("code", string(res.Error.Code)).Str("error", res.Error.Message)
	}
	ev.Str("call_id", res.CallID).Str("server", res.Server).Str("tool", res.Tool).
		Str("outcome", string(res.Status)).Float64("duration_ms", res.DurationMS).Msg("call done")
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

// store publishes the result to tool.result.<id> and waits for the PubAck,
// retrying through a NATS reconnect for up to AckWait.
func (w *Worker) store(id string, hdr nats.Header, data []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.AckWait)
	defer cancel()
	msg := &nats.Msg{Subject: subjects.ToolResult(id), Header: hdr, Data: data}
	var err error
	for attempt := 0; ; attempt++ {
		if _, err = w.js.PublishMsg(ctx, msg, jetstream.WithMsgID(id)); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(min(time.Duration(attempt+1)*100*time.Millisecond, time.Second)):
		}
	}
}

func resultHeader(res *subjects.Result) nats.Header {
	hdr := nats.Header{subjects.HeaderStatus: []string{string(res.Status)}}
	if res.CallID != "" {
		hdr[subjects.HeaderCallID] = []string{res.CallID}
	}
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
