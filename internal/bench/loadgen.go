package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	gosync "sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/toolbus-dev/toolbus/internal/demo"
	"github.com/toolbus-dev/toolbus/internal/mcppool"
	"github.com/toolbus-dev/toolbus/internal/registry"
	"github.com/toolbus-dev/toolbus/subjects"
)

// LoadgenCommand is the hidden subcommand the parent runs its load
// generator and its demo MCP server as: `<exe> bench-loadgen [flags]`.
const LoadgenCommand = "bench-loadgen"

// job is one instruction from the parent to the load generator, a JSON
// line on its stdin.
type job struct {
	// Path is "bus" (the wire protocol), "floor" (the same on the floor's
	// subjects, floor.go) or the name of an MCP client of the load
	// generator: "direct", "frontdoor", "mcp-proxy".
	Path     string        `json:"path"`
	Tool     string        `json:"tool"`
	Args     string        `json:"args"` // the arguments object, as JSON
	Conc     int           `json:"conc"`
	Warmup   time.Duration `json:"warmup"`
	Duration time.Duration `json:"duration"`
	// Burst, when > 0, publishes this many calls at once (bus only) and
	// waits for all their results, instead of a closed loop of Conc.
	Burst int `json:"burst,omitempty"`
	// Probe, when set, calls once a second until a call succeeds (30s at
	// most), for a serve side or proxy that is still starting.
	Probe bool `json:"probe,omitempty"`
}

// report is the load generator's answer to a job, JSON lines on stdout:
// {"event":"start"} when the measured part begins (after the warm-up),
// {"event":"published"} for a burst once every call is accepted, then
// {"event":"done", ...}.
type report struct {
	Event    string        `json:"event"`
	Calls    int           `json:"calls,omitempty"`
	Errors   int64         `json:"errors,omitempty"`
	FirstErr string        `json:"first_err,omitempty"`
	Elapsed  time.Duration `json:"elapsed,omitempty"`
	P50      time.Duration `json:"p50,omitempty"`
	P99      time.Duration `json:"p99,omitempty"`
	URL      string        `json:"url,omitempty"`
}

// LoadgenMain is the load generator process: an agent in its own process
// that speaks the README's wire protocol over TCP (one subscription on
// tool.reply.<agent>.*, a JetStream publish of tool.call.<agent>.<server>.<tool>
// with Nats-Msg-Id per call) and, beside it, a direct mcp-go client of the
// same MCP server. It reads jobs as JSON lines on stdin and reports on
// stdout. With --serve-demo it is instead the demo MCP server over
// streamable HTTP, printing its URL and serving until stdin closes.
func LoadgenMain(args []string, stdout io.Writer) int {
	fs := flag.NewFlagSet(LoadgenCommand, flag.ContinueOnError)
	natsURL := fs.String("nats", "", "NATS URL of the serve side")
	mcpURL := fs.String("mcp", "", "streamable HTTP URL of the MCP server (direct path)")
	agent := fs.String("agent", "bench", "agent id of the calls")
	server := fs.String("server", "demo", "registered server name")
	proto := fs.String("protocol", mcp.ProtocolVersion20251125, "MCP protocol version of the MCP clients")
	frontDoor := fs.String("frontdoor", "", "streamable HTTP URL of the toolbus MCP front door (frontdoor path)")
	proxy := fs.String("mcp-proxy", "", "streamable HTTP URL of the demo server through mcp-proxy (mcp-proxy path)")
	serveDemo := fs.Bool("serve-demo", false, "serve the demo MCP server over streamable HTTP on loopback instead")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if *serveDemo {
		url, stop, err := demo.Serve(ctx, demo.TransportHTTP, "127.0.0.1:0", demo.Options{})
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench-loadgen: demo server: %v\n", err)
			return 1
		}
		defer stop()
		_ = json.NewEncoder(stdout).Encode(report{Event: "ready", URL: url})
		_, _ = io.Copy(io.Discard, os.Stdin) // serve until the parent closes stdin
		return 0
	}
	urls := map[string]string{"direct": *mcpURL, "frontdoor": *frontDoor, "mcp-proxy": *proxy}
	g, err := newLoadgen(ctx, *natsURL, urls, *agent, *server, *proto)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench-loadgen: %v\n", err)
		return 1
	}
	defer g.close()
	enc := json.NewEncoder(stdout)
	var encMu gosync.Mutex
	emit := func(r report) {
		encMu.Lock()
		defer encMu.Unlock()
		_ = enc.Encode(r)
	}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var j job
		if err := json.Unmarshal(sc.Bytes(), &j); err != nil {
			fmt.Fprintf(os.Stderr, "bench-loadgen: bad job: %v\n", err)
			return 1
		}
		emit(g.run(ctx, j, emit))
	}
	return 0
}

