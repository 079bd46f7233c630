// Package frontdoor is the MCP front door: one MCP server, over streamable
// HTTP (/mcp, and named views at /mcp/<view>) or stdio, whose tools are the
// live catalog and whose every tools/call is a durable bus call made as the
// client's agent. Bearer tokens map clients to agents and may narrow,
// rename and pin what they see. Task-augmented calls are MCP tasks whose id
// is the bus call id, answered from the bus, so a task outlives the
// gateway that started it.
package frontdoor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	gosync "sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/toolbus-dev/toolbus/client"
	checkcat "github.com/toolbus-dev/toolbus/internal/catalog"
	"github.com/toolbus-dev/toolbus/internal/httpserve"
	"github.com/toolbus-dev/toolbus/subjects"
)

// ServerName is the server initialize names, with Config.Version.
const ServerName = "toolbus"

// metaCallID carries the bus call id from the front door's message filter
// to the tool handler, in the request's _meta. The filter always sets it,
// so a client cannot choose it.
const metaCallID = "dev.toolbus/callId"

// callIDKey is the context key under which ServeHTTP hands the call id
// the filter chose to the tool handler (HTTP requests carry their context
// through mcp-go; stdio lines do not, so there it rides in _meta).
type callIDKey struct{}

// maxBody bounds a request body (the bus refuses larger calls anyway).
const maxBody = 8 << 20

// Gateway is the front door. It is an http.Handler for the endpoint and its
// views, and serves stdio with ServeStdio. Make one per process with New;
// Close stops it.
type Gateway struct {
	cfg   Config
	nc    *nats.Conn
	js    jetstream.JetStream
	log   zerolog.Logger
	cat   *catalog
	check *checkcat.Catalog
	tasks *taskStore

	cancel context.CancelFunc
	wg     gosync.WaitGroup

	mu       gosync.Mutex
	clients  map[string]*client.Client
	profiles map[string]*profile
}

// Option configures a Gateway.
type Option func(*Gateway)

// WithLogger sets the logger (default: none).
func WithLogger(l zerolog.Logger) Option { return func(g *Gateway) { g.log = l } }

// New loads the catalog from KV and follows it until Close (or ctx's end).
// nc is the gateway's NATS connection: it publishes calls as the agents
// the config names, so with NATS authentication it needs the gateway role
// of nats.conf.
func New(ctx context.Context, nc *nats.Conn, cfg Config, opts ...Option) (*Gateway, error) {
	cfg.setDefaults()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	g := &Gateway{cfg: cfg, nc: nc, js: js, log: zerolog.Nop(), clients: map[string]*client.Client{}, profiles: map[string]*profile{}}
	for _, o := range opts {
		o(g)
	}
	gctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	context.AfterFunc(ctx, cancel)
	g.cancel = cancel
	cat, done, err := watchCatalog(gctx, js, g.log)
	if err != nil {
		cancel()
		return nil, err
	}
	g.cat = cat
	if g.check, err = checkcat.New(gctx, js, checkcat.WithLogger(g.log)); err != nil {
		cancel()
		return nil, err
	}
	if g.tasks, err = openTasks(gctx, js, g.log); err != nil {
		cancel()
		g.check.Stop()
		return nil, err
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		g.follow(gctx, done)
	}()
	return g, nil
}

// Close stops following the catalog and closes the agents' clients. Calls
// already on the bus go on; their results stay in TOOL_RESULTS.
func (g *Gateway) Close() {
	g.cancel()
	g.wg.Wait()
	g.check.Stop()
	g.mu.Lock()
	defer g.mu.Unlock()
	for a, c := range g.clients {
		_ = c.Close()
		delete(g.clients, a)
	}
}

// follow refreshes every profile's tools after the catalog changed, once
// changes have paused for the debounce interval.
func (g *Gateway) follow(ctx context.Context, done <-chan error) {
	for {
		select {
		case <-ctx.Done():
			return
		case err := <-done:
			if err != nil {
				g.log.Error().Err(err).Msg("front door: catalog watch ended; tools/list stays as it was")
			}
			return
		case <-g.cat.changed:
		}
		t := time.NewTimer(g.cfg.Debounce)
	gather:
		for {
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-g.cat.changed:
				t.Reset(g.cfg.Debounce)
			case <-t.C:
				break gather
			}
		}
		g.mu.Lock()
		ps := make([]*profile, 0, len(g.profiles))
		for _, p := range g.profiles {
			ps = append(ps, p)
		}
		g.mu.Unlock()
		for _, p := range ps {
			p.refresh()
		}
	}
}

