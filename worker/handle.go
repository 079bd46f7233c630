package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"toolbus/mcppool"
	"toolbus/subjects"
)

// action is what settle does with the call message after the result.
type action int

const (
	ack      action = iota // done: the result (if any) is stored and sent
	handBack               // Nak now: another worker (or this one) takes it again
)

// outcome is what handling a call produced. Handlers return one; settle
// alone turns it into publishes and the ack.
type outcome struct {
	res    *subjects.Result
	stored []byte // the result as already stored in TOOL_RESULTS (redelivery)
	reply  string
	action action
}

func (w *Worker) process(ctx context.Context, msg jetstream.Msg) {
	start := time.Now()
	out := w.handle(ctx, msg, start)
	w.settle(msg, out, start)
}

// fail returns an error outcome with a message a person can act on.
func fail(res *subjects.Result, code subjects.Code, format string, a ...any) outcome {
	res.Status = subjects.StatusError
	res.Error = &subjects.Error{Code: code, Message: fmt.Sprintf(format, a...)}
	return outcome{res: res}
}

func (w *Worker) handle(ctx context.Context, msg jetstream.Msg, start time.Time) (out outcome) {
	h := msg.Headers()
	id := h.Get(subjects.HeaderCallID)
	reply := h.Get(subjects.HeaderReply)
	res := &subjects.Result{CallID: id, Worker: w.cfg.Name, Attempt: 1}
	if md, err := msg.Metadata(); err == nil {
		res.Attempt = int(md.NumDelivered)
	}
	defer func() { out.reply = reply }()

	if reply != "" && !subjects.ValidPublishSubject(reply) {
		w.log.Warn().Str("call_id", id).Str("reply", reply).Msg("ignoring invalid reply subject")
		reply = ""
	}
	server, tool, err := subjects.ParseToolCall(msg.Subject())
	res.Server, res.Tool = server, tool
	if err != nil {
		return fail(res, subjects.CodeInvalidRequest, "bad call subject %q: %v; publish to tool.call.<server>.<tool> with both names escaped", msg.Subject(), err)
	}
	if err := subjects.ValidateCallID(id); err != nil {
		res.CallID = ""
		return fail(res, subjects.CodeInvalidRequest, "%v", err)
	}
	if res.Attempt > 1 {
		// A redelivery: if an earlier attempt stored its result, answer with
		// that and do not run the tool again.
		if m, err := w.results.GetLastMsgForSubject(ctx, subjects.ToolResult(id)); err == nil {
			return outcome{stored: m.Data, res: res}
		}
	}

	args := bytes.TrimSpace(msg.Data())
	switch {
	case len(args) == 0:
		args = []byte("{}")
	case args[0] != '{':
		if json.Valid(args) {
			return fail(res, subjects.CodeInvalidArguments, "arguments must be a JSON object, got %s", jsonKind(args[0]))
		}
		return fail(res, subjects.CodeInvalidRequest, "body is not valid JSON; send the tool's arguments as a JSON object")
	case !json.Valid(args):
		return fail(res, subjects.CodeInvalidRequest, "body is not valid JSON: %v", jsonError(args))
	}

	srv, ok := w.caller.Server(server)
	if !ok {
		return fail(res, subjects.CodeUnknownServer, "no MCP server named %q is registered (see `toolbus servers list`)", server)
	}
	if w.catalog != nil {
		if e := w.catalog.Check(server, tool, args); e != nil {
			res.Status, res.Error = subjects.StatusError, e
			return outcome{res: res}
		}
	}

	timeout := srv.CallTimeout.D()
	if timeout <= 0 {
		timeout = w.cfg.DefaultTimeout
	}
	deadline := start.Add(timeout)
	if d := h.Get(subjects.HeaderDeadline); d != "" {
		t, err := subjects.ParseDeadline(d)
		if err != nil {
			return fail(res, subjects.CodeInvalidRequest, "header %s: %v", subjects.HeaderDeadline, err)
		}
		if !t.After(start) {
			return fail(res, subjects.CodeTimeout, "the call's deadline (%s) passed before a worker took it; it waited %v in the queue", d, queued(msg, start))
		}
		deadline = t
	}

	callCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	untrack := w.track(id, msg, cancel)
	defer untrack()
	callCtx, cancelDeadline := context.WithDeadline(callCtx, deadline)
	defer cancelDeadline()

	co := mcppool.CallOptions{AgentID: h.Get(subjects.HeaderAgent), Progress: w.progress(id)}
	raw, isErr, err := w.caller.Call(callCtx, server, tool, json.RawMessage(args), co)
	if err == nil {
		res.Result = raw
		res.Status = subjects.StatusOK
		if isErr {
			res.Status = subjects.StatusToolError
		}
		return outcome{res: res}
	}
	return w.classify(callCtx, res, err, deadline, start)
}

// classify turns a failed call into an outcome.
func (w *Worker) classify(ctx context.Context, res *subjects.Result, err error, deadline, start time.Time) outcome {
	cause := context.Cause(ctx)
	log := w.log.With().Str("call_id", res.CallID).Str("server", res.Server).Str("tool", res.Tool).Int("attempt", res.Attempt).Logger()
	var perr *mcppool.ProtocolError
	switch {
	case errors.Is(cause, errShutdown):
		log.Info().Msg("handing call back: worker shutting down")
		return outcome{res: res, action: handBack}
	case errors.Is(cause, errCancelled):
		return fail(res, subjects.CodeCancelled, "cancelled on %s after %v", subjects.ToolCancel(res.CallID), time.Since(start).Round(time.Millisecond))
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(cause, context.DeadlineExceeded):
		return fail(res, subjects.CodeTimeout, "the tool did not finish by the deadline %s (ran %v); the request was cancelled", subjects.FormatDeadline(deadline), time.Since(start).Round(time.Millisecond))
	case errors.Is(err, mcppool.ErrUnknownServer):
		return fail(res, subjects.CodeUnknownServer, "%v", err)
	case errors.As(err, &perr):
		// Servers disagree on the code for an unknown tool (mcp-go says
		// -32602 "tool 'x' not found"); the message is what they share.
		msg := strings.ToLower(perr.Message)
		switch {
		case perr.Code == -32601 || strings.Contains(msg, "not found") && strings.Contains(msg, "tool"):
			return fail(res, subjects.CodeUnknownTool, "%v", err)
		case perr.Code == -32602:
			return fail(res, subjects.CodeInvalidArguments, "%v", err)
		}
		return fail(res, subjects.CodeProtocol, "%v", err)
	case mcppool.IsTransport(err):
		log.Warn().Err(err).Msg("MCP server unavailable")
		return fail(res, subjects.CodeServerUnavailable, "%v", err)
	default:
		log.Error().Err(err).Msg("call failed")
		return fail(res, subjects.CodeInternal, "%v", err)
	}
}

// progress publishes MCP progress notifications on tool.progress.<id>.
func (w *Worker) progress(id string) func(progress, total float64, message string) {
	subj := subjects.ToolProgress(id)
	return func(progress, total float64, message string) {
		data, _ := json.Marshal(subjects.Progress{CallID: id, Progress: progress, Total: total, Message: message})
		_ = w.nc.Publish(subj, data)
	}
}

func queued(msg jetstream.Msg, now time.Time) time.Duration {
	if md, err := msg.Metadata(); err == nil {
		return now.Sub(md.Timestamp).Round(time.Millisecond)
	}
	return 0
}

func jsonKind(b byte) string {
	switch b {
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

func jsonError(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	return errors.New("invalid JSON")
}