// reply is a result message and when it arrived.
type reply struct {
	msg *nats.Msg
	at  time.Time
}

type loadgen struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	sub     *nats.Subscription
	agent   string
	server  string
	proto   string
	urls    map[string]string         // MCP client name → URL
	clients map[string]*client.Client // dialled on first use
	mu      gosync.Mutex
	waiting map[string]chan reply
}

func newLoadgen(ctx context.Context, natsURL string, urls map[string]string, agent, server, proto string) (*loadgen, error) {
	g := &loadgen{agent: agent, server: server, proto: proto, urls: urls, clients: map[string]*client.Client{}, waiting: map[string]chan reply{}}
	var err error
	if g.nc, err = nats.Connect(natsURL, nats.Name("toolbus-bench-loadgen")); err != nil {
		return nil, fmt.Errorf("connect %s: %w", natsURL, err)
	}
	// A burst of --inflight calls is published without waiting for acks.
	if g.js, err = jetstream.New(g.nc, jetstream.WithPublishAsyncMaxPending(1<<16)); err != nil {
		return nil, err
	}
	// One subscription for every result of the agent, as the README says.
	if g.sub, err = g.nc.Subscribe(subjects.ToolReplies(agent), g.onReply); err != nil {
		return nil, err
	}
	// 1 MB results at concurrency 256 overflow the default pending limits.
	_ = g.sub.SetPendingLimits(-1, -1)
	// And one for the floor's (floor.go), the same way.
	fsub, err := g.nc.Subscribe(floorReplyPre+agent+".*", g.onReply)
	if err != nil {
		return nil, err
	}
	_ = fsub.SetPendingLimits(-1, -1)
	return g, nil
}

// client returns the MCP client named path, dialling it on first use (the
// same mcp-go client code for the demo server, the front door and
// mcp-proxy).
func (g *loadgen) client(ctx context.Context, path string) (*client.Client, error) {
	if c := g.clients[path]; c != nil {
		return c, nil
	}
	url := g.urls[path]
	if url == "" {
		return nil, fmt.Errorf("no URL for the %s path", path)
	}
	srv := registry.Server{Name: path, Transport: registry.TransportHTTP, URL: url, ProtocolVersion: g.proto}
	c, err := mcppool.Dial(ctx, srv, mcppool.DialOptions{HTTPClient: mcppool.NewHTTPClient(512)})
	if err != nil {
		return nil, fmt.Errorf("%s client of %s: %w", path, url, err)
	}
	g.clients[path] = c
	return c, nil
}

func (g *loadgen) close() {
	for _, c := range g.clients {
		c.Close()
	}
	g.nc.Close()
}

func (g *loadgen) onReply(m *nats.Msg) {
	id := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
	g.mu.Lock()
	ch := g.waiting[id]
	delete(g.waiting, id)
	g.mu.Unlock()
	if ch != nil {
		ch <- reply{m, time.Now()}
	}
}

