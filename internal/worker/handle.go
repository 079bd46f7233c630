package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/toolbus-dev/toolbus/internal/catalog"
	"github.com/toolbus-dev/toolbus/internal/mcppool"
	"github.com/toolbus-dev/toolbus/subjects"
)

// action is what settle does with the call message after the result.
type action int

const (
	ack        action = iota // done: the result is stored (and so delivered)
	handBack                 // Nak now: another worker (or this one) takes it again
	retryLater               // Nak with a delay: NATS is not ready for us yet
	bury                     // no home for a result: move it to TOOL_DEAD, then ack
)

// outcome is what handling a call produced. Handlers return one; settle
// alone turns it into publishes and the ack.
type outcome struct {
	res *subjects.Result
	// stored is the result as already stored in TOOL_RESULTS (a
	// redelivery or a re-sent call id), at storedSeq.
	stored    []byte
	storedSeq uint64
	// announce publishes the stored result again, for a caller that
	// re-sent its call id and listens for the answer.
	announce bool
	action   action
}

// job is one delivery of a call on its way through the worker: what was
// read from the message (once), what admission decided, and the result
// being built. The steps of handle take and fill it.
type job struct {
	msg   jetstream.Msg
	start time.Time
	call  call
	bad   *subjects.Error // why the call cannot run, from decoding
	res   *subjects.Result
	key   string    // ledger key <agent>.<call_id>
	sent  time.Time // when the call was stored in TOOL_CALLS (zero: unknown)

	callTimeout time.Duration // the server's call_timeout (0: the worker's default)
	known       bool          // the catalog has the tool
	safe        bool          // its annotations make running it twice harmless
	unsafe      bool          // must not be re-run blindly: known, not safe, and the server does not opt in

	deadline time.Time             // when the call is cut off
	stopped  atomic.Pointer[error] // why the execution was stopped before its deadline (execution.stop)
	ran      bool                  // the tool was executed for this answer
	exec     time.Duration
}

// newJob reads msg: its call, and its delivery metadata.
func (w *Worker) newJob(msg jetstream.Msg, start time.Time) *job {
	j := &job{msg: msg, start: start}
	j.call, j.bad = decodeCall(msg.Subject(), msg.Headers(), msg.Data())
	c := &j.call
	j.res = &subjects.Result{CallID: c.id, Agent: c.agent, Server: c.server, Tool: c.tool, Worker: w.cfg.Name, Attempt: 1}
	if md, err := msg.Metadata(); err == nil {
		j.res.Attempt = int(md.NumDelivered)
		j.sent = md.Timestamp
	}
	if c.addressable() {
		j.key = subjects.LedgerKey(c.agent, c.id)
	}
	return j
}

// dropMessage lets the message go once the call is read from it: a call
// waiting for its tool holds ack to settle it, not the message's headers
// and payload. The arguments, a slice of the payload, are kept apart.
func (j *job) dropMessage() {
	j.msg = nil
	j.call.args = bytes.Clone(j.call.args)
}

// process takes a call from its delivery to its settlement, and calls done
// then. The steps before the MCP call (decode, admit, look up, the checks
// of the deadline) run on the caller's goroutine, the call runner, and so
// does the rest, unless the worker has more slots than runners (handOff):
// then the runner takes the call up to its request (executeAsync), the
// pool's goroutine waits for the answer, and the settlement comes back to
// a runner. A call in flight then holds a goroutine of a few frames (2 KB
// of stack), not a runner, nor a goroutine of the worker's that every step
// before the wait would have grown.
func (w *Worker) process(ctx context.Context, msg jetstream.Msg, ack *ackSubject, done func()) {
	j := w.newJob(msg, time.Now())
	uncount := w.count(j.call.server)
	ctx, span := w.traceCall(ctx, j)
	finish := func(out outcome) {
		_, ss := w.step(ctx, SpanSettle)
		settled := w.settle(ack, j.msg, out, j.start)
		endStep(ss, nil)
		if settled {
			w.finished(j, out)
		}
		endCall(span, out, settled)
		uncount()
		done()
	}
	var run bool
	out := w.safely(j, func() (out outcome) {
		out, run = w.handle(ctx, j)
		return out
	})
	switch {
	case !run:
		finish(out)
	case w.handOff.Load():
		// The settlement runs deep (the result's store, the reply, the
		// ack): back on a runner, whose stack has grown already, not on
		// the call's goroutine, which waits for a runner shallow.
		toRunner := w.toRunner
		j.dropMessage()
		w.executeAsync(ctx, j, finish, func(out outcome) { toRunner(func() { finish(out) }) })
	default:
		w.executeThen(ctx, j, finish)
	}
}

