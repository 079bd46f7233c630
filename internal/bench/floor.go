package bench

// The floor path: what a minimal JetStream worker with toolbus's
// durability gets on the same machine, to tell JetStream's own cost from
// toolbus's. It is written with plain nats.go and net/http, none of the
// toolbus worker, catalog, ledger or pool code. Per call it does what the
// bus must at least do: the agent's publish is stored in a work-queue
// stream, a worker takes it on a durable pull consumer, POSTs a JSON-RPC
// tools/call to the MCP server, publishes the result write-once into a
// results stream that republishes it to the agent, waits for the PubAck,
// and acks the call. For a tool that is not safe to retry (no annotations,
// as echo_plain) it first creates a ledger mark in a KV bucket, as the
// worker does: the floor_mark rows.

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	gosync "sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/toolbus-dev/toolbus/internal/streams"
	"github.com/toolbus-dev/toolbus/subjects"
)

// The floor's subjects, stream, consumer and bucket, apart from toolbus's.
const (
	floorPath     = "floor"
	floorCallPre  = "bench.floor.call."   // + <agent>.<tool>
	floorResPre   = "bench.floor.result." // + <agent>.<call_id>
	floorReplyPre = "bench.floor.reply."  // + <agent>.<call_id>
	floorCalls    = "BENCH_FLOOR_CALLS"
	floorResults  = "BENCH_FLOOR_RESULTS"
	floorConsumer = "bench-floor"
	floorLedger   = "BENCH_FLOOR_LEDGER"
	floorKeeper   = "bench.floor.keeper" // as tool.keeper: the calls stream's newest block never empties
)

// floorCall is the subject an agent publishes a floor call of tool on.
func floorCall(agent, tool string) (string, error) {
	tok, err := subjects.EscapeToken(tool)
	if err != nil {
		return "", err
	}
	return floorCallPre + agent + "." + tok, nil
}

// floor is the minimal worker.
type floor struct {
	js      jetstream.JetStream
	kv      jetstream.KeyValue
	hc      *http.Client
	url     string
	proto   string
	session string
	unsafe  map[string]bool // tools that get a ledger mark
	nextID  atomic.Int64    // JSON-RPC request ids

	iter jetstream.MessagesContext
	wg   gosync.WaitGroup
	stop chan struct{} // ends the keeper
}

