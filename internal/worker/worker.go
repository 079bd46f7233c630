// Package worker consumes tool calls from the shared durable JetStream
// consumer, runs each against its MCP server, stores and sends the result,
// and only then acknowledges the call. Any number of worker processes share
// the one consumer and so split the load.
package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	gosync "sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/toolbus-dev/toolbus/internal/broker"
	"github.com/toolbus-dev/toolbus/internal/claim"
	"github.com/toolbus-dev/toolbus/internal/mcppool"
	"github.com/toolbus-dev/toolbus/internal/registry"
	"github.com/toolbus-dev/toolbus/internal/streams"
	"github.com/toolbus-dev/toolbus/subjects"
)

// Caller runs MCP tool calls; *mcppool.Pool is the real one.
type Caller interface {
	Call(ctx context.Context, server, tool string, args json.RawMessage, co mcppool.CallOptions) (json.RawMessage, bool, error)
	// CallThen is Call without the wait: then gets Call's outcome, once,
	// on a goroutine other than the caller's.
	CallThen(ctx context.Context, server, tool string, args json.RawMessage, co mcppool.CallOptions, then func(json.RawMessage, bool, error))
	Server(name string) (registry.Server, bool)
}

// Catalog refuses calls that cannot succeed before they reach a server.
// Optional: without one (tests), every call to a registered server is
// attempted, and every tool counts as one that may not be safe to re-run.
type Catalog interface {
	// Admit returns nil when the tool exists and args fit its schema, and
	// safe: whether the tool's annotations make running it twice harmless
	// (a tool that is not safe is never re-run blindly after a worker died
	// mid-call). Otherwise it returns why not, as one of internal/sync's
	// sentinels: ErrUnknownTool, ErrToolHeld, ErrInvalidArguments, or
	// ErrCatalogUnavailable (retryable) while the server's first sync has
	// not been read — a call to an unsynced server never goes through
	// unchecked.
	Admit(server, tool string, args json.RawMessage) (safe bool, err error)
}

// Config tunes a worker. Zero values take the documented defaults.
type Config struct {
	// Name identifies this worker in results and logs (default host-pid).
	Name string
	// Concurrency is the number of calls run at once (default 64).
	Concurrency int
	// MaxAckPending caps unacknowledged calls across all workers (default:
	// streams.WorkerConsumer's, 1024).
	MaxAckPending int
	// AckWait is how long JetStream waits for an ack before redelivering
	// (default streams.DefaultAckWait, 5s): a running call renews it with
	// InProgress at AckWait/3, and the calls of a worker that died go to
	// another within it.
	AckWait time.Duration
	// MaxDeliver is the number of deliveries before a call is dead (default:
	// streams.WorkerConsumer's, 5).
	MaxDeliver int
	// DefaultTimeout bounds a call with no deadline header when its server
	// sets no call_timeout (default mcppool.DefaultCallTimeout, 60s).
	DefaultTimeout time.Duration
	// Grace is how long shutdown lets in-flight calls finish (default 20s).
	Grace time.Duration
	// MaxResultBytes caps an encoded result in a message (default: the
	// server's max payload less 64 KiB); a larger one is stored in the
	// Object Store bucket toolbus_blobs and the message names it (a claim).
	MaxResultBytes int
	// MaxClaimBytes caps a result or arguments through the Object Store;
	// larger ones are too_large errors (default claim.DefaultMaxBytes,
	// 64 MiB; negative: no claims, MaxResultBytes is the limit).
	MaxClaimBytes int
	// RetryFor bounds how long transport failures (server down, connection
	// reset, crashed stdio child) are retried with backoff, inside the
	// call's deadline (default 10s). A missing or non-executable command
	// is not retried.
	RetryFor time.Duration
	// QueueTimeout answers timeout to a call with no deadline header that
	// waited in the queue longer than this, instead of running it late
	// (default DefaultQueueTimeout, 5m; negative: wait forever). It also
	// bounds how long the start mark of a call without a deadline is kept.
	QueueTimeout time.Duration
}

// DefaultQueueTimeout is Config.QueueTimeout's default.
const DefaultQueueTimeout = 5 * time.Minute

