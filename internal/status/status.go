// Package status gathers the fleet at a glance for `toolbus status`: the
// workers (found through the control service), the calls queued, in flight
// and awaiting ack (the workers' consumer), the dead letters, and each
// server's sync state and breaker state. It renders the report as text or
// JSON and can refresh it in a loop.
package status

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/toolbus-dev/toolbus/internal/control"
	"github.com/toolbus-dev/toolbus/internal/registry"
	"github.com/toolbus-dev/toolbus/internal/streams"
	"github.com/toolbus-dev/toolbus/subjects"
)

// Report is the fleet at one moment. Sections that could not be read
// carry their error instead, so one missing part never hides the rest.
type Report struct {
	Time    time.Time `json:"time"`
	Workers []Worker  `json:"workers"`
	Calls   Calls     `json:"calls"`
	Servers []Server  `json:"servers"`
	// Errors lists what could not be read ("calls: stream TOOL_CALLS not found").
	Errors []string `json:"errors,omitempty"`
}

// Worker is one registered worker and what it said about itself.
type Worker struct {
	control.Instance
	Status *subjects.WorkerStatus `json:"status,omitempty"`
	Error  string                 `json:"error,omitempty"`
}

// Calls counts calls on the bus.
type Calls struct {
	// Queued: in TOOL_CALLS, not yet delivered to a worker.
	Queued uint64 `json:"queued"`
	// AwaitingAck: delivered to a worker and not yet acknowledged.
	AwaitingAck int `json:"awaiting_ack"`
	// InFlight: running now, summed over the workers that answered.
	InFlight int `json:"in_flight"`
	// Redelivered: awaiting ack on a second or later delivery.
	Redelivered int `json:"redelivered"`
	// OldestAgeSeconds: how long the oldest call in TOOL_CALLS has waited
	// (queued or running); 0 when none.
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
	// DeadLetters: calls in TOOL_DEAD.
	DeadLetters uint64 `json:"dead_letters"`
}

// Server is one registered MCP server.
type Server struct {
	Name      string `json:"name"`
	Transport string `json:"transport,omitempty"`
	// Sync is the last sync's outcome; nil before the first.
	Sync *subjects.SyncStatus `json:"sync,omitempty"`
	// Health: ok, failing (last sync failed), pending (never synced),
	// paused (paused on some worker) or open (a breaker is open).
	Health string `json:"health"`
	// Breakers counts the workers per breaker state ("closed": 2).
	Breakers map[string]int `json:"breakers,omitempty"`
	// PausedOn lists the workers that do not take its calls.
	PausedOn []string `json:"paused_on,omitempty"`
	Sessions int      `json:"sessions"`
}

// Options tune Gather.
type Options struct {
	// DiscoverWait bounds the wait for the first worker to answer
	// (default control.DiscoverWait).
	DiscoverWait time.Duration
}

// Gather reads the report from NATS.
func Gather(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, o Options) *Report {
	r := &Report{Time: time.Now().UTC()}
	fail := func(what string, err error) { r.Errors = append(r.Errors, what+": "+err.Error()) }

	instances, err := control.Discover(ctx, nc, o.DiscoverWait)
	if err != nil {
		fail("workers", err)
	}
	sort.Slice(instances, func(i, j int) bool {
		if instances[i].Name != instances[j].Name {
			return instances[i].Name < instances[j].Name
		}
		return instances[i].ID < instances[j].ID
	})
	for _, in := range instances {
		w := Worker{Instance: in}
		st, err := control.Status(ctx, nc, in.ID)
		if err != nil {
			w.Error = err.Error()
		} else {
			w.Status = &st
			r.Calls.InFlight += st.InFlight
		}
		r.Workers = append(r.Workers, w)
	}

	if c, err := js.Consumer(ctx, subjects.StreamCalls, subjects.ConsumerWorkers); err != nil {
		fail("calls", fmt.Errorf("consumer %s on %s: %w", subjects.ConsumerWorkers, subjects.StreamCalls, err))
	} else if info, err := c.Info(ctx); err != nil {
		fail("calls", err)
	} else {
		r.Calls.Queued, r.Calls.AwaitingAck, r.Calls.Redelivered = info.NumPending, info.NumAckPending, info.NumRedelivered
	}
	if s, err := js.Stream(ctx, subjects.StreamCalls); err != nil {
		fail("calls", err)
	} else if first, err := streams.OldestCall(ctx, s); err != nil {
		fail("calls", err)
	} else if !first.IsZero() {
		r.Calls.OldestAgeSeconds = r.Time.Sub(first).Seconds()
	}
	if s, err := js.Stream(ctx, subjects.StreamDead); err != nil {
		fail("dead letters", err)
	} else if info, err := s.Info(ctx); err != nil {
		fail("dead letters", err)
	} else {
		r.Calls.DeadLetters = info.State.Msgs
	}

	servers, err := readServers(ctx, js)
	if err != nil {
		fail("servers", err)
	}
	r.Servers = merge(servers, r.Workers)
	return r
}

// merge adds what the workers say about each server (breakers, sessions,
// pauses) to the registry's view, and judges its health.
func merge(servers []Server, workers []Worker) []Server {
	for i := range servers {
		s := &servers[i]
		s.Breakers = map[string]int{}
		for _, w := range workers {
			if w.Status == nil {
				continue
			}
			for _, ws := range w.Status.Servers {
				if ws.Server != s.Name {
					continue
				}
				if ws.Breaker != "" {
					s.Breakers[ws.Breaker]++
				}
				s.Sessions += ws.Sessions
			}
			if slices.Contains(w.Status.Paused, s.Name) {
				s.PausedOn = append(s.PausedOn, orDash(w.Name))
			}
		}
		if len(s.Breakers) == 0 {
			s.Breakers = nil
		}
		s.Health = health(s)
	}
	return servers
}