// publish sends one call and returns where its result will arrive.
func (g *loadgen) publish(ctx context.Context, tool string, args []byte, async bool) (string, chan reply, jetstream.PubAckFuture, error) {
	subj, err := subjects.ToolCall(g.agent, g.server, tool)
	if err != nil {
		return "", nil, nil, err
	}
	return g.publishTo(ctx, subj, args, async)
}

// publishTo publishes a call on subj, the bus's or the floor's.
func (g *loadgen) publishTo(ctx context.Context, subj string, args []byte, async bool) (string, chan reply, jetstream.PubAckFuture, error) {
	id := subjects.NewCallID()
	ch := make(chan reply, 1)
	g.mu.Lock()
	g.waiting[id] = ch
	g.mu.Unlock()
	m := nats.NewMsg(subj)
	m.Header.Set(subjects.HeaderCallID, id)
	m.Data = args
	var (
		fut jetstream.PubAckFuture
		err error
	)
	if async {
		fut, err = g.js.PublishMsgAsync(m)
	} else {
		_, err = g.js.PublishMsg(ctx, m)
	}
	if err != nil {
		g.forget(id)
		return "", nil, nil, fmt.Errorf("publish: %w", err)
	}
	return id, ch, fut, nil
}

func (g *loadgen) forget(id string) {
	g.mu.Lock()
	delete(g.waiting, id)
	g.mu.Unlock()
}

// wait takes the call's result and turns an error result into an error.
func (g *loadgen) wait(ctx context.Context, id string, ch chan reply) (time.Time, error) {
	select {
	case r := <-ch:
		m := r.msg
		if st := m.Header.Get(subjects.HeaderStatus); st != "ok" {
			return r.at, fmt.Errorf("result %s: %s %s", st, m.Header.Get(subjects.HeaderServiceErrorCode), m.Header.Get(subjects.HeaderServiceError))
		}
		return r.at, nil
	case <-ctx.Done():
		g.forget(id)
		return time.Time{}, fmt.Errorf("no result: %w", ctx.Err())
	}
}

func (g *loadgen) busCall(ctx context.Context, tool string, args []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	id, ch, _, err := g.publish(ctx, tool, args, false)
	if err != nil {
		return err
	}
	_, err = g.wait(ctx, id, ch)
	return err
}

// floorCall is busCall on the floor's subjects.
func (g *loadgen) floorCall(ctx context.Context, tool string, args []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	subj, err := floorCall(g.agent, tool)
	if err != nil {
		return err
	}
	id, ch, _, err := g.publishTo(ctx, subj, args, false)
	if err != nil {
		return err
	}
	_, err = g.wait(ctx, id, ch)
	return err
}

func mcpCall(ctx context.Context, c *client.Client, tool string, args []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req := mcp.CallToolRequest{}
	req.Params.Name = tool
	req.Params.Arguments = json.RawMessage(args)
	res, err := c.CallTool(ctx, req)
	if err != nil {
		return err
	}
	if res.IsError {
		msg := "tool error"
		if len(res.Content) > 0 {
			if t, ok := res.Content[0].(mcp.TextContent); ok {
				msg += ": " + t.Text
			}
		}
		return errors.New(msg)
	}
	return nil
}

