package frontdoor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sort"
	gosync "sync"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/toolbus-dev/toolbus/subjects"
)

// exposed is one tool as a profile lists it.
type exposed struct {
	ref
	name  string
	pins  map[string]any
	entry *subjects.CatalogEntry
}

// profile is what one kind of client sees: an agent on a view, with its
// token's policy. Each has its own mcp-go server, so tools/list and
// tools/call see exactly its tools, and list_changed reaches its sessions.
type profile struct {
	g     *Gateway
	agent string
	view  string // "" for the endpoint itself
	pol   merged
	srv   *server.MCPServer
	http  *server.StreamableHTTPServer

	refreshMu gosync.Mutex // one refresh at a time, each from a fresh snapshot
	mu        gosync.RWMutex
	tools     map[string]*exposed
	sig       string // hash of the listed tools, to send list_changed only on a change

	callsMu gosync.Mutex
	calls   map[string]string  // "<session>\x00<request id>" → call id, while the call runs
	byCall  map[string]tracked // call id → its key in calls and its prepared arguments
}

// tracked is a call the filter prepared: its request key and the
// arguments it checked (pins injected), which the handler sends as they
// are rather than re-encoding what mcp-go decoded.
type tracked struct {
	key  string
	args json.RawMessage
}

func (p *profile) lookup(name string) (*exposed, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	e, ok := p.tools[name]
	return e, ok
}

// refresh lists the profile's tools from the catalog as it is now and,
// when they changed, replaces the server's tools, which tells every session
// of this profile (notifications/tools/list_changed).
func (p *profile) refresh() {
	p.refreshMu.Lock()
	defer p.refreshMu.Unlock()
	snap, _ := p.g.cat.snapshot()
	refs := make([]ref, 0, len(snap))
	for r := range snap {
		if p.pol.allows(r) {
			refs = append(refs, r)
		}
	}
	names := assignNames(refs, p.pol.rename)
	tools := make(map[string]*exposed, len(names))
	list := make([]mcp.Tool, 0, len(names))
	for name, r := range names {
		ex := &exposed{ref: r, name: name, pins: p.pol.pins(r), entry: snap[r]}
		t := p.mcpTool(ex)
		// mcp-go panics on a tool whose schema has invalid x-mcp-header
		// annotations; such a tool is left out, not the whole list.
		if err := mcp.ValidateParamHeaderAnnotations(&t); err != nil {
			p.g.log.Warn().Err(err).Str("server", r.server).Str("tool", r.tool).Msg("front door: tool not listed")
			continue
		}
		tools[name] = ex
		list = append(list, t)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	h := sha256.New()
	_ = json.NewEncoder(h).Encode(list)
	sig := hex.EncodeToString(h.Sum(nil))

	p.mu.Lock()
	if sig == p.sig {
		p.mu.Unlock()
		return
	}
	p.tools, p.sig = tools, sig
	p.mu.Unlock()
	st := make([]server.ServerTool, len(list))
	for i, t := range list {
		st[i] = server.ServerTool{Tool: t, Handler: p.handle}
	}
	p.srv.SetTools(st...)
}

// mcpTool is the catalog entry as MCP lists it: the normalized input
// schema less the pinned arguments, the output schema, annotations, and
// task support (every call is a bus call that can outlive its request).
func (p *profile) mcpTool(ex *exposed) mcp.Tool {
	e := ex.entry
	t := mcp.Tool{
		Name:        ex.name,
		Title:       e.Title,
		Description: e.Description,
		Annotations: mcp.ToolAnnotation{
			Title:           e.Annotations.Title,
			ReadOnlyHint:    e.Annotations.ReadOnlyHint,
			DestructiveHint: e.Annotations.DestructiveHint,
			IdempotentHint:  e.Annotations.IdempotentHint,
			OpenWorldHint:   e.Annotations.OpenWorldHint,
		},
		Execution: &mcp.ToolExecution{TaskSupport: mcp.TaskSupportOptional},
	}
	if d, ok := p.pol.describe(ex.ref); ok {
		t.Description = d
	}
	t.RawInputSchema = withoutPins(e.InputSchema, ex.pins)
	if len(e.OutputSchema) > 0 && string(e.OutputSchema) != "null" {
		t.RawOutputSchema = e.OutputSchema
	}
	return t
}

// withoutPins removes the pinned arguments from an object schema's
// properties and required list.
func withoutPins(schema json.RawMessage, pins map[string]any) json.RawMessage {
	if len(schema) == 0 || string(schema) == "null" {
		return json.RawMessage(`{"type":"object"}`)
	}
	if len(pins) == 0 {
		return schema
	}
	var m map[string]any
	if json.Unmarshal(schema, &m) != nil {
		return schema
	}
	if props, ok := m["properties"].(map[string]any); ok {
		for k := range pins {
			delete(props, k)
		}
	}
	if req, ok := m["required"].([]any); ok {
		kept := make([]any, 0, len(req))
		for _, r := range req {
			if s, ok := r.(string); ok {
				if _, pinned := pins[s]; pinned {
					continue
				}
			}
			kept = append(kept, r)
		}
		m["required"] = kept
	}
	b, err := json.Marshal(m)
	if err != nil {
		return schema
	}
	return b
}

// track records that the request key runs callID, so notifications/cancelled
// naming the request cancels the bus call.
func (p *profile) track(key, callID string, args json.RawMessage) {
	p.callsMu.Lock()
	p.calls[key] = callID
	p.byCall[callID] = tracked{key: key, args: args}
	p.callsMu.Unlock()
}

// prepared returns the arguments the filter prepared for a call.
func (p *profile) prepared(callID string) (json.RawMessage, bool) {
	p.callsMu.Lock()
	t, ok := p.byCall[callID]
	p.callsMu.Unlock()
	return t.args, ok && t.args != nil
}

func (p *profile) forget(callID string) {
	p.callsMu.Lock()
	if t, ok := p.byCall[callID]; ok {
		delete(p.byCall, callID)
		if p.calls[t.key] == callID {
			delete(p.calls, t.key)
		}
	}
	p.callsMu.Unlock()
}

// cancel cancels the bus call running for the request key, if any.
func (p *profile) cancel(ctx context.Context, key string) {
	p.callsMu.Lock()
	callID, ok := p.calls[key]
	p.callsMu.Unlock()
	if !ok {
		return
	}
	cl, err := p.g.client(p.agent)
	if err != nil {
		p.g.log.Warn().Err(err).Str("call_id", callID).Msg("front door: cannot cancel")
		return
	}
	if err := cl.Cancel(callID); err != nil {
		p.g.log.Warn().Err(err).Str("call_id", callID).Msg("front door: cancel not published")
		return
	}
	p.g.log.Debug().Str("call_id", callID).Str("agent_id", p.agent).Msg("front door: call cancelled by the client")
}