// client returns the bus client of an agent, made on first use: one
// subscription per agent for all its calls.
func (g *Gateway) client(agent string) (*client.Client, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c, ok := g.clients[agent]; ok {
		return c, nil
	}
	c, err := client.New(g.nc, client.WithAgent(agent), client.WithLogger(g.log))
	if err != nil {
		return nil, err
	}
	g.clients[agent] = c
	return c, nil
}

// profile returns the profile of a token (nil: no tokens) on a view.
func (g *Gateway) profile(view string, tok *Token, transport string) *profile {
	agent, tname := g.cfg.Agent, ""
	var tpol Policy
	if tok != nil {
		agent, tname, tpol = tok.Agent, tok.Name, tok.Policy
	}
	key := transport + "\x00" + view + "\x00" + tname + "\x00" + agent
	g.mu.Lock()
	p, ok := g.profiles[key]
	if ok {
		g.mu.Unlock()
		return p
	}
	p = &profile{g: g, agent: agent, view: view, pol: merged{view: g.cfg.Views[view], token: tpol},
		calls: map[string]string{}, byCall: map[string]tracked{}}
	version := g.cfg.Version
	if version == "" {
		version = "0.0.0"
	}
	p.srv = server.NewMCPServer(ServerName, version,
		server.WithToolCapabilities(true),
		server.WithTaskCapabilities(true, true, true),
		server.WithRecovery(),
	)
	if transport == "http" {
		p.http = server.NewStreamableHTTPServer(p.srv)
	}
	g.profiles[key] = p
	g.mu.Unlock()
	p.refresh()
	return p
}

// handle runs a tools/call as a bus call and returns its CallToolResult as
// the MCP server sent it.
func (p *profile) handle(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	ex, ok := p.lookup(req.Params.Name)
	if !ok {
		return nil, fmt.Errorf("unknown tool %q: it is not in this endpoint's tools/list", req.Params.Name)
	}
	callID := ""
	if p.http != nil {
		callID, _ = ctx.Value(callIDKey{}).(string)
	}
	var opts []client.CallOption
	if m := req.Params.Meta; m != nil {
		if p.http == nil {
			callID, _ = m.AdditionalFields[metaCallID].(string)
		}
		if tok := m.ProgressToken; tok != nil {
			srv := p.srv
			opts = append(opts, client.WithProgress(func(pr subjects.Progress) {
				n := map[string]any{"progressToken": tok, "progress": pr.Progress}
				if pr.Total > 0 {
					n["total"] = pr.Total
				}
				if pr.Message != "" {
					n["message"] = pr.Message
				}
				_ = srv.SendNotificationToClient(ctx, string(mcp.MethodNotificationProgress), n)
			}))
		}
	}
	// The filter checked the arguments (pins injected) and kept them:
	// they are sent as they are, not re-encoded from what mcp-go decoded.
	args, ok := p.prepared(callID)
	if callID == "" || !ok {
		// Only the message filter makes calls; this is a bug if reached.
		return nil, errors.New("toolbus front door: the call carries no call id")
	}
	defer p.forget(callID)
	cl, err := p.g.client(p.agent)
	if err != nil {
		return mcp.NewToolResultError(fmt.Sprintf("toolbus cannot call as agent %q: %v", p.agent, err)), nil
	}
	opts = append(opts, client.WithCallID(callID), client.WithTimeout(p.g.cfg.CallTimeout))
	start := time.Now()
	res, err := cl.Call(ctx, ex.server, ex.tool, json.RawMessage(args), opts...)
	log := p.g.log.Debug().Str("call_id", callID).Str("agent_id", p.agent).Str("server", ex.server).Str("tool", ex.tool).
		Float64("duration_ms", float64(time.Since(start).Microseconds())/1000)
	if err != nil {
		if ctx.Err() != nil {
			// The client went away or cancelled; a cancel was published
			// by the message filter if it asked. The call's result stays
			// in TOOL_RESULTS.
			log.Str("outcome", "left").Msg("front door: client gone before the result")
			return nil, ctx.Err()
		}
		log.Str("outcome", "no_result").Err(err).Msg("front door call")
		return mcp.NewToolResultError(fmt.Sprintf("toolbus: call %s to %s/%s got no result: %v", callID, ex.server, ex.tool, err)), nil
	}
	log.Str("outcome", string(res.Status)).Msg("front door call")
	return callResult(res)
}

