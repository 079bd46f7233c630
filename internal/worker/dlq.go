package worker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/toolbus-dev/toolbus/subjects"
)

// DeadLetter is one call in TOOL_DEAD.
type DeadLetter struct {
	Seq       uint64      `json:"seq"`
	Time      time.Time   `json:"time"`
	CallID    string      `json:"call_id"`
	Subject   string      `json:"subject"` // the original tool.call subject
	Agent     string      `json:"agent"`
	Server    string      `json:"server"`
	Tool      string      `json:"tool"`
	Reason    string      `json:"reason"`
	Arguments string      `json:"arguments"`
	Header    nats.Header `json:"headers,omitempty"`
}

// ListDeadLetters returns up to limit dead letters, oldest first (limit <= 0: all
// that were there when it started). It reads TOOL_DEAD once, in order, with
// an ordered consumer: no request per message.
func ListDeadLetters(ctx context.Context, js jetstream.JetStream, limit int) ([]DeadLetter, error) {
	s, err := js.Stream(ctx, subjects.StreamDead)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", subjects.StreamDead, err)
	}
	st := s.CachedInfo().State
	if st.Msgs == 0 {
		return nil, nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", subjects.StreamDead, err)
	}
	var out []DeadLetter
	for limit <= 0 || len(out) < limit {
		n := 256
		if limit > 0 {
			n = min(n, limit-len(out))
		}
		batch, err := cons.FetchNoWait(n)
		if err != nil {
			return out, fmt.Errorf("read %s: %w", subjects.StreamDead, err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			if md.Sequence.Stream > st.LastSeq {
				return out, nil // stored after the listing began
			}
			if limit <= 0 || len(out) < limit {
				out = append(out, deadLetter(&jetstream.RawStreamMsg{Subject: m.Subject(), Sequence: md.Sequence.Stream, Header: m.Headers(), Data: m.Data(), Time: md.Timestamp}))
			}
			if md.Sequence.Stream >= st.LastSeq {
				return out, nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) {
			return out, fmt.Errorf("read %s: %w", subjects.StreamDead, err)
		}
		if got == 0 {
			return out, nil // the rest was removed meanwhile
		}
	}
	return out, nil
}

// GetDeadLetter returns the dead letter at seq.
func GetDeadLetter(ctx context.Context, js jetstream.JetStream, seq uint64) (DeadLetter, error) {
	s, err := js.Stream(ctx, subjects.StreamDead)
	if err != nil {
		return DeadLetter{}, err
	}
	m, err := s.GetMsg(ctx, seq)
	if err != nil {
		return DeadLetter{}, fmt.Errorf("dead letter %d: %w", seq, err)
	}
	return deadLetter(m), nil
}

func deadLetter(m *jetstream.RawStreamMsg) DeadLetter {
	orig := m.Header.Get(subjects.HeaderOrigSubject)
	agent, server, tool, _ := subjects.ParseToolCall(orig)
	return DeadLetter{
		Seq: m.Sequence, Time: m.Time, Subject: orig, Agent: agent, Server: server, Tool: tool,
		CallID:    origCallID(m.Header),
		Reason:    m.Header.Get(subjects.HeaderDeadReason),
		Arguments: string(m.Data),
		Header:    m.Header,
	}
}

// origCallID is the call id of the dead call: the dead letter's own
// Nats-Msg-Id is "dead-<seq>", the original is kept in Toolbus-Call-Id.
func origCallID(h nats.Header) string { return h.Get(headerOrigCallID) }

const headerOrigCallID = "Toolbus-Call-Id"

// ReplayDeadLetter publishes the dead call again as a new call of the same
// agent (a new call id: the old one already has its dead_letter result) and
// removes it from TOOL_DEAD. Its result is stored on
// tool.result.<agent>.<new id>.
func ReplayDeadLetter(ctx context.Context, js jetstream.JetStream, seq uint64) (newID string, err error) {
	s, err := js.Stream(ctx, subjects.StreamDead)
	if err != nil {
		return "", err
	}
	m, err := s.GetMsg(ctx, seq)
	if err != nil {
		return "", fmt.Errorf("dead letter %d: %w", seq, err)
	}
	orig := m.Header.Get(subjects.HeaderOrigSubject)
	if _, _, _, err := subjects.ParseToolCall(orig); err != nil {
		return "", fmt.Errorf("dead letter %d cannot be replayed: %w", seq, err)
	}
	newID = subjects.NewCallID()
	msg := nats.NewMsg(orig)
	msg.Data = m.Data
	if v := m.Header.Get(subjects.HeaderTraceparent); v != "" {
		msg.Header.Set(subjects.HeaderTraceparent, v)
	}
	msg.Header.Set(subjects.HeaderCallID, newID)
	msg.Header.Set("Toolbus-Replay-Of", origCallID(m.Header)+"@"+strconv.FormatUint(seq, 10))
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		return "", fmt.Errorf("republish: %w", err)
	}
	if err := s.DeleteMsg(ctx, seq); err != nil {
		return newID, fmt.Errorf("replayed as %s but not removed from %s: %w", newID, subjects.StreamDead, err)
	}
	return newID, nil
}

// PurgeDeadLetters removes every dead letter, or the one at seq when seq > 0.
func PurgeDeadLetters(ctx context.Context, js jetstream.JetStream, seq uint64) error {
	s, err := js.Stream(ctx, subjects.StreamDead)
	if err != nil {
		return err
	}
	if seq > 0 {
		return s.DeleteMsg(ctx, seq)
	}
	return s.Purge(ctx)
}