func (c *Config) setDefaults(nc *nats.Conn) {
	if c.Name == "" {
		host, _ := os.Hostname()
		c.Name = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 64
	}
	if c.AckWait <= 0 {
		c.AckWait = streams.DefaultAckWait
	}
	if c.DefaultTimeout <= 0 {
		c.DefaultTimeout = mcppool.DefaultCallTimeout
	}
	if c.RetryFor <= 0 {
		c.RetryFor = 10 * time.Second
	}
	if c.QueueTimeout == 0 {
		c.QueueTimeout = DefaultQueueTimeout
	}
	if c.Grace <= 0 {
		c.Grace = 20 * time.Second
	}
	if c.MaxClaimBytes == 0 {
		c.MaxClaimBytes = claim.DefaultMaxBytes
	}
	if c.MaxResultBytes <= 0 {
		mp := int(nc.MaxPayload())
		if mp <= 0 {
			mp = 1 << 20
		}
		c.MaxResultBytes = mp - 64<<10
		if c.MaxResultBytes < mp/2 {
			c.MaxResultBytes = mp / 2
		}
	}
}

// ConsumerConfig is the durable consumer this configuration asks for.
func (c Config) ConsumerConfig() jetstream.ConsumerConfig {
	return streams.WorkerConsumer(c.MaxAckPending, c.AckWait, c.MaxDeliver)
}

// Worker consumes and runs tool calls.
type Worker struct {
	cfg     Config
	nc      *nats.Conn
	js      jetstream.JetStream
	caller  Caller
	catalog Catalog
	log     zerolog.Logger

	observer Observer     // metrics; nopObserver when none
	tracer   trace.Tracer // nil: tracing off

	results   jetstream.Stream // TOOL_RESULTS, for answering redeliveries
	calls     jetstream.Stream // TOOL_CALLS, for dead letters
	ledger    *ledger
	cancelled cancelSet

	mu       gosync.Mutex
	running  map[string]context.CancelCauseFunc // ledger key -> cancel of the call being run
	leases   map[*ackSubject]struct{}           // calls taken and not yet settled
	inflight map[string]int                     // server -> calls taken and not yet settled
	paused   map[string]chan struct{}           // server -> closed on Resume
	// slots and addRunners are set while Run runs, for SetConcurrency.
	slots      *slots
	addRunners func(n int) // makes sure n runner goroutines exist
	// handOff is set while the slots outnumber the runners (maxRunners):
	// a call's execution then leaves its runner for a goroutine of its own.
	handOff atomic.Bool
	// toRunner gives f to a runner; set while Run runs (see process).
	toRunner func(f func())

	fault func(server, tool string, args json.RawMessage) // test hook, before each execution

	pullWait time.Duration // how long one pull request waits for calls

	acks atomic.Uint64 // calls acked, for keep
}

// Option configures optional collaborators.
type Option func(*Worker)

// WithCatalog makes the worker refuse unknown tools and bad arguments.
func WithCatalog(c Catalog) Option { return func(w *Worker) { w.catalog = c } }

// New returns a worker. It does no I/O until Run.
func New(nc *nats.Conn, js jetstream.JetStream, caller Caller, cfg Config, log zerolog.Logger, opts ...Option) *Worker {
	cfg.setDefaults(nc)
	w := &Worker{cfg: cfg, nc: nc, js: js, caller: caller, log: log.With().Str("worker", cfg.Name).Logger(),
		running: map[string]context.CancelCauseFunc{}, leases: map[*ackSubject]struct{}{}, inflight: map[string]int{}, paused: map[string]chan struct{}{},
		pullWait: 5 * time.Second, observer: nopObserver{}}
	w.cancelled.ttl = cancelTTL
	for _, o := range opts {
		o(w)
	}
	return w
}