// executeThen executes the call on the runner and gives the outcome to
// finish.
func (w *Worker) executeThen(ctx context.Context, j *job, finish func(outcome)) {
	var out outcome
	defer func() {
		if v := recover(); v != nil {
			out = w.panicked(j, v)
		}
		finish(out)
	}()
	out = w.execute(ctx, j)
}

// safely is f, and the answer to a panic in it (panicked).
func (w *Worker) safely(j *job, f func() outcome) (out outcome) {
	defer func() {
		if v := recover(); v != nil {
			out = w.panicked(j, v)
		}
	}()
	return f()
}

// panicked answers a call whose handler panicked with v: that one call is
// answered internal (a bug, with the panic value), acked, and its stack
// logged; the worker and its other calls go on.
func (w *Worker) panicked(j *job, v any) outcome {
	w.log.Error().Str("call_id", j.call.id).Str("agent_id", j.call.agent).Str("server", j.call.server).Str("tool", j.call.tool).
		Str("panic", fmt.Sprint(v)).Bytes("stack", debug.Stack()).Msg("call handler panicked: a bug; the call is answered internal")
	if !j.call.addressable() {
		return outcome{res: j.res, action: bury}
	}
	return fail(j.res, subjects.CodeInternal, "a bug in toolbus: the worker panicked handling this call (%v); it was answered with this error and not run again. Please report it with the worker's log", v)
}

// handle runs the steps of one call: read claimed arguments, admit it, look
// for an earlier answer, check the deadline. Each step either answers or
// passes the job on; run says it passed every one: execute it.
func (w *Worker) handle(ctx context.Context, j *job) (_ outcome, run bool) {
	if !j.call.addressable() {
		// No valid agent or call id: there is nowhere to answer, and
		// waiting would not mend it. Settle now, into the dead letters.
		j.res.Status, j.res.Error = subjects.StatusError, j.bad
		return outcome{res: j.res, action: bury}, false
	}
	w.claimedArgs(ctx, j) // arguments sent as a claim are read before admit checks them (claim.go)
	if out, done := w.admit(j); done {
		return out, false
	}
	if !j.unsafe {
		if out, done := w.earlierAnswer(ctx, j); done {
			return out, false
		}
	}
	if !j.call.deadline.IsZero() && !j.call.deadline.After(j.start) {
		return fail(j.res, subjects.CodeTimeout, "the call's deadline (%s) passed before a worker took it; it waited %v in the queue", subjects.FormatDeadline(j.call.deadline), j.queued()), false
	}
	if j.call.deadline.IsZero() && w.cfg.QueueTimeout > 0 && j.queued() > w.cfg.QueueTimeout {
		return fail(j.res, subjects.CodeTimeout, "the call waited %v in the queue, longer than worker.queue_timeout (%v), and carried no deadline; it did not run. Send a deadline with the call, or raise worker.queue_timeout (a negative value waits forever)", j.queued(), w.cfg.QueueTimeout), false
	}
	return outcome{}, true
}