// callResult turns a bus result into what tools/call answers: the tool's
// CallToolResult as it is (isError included); an error of the caller's
// making (unknown tool, invalid arguments) as a JSON-RPC error with the
// bus's message; anything else (timeout, cancelled, server unavailable) as
// an isError result saying what happened.
func callResult(res *subjects.Result) (*mcp.CallToolResult, error) {
	switch res.Status {
	case subjects.StatusOK, subjects.StatusToolError:
		raw := json.RawMessage(res.Result)
		out, err := mcp.ParseCallToolResult(&raw)
		if err != nil {
			return mcp.NewToolResultError(fmt.Sprintf("toolbus: the server's result for call %s cannot be read: %v", res.CallID, err)), nil
		}
		return out, nil
	}
	e := res.Error
	if e == nil {
		e = &subjects.Error{Code: subjects.CodeInternal, Message: "an error result without a reason"}
	}
	switch e.Code {
	case subjects.CodeUnknownServer, subjects.CodeUnknownTool, subjects.CodeInvalidArguments, subjects.CodeInvalidRequest:
		return nil, errors.New(e.Message)
	}
	return mcp.NewToolResultError(errorText(res.CallID, res.Server, res.Tool, e)), nil
}

// errorText says in words what happened to a call that has no tool result.
func errorText(callID, server, tool string, e *subjects.Error) string {
	what := map[subjects.Code]string{
		subjects.CodeTimeout:            "timed out",
		subjects.CodeCancelled:          "was cancelled",
		subjects.CodeServerUnavailable:  "could not reach its MCP server",
		subjects.CodeCatalogUnavailable: "could not run yet: the server's tool list is not read",
		subjects.CodeOutcomeUnknown:     "was interrupted and not run again (its outcome is unknown)",
		subjects.CodeTooLarge:           "has a result too large for the bus",
		subjects.CodeProtocol:           "got a protocol error from its MCP server",
		subjects.CodeDeadLetter:         "could not be delivered to a worker",
	}[e.Code]
	if what == "" {
		what = "failed"
	}
	return fmt.Sprintf("toolbus: call %s to %s/%s %s (%s): %s", callID, server, tool, what, e.Code, e.Message)
}

// rpcMsg is a JSON-RPC message as the filter reads it.
type rpcMsg struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method,omitempty"`
	Params  json.RawMessage `json:"params,omitempty"`
}

type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func errorResponse(id json.RawMessage, code int, msg string) []byte {
	b, _ := json.Marshal(struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Error   rpcError        `json:"error"`
	}{"2.0", id, rpcError{code, msg}})
	return b
}

func resultResponse(id json.RawMessage, result any) []byte {
	b, err := json.Marshal(struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Result  any             `json:"result"`
	}{"2.0", id, result})
	if err != nil {
		return errorResponse(id, mcp.INTERNAL_ERROR, "encode result: "+err.Error())
	}
	return b
}

// reqKey names a request within a profile: its session and its id.
func reqKey(session string, id json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, id) != nil {
		return session + "\x00" + string(id)
	}
	return session + "\x00" + b.String()
}

// filter sees every message before mcp-go does. It answers what the bus
// must answer (task methods, task-augmented calls, calls it refuses), and
// prepares each tools/call: pinned arguments injected, a call id chosen,
// the request tracked so notifications/cancelled cancels the bus call. It
// returns either a response to send, or the message to pass on (nil: pass
// on raw unchanged), and the call id the passed-on message runs.
func (p *profile) filter(ctx context.Context, session string, raw []byte) (resp, fwd []byte, callID string) {
	var m rpcMsg
	if json.Unmarshal(raw, &m) != nil || m.Method == "" {
		return nil, nil, ""
	}
	switch mcp.MCPMethod(m.Method) {
	case mcp.MethodToolsCall:
		if len(m.ID) == 0 {
			return nil, nil, ""
		}
		return p.prepareCall(ctx, session, m)
	case mcp.MethodNotificationCancelled:
		var params struct {
			RequestID json.RawMessage `json:"requestId"`
		}
		if json.Unmarshal(m.Params, &params) == nil && len(params.RequestID) > 0 {
			p.cancel(ctx, reqKey(session, params.RequestID))
		}
	case mcp.MethodTasksGet, mcp.MethodTasksResult, mcp.MethodTasksList, mcp.MethodTasksCancel:
		if len(m.ID) == 0 {
			return nil, nil, ""
		}
		return p.taskMethod(ctx, m), nil, ""
	}
	return nil, nil, ""
}

