package worker

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// ackSubject settles a delivered call and renews its lease: the JetStream
// acknowledgements are publishes to the delivery's reply subject, as the
// jetstream package sends them ("+ACK", "-NAK", "-NAK {"delay": ns}",
// "+WPI"). A call holds this, not its message, from its delivery to its
// settlement, so a call waiting for its tool does not keep the message's
// decoded headers and payload (about 1 KB each) alive.
type ackSubject struct {
	nc    *nats.Conn
	reply string
}

var (
	ackBody      = []byte("+ACK")
	nakBody      = []byte("-NAK")
	progressBody = []byte("+WPI")
	errNoReply   = errors.New("the message has no reply subject to acknowledge it on")
)

func (a *ackSubject) publish(body []byte) error {
	if a.reply == "" {
		return errNoReply
	}
	return a.nc.Publish(a.reply, body)
}

// Ack: done; the message is not delivered again.
func (a *ackSubject) Ack() error { return a.publish(ackBody) }

// Nak: delivered again now.
func (a *ackSubject) Nak() error { return a.publish(nakBody) }

// NakWithDelay: delivered again after d.
func (a *ackSubject) NakWithDelay(d time.Duration) error {
	return a.publish(fmt.Appendf(nil, `-NAK {"delay": %d}`, d.Nanoseconds()))
}

// InProgress renews the lease: the ack wait starts again.
func (a *ackSubject) InProgress() error { return a.publish(progressBody) }