// fail returns an error outcome with a message a person can act on.
func fail(res *subjects.Result, code subjects.Code, format string, a ...any) outcome {
	res.Status = subjects.StatusError
	res.Error = &subjects.Error{Code: code, Message: fmt.Sprintf(format, a...)}
	return outcome{res: res}
}

// admit refuses what cannot run, without I/O: a bad call, one cancelled
// while queued, an unknown server, a tool or arguments the catalog refuses.
func (w *Worker) admit(j *job) (outcome, bool) {
	c := &j.call
	if j.bad != nil {
		j.res.Status, j.res.Error = subjects.StatusError, j.bad
		return outcome{res: j.res}, true
	}
	if w.cancelled.has(j.key) {
		return fail(j.res, subjects.CodeCancelled, "cancelled on %s before a worker started it", subjects.ToolCancel(c.agent, c.id)), true
	}
	srv, ok := w.caller.Server(c.server)
	if !ok {
		return fail(j.res, subjects.CodeUnknownServer, "no MCP server named %q is registered (see `toolbus servers list`)", c.server), true
	}
	j.callTimeout = srv.CallTimeout.D()
	if w.catalog != nil {
		safe, err := w.catalog.Admit(c.server, c.tool, c.args)
		if err != nil {
			return fail(j.res, refusalCode(err), "%v", err), true
		}
		j.known, j.safe = true, safe
	}
	j.unsafe = j.known && !j.safe && !srv.RetryUnsafe
	return outcome{}, false
}

// refusalCode is the wire code of a catalog refusal.
func refusalCode(err error) subjects.Code {
	switch {
	case errors.Is(err, catalog.ErrCatalogUnavailable), errors.Is(err, catalog.ErrUnknownServer):
		return subjects.CodeCatalogUnavailable
	case errors.Is(err, catalog.ErrUnknownTool), errors.Is(err, catalog.ErrToolHeld):
		return subjects.CodeUnknownTool
	case errors.Is(err, catalog.ErrInvalidArguments):
		return subjects.CodeInvalidArguments
	}
	return subjects.CodeInternal
}

// earlierAnswer looks for a result an earlier attempt stored. A duplicate
// or a redelivery: an earlier attempt may have finished — answer with its
// result and do not run the tool again — or died mid-call. A redelivery
// stays silent: storing the result delivered it to the caller's
// subscription (tool.reply.<agent>.<call_id>), and a caller that was away
// reads tool.result.<agent>.<call_id>. A first delivery that finds a
// result is a call id re-sent (after the duplicate window, or after a
// restart forgot the ids of removed calls): its caller is listening again,
// so the stored answer is announced again.
//
// The lookup is skipped for the first delivery of a tool whose annotations
// make re-running harmless (read-only or idempotent): only a re-sent call
// id could find a result, the tool then runs again, its store finds the
// first result, and that one is announced (record). So the caller still
// hears the stored answer, and the common call saves a round trip. A tool
// that must not run twice is looked up only when its start mark exists
// (claim).
func (w *Worker) earlierAnswer(ctx context.Context, j *job) (outcome, bool) {
	if j.res.Attempt == 1 && j.known && j.safe {
		return outcome{}, false
	}
	var m *jetstream.RawStreamMsg
	ctx, span := w.step(ctx, SpanLookup)
	err := tryFor(ctx, lookupBudget, attemptTimeout, func(ctx context.Context) error {
		var err error
		m, err = w.results.GetLastMsgForSubject(ctx, subjects.ToolResult(j.call.agent, j.call.id))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return final(err)
		}
		return err
	})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		endStep(span, nil)
	} else {
		endStep(span, err)
	}
	switch {
	case err == nil:
		return outcome{stored: m.Data, storedSeq: m.Sequence, res: j.res, announce: j.res.Attempt == 1}, true
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return outcome{}, false
	}
	// Not knowing is not "no result": running again could run twice.
	w.log.Warn().Err(err).Str("call_id", j.call.id).Msg("cannot look up the call's result yet; retrying later")
	return outcome{res: j.res, action: retryLater}, true
}