func (p *profile) prepareCall(ctx context.Context, session string, m rpcMsg) (resp, fwd []byte, callID string) {
	var params map[string]json.RawMessage
	if json.Unmarshal(m.Params, &params) != nil {
		return nil, nil, ""
	}
	// mcp-go reads params with encoding/json, whose field names match
	// whatever their case: a key like "Arguments" must not slip past the
	// pins and the task check.
	for k := range params {
		for _, known := range []string{"name", "arguments", "task", "_meta"} {
			if k != known && strings.EqualFold(k, known) {
				return errorResponse(m.ID, mcp.INVALID_PARAMS, fmt.Sprintf("params: unexpected key %q; the field is %q", k, known)), nil, ""
			}
		}
	}
	var name string
	_ = json.Unmarshal(params["name"], &name)
	ex, ok := p.lookup(name)
	if !ok {
		return errorResponse(m.ID, mcp.INVALID_PARAMS, fmt.Sprintf("unknown tool %q: it is not in this endpoint's tools/list", name)), nil, ""
	}
	callID = subjects.NewCallID()
	a := bytes.TrimSpace(params["arguments"])
	var body []byte
	switch {
	case len(a) == 0 || string(a) == "null":
		body = []byte("{}")
	case len(ex.pins) == 0 && a[0] == '{':
		// A JSON object (params decoded, so it is valid) and nothing to
		// inject: it goes on as the client wrote it.
		body = a
	}
	if len(ex.pins) > 0 || body == nil {
		args := map[string]any{}
		if len(a) > 0 && string(a) != "null" {
			if err := json.Unmarshal(a, &args); err != nil {
				return errorResponse(m.ID, mcp.INVALID_PARAMS, "arguments must be a JSON object"), nil, ""
			}
		}
		for _, k := range pinNames(ex.pins) {
			if _, set := args[k]; set {
				return errorResponse(m.ID, mcp.INVALID_PARAMS, fmt.Sprintf("argument %q of %s is pinned by this endpoint's configuration and cannot be set by the client", k, ex.name)), nil, ""
			}
			r := strings.NewReplacer("{{agent}}", p.agent, "{{view}}", p.view, "{{server}}", ex.server, "{{tool}}", ex.tool, "{{call_id}}", callID)
			args[k] = expand(ex.pins[k], r)
		}
		var err error
		if body, err = json.Marshal(args); err != nil {
			return errorResponse(m.ID, mcp.INVALID_PARAMS, "arguments: "+err.Error()), nil, ""
		}
	}
	// The worker checks again; refusing here gives the client a JSON-RPC
	// error with the same words, without a round trip.
	if _, err := p.g.check.Check(ex.server, ex.tool, body); err != nil && !errors.Is(err, checkcat.ErrCatalogUnavailable) {
		return errorResponse(m.ID, mcp.INVALID_PARAMS, err.Error()), nil, ""
	}
	if t := params["task"]; len(t) > 0 && string(t) != "null" {
		return p.startTask(ctx, m.ID, ex, body, callID, t), nil, ""
	}
	if p.http != nil {
		// HTTP: the handler reads the call id from the request's context
		// and the arguments from track, so the body goes on unchanged.
		p.track(reqKey(session, m.ID), callID, body)
		return nil, nil, callID
	}
	params["arguments"] = body
	meta := map[string]json.RawMessage{}
	if mm := params["_meta"]; len(mm) > 0 && string(mm) != "null" {
		if json.Unmarshal(mm, &meta) != nil {
			return errorResponse(m.ID, mcp.INVALID_PARAMS, "_meta must be an object"), nil, ""
		}
	}
	meta[metaCallID], _ = json.Marshal(callID)
	params["_meta"], _ = json.Marshal(meta)
	m.Params, _ = json.Marshal(params)
	fwd, _ = json.Marshal(m)
	p.track(reqKey(session, m.ID), callID, body)
	return nil, fwd, callID
}