func (g *loadgen) run(ctx context.Context, j job, emit func(report)) report {
	args := []byte(j.Args)
	if j.Burst > 0 {
		return g.burst(ctx, j, args, emit)
	}
	f := func(ctx context.Context) error { return g.busCall(ctx, j.Tool, args) }
	if j.Path == floorPath {
		f = func(ctx context.Context) error { return g.floorCall(ctx, j.Tool, args) }
	} else if j.Path != "bus" {
		// Dialled here, before any caller runs (a probe retries the dial).
		f = func(ctx context.Context) error {
			c, err := g.client(ctx, j.Path)
			if err != nil {
				return err
			}
			return mcpCall(ctx, c, j.Tool, args)
		}
		if !j.Probe {
			c, err := g.client(ctx, j.Path)
			if err != nil {
				return report{Event: "done", Errors: 1, FirstErr: err.Error()}
			}
			f = func(ctx context.Context) error { return mcpCall(ctx, c, j.Tool, args) }
		}
	}
	if j.Probe {
		return probe(ctx, f)
	}
	if j.Warmup > 0 {
		// Large calls take seconds each at high concurrency: a full-width
		// warm-up would cost as much as the measurement.
		wc := j.Conc
		if len(args) >= 64<<10 {
			wc = min(wc, 16)
		}
		measure(ctx, f, wc, j.Warmup)
	}
	emit(report{Event: "start"})
	return measure(ctx, f, j.Conc, j.Duration)
}

// probe calls f once a second until it succeeds, 30s at most.
func probe(ctx context.Context, f func(context.Context) error) report {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		err := f(ctx)
		if err == nil {
			return report{Event: "done", Calls: 1}
		}
		select {
		case <-ctx.Done():
			return report{Event: "done", Errors: 1, FirstErr: err.Error()}
		case <-time.After(time.Second):
		}
	}
}

// burst publishes j.Burst calls as fast as JetStream takes them and waits
// for every result.
func (g *loadgen) burst(ctx context.Context, j job, args []byte, emit func(report)) report {
	emit(report{Event: "start"})
	start := time.Now()
	type pending struct {
		id  string
		ch  chan reply
		fut jetstream.PubAckFuture
	}
	calls := make([]pending, 0, j.Burst)
	r := report{Event: "done"}
	fail := func(err error) {
		if r.Errors == 0 {
			r.FirstErr = err.Error()
		}
		r.Errors++
	}
	for range j.Burst {
		id, ch, fut, err := g.publish(ctx, j.Tool, args, true)
		if err != nil {
			fail(err)
			continue
		}
		calls = append(calls, pending{id, ch, fut})
	}
	select {
	case <-g.js.PublishAsyncComplete():
	case <-time.After(time.Minute):
	}
	ok := calls[:0]
	for _, c := range calls {
		select {
		case <-c.fut.Ok():
			ok = append(ok, c)
		case err := <-c.fut.Err():
			g.forget(c.id)
			fail(err)
		}
	}
	emit(report{Event: "published", Elapsed: time.Since(start)})
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	lat := make([]time.Duration, 0, len(ok))
	for _, c := range ok {
		at, err := g.wait(wctx, c.id, c.ch)
		if err != nil {
			fail(err)
			continue
		}
		lat = append(lat, at.Sub(start))
		r.Elapsed = max(r.Elapsed, at.Sub(start))
	}
	r.Calls = len(lat)
	sort.Slice(lat, func(i, k int) bool { return lat[i] < lat[k] })
	if len(lat) > 0 {
		r.P50, r.P99 = lat[len(lat)/2], lat[len(lat)*99/100]
	}
	return r
}

// measure runs conc callers of f in a closed loop for d.
func measure(ctx context.Context, f func(context.Context) error, conc int, d time.Duration) report {
	var (
		wg       gosync.WaitGroup
		mu       gosync.Mutex
		lat      []time.Duration
		errs     atomic.Int64
		firstErr atomic.Value
		stopAt   = time.Now().Add(d)
	)
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 1024)
			for time.Now().Before(stopAt) && ctx.Err() == nil {
				t0 := time.Now()
				if err := f(ctx); err != nil {
					if errs.Add(1) == 1 {
						firstErr.Store(err.Error())
					}
					continue
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	r := report{Event: "done", Calls: len(lat), Errors: errs.Load(), Elapsed: time.Since(start)}
	if s, ok := firstErr.Load().(string); ok {
		r.FirstErr = s
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) > 0 {
		r.P50, r.P99 = lat[len(lat)/2], lat[len(lat)*99/100]
	}
	return r
}