// execute runs the call under its deadline and cancel: it waits while the
// server is paused, marks the start of a call that must not run twice, and
// calls the tool with retries.
func (w *Worker) execute(ctx context.Context, j *job) (out outcome) {
	e := w.startExecution(ctx, j)
	defer func() { e.end(out) }()
	return w.executeStarted(e, j)
}

// executeStarted is execute once its execution is started.
func (w *Worker) executeStarted(e *execution, j *job) outcome {
	if out, done := w.beforeCall(e.ctx, j); done {
		return out
	}
	a := w.newAttempts(j)
	// The first attempt runs here, not inside retry: the frames of a call
	// in flight stay few.
	return a.after(e.ctx, a.call(e.ctx))
}

// executeAsync is executeThen for a runner that does not wait for the
// tool: it takes the call up to its request, and the first attempt's
// answer, with all that follows it, runs on the pool's goroutine that
// waited for it (Caller.CallThen). A call waiting for its server then holds
// only that goroutine's few frames, not a goroutine of this worker's: at
// 10,000 calls in flight, 2 KB of stack each instead of 8. A call to a
// paused server waits on a goroutine of its own (executeStartedThen), not
// on the runner.
//
// finish settles the call on this goroutine, the runner; finishApart
// settles it from any other goroutine (it hands the settlement to a
// runner). The runner must not hand its own settlement to another runner:
// when every runner did, none would be left to take one.
func (w *Worker) executeAsync(ctx context.Context, j *job, finish, finishApart func(outcome)) {
	if out, handed := w.startAsync(ctx, j, finishApart); !handed {
		// Settled here, out of startAsync's recover: a panic while settling
		// must not settle the call a second time.
		finish(out)
	}
}

// startAsync takes the call up to its request and hands it to the pool,
// whose goroutine gives the outcome to finishApart. Not handed: out is the
// call's outcome, for the runner to settle: it was answered before its
// request, or a step panicked, CallThen's own included (then does not run
// then, and a call nobody settled would hold its slot and lease forever).
func (w *Worker) startAsync(ctx context.Context, j *job, finishApart func(outcome)) (out outcome, handed bool) {
	var e *execution
	var given atomic.Bool // the outcome is given once: by then, or by a panic of CallThen's
	defer func() {
		if v := recover(); v != nil {
			if !given.CompareAndSwap(false, true) {
				handed = true // then has the call already
				return
			}
			out, handed = w.panicked(j, v), false
			if e != nil {
				e.end(out)
			}
		}
	}()
	e = w.startExecution(ctx, j)
	if w.isPaused(j.call.server) {
		// The wait for Resume is not the runner's (beforeCall would wait
		// here). Not paused now, the call goes on, as one paused a moment
		// after its wait.
		go w.executeStartedThen(e, j, finishApart)
		return outcome{}, true
	}
	if out, done := w.startCall(e.ctx, j); done {
		e.end(out)
		return out, false
	}
	a := w.newAttempts(j)
	w.caller.CallThen(e.ctx, j.call.server, j.call.tool, j.call.args, a.co, func(raw json.RawMessage, isErr bool, err error) {
		var out outcome
		defer func() {
			if v := recover(); v != nil {
				out = w.panicked(j, v)
			}
			if given.CompareAndSwap(false, true) {
				e.end(out)
				finishApart(out)
			}
		}()
		out = a.after(e.ctx, a.took(e.ctx, raw, isErr, err))
	})
	return outcome{}, true
}

// execution is a call's execution under way: its context, cut off at the
// call's deadline and stopped by a cancel request (stop), and its span.
// One context, not a deadline's and a cancel cause's: a call in flight
// holds each context it has, and the maps and channels of its parents.
type execution struct {
	j       *job
	ctx     context.Context
	span    trace.Span
	cancel  context.CancelFunc
	untrack func()
}

