package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/toolbus-dev/toolbus/internal/claim"
	"github.com/toolbus-dev/toolbus/subjects"
)

// claimedArgs reads the arguments of a call that were too large for a
// message: it carries a claim (Toolbus-Claim headers) and an empty body.
// They are read from the Object Store, and only if the claim names an
// object of this very call (its agent, from the subject, and its call id)
// in toolbus's bucket. Then they are checked as if they had come in the
// body. A bad claim, or one that cannot be read, sets j.bad.
func (w *Worker) claimedArgs(ctx context.Context, j *job) {
	h := j.msg.Headers()
	if j.bad != nil || h.Get(subjects.HeaderClaim) == "" {
		return
	}
	c := &j.call
	cl, err := claim.FromHeader(h)
	if err != nil {
		j.bad = bad(subjects.CodeInvalidRequest, "%v", err)
		return
	}
	if len(j.msg.Data()) > 0 {
		j.bad = bad(subjects.CodeInvalidRequest, "the call names its arguments in header %s and also has a body; send one or the other", subjects.HeaderClaim)
		return
	}
	// Not cut short by shutdown (a read is quick, and its failure would be
	// answered); NATS hiccups are retried, a bad claim is not.
	var body []byte
	err = tryFor(context.WithoutCancel(ctx), 3*lookupBudget, 10*attemptTimeout, func(ctx context.Context) error {
		var err error
		body, err = claim.Get(ctx, w.nc, cl, c.agent, c.id, subjects.ClaimArgs, int64(max(w.cfg.MaxClaimBytes, w.cfg.MaxResultBytes)))
		if errors.Is(err, claim.ErrTooLarge) || errors.Is(err, claim.ErrForeign) || errors.Is(err, subjects.ErrInvalidClaim) || errors.Is(err, claim.ErrMissing) || errors.Is(err, claim.ErrCorrupt) || errors.Is(err, nats.ErrNoResponders) {
			return final(err)
		}
		return err
	})
	switch {
	case errors.Is(err, claim.ErrTooLarge):
		j.bad = bad(subjects.CodeTooLarge, "arguments: %v", err)
	case errors.Is(err, claim.ErrForeign), errors.Is(err, subjects.ErrInvalidClaim), errors.Is(err, claim.ErrMissing), errors.Is(err, claim.ErrCorrupt):
		j.bad = bad(subjects.CodeInvalidRequest, "header %s: %v", subjects.HeaderClaim, err)
	case err != nil:
		j.bad = bad(subjects.CodeInternal, "could not read the call's arguments from %s: %v", cl.Object, err)
	default:
		j.call, j.bad = decodeCall(j.msg.Subject(), h, body)
	}
}

// claimResult stores an encoded result too large for a message in the
// Object Store and returns the stub to store in its place (the result
// without its "result", with a claim naming the object) and its headers.
// If the object cannot be stored, the result becomes an error result
// saying so.
func (w *Worker) claimResult(res *subjects.Result, data []byte) ([]byte, nats.Header) {
	var cl *subjects.Claim
	err := tryFor(context.Background(), max(storeBudget, 2*w.cfg.AckWait), 2*attemptTimeout+w.cfg.AckWait, func(ctx context.Context) error {
		var err error
		cl, err = claim.Put(ctx, w.js, claim.ChunkSize(w.nc), res.Agent, res.CallID, subjects.ClaimResult, data, true)
		if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
			return final(err)
		}
		return err
	})
	if err != nil {
		w.log.Error().Err(err).Str("call_id", res.CallID).Int("bytes", len(data)).Msg("could not put a large result in the object store")
		res.Status, res.Result = subjects.StatusError, nil
		res.Error = &subjects.Error{Code: subjects.CodeTooLarge, Message: fmt.Sprintf("the tool's result is %d bytes, over the %d-byte message limit, and could not be stored in object store bucket %s: %v", len(data), w.cfg.MaxResultBytes, subjects.BucketBlobs, err)}
		data, _ = json.Marshal(res)
		return data, resultHeader(res)
	}
	stub := *res
	stub.Result, stub.Claim = nil, cl
	data, _ = json.Marshal(&stub)
	return data, resultHeader(&stub)
}