func health(s *Server) string {
	switch {
	case s.Breakers["open"] > 0:
		return "open"
	case len(s.PausedOn) > 0:
		return "paused"
	case s.Sync == nil:
		return "pending"
	case !s.Sync.OK:
		return "failing"
	}
	return "ok"
}

// readServers reads the registry and the sync statuses from the servers
// bucket. Only names and transports are kept: entries may hold secrets.
func readServers(ctx context.Context, js jetstream.JetStream) ([]Server, error) {
	kv, err := js.KeyValue(ctx, subjects.BucketServers)
	if err != nil {
		return nil, fmt.Errorf("KV bucket %s: %w", subjects.BucketServers, err)
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer func() { _ = w.Stop() }()
	byName := map[string]*Server{}
	get := func(name string) *Server {
		if byName[name] == nil {
			byName[name] = &Server{Name: name}
		}
		return byName[name]
	}
	statuses := map[string]*subjects.SyncStatus{}
	for {
		var e jetstream.KeyValueEntry
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case e = <-w.Updates():
		}
		if e == nil {
			break
		}
		if tok, ok := strings.CutPrefix(e.Key(), subjects.SyncStatusPrefix); ok {
			name, err := subjects.UnescapeToken(tok)
			var st subjects.SyncStatus
			if err == nil && json.Unmarshal(e.Value(), &st) == nil {
				statuses[name] = &st
			}
			continue
		}
		if strings.Contains(e.Key(), ".") {
			continue // not a server entry
		}
		name, err := subjects.UnescapeToken(e.Key())
		var srv registry.Server
		if err != nil || json.Unmarshal(e.Value(), &srv) != nil {
			continue
		}
		get(name).Transport = string(srv.Transport)
	}
	// A status without a server is left over from a removed server.
	out := make([]Server, 0, len(byName))
	for name, s := range byName {
		s.Sync = statuses[name]
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// WriteJSON writes the report as one JSON document.
func WriteJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the report for a person.
func WriteText(w io.Writer, r *Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	p := func(format string, a ...any) { fmt.Fprintf(tw, format, a...) }
	c := r.Calls
	p("Calls\tqueued %d\tawaiting ack %d\tin flight %d\tredelivered %d\tdead letters %d\n",
		c.Queued, c.AwaitingAck, c.InFlight, c.Redelivered, c.DeadLetters)
	if c.OldestAgeSeconds > 0 {
		p("\toldest call waiting %s\n", time.Duration(c.OldestAgeSeconds*float64(time.Second)).Round(time.Millisecond))
	}
	p("\n")
	if len(r.Workers) == 0 {
		p("Workers\tnone answered (are workers running, on this NATS?)\n")
	} else {
		p("WORKER\tID\tVERSION\tIN FLIGHT\tPAUSED\n")
		for _, wk := range r.Workers {
			if wk.Status == nil {
				p("%s\t%s\t%s\t?\t%s\n", orDash(wk.Name), wk.ID, wk.Version, wk.Error)
				continue
			}
			p("%s\t%s\t%s\t%d\t%s\n", orDash(wk.Name), wk.ID, wk.Version, wk.Status.InFlight, orDash(strings.Join(wk.Status.Paused, ",")))
		}
	}
	p("\n")
	if len(r.Servers) == 0 {
		p("Servers\tnone registered (`toolbus servers add`)\n")
	} else {
		p("SERVER\tTRANSPORT\tHEALTH\tTOOLS\tLAST SYNC\tBREAKERS\tSESSIONS\tNOTE\n")
		for _, s := range r.Servers {
			tools, last, note := "-", "never", ""
			if s.Sync != nil {
				tools = fmt.Sprint(s.Sync.Tools)
				if !s.Sync.At.IsZero() {
					last = ago(r.Time, s.Sync.At)
				}
				if !s.Sync.OK {
					note = string(s.Sync.ErrorClass) + ": " + oneLine(s.Sync.Message, 60)
				}
			}
			if len(s.PausedOn) > 0 {
				note = strings.TrimPrefix(note+"; paused on "+strings.Join(s.PausedOn, ","), "; ")
			}
			p("%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", s.Name, orDash(s.Transport), s.Health, tools, last, breakers(s.Breakers), s.Sessions, note)
		}
	}
	for _, e := range r.Errors {
		p("\nerror: %s", e)
	}
	if len(r.Errors) > 0 {
		p("\n")
	}
	return tw.Flush()
}

func breakers(b map[string]int) string {
	if len(b) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(b))
	for k := range b {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s×%d", k, b[k])
	}
	return strings.Join(parts, " ")
}

func ago(now, t time.Time) string {
	d := now.Sub(t)
	if d < 0 {
		d = 0
	}
	return d.Round(time.Second).String() + " ago"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > max {
		return string(r[:max-1]) + "…"
	}
	return s
}

// Watch gathers and renders the report every interval until ctx ends.
// clear, when set, is written before each report (a terminal's clear
// screen). It returns nil when ctx ends.
func Watch(ctx context.Context, w io.Writer, interval time.Duration, clear string, gather func(context.Context) *Report, render func(io.Writer, *Report) error) error {
	if interval <= 0 {
		interval = 2 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		r := gather(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if clear != "" {
			if _, err := io.WriteString(w, clear); err != nil {
				return err
			}
		}
		if err := render(w, r); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
