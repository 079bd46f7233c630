package bridge

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/toolbus-dev/toolbus/subjects"
)

// delivery is the identity of an accepted request.
type delivery struct {
	// id is the event id: the Nats-Msg-Id, and the call id of a tool call.
	id string
	// until is when the bridge forgets id; zero for a random id, which no
	// repeat can share.
	until time.Time
}

// deliveryOf names the event from what the hook's authentication covers,
// the first of: the idempotency field (the body, which every scheme
// signs); the verified signature (auth hmac); the Idempotency-Key header
// (auth bearer and none, whose senders may send anything anyway); else a
// random id. The id is "wh-" and 32 hex digits, a valid call id.
func (h *hook) deliveryOf(r *http.Request, body any, p proof, now time.Time) (delivery, *httpError) {
	var kind, key string
	switch {
	case h.IdempotencyField != "":
		v, err := lookup(body, h.IdempotencyField)
		if err != nil {
			return delivery{}, refuse(http.StatusBadRequest, CodeBadRequest, "idempotency field %q: %v", h.IdempotencyField, err)
		}
		switch v := v.(type) {
		case string:
			key = v
		case json.Number:
			key = v.String()
		case bool:
			key = strconv.FormatBool(v)
		default:
			return delivery{}, refuse(http.StatusBadRequest, CodeBadRequest, "idempotency field %q: not a string or number", h.IdempotencyField)
		}
		if key == "" {
			return delivery{}, refuse(http.StatusBadRequest, CodeBadRequest, "idempotency field %q is empty", h.IdempotencyField)
		}
		kind = "field"
	case p.mac != nil:
		kind, key = "signature", string(p.mac)
	case h.Auth != AuthHMAC && r.Header.Get(subjects.HeaderIdempotencyKey) != "":
		kind, key = "header", r.Header.Get(subjects.HeaderIdempotencyKey)
	default:
		sum := make([]byte, 16)
		_, _ = rand.Read(sum)
		return delivery{id: "wh-" + hex.EncodeToString(sum)}, nil
	}
	sum := sha256.Sum256([]byte(h.Name + "\x00" + kind + "\x00" + key))
	// Remembered for the tolerance from now, or from a signed time ahead of
	// now: the signature stays valid that long.
	from := now
	if p.signedAt.After(now) {
		from = p.signedAt
	}
	return delivery{id: "wh-" + hex.EncodeToString(sum[:16]), until: from.Add(h.Tolerance.D())}, nil
}