// stop ends the execution for cause (errCancelled), unless it has ended:
// classify reads the cause from the job (stopCause), as a context's cause.
func (e *execution) stop(cause error) {
	if e.ctx.Err() == nil {
		e.j.stopped.Store(&cause)
		e.cancel()
	}
}

// startExecution sets the call's deadline and starts its execution.
func (w *Worker) startExecution(ctx context.Context, j *job) *execution {
	e := &execution{j: j}
	ctx, e.span = w.step(ctx, SpanExecute)
	timeout := j.callTimeout
	if timeout <= 0 {
		timeout = w.cfg.DefaultTimeout
	}
	j.deadline = j.start.Add(timeout)
	if !j.call.deadline.IsZero() {
		j.deadline = j.call.deadline
	}
	e.ctx, e.cancel = context.WithDeadlineCause(ctx, j.deadline, context.DeadlineExceeded)
	e.untrack = w.track(j.key, e.stop)
	if w.cancelled.has(j.key) {
		e.stop(errCancelled) // the cancel arrived while we looked the call up
	}
	return e
}

// end ends the execution, with out its outcome.
func (e *execution) end(out outcome) {
	e.untrack()
	e.cancel()
	if e.span != nil {
		endExecute(e.span, out)
	}
}

// executeStartedThen is execute for an execution started (startAsync),
// on a goroutine of the call's own: it gives the outcome to finish.
func (w *Worker) executeStartedThen(e *execution, j *job, finish func(outcome)) {
	var out outcome
	defer func() {
		if v := recover(); v != nil {
			out = w.panicked(j, v)
		}
		e.end(out)
		finish(out)
	}()
	out = w.executeStarted(e, j)
}

// beforeCall waits while the server is paused, and marks the start of a
// call that must not run twice; done: it answered instead.
func (w *Worker) beforeCall(ctx context.Context, j *job) (_ outcome, done bool) {
	if err := w.waitUnpaused(ctx, j.call.server); err != nil {
		return w.classify(ctx, j, err), true
	}
	return w.startCall(ctx, j)
}

// startCall is beforeCall past the wait while paused: it marks the start
// of a call that must not run twice; done: it answered instead.
func (w *Worker) startCall(ctx context.Context, j *job) (_ outcome, done bool) {
	if j.unsafe {
		if out, done := w.claim(ctx, j); done {
			return out, true
		}
	}
	w.observer.CallStarted(j.call.server, j.call.tool)
	if w.fault != nil {
		w.fault(j.call.server, j.call.tool, j.call.args)
	}
	return outcome{}, false
}

// claim records the start of a call that must not run twice. When an
// earlier attempt started it, the stored result answers, or, when there is
// none, outcome_unknown: it may have run.
func (w *Worker) claim(ctx context.Context, j *job) (outcome, bool) {
	err := w.ledger.claim(ctx, j.key, w.cfg.Name, w.markTTL(j, time.Now()))
	switch {
	case err == nil:
		return outcome{}, false // no attempt started it before: no result to find
	case errors.Is(err, errCancelledBefore):
		if out, done := w.earlierAnswer(ctx, j); done {
			return out, true // the cancelled answer
		}
		return fail(j.res, subjects.CodeCancelled, "cancelled on %s before a worker started it", subjects.ToolCancel(j.call.agent, j.call.id)), true
	case errors.Is(err, errStartedBefore):
		if out, done := w.earlierAnswer(ctx, j); done {
			return out, true
		}
		return fail(j.res, subjects.CodeOutcomeUnknown, "%s/%s is destructive and not idempotent, and an earlier attempt of this call started it but stored no result (its worker stopped mid-call, or NATS restarted); it was not run again. Check the target system; set retry_unsafe on the server to re-run such calls", j.call.server, j.call.tool), true
	case ctx.Err() != nil:
		return w.classify(ctx, j, ctx.Err()), true
	}
	// Without the record a crash would re-run the tool blindly.
	return fail(j.res, subjects.CodeServerUnavailable, "could not record the start of a non-idempotent call in %s: %v; not running it", subjects.BucketLedger, err), true
}

