package scheduler

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"gopkg.in/yaml.v3"

	"github.com/toolbus-dev/toolbus/subjects"
)

// Kind says what a schedule publishes.
type Kind string

const (
	// KindResync publishes catalog.resync (Server "") or catalog.resync.<server>.
	KindResync Kind = "resync"
	// KindWake publishes agent.wake.<agent> with Payload.
	KindWake Kind = "wake"
	// KindPublish publishes Payload on any literal Subject, tool.call.<agent>.<server>.<tool> included.
	KindPublish Kind = "publish"
)

// Missed is the policy for ticks that fell while every replica was down.
type Missed string

const (
	// MissedSkip drops missed ticks; the schedule resumes at its next tick.
	MissedSkip Missed = "skip"
	// MissedOnce fires once on return (for the latest missed tick), however
	// many were missed.
	MissedOnce Missed = "once"
)

// DefaultCallTimeout is the deadline given to a scheduled tool call whose
// schedule sets no Timeout.
const DefaultCallTimeout = 5 * time.Minute

// parser reads cron specs with an optional leading seconds field, and the
// descriptors (@hourly, @every 10s, ...).
var parser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Schedule is one cron schedule: when (Spec, TZ) and what to publish (Kind
// and its target). It is what the config file lists and what the schedules
// KV bucket stores, as JSON.
type Schedule struct {
	// Name identifies the schedule; it is part of every tick's message id.
	Name string `json:"name" yaml:"name"`
	// Spec is a cron expression with an optional seconds field
	// ("*/5 * * * * *", "0 9 * * *"), an interval ("@every 10s") or a
	// descriptor ("@hourly", "@daily"). Intervals are aligned to the Unix
	// epoch so every replica computes the same ticks.
	Spec string `json:"spec" yaml:"spec"`
	// TZ is the IANA time zone the spec is read in (default UTC).
	TZ string `json:"tz,omitempty" yaml:"tz,omitempty"`
	// Kind is resync, wake or publish.
	Kind Kind `json:"kind" yaml:"kind"`
	// Server is the server to resync (kind resync); empty means all.
	Server string `json:"server,omitempty" yaml:"server,omitempty"`
	// Agent is the agent to wake (kind wake). A scheduled tool call (kind
	// publish to tool.call.<agent>.<server>.<tool>) runs as the agent its
	// subject names; Agent, if set, must be that agent.
	Agent string `json:"agent,omitempty" yaml:"agent,omitempty"`
	// Subject is the literal subject to publish on (kind publish). It must
	// be bound to a stream (EVENTS, CATALOG_RESYNC or TOOL_CALLS) for the
	// once-across-replicas guarantee to hold.
	Subject string `json:"subject,omitempty" yaml:"subject,omitempty"`
	// Payload is the message body. Default: a small JSON object naming the
	// schedule and the scheduled time; for a tool call, "{}".
	Payload json.RawMessage `json:"payload,omitempty" yaml:"payload,omitempty"`
	// Headers are added to every message.
	Headers map[string]string `json:"headers,omitempty" yaml:"headers,omitempty"`
	// Missed is the policy for ticks missed while every replica was down:
	// "skip" (default) or "once".
	Missed Missed `json:"missed,omitempty" yaml:"missed,omitempty"`
	// Timeout is a scheduled tool call's deadline, counted from when the
	// tick is published (default 5m), so a catch-up tick is not born late.
	Timeout subjects.Duration `json:"timeout,omitempty" yaml:"timeout,omitempty"`
}

// Validate checks the schedule and names the field at fault.
func (s *Schedule) Validate() error {
	_, err := s.compile()
	return err
}

func (s *Schedule) errf(field, format string, a ...any) error {
	name := s.Name
	if name == "" {
		name = "(unnamed)"
	}
	return fmt.Errorf("%w: schedule %q: %s: %s", ErrInvalidSchedule, name, field, fmt.Sprintf(format, a...))
}

// compiled is a validated schedule ready to run.
type compiled struct {
	Schedule
	key     string // escaped name: the KV key suffix
	loc     *time.Location
	every   time.Duration // for @every: ticks at multiples of every since the epoch
	sched   cron.Schedule
	subject string
	isCall  bool
}

func (s *Schedule) compile() (*compiled, error) {
	c := &compiled{Schedule: *s}
	key, err := subjects.EscapeToken(s.Name)
	if err != nil {
		return nil, s.errf("name", "%v", err)
	}
	c.key = key
	spec := strings.TrimSpace(s.Spec)
	if spec == "" {
		return nil, s.errf("spec", "required (a cron expression, @every 10s or @hourly)")
	}
	if strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=") {
		return nil, s.errf("spec", "put the time zone in tz, not in the spec")
	}
	c.loc = time.UTC
	if s.TZ != "" {
		loc, err := time.LoadLocation(s.TZ)
		if err != nil {
			return nil, s.errf("tz", "%q is not an IANA time zone (e.g. Europe/Paris): %v", s.TZ, err)
		}
		c.loc = loc
	}
	sched, err := parser.Parse(spec)
	if err != nil {
		return nil, s.errf("spec", "%v", err)
	}
	switch v := sched.(type) {
	case *cron.SpecSchedule:
		v.Location = c.loc
	case cron.ConstantDelaySchedule:
		c.every = v.Delay
	}
	c.sched = sched
	switch s.Kind {
	case KindResync:
		if c.subject, err = subjects.CatalogResync(s.Server); err != nil {
			return nil, s.errf("server", "%v", err)
		}
	case KindWake:
		if s.Agent == "" {
			return nil, s.errf("agent", "required for kind wake")
		}
		if c.subject, err = subjects.AgentWake(s.Agent); err != nil {
			return nil, s.errf("agent", "%v", err)
		}
	case KindPublish:
		if !subjects.ValidPublishSubject(s.Subject) {
			return nil, s.errf("subject", "%q is not a literal subject (dot-separated tokens, no wildcards)", s.Subject)
		}
		c.subject = s.Subject
		if strings.HasPrefix(s.Subject, subjects.ToolCallPrefix) {
			agent, _, _, err := subjects.ParseToolCall(s.Subject)
			if err != nil {
				return nil, s.errf("subject", "%v", err)
			}
			if s.Agent != "" && s.Agent != agent {
				return nil, s.errf("agent", "%q, but the subject calls as agent %q: a scheduled call runs as the agent its subject names", s.Agent, agent)
			}
			c.isCall = true
		}
	case "":
		return nil, s.errf("kind", "required (resync, wake or publish)")
	default:
		return nil, s.errf("kind", "%q is not one of resync, wake, publish", s.Kind)
	}
	if len(s.Payload) > 0 {
		if !json.Valid(s.Payload) {
			return nil, s.errf("payload", "not valid JSON")
		}
		if c.isCall && !isObject(s.Payload) {
			return nil, s.errf("payload", "a tool call's arguments must be a JSON object")
		}
	}
	for k := range s.Headers {
		if k == "" || strings.ContainsAny(k, " :\r\n") {
			return nil, s.errf("headers", "%q is not a header name", k)
		}
		if strings.EqualFold(k, subjects.HeaderCallID) {
			return nil, s.errf("headers", "%s is set by the scheduler", k)
		}
	}
	switch s.Missed {
	case "", MissedSkip, MissedOnce:
	default:
		return nil, s.errf("missed", "%q is not one of skip, once", s.Missed)
	}
	if s.Timeout < 0 {
		return nil, s.errf("timeout", "must not be negative")
	}
	return c, nil
}