// startFloor creates the floor's streams, bucket and consumer on js (the
// serve side's in-process connection), opens an MCP session with the
// server at mcpURL, and starts serve's worker.concurrency goroutines.
func startFloor(ctx context.Context, js jetstream.JetStream, o Options, mcpURL string) (f *floor, err error) {
	// The worker's consumer settings (max ack pending, ack wait, max
	// deliver), and TOOL_CALLS's, TOOL_RESULTS's and the ledger's stream
	// settings under other names: the same durability and retention.
	ccfg := o.Worker.ConsumerConfig()
	ccfg.Durable, ccfg.Description = floorConsumer, "toolbus bench: floor workers"
	ccfg.FilterSubject = floorCallPre + ">"
	conc := cmp.Or(o.Worker.Concurrency, 64)
	var cfgs []jetstream.StreamConfig
	for _, cfg := range streams.Streams(o.Streams) {
		switch cfg.Name {
		case subjects.StreamCalls:
			cfg.Name, cfg.Subjects = floorCalls, []string{floorCallPre + ">", floorKeeper}
		case subjects.StreamResults:
			cfg.Name, cfg.Subjects = floorResults, []string{floorResPre + ">"}
			cfg.RePublish = &jetstream.RePublish{Source: floorResPre + ">", Destination: floorReplyPre + ">"}
		default:
			continue
		}
		cfgs = append(cfgs, cfg)
	}
	// Full, the ledger drops its oldest marks (a KV bucket's default
	// refuses new ones), and each mark has a TTL.
	lcfg := streams.LedgerStream(o.Streams)
	lcfg.Name, lcfg.Subjects = "KV_"+floorLedger, []string{"$KV." + floorLedger + ".>"}
	for _, cfg := range append(cfgs, lcfg) {
		cfg.Description = "toolbus bench: the floor path"
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return nil, fmt.Errorf("floor stream %s: %w", cfg.Name, err)
		}
	}
	kv, err := js.KeyValue(ctx, floorLedger)
	if err != nil {
		return nil, fmt.Errorf("floor ledger: %w", err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, floorCalls, ccfg)
	if err != nil {
		return nil, fmt.Errorf("floor consumer: %w", err)
	}

	// internal/mcppool's transport for an HTTP server of max_concurrency n.
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = max(256, 2*conc)
	t.MaxIdleConns = max(t.MaxIdleConns, 4*t.MaxIdleConnsPerHost)
	t.IdleConnTimeout = 90 * time.Second
	f = &floor{js: js, kv: kv, hc: &http.Client{Transport: t}, url: mcpURL, proto: o.ProtocolVersion, unsafe: map[string]bool{}}
	if err := f.initialize(ctx); err != nil {
		return nil, fmt.Errorf("floor: MCP session with %s: %w", mcpURL, err)
	}

	if f.iter, err = cons.Messages(jetstream.PullMaxMessages(conc)); err != nil {
		return nil, fmt.Errorf("floor: pull: %w", err)
	}
	f.stop = make(chan struct{})
	f.wg.Go(func() { // the worker's keeper (internal/worker/keep.go), unconditional
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			_, _ = js.Publish(ctx, floorKeeper, nil, jetstream.WithMsgTTL(5*time.Second))
			select {
			case <-f.stop:
				return
			case <-t.C:
			}
		}
	})
	for range conc {
		f.wg.Go(func() {
			for {
				m, err := f.iter.Next()
				if err != nil {
					return // stopped
				}
				f.handle(m)
			}
		})
	}
	return f, nil
}

// close stops the goroutines once their current call is done. Calls not
// acked are redelivered after the ack wait, as the worker's.
func (f *floor) close() {
	if f == nil || f.iter == nil {
		return
	}
	f.iter.Stop()
	close(f.stop)
	f.wg.Wait()
	f.iter = nil
}

// marks reports whether the floor writes a ledger mark before calling tool.
func (f *floor) marks(tool string) bool { return f.unsafe[tool] }