// attempts are the attempts of one call to run its tool. A transport
// failure is retried with backoff inside the deadline and Config.RetryFor,
// never sooner than the server's breaker allows: the pool reconnects on
// the next call. A call that must not run twice is retried only when the
// request surely did not reach the server.
type attempts struct {
	w     *Worker
	j     *job
	co    mcppool.CallOptions
	bo    *deadlineBackOff
	t0    time.Time
	raw   json.RawMessage
	isErr bool
}

// newAttempts starts the first attempt's clock.
func (w *Worker) newAttempts(j *job) *attempts {
	until := j.start.Add(w.cfg.RetryFor)
	if j.deadline.Before(until) {
		until = j.deadline
	}
	return &attempts{w: w, j: j, co: mcppool.CallOptions{AgentID: j.call.agent, Progress: w.progress(j.call.agent, j.call.id)},
		bo: &deadlineBackOff{until: until}, t0: time.Now()}
}

// call is one attempt: the first (on the caller's goroutine, outside
// retry) or one of after's.
func (a *attempts) call(ctx context.Context) error {
	a.t0 = time.Now()
	raw, isErr, err := a.w.caller.Call(ctx, a.j.call.server, a.j.call.tool, a.j.call.args, a.co)
	return a.took(ctx, raw, isErr, err)
}

// took keeps an attempt's outcome; the error is final (no retry) when
// another attempt cannot help or must not be made.
func (a *attempts) took(ctx context.Context, raw json.RawMessage, isErr bool, err error) error {
	j := a.j
	a.raw, a.isErr = raw, isErr
	j.exec += time.Since(a.t0)
	j.ran = j.ran || err == nil
	var te *mcppool.TransportError
	switch {
	case err == nil:
		return nil
	case !errors.As(err, &te) || ctx.Err() != nil || te.Class == mcppool.ClassCommandMissing:
		return final(err)
	case j.unsafe && te.MaybeDelivered:
		return final(errMaybeRan{err})
	case j.unsafe && !te.Down:
		return final(err)
	}
	if te.Down {
		a.bo.floor = te.NextRetry
	}
	return err
}

// after retries a failed first attempt (err) while retrying can help, and
// returns the call's outcome.
func (a *attempts) after(ctx context.Context, err error) outcome {
	w, j := a.w, a.j
	if err != nil {
		err = retryFailed(ctx, err, func() backoff.BackOff {
			a.bo.BackOff = expBackOff(100*time.Millisecond, 2*time.Second)
			return a.bo
		}, 0, func(err error, wait time.Duration) {
			w.log.Debug().Err(err).Str("call_id", j.call.id).Dur("wait", wait).Msg("transport failure; retrying")
			w.traceRetry(ctx, err, wait)
		}, a.call)
	}
	if err != nil {
		return w.classify(ctx, j, err)
	}
	j.res.Result, j.res.Status = a.raw, subjects.StatusOK
	if a.isErr {
		j.res.Status = subjects.StatusToolError
	}
	return outcome{res: j.res}
}

// errMaybeRan is a transport failure after a request that must not run
// twice was sent: the server may have run it.
type errMaybeRan struct{ error }

func (e errMaybeRan) Unwrap() error { return e.error }