func isObject(b json.RawMessage) bool {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return c == '{'
	}
	return false
}

// Target is the subject the schedule publishes on (empty if invalid).
func (s *Schedule) Target() string {
	c, err := s.compile()
	if err != nil {
		return ""
	}
	return c.subject
}

// Next returns the first tick strictly after t, or the zero time if the spec
// has none (e.g. 30 February).
func (s *Schedule) Next(t time.Time) (time.Time, error) {
	c, err := s.compile()
	if err != nil {
		return time.Time{}, err
	}
	return c.next(t), nil
}

// next returns the first tick strictly after t. @every intervals tick at
// whole multiples of the interval since the Unix epoch, not relative to when
// a process started, so all replicas agree on the tick times.
func (c *compiled) next(t time.Time) time.Time {
	if c.every > 0 {
		step := c.every.Nanoseconds()
		n := t.UnixNano()
		k := n / step
		if n < 0 && n%step != 0 {
			k--
		}
		return time.Unix(0, (k+1)*step).In(c.loc)
	}
	return c.sched.Next(t)
}

// latest returns the last tick in (after, now], or the zero time if there is
// none. It looks back in growing windows so a long outage costs few steps.
func (c *compiled) latest(after, now time.Time) time.Time {
	if first := c.next(after); first.IsZero() || first.After(now) {
		return time.Time{}
	}
	if c.every > 0 {
		step := c.every.Nanoseconds()
		return time.Unix(0, now.UnixNano()/step*step).In(c.loc)
	}
	for _, back := range []time.Duration{time.Second, time.Minute, time.Hour, 24 * time.Hour, 32 * 24 * time.Hour, 366 * 24 * time.Hour, 5 * 366 * 24 * time.Hour} {
		from := now.Add(-back)
		if from.Before(after) {
			from = after
		}
		t := c.next(from)
		if t.IsZero() || t.After(now) {
			if from.Equal(after) {
				break
			}
			continue
		}
		for i := 0; i < 1_000_000; i++ {
			n := c.next(t)
			if n.IsZero() || n.After(now) {
				return t
			}
			t = n
		}
		return t
	}
	return c.next(after) // unreachable in practice: first tick is <= now
}

// MsgID is the Nats-Msg-Id of the tick scheduled at t: the same on every
// replica, so JetStream stores one copy. A scheduled tool call uses CallID.
func (s *Schedule) MsgID(t time.Time) string {
	if strings.HasPrefix(s.Subject, subjects.ToolCallPrefix) && s.Kind == KindPublish {
		return CallID(s.Name, t)
	}
	return "sched:" + s.Name + ":" + strconv.FormatInt(t.Unix(), 10)
}

// CallID is the call id of a scheduled tool call: sched-<16 hex of the
// name's FNV-1a hash>-<unix seconds>, a valid call id for any name.
func CallID(name string, t time.Time) string {
	h := fnv.New64a()
	h.Write([]byte(name))
	return fmt.Sprintf("sched-%016x-%d", h.Sum64(), t.Unix())
}

// UnmarshalYAML reads a schedule from the config file, where the payload is
// written as YAML (a mapping, a list, a scalar) and stored as its JSON.
func (s *Schedule) UnmarshalYAML(n *yaml.Node) error {
	type plain Schedule
	rest := *n
	var payload *yaml.Node
	if n.Kind == yaml.MappingNode {
		rest.Content = nil
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == "payload" {
				payload = n.Content[i+1]
				continue
			}
			rest.Content = append(rest.Content, n.Content[i], n.Content[i+1])
		}
	}
	var p plain
	if err := rest.Decode(&p); err != nil {
		return err
	}
	*s = Schedule(p)
	if payload != nil {
		var v any
		if err := payload.Decode(&v); err != nil {
			return fmt.Errorf("payload: %w", err)
		}
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("line %d: payload: %w", payload.Line, err)
		}
		s.Payload = b
	}
	return nil
}