// ServeHTTP serves the endpoint (Config.Path) and its views
// (Config.Path/<view>) over MCP's streamable HTTP transport.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, g.cfg.Path)
	if !ok || (rest != "" && !strings.HasPrefix(rest, "/")) {
		httpError(w, http.StatusNotFound, fmt.Sprintf("no MCP endpoint at %s; it is at %s", r.URL.Path, g.cfg.Path))
		return
	}
	view := strings.Trim(rest, "/")
	if _, ok := g.cfg.Views[view]; view != "" && !ok {
		httpError(w, http.StatusNotFound, fmt.Sprintf("no view %q at %s (configured views are under mcp.views)", view, r.URL.Path))
		return
	}
	// DNS rebinding: a web page must not reach a loopback endpoint under
	// its own host name. mcp-go checks this too, but the filter answers
	// some requests before mcp-go sees them.
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok && loopbackHost(la.String()) && !loopbackHost(r.Host) {
		httpError(w, http.StatusForbidden, fmt.Sprintf("invalid Host header %q for a loopback endpoint", r.Host))
		return
	}
	var tok *Token
	if len(g.cfg.Tokens) > 0 {
		s, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if ok {
			tok, ok = g.cfg.token(strings.TrimSpace(s))
		}
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="toolbus"`)
			httpError(w, http.StatusUnauthorized, "missing or unknown bearer token (Authorization: Bearer <token>)")
			return
		}
		if tok.Views != nil && !slices.Contains(tok.Views, view) {
			httpError(w, http.StatusForbidden, fmt.Sprintf("token %q may not use %s", tok.Name, r.URL.Path))
			return
		}
	} else if !loopback(r.RemoteAddr) {
		httpError(w, http.StatusForbidden, "without mcp.tokens the MCP front door answers loopback clients only")
		return
	}
	// Calls and SSE streams last as long as the call; the listener's
	// write timeout is for webhooks.
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{})
	p := g.profile(view, tok, "http")
	if r.Method == http.MethodPost {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body: %v", err))
			return
		}
		resp, fwd, callID := p.filter(r.Context(), r.Header.Get(server.HeaderKeySessionID), body)
		if resp != nil {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(resp)
			return
		}
		if fwd != nil {
			body = fwd
		}
		if callID != "" {
			defer p.forget(callID)
			r = r.WithContext(context.WithValue(r.Context(), callIDKey{}, callID))
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
	}
	p.http.ServeHTTP(w, r)
}

func httpError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// loopbackHost reports whether a host[:port] names this machine.
func loopbackHost(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = strings.Trim(addr, "[]")
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func loopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// lockedWriter writes whole messages from several goroutines.
type lockedWriter struct {
	mu gosync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// ServeStdio speaks MCP on in/out (newline-delimited JSON-RPC) as the
// configured agent on a view ("" for all tools) until in ends or ctx does.
// Calls still running when it returns go on on the bus.
func (g *Gateway) ServeStdio(ctx context.Context, view string, in io.Reader, out io.Writer) error {
	if _, ok := g.cfg.Views[view]; view != "" && !ok {
		return fmt.Errorf("no view %q under mcp.views", view)
	}
	p := g.profile(view, nil, "stdio")
	lw := &lockedWriter{w: out}
	pr, pw := io.Pipe()
	ss := server.NewStdioServer(p.srv)
	ss.SetErrorLogger(stdLogger(g.log))
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- ss.Listen(lctx, pr, lw) }()
	rd := bufio.NewReaderSize(in, 64<<10)
	var readErr error
	for readErr == nil {
		var line []byte
		line, readErr = rd.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		resp, fwd, _ := p.filter(ctx, "", bytes.TrimSpace(line))
		switch {
		case resp != nil:
			_, err := lw.Write(append(resp, '\n'))
			if err != nil {
				readErr = err
			}
			continue
		case fwd != nil:
			line = fwd
		default:
			line = bytes.TrimSpace(line)
		}
		if _, err := pw.Write(append(line, '\n')); err != nil {
			readErr = err
		}
	}
	_ = pw.Close()
	cancel()
	err := <-errc
	if errors.Is(readErr, io.EOF) {
		readErr = nil
	}
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, io.EOF) {
		return err
	}
	return readErr
}

// ListenAndServe serves the front door on addr until ctx ends, with no
// write timeout (a call's response lasts as long as the call).
func (g *Gateway) ListenAndServe(ctx context.Context, addr string) error {
	if err := CheckListen(addr, g.cfg); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("MCP front door: listen on %s: %w", addr, err)
	}
	return g.Serve(ctx, ln)
}

// Serve is ListenAndServe on a listener the caller opened.
func (g *Gateway) Serve(ctx context.Context, ln net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle(g.cfg.Path, g)
	mux.Handle(g.cfg.Path+"/", g)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	g.log.Info().Str("addr", ln.Addr().String()).Str("path", g.cfg.Path).Int("tokens", len(g.cfg.Tokens)).Msg("MCP front door listening")
	if err := httpserve.Run(ctx, srv, ln, 5*time.Second); err != nil {
		return fmt.Errorf("MCP front door: %w", err)
	}
	return nil
}

// Path is the endpoint's path.
func (g *Gateway) Path() string { return g.cfg.Path }