// classify turns a failed call into an outcome: the one place that picks
// the wire code of a failure, from the cause of ctx's end or the error's
// class (mcppool.ClassOf).
func (w *Worker) classify(ctx context.Context, j *job, err error) outcome {
	res := j.res
	cause := context.Cause(ctx)
	if stopped := j.stopped.Load(); stopped != nil && cause == context.Canceled {
		// Stopped by execution.stop, not by the deadline or the worker's
		// shutdown that may have come between its check and its cancel.
		cause = *stopped
	}
	var maybe errMaybeRan
	switch {
	case errors.Is(cause, errShutdown):
		w.log.Info().Str("call_id", res.CallID).Str("server", res.Server).Str("tool", res.Tool).Int("attempt", res.Attempt).Msg("handing call back: worker shutting down")
		return outcome{res: res, action: handBack}
	case errors.Is(cause, errCancelled):
		return fail(res, subjects.CodeCancelled, "cancelled on %s after %v", subjects.ToolCancel(res.Agent, res.CallID), time.Since(j.start).Round(time.Millisecond))
	case errors.Is(cause, context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded):
		if errors.Is(err, errPausedTooLong) {
			return fail(res, subjects.CodeTimeout, "server %q was paused until the call's deadline %s; it did not run", res.Server, subjects.FormatDeadline(j.deadline))
		}
		return fail(res, subjects.CodeTimeout, "the tool did not finish by the deadline %s (ran %v); the request was cancelled", subjects.FormatDeadline(j.deadline), time.Since(j.start).Round(time.Millisecond))
	case errors.As(err, &maybe):
		return fail(res, subjects.CodeOutcomeUnknown, "%s/%s is destructive and not idempotent, and the connection to the server failed after the request was sent (%v): it may have run. It was not run again. Check the target system; set retry_unsafe on the server to re-run such calls", res.Server, res.Tool, maybe.error)
	}
	class := mcppool.ClassOf(err)
	switch {
	case class == mcppool.ClassUnknownServer:
		return fail(res, subjects.CodeUnknownServer, "%v", err)
	case class == mcppool.ClassUnknownTool, class == mcppool.ClassMethodNotFound:
		return fail(res, subjects.CodeUnknownTool, "%v", err)
	case class == mcppool.ClassInvalidParams:
		return fail(res, subjects.CodeInvalidArguments, "%v", err)
	case class.Protocol():
		return fail(res, subjects.CodeProtocol, "%v", err)
	case class.Transport():
		w.log.Warn().Err(err).Str("call_id", res.CallID).Str("server", res.Server).Str("tool", res.Tool).Int("attempt", res.Attempt).Msg("MCP server unavailable")
		return fail(res, subjects.CodeServerUnavailable, "%v", err)
	}
	w.log.Error().Err(err).Str("call_id", res.CallID).Str("server", res.Server).Str("tool", res.Tool).Int("attempt", res.Attempt).Msg("call failed")
	return fail(res, subjects.CodeInternal, "%v", err)
}

// progress publishes MCP progress notifications on
// tool.progress.<agent>.<id>. Most calls send none: nothing is built until
// one arrives.
func (w *Worker) progress(agent, id string) func(progress, total float64, message string) {
	return func(progress, total float64, message string) {
		data, _ := json.Marshal(subjects.Progress{CallID: id, Progress: progress, Total: total, Message: message})
		_ = w.nc.Publish(subjects.ToolProgress(agent, id), data)
	}
}

// queued is how long the call waited in the queue before this delivery.
func (j *job) queued() time.Duration {
	if j.sent.IsZero() {
		return 0
	}
	return j.start.Sub(j.sent).Round(time.Millisecond)
}

// finished reports an answered call to the observer.
func (w *Worker) finished(j *job, out outcome) {
	res := out.res
	ev := CallEvent{Server: res.Server, Tool: res.Tool, Status: string(res.Status), Attempt: res.Attempt, Ran: j.ran, Exec: j.exec}
	if res.Error != nil {
		ev.Code = string(res.Error.Code)
	}
	if !j.sent.IsZero() {
		if res.Attempt == 1 {
			ev.QueueWait = j.start.Sub(j.sent)
		}
		ev.Total = time.Since(j.sent)
	}
	w.observer.CallFinished(ev)
}
