package worker

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ackSubject settles a delivered call and renews its lease: the JetStream
// acknowledgements are publishes to the delivery's reply subject, as the
// jetstream package sends them ("+ACK", "-NAK", "-NAK {"delay": ns}",
// "+WPI"). A call holds this, not its message, from its delivery to its
// settlement, so a call waiting for its tool does not keep the message's
// decoded headers and payload (about 1 KB each) alive.
//
// As jetstream.Msg, it settles once: a second settlement, and a renewal
// after the settlement, are refused (jetstream.ErrMsgAlreadyAckd), not
// sent. A renewal that followed a delayed nak would restart the ack wait:
// the call would come again after AckWait, not the delay. The heartbeat
// renews the leases it listed, and a call may be settled meanwhile.
type ackSubject struct {
	nc    *nats.Conn
	reply string

	mu      sync.Mutex // orders a renewal and the settlement
	settled bool
}

var (
	ackBody      = []byte("+ACK")
	nakBody      = []byte("-NAK")
	progressBody = []byte("+WPI")
	errNoReply   = errors.New("the message has no reply subject to acknowledge it on")
)

// publish sends body, once the delivery is settled no more; settle says
// body settles it.
func (a *ackSubject) publish(body []byte, settle bool) error {
	if a.reply == "" {
		return errNoReply
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.settled {
		return jetstream.ErrMsgAlreadyAckd
	}
	if err := a.nc.Publish(a.reply, body); err != nil {
		return err
	}
	a.settled = settle
	return nil
}

// Ack: done; the message is not delivered again.
func (a *ackSubject) Ack() error { return a.publish(ackBody, true) }

// Nak: delivered again now.
func (a *ackSubject) Nak() error { return a.publish(nakBody, true) }

// NakWithDelay: delivered again after d.
func (a *ackSubject) NakWithDelay(d time.Duration) error {
	return a.publish(fmt.Appendf(nil, `-NAK {"delay": %d}`, d.Nanoseconds()), true)
}

// InProgress renews the lease: the ack wait starts again.
func (a *ackSubject) InProgress() error { return a.publish(progressBody, false) }