// Run consumes calls until ctx ends, then drains: it stops fetching, lets
// in-flight calls finish within Config.Grace, hands the rest back to
// JetStream (Nak) for other workers, and returns nil.
func (w *Worker) Run(ctx context.Context) (err error) {
	defer func() {
		if ctx.Err() != nil {
			err = nil // stopped while starting: not a failure
		}
	}()
	cons, err := w.consumer(ctx)
	if err != nil {
		return err
	}
	// Leases are renewed at a third of the consumer's own AckWait, whatever
	// this worker's config says.
	if aw := cons.CachedInfo().Config.AckWait; aw > 0 && aw != w.cfg.AckWait {
		w.log.Info().Dur("ack_wait", aw).Msg("using the consumer's ack_wait")
		w.cfg.AckWait = aw
	}
	if w.results, err = w.js.Stream(ctx, subjects.StreamResults); err != nil {
		return fmt.Errorf("stream %s: %w", subjects.StreamResults, err)
	}
	if w.calls, err = w.js.Stream(ctx, subjects.StreamCalls); err != nil {
		return fmt.Errorf("stream %s: %w", subjects.StreamCalls, err)
	}
	if w.ledger, err = openLedger(ctx, w.js); err != nil {
		return fmt.Errorf("KV bucket %s: %w", subjects.BucketLedger, err)
	}
	// Every worker hears every cancel (the one running the call stops it);
	// one of them, through the queue group, answers it at once.
	cancelSub, err := w.nc.Subscribe(subjects.ToolCancelAll, w.onCancel)
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", subjects.ToolCancelAll, err)
	}
	defer cancelSub.Unsubscribe()
	answerSub, err := w.nc.QueueSubscribe(subjects.ToolCancelAll, "toolbus-cancel", w.answerCancel)
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", subjects.ToolCancelAll, err)
	}
	defer answerSub.Unsubscribe()
	var bg gosync.WaitGroup
	defer bg.Wait()
	// Leases are renewed until the last call is settled, through the
	// shutdown grace period; dead letters stop with ctx.
	beatCtx, stopBeat := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBeat()
	bg.Add(4)
	go func() { defer bg.Done(); w.heartbeat(beatCtx) }()
	go func() { defer bg.Done(); w.deadLetters(ctx) }()
	go func() { defer bg.Done(); w.keep(ctx, cons) }()
	go func() { defer bg.Done(); w.watchLedger(ctx) }()

	// calls run under callCtx, not ctx: shutdown gives them Grace first.
	callCtx, stopCalls := context.WithCancelCause(context.WithoutCancel(ctx))
	defer stopCalls(errShutdown)

	var inflight gosync.WaitGroup
	// Long-lived goroutines, the runners, run the calls: a goroutine's
	// stack grows once, not for every call (growing it was a visible share
	// of a call's CPU). There is one per slot up to maxRunners, and a call
	// is handed over with its slot taken and its lease renewed (see run),
	// so it waits for a runner, if at all, leased. Beyond maxRunners slots
	// a runner takes each call only up to its request, and back from its
	// answer for the settlement (process): a call waiting for its tool
	// waits on the pool's shallow goroutine, and holds no runner.
	// SetConcurrency adds runners when it raises the slots; a lowered limit
	// leaves the extra ones idle.
	w.mu.Lock()
	slots := newSlots(w.cfg.Concurrency)
	work := make(chan leased)
	var runners gosync.WaitGroup
	started := 0
	addRunners := func(n int) { // with w.mu held
		for n = min(n, maxRunners); started < n; started++ {
			runners.Add(1)
			go func() {
				defer runners.Done()
				for l := range work {
					if l.settle != nil {
						l.settle()
						continue
					}
					release := l.release // not l: the done func outlives the message
					w.process(callCtx, l.msg, l.ack, func() {
						release()
						slots.release(1)
						inflight.Done()
					})
				}
			}()
		}
	}
	w.slots, w.addRunners = slots, addRunners
	w.toRunner = func(f func()) { work <- leased{settle: f} }
	addRunners(w.cfg.Concurrency)
	w.handOff.Store(w.cfg.Concurrency > maxRunners)
	w.log.Info().Int("concurrency", w.cfg.Concurrency).Msg("worker consuming tool calls")
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.addRunners = nil // no runner starts after work closes
		w.mu.Unlock()
		close(work)
		runners.Wait()
	}()
	run := func(msg jetstream.Msg) {
		inflight.Add(1)
		// The lease is renewed from the moment the call is taken until it
		// is settled (storing the result may retry through a NATS
		// reconnect), through the wait for a runner.
		ack := &ackSubject{nc: w.nc, reply: msg.Reply()}
		release := w.lease(ack)
		work <- leased{msg: msg, ack: ack, release: release}
	}
	// Two pullers share the slots, so one has a pull request out while the
	// other's batch ends: no gap in deliveries under load.
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- w.pull(ctx, cons, slots, run) }()
	}
	err = errors.Join(<-errs, <-errs)
	w.drain(&inflight, stopCalls)
	return err
}

// maxRunners bounds the call runners (see Run). Beyond it they are busy
// only for the steps before a call's execution, so a few hundred keep up
// with any number of calls in flight.
const maxRunners = 256

