package worker

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/toolbus-dev/toolbus/subjects"
)

// Keeper messages. TOOL_CALLS is a work queue: an ack removes its call.
// When that call was the only message of the stream's newest file block
// (every call, when calls come one at a time), nats-server 2.15 replaces
// the block with a new file holding a tombstone and deletes the old one:
// a file created and a file deleted per call, about half the serve side's
// CPU and 0.25 ms of latency per call at concurrency 1 on ext4
// (docs/benchmarks.md). A message no consumer takes keeps the newest block
// from emptying, so an ack only marks its call deleted. Each worker that
// acks calls publishes one on subjects.CallsKeeper every keepEvery, which
// expires after keeperTTL by itself; an idle worker publishes none.
const (
	keepEvery = time.Second
	keeperTTL = 5 * time.Second
)

// keep publishes keeper messages until ctx ends. The workers' consumer
// must take only tool.call.> (streams.WorkerConsumer): a consumer made by
// an older toolbus takes every subject and would be handed the keepers,
// so then it does nothing until `toolbus serve` updates the consumer.
func (w *Worker) keep(ctx context.Context, cons jetstream.Consumer) {
	if f := cons.CachedInfo().Config.FilterSubject; f != subjects.ToolCallAll {
		w.log.Info().Str("filter_subject", f).Msg("the workers' consumer takes more than " + subjects.ToolCallAll + "; keeper messages are off (run `toolbus serve` once to update it)")
		return
	}
	t := time.NewTicker(keepEvery)
	defer t.Stop()
	var seen uint64
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n := w.acks.Load(); n == seen {
			continue // idle: nothing to keep
		} else {
			seen = n
		}
		pctx, cancel := context.WithTimeout(ctx, keepEvery)
		_, err := w.js.Publish(pctx, subjects.CallsKeeper, nil, jetstream.WithMsgTTL(keeperTTL))
		cancel()
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			// TOOL_CALLS from an older toolbus lacks the subject or TTLs
			// (`toolbus serve` updates it), or NATS is away. Calls are
			// unaffected; only slower at low concurrency.
			w.log.Info().Err(err).Msg("cannot publish keeper messages on " + subjects.CallsKeeper + "; acks may cost a file per call until it works")
			failing = true
		case err == nil && failing:
			w.log.Info().Msg("keeper messages published again")
			failing = false
		}
	}
}