// handle runs one call and settles it.
func (f *floor) handle(m jetstream.Msg) {
	// bench.floor.call.<agent>.<tool>; the call id names the result's
	// subject, so it must be one plain token.
	subj := m.Subject()
	agent, tok, _ := strings.Cut(strings.TrimPrefix(subj, floorCallPre), ".")
	id := m.Headers().Get(subjects.HeaderCallID)
	tool, err := subjects.UnescapeToken(tok)
	if err != nil || !subjects.ValidToken(agent) || !subjects.ValidToken(id) {
		_ = m.TermWithReason("floor: want bench.floor.call.<agent>.<tool> with a Nats-Msg-Id of one token")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	status, result := subjects.StatusOK, []byte(nil)
	if f.unsafe[tool] {
		// The ledger mark: one KV create, refused if an earlier delivery
		// started the call (the worker would then look for its result).
		// With a TTL, as the worker's marks, which expire once no delivery
		// of the call can run (its queue timeout and call timeout).
		if _, err := f.kv.Create(ctx, agent+"."+id, []byte(`{"state":"started"}`), jetstream.KeyTTL(10*time.Minute)); err != nil {
			status, result = subjects.StatusError, []byte(err.Error())
		}
	}
	if status == subjects.StatusOK {
		if result, err = f.callTool(ctx, tool, m.Data()); err != nil {
			status, result = subjects.StatusError, []byte(err.Error())
		}
	}
	res := &nats.Msg{Subject: floorResPre + agent + "." + id, Header: nats.Header{subjects.HeaderStatus: {string(status)}}, Data: result}
	if status != subjects.StatusOK {
		res.Header.Set(subjects.HeaderServiceError, strings.Join(strings.Fields(truncate(string(result), 200)), " "))
	}
	// Write-once, as the worker's: a result stored by an earlier delivery
	// stays, and this one is not republished.
	_, err = f.js.PublishMsg(ctx, res, jetstream.WithExpectLastSequencePerSubject(0))
	var apiErr *jetstream.APIError
	if err != nil && !(errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence) {
		_ = m.Nak() // not stored: run it again
		return
	}
	_ = m.Ack()
}

// rpcRequest is a JSON-RPC request, or a notification without ID.
type rpcRequest struct {
	JSONRPC string `json:"jsonrpc"`
	ID      int64  `json:"id,omitempty"`
	Method  string `json:"method"`
	Params  any    `json:"params"`
}

// toolCall is the params of tools/call.
type toolCall struct {
	Name      string          `json:"name"`
	Arguments json.RawMessage `json:"arguments"`
}

// rpcResponse is a JSON-RPC response with the result left raw.
type rpcResponse struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// post sends one JSON-RPC message over streamable HTTP and decodes the
// JSON response (nil for a notification's 202).
func (f *floor) post(ctx context.Context, method string, params any, notify bool) (*http.Response, json.RawMessage, error) {
	msg := rpcRequest{JSONRPC: "2.0", Method: method, Params: params}
	if !notify {
		msg.ID = f.nextID.Add(1)
	}
	body, err := json.Marshal(msg)
	if err != nil {
		return nil, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.url, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if f.session != "" {
		req.Header.Set("Mcp-Session-Id", f.session)
		req.Header.Set("Mcp-Protocol-Version", f.proto)
	}
	resp, err := f.hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	switch {
	case err != nil:
		return nil, nil, err
	case notify && resp.StatusCode == http.StatusAccepted:
		return resp, nil, nil
	case resp.StatusCode != http.StatusOK:
		return nil, nil, fmt.Errorf("%s: HTTP %d: %s", method, resp.StatusCode, truncate(string(data), 200))
	case !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json"):
		return nil, nil, fmt.Errorf("%s: response of type %q, want application/json", method, resp.Header.Get("Content-Type"))
	}
	var r rpcResponse
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", method, err)
	}
	if r.Error != nil {
		return nil, nil, fmt.Errorf("%s: JSON-RPC error %d: %s", method, r.Error.Code, r.Error.Message)
	}
	return resp, r.Result, nil
}

// initialize opens the session and lists the tools, to mark those not safe
// to retry by the rule the catalog applies.
func (f *floor) initialize(ctx context.Context) error {
	resp, _, err := f.post(ctx, "initialize", map[string]any{"protocolVersion": f.proto, "capabilities": map[string]any{},
		"clientInfo": map[string]any{"name": "toolbus-bench-floor", "version": "1"}}, false)
	if err != nil {
		return err
	}
	f.session = resp.Header.Get("Mcp-Session-Id")
	if _, _, err := f.post(ctx, "notifications/initialized", map[string]any{}, true); err != nil {
		return err
	}
	_, raw, err := f.post(ctx, "tools/list", map[string]any{}, false)
	if err != nil {
		return err
	}
	var list struct {
		Tools []struct {
			Name        string                   `json:"name"`
			Annotations subjects.ToolAnnotations `json:"annotations"`
		} `json:"tools"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return fmt.Errorf("tools/list: %w", err)
	}
	for _, t := range list.Tools {
		f.unsafe[t.Name] = !t.Annotations.SafeToRetry()
	}
	return nil
}

// callTool calls tool with the arguments object args and returns its
// result; a result with isError set is an error.
func (f *floor) callTool(ctx context.Context, tool string, args []byte) ([]byte, error) {
	_, raw, err := f.post(ctx, "tools/call", toolCall{Name: tool, Arguments: args}, false)
	if err != nil {
		return nil, err
	}
	var r struct {
		IsError bool `json:"isError"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("tools/call result: %w", err)
	}
	if r.IsError {
		return nil, errors.New("tool error: " + truncate(string(raw), 200))
	}
	return raw, nil
}