// leased is a call handed to a runner, with its lease, or the settlement
// of a call that ran on a goroutine of its own (settle).
type leased struct {
	msg     jetstream.Msg
	ack     *ackSubject
	release func()
	settle  func()
}

// pull fetches only as many calls as there are free slots, and hands each
// to run with its slot taken. No call waits in this process without a
// lease being renewed, and no worker hoards calls another could run. It
// returns when ctx ends; a call that arrives after that is handed back.
func (w *Worker) pull(ctx context.Context, cons jetstream.Consumer, slots *slots, run func(jetstream.Msg)) error {
	bo := expBackOff(100*time.Millisecond, 3*time.Second)
	for {
		// Wait for one free slot, then take every other free one.
		n := slots.take(ctx)
		if n == 0 {
			return nil
		}
		fctx, cancel := context.WithTimeout(ctx, w.pullWait)
		batch, err := cons.Fetch(n, jetstream.FetchContext(fctx), jetstream.FetchHeartbeat(w.pullWait/4))
		got := 0
		if err == nil {
			for msg := range batch.Messages() {
				got++
				if ctx.Err() != nil {
					// Shutting down: another worker takes it now.
					_ = msg.Nak()
					slots.release(1)
					continue
				}
				run(msg)
			}
			err = batch.Error()
		}
		cancel()
		slots.release(n - got)
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil, errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
			bo.Reset()
		case errors.Is(err, jetstream.ErrInvalidOption):
			// The pull's expiry comes from fctx's deadline when the request
			// is made: a process so busy that this goroutine lost seconds
			// between the two (10,000 calls in flight on 2 cores) leaves
			// less than twice the heartbeat, and nats.go refuses the pull.
			// Nothing is wrong: pull again.
			w.log.Debug().Err(err).Msg("pull request refused: pulling again")
		default:
			// The consumer was deleted, NATS is away (reconnecting), or the
			// pull stalled (missed heartbeats): wait, make sure the consumer
			// exists (creating it is idempotent), pull again.
			wait := bo.NextBackOff()
			w.log.Warn().Err(err).Dur("retry_in", wait).Msg("pulling calls failed")
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
			if c, err := broker.GetOrCreateConsumer(ctx, w.js, subjects.StreamCalls, w.cfg.ConsumerConfig()); err == nil {
				cons = c
			}
		}
	}
}

func (w *Worker) drain(inflight *gosync.WaitGroup, stopCalls context.CancelCauseFunc) {
	done := make(chan struct{})
	go func() { inflight.Wait(); close(done) }()
	w.log.Info().Dur("grace", w.cfg.Grace).Msg("draining: no new calls, waiting for in-flight ones")
	select {
	case <-done:
	case <-time.After(w.cfg.Grace):
		w.log.Warn().Msg("grace period over: handing in-flight calls back to JetStream")
		stopCalls(errShutdown)
		<-done
	}
}

// consumer returns the shared durable consumer as it is (settings are the
// provisioner's: `toolbus serve` or an admin), creating it from this
// worker's config only if it is missing.
func (w *Worker) consumer(ctx context.Context) (jetstream.Consumer, error) {
	var cons jetstream.Consumer
	err := retry(ctx, func() backoff.BackOff { return expBackOff(250*time.Millisecond, 3*time.Second) }, 0,
		func(err error, wait time.Duration) {
			w.log.Warn().Err(err).Dur("retry_in", wait).Msg("cannot get the workers consumer yet; retrying")
		},
		func(ctx context.Context) (err error) {
			cons, err = broker.GetOrCreateConsumer(ctx, w.js, subjects.StreamCalls, w.cfg.ConsumerConfig())
			return err
		})
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", subjects.ConsumerWorkers, err)
	}
	return cons, nil
}

// onCancel hears tool.cancel.<agent>.<call_id>. Only the agent itself may
// publish there (NATS permissions), so the agent and id together name the
// call, as everywhere else.
func (w *Worker) onCancel(m *nats.Msg) {
	agent, id, err := subjects.ParseCallRef(m.Subject, subjects.ToolCancelPrefix)
	if err != nil {
		return
	}
	var why subjects.Cancel
	_ = json.Unmarshal(m.Data, &why)
	if why.Reason == subjects.CancelDeadline {
		return // a running call has its own deadline; a queued one is answered by answerCancel
	}
	key := subjects.LedgerKey(agent, id)
	w.mu.Lock()
	cancel, ok := w.running[key]
	w.mu.Unlock()
	if ok {
		cancel(errCancelled)
		return
	}
	w.cancelled.add(key)
}

// answerCancel stores the answer to a cancel of a call this worker is not
// running: a cancelled result, written once like any other, so the caller
// hears it at once, even while the call waits in the queue for a free slot.
// When the call is delivered, its lookup finds the answer and it does not
// run. A call that already has a result keeps it (the store is
// write-once), and a worker running the call stores its own cancelled
// result, whichever comes first. The cancel's body (subjects.Cancel) may
// name the call's server and tool so the answer carries them, and a reason:
// a caller whose deadline passed asks for a timeout answer the same way.
func (w *Worker) answerCancel(m *nats.Msg) {
	agent, id, err := subjects.ParseCallRef(m.Subject, subjects.ToolCancelPrefix)
	if err != nil {
		return
	}
	w.mu.Lock()
	_, here := w.running[subjects.LedgerKey(agent, id)]
	w.mu.Unlock()
	if here {
		return // the running call answers for itself
	}
	// A call that must not run twice has a start mark once a worker
	// started it: that worker answers, truthfully (it may have finished).
	// Otherwise the cancelled mark keeps any later attempt from starting
	// it, however long it stays queued (such a call looks for a result only
	// when its claim finds a mark).
	ctx, cancel := context.WithTimeout(context.Background(), attemptTimeout)
	defer cancel()
	if err := w.ledger.cancel(ctx, subjects.LedgerKey(agent, id), w.cfg.Name); err != nil {
		if !errors.Is(err, errStartedBefore) {
			w.log.Warn().Err(err).Str("call_id", id).Str("agent_id", agent).Msg("cancel not answered yet; the call is answered when a worker takes it")
		}
		return
	}
	var about subjects.Cancel
	_ = json.Unmarshal(m.Data, &about)
	why := &subjects.Error{Code: subjects.CodeCancelled, Message: "cancelled on " + m.Subject}
	if about.Reason == subjects.CancelDeadline {
		why = &subjects.Error{Code: subjects.CodeTimeout, Message: "the call's deadline passed before a worker ran it (it waited in the queue); it did not run"}
	}
	res := &subjects.Result{CallID: id, Agent: agent, Server: about.Server, Tool: about.Tool, Worker: w.cfg.Name,
		Status: subjects.StatusError, Error: why}
	if _, err := w.record(res, time.Now()); err != nil {
		w.log.Warn().Err(err).Str("call_id", id).Str("agent_id", agent).Msg("cancel not answered yet; the call is answered when a worker takes it")
	}
}

// track registers a running call's cancel under its ledger key until the
// returned func is called.
func (w *Worker) track(key string, cancel context.CancelCauseFunc) (untrack func()) {
	w.mu.Lock()
	w.running[key] = cancel
	w.mu.Unlock()
	return func() {
		w.mu.Lock()
		delete(w.running, key)
		w.mu.Unlock()
	}
}

// lease puts a call in the set whose leases heartbeat renews until the
// returned func is called.
func (w *Worker) lease(ack *ackSubject) (release func()) {
	w.mu.Lock()
	w.leases[ack] = struct{}{}
	w.mu.Unlock()
	return func() {
		w.mu.Lock()
		delete(w.leases, ack)
		w.mu.Unlock()
	}
}

// count counts a call in flight for server (a call whose subject names
// none is not counted) until the returned func is called.
func (w *Worker) count(server string) (uncount func()) {
	if server == "" {
		return func() {}
	}
	w.mu.Lock()
	w.inflight[server]++
	w.mu.Unlock()
	return func() {
		w.mu.Lock()
		if w.inflight[server]--; w.inflight[server] <= 0 {
			delete(w.inflight, server)
		}
		w.mu.Unlock()
	}
}

// heartbeat renews the lease of every call taken and not yet settled at
// AckWait/3, so a slow tool is never redelivered to a second worker while
// this one is on it. One loop for all calls keeps the hot path free of
// per-call timers.
func (w *Worker) heartbeat(ctx context.Context) {
	t := time.NewTicker(w.cfg.AckWait / 3)
	defer t.Stop()
	var acks []*ackSubject
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		acks = acks[:0]
		w.mu.Lock()
		for a := range w.leases {
			acks = append(acks, a)
		}
		w.mu.Unlock()
		for _, a := range acks {
			_ = a.InProgress()
		}
	}
}
