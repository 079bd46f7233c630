package mcppool

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/toolbus-dev/toolbus/internal/registry"
	"github.com/toolbus-dev/toolbus/subjects"
)

// scripted is an MCP server over streamable HTTP (2025-11-25) whose
// tools/call answer each test writes itself: what httpTransport.call reads
// beyond what mcp-go's server sends (resumed streams, requests inside a
// stream, HTTP errors, redirects).
type scripted struct {
	srv  *httptest.Server
	call func(w http.ResponseWriter, r *http.Request, id string, body []byte) // tools/call
	get  func(w http.ResponseWriter, r *http.Request)                         // GET (resuming)

	mu       sync.Mutex
	sessions int
	answers  map[string]json.RawMessage // id → the client's answer to our request
	answered chan struct{}
	onAnswer func(r *http.Request) // when set, runs before an answer is taken
}

func newScripted(t *testing.T) *scripted {
	s := &scripted{answers: map[string]json.RawMessage{}, answered: make(chan struct{}, 16)}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

// pool is a pool with the scripted server as "s", closed with the test.
func (s *scripted) pool(t *testing.T) *Pool {
	p := New(testLog(t))
	t.Cleanup(func() { _ = p.Close() })
	p.Upsert(s.def())
	return p
}

// progressToken is the progress token of a tools/call request body.
func progressToken(body []byte) string {
	var req struct {
		Params struct {
			Meta struct {
				ProgressToken string `json:"progressToken"`
			} `json:"_meta"`
		} `json:"params"`
	}
	_ = json.Unmarshal(body, &req)
	return req.Params.Meta.ProgressToken
}

func (s *scripted) def() registry.Server {
	return registry.Server{Name: "s", Transport: registry.TransportHTTP, URL: s.srv.URL + "/mcp", ProtocolVersion: "2025-11-25"}
}

func (s *scripted) serve(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		if s.get == nil || r.Header.Get("Last-Event-ID") == "" {
			http.Error(w, "no stream", http.StatusMethodNotAllowed)
			return
		}
		s.get(w, r)
		return
	case http.MethodDelete:
		return
	}
	var m struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
		Result json.RawMessage `json:"result"`
		Error  json.RawMessage `json:"error"`
	}
	body, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(body, &m); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	switch {
	case m.Method == "initialize":
		s.mu.Lock()
		s.sessions++
		sid := fmt.Sprintf("sess-%d", s.sessions)
		s.mu.Unlock()
		w.Header().Set("Mcp-Session-Id", sid)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"scripted","version":"1"}}}`, m.ID)
	case m.Method == "tools/call":
		s.call(w, r, string(m.ID), body)
	case m.Method != "":
		w.WriteHeader(http.StatusAccepted) // notifications
	default: // the client's answer to a request of ours
		if s.onAnswer != nil {
			s.onAnswer(r)
		}
		s.mu.Lock()
		if m.Error != nil {
			s.answers[string(m.ID)] = m.Error
		} else {
			s.answers[string(m.ID)] = m.Result
		}
		s.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		s.answered <- struct{}{}
	}
}

func (s *scripted) sessionsOpened() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions
}

func sseEvent(w http.ResponseWriter, id, data string) {
	if id != "" {
		fmt.Fprintf(w, "id: %s\n", id)
	}
	fmt.Fprintf(w, "data: %s\n\n", data)
	w.(http.Flusher).Flush()
}

func textResult(id, text string) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":%q}]}}`, id, text)
}

// A server that ends a tools/call stream before the response, having sent
// an event id, is asked for the rest with a GET carrying Last-Event-ID
// (SEP-1699); the progress sent before the break reaches the caller.
func TestToolsCallStreamResumed(t *testing.T) { bothWays(t, toolsCallStreamResumed) }

func toolsCallStreamResumed(t *testing.T, call callWay) {
	t.Parallel()
	s := newScripted(t)
	var mu sync.Mutex
	var lastID, callID string
	s.call = func(w http.ResponseWriter, r *http.Request, id string, body []byte) {
		tok := progressToken(body)
		mu.Lock()
		callID = id
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "retry: 10\n")
		sseEvent(w, "e1", fmt.Sprintf(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":%q,"progress":1,"total":2,"message":"half"}}`, tok))
	}
	s.get = func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		lastID = r.Header.Get("Last-Event-ID")
		id := callID
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		sseEvent(w, "e2", textResult(id, "resumed"))
	}
	p := s.pool(t)
	var progress []string
	raw, isErr, err := call(p, context.Background(), "s", "t", nil, CallOptions{Progress: func(done, total float64, msg string) {
		progress = append(progress, fmt.Sprintf("%g/%g %s", done, total, msg))
	}})
	if err != nil || isErr {
		t.Fatal(string(raw), err)
	}
	if strings.Join(progress, ",") != "1/2 half" {
		t.Errorf("progress %v, want [1/2 half]", progress)
	}
	if got := text(t, raw); got != "resumed" {
		t.Fatalf("result %q, want resumed", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if lastID != "e1" {
		t.Fatalf("GET carried Last-Event-ID %q, want e1", lastID)
	}
}

// A stream that ends with no response and nothing to resume from fails the
// call as a broken connection, saying so.
func TestToolsCallStreamEndsEarly(t *testing.T) { bothWays(t, toolsCallStreamEndsEarly) }

func toolsCallStreamEndsEarly(t *testing.T, call callWay) {
	t.Parallel()
	s := newScripted(t)
	s.call = func(w http.ResponseWriter, r *http.Request, id string, body []byte) {
		w.Header().Set("Content-Type", "text/event-stream")
		sseEvent(w, "", `{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}`)
	}
	p := s.pool(t)
	_, _, err := call(p, context.Background(), "s", "t", nil, CallOptions{})
	if ClassOf(err) != ClassReset || !strings.Contains(err.Error(), "closed unexpectedly") {
		t.Fatalf("class %s: %v", ClassOf(err), err)
	}
}

// Requests the server sends inside a tools/call stream are answered by
// mcp-go's client, as they would be on mcp-go's own path: ping with its
// empty result, sampling (toolbus offers none) with an error.
func TestToolsCallServerRequests(t *testing.T) { bothWays(t, toolsCallServerRequests) }

func toolsCallServerRequests(t *testing.T, call callWay) {
	t.Parallel()
	s := newScripted(t)
	s.call = func(w http.ResponseWriter, r *http.Request, id string, body []byte) {
		w.Header().Set("Content-Type", "text/event-stream")
		sseEvent(w, "", `{"jsonrpc":"2.0","id":"s1","method":"ping"}`)
		sseEvent(w, "", `{"jsonrpc":"2.0","id":"s2","method":"sampling/createMessage","params":{"messages":[],"maxTokens":1}}`)
		for range 2 {
			select {
			case <-s.answered:
			case <-time.After(10 * time.Second):
				sseEvent(w, "", textResult(id, "no answers"))
				return
			}
		}
		sseEvent(w, "", textResult(id, "answered"))
	}
	p := s.pool(t)
	raw, _, err := call(p, context.Background(), "s", "t", nil, CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := text(t, raw); got != "answered" {
		t.Fatalf("result %q", got)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if got := string(s.answers[`"s1"`]); got != "{}" {
		t.Errorf("ping answered %s, want {}", got)
	}
	if got := string(s.answers[`"s2"`]); !strings.Contains(got, "no sampling handler") {
		t.Errorf("sampling answered %s, want an error: no sampling handler", got)
	}
}

// The request carries what mcp-go would send: the session, the protocol
// version, the server's headers and token, the agent's header; a redirect
// is followed with the body.
func TestToolsCallHeadersAndRedirect(t *testing.T) { bothWays(t, toolsCallHeadersAndRedirect) }

func toolsCallHeadersAndRedirect(t *testing.T, call callWay) {
	t.Parallel()
	s := newScripted(t)
	var mu sync.Mutex
	var seen http.Header
	s.call = func(w http.ResponseWriter, r *http.Request, id string, body []byte) {
		if r.URL.Path == "/mcp" {
			http.Redirect(w, r, "/mcp/", http.StatusTemporaryRedirect)
			return
		}
		mu.Lock()
		seen = r.Header.Clone()
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, textResult(id, "ok"))
	}
	def := s.def()
	def.Headers = map[string]string{"x-tenant": "acme"}
	def.AuthToken = "sekrit"
	p := New(testLog(t))
	defer p.Close()
	p.Upsert(def)
	raw, _, err := call(p, context.Background(), "s", "t", json.RawMessage(`{"a":1}`), CallOptions{AgentID: "agent-7"})
	if err != nil {
		t.Fatal(err)
	}
	if text(t, raw) != "ok" {
		t.Fatalf("result %s", raw)
	}
	mu.Lock()
	defer mu.Unlock()
	for k, want := range map[string]string{
		"Mcp-Session-Id":         "sess-1",
		"Mcp-Protocol-Version":   "2025-11-25",
		"X-Tenant":               "acme",
		"Authorization":          "Bearer sekrit",
		subjects.AgentHTTPHeader: "agent-7",
		"Content-Type":           "application/json",
		"Accept":                 "application/json, text/event-stream",
	} {
		if got := seen.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
}

// HTTP answers to tools/call get the classes mcp-go's would: 401 auth, 5xx
// with the body quoted, a JSON-RPC error body its code, and a 404 ends the
// session so that the next call opens a new one.
func TestToolsCallHTTPAnswers(t *testing.T) { bothWays(t, toolsCallHTTPAnswers) }

func toolsCallHTTPAnswers(t *testing.T, call callWay) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		status int
		ctype  string
		body   string
		class  Class
		says   string
	}{
		{"401", http.StatusUnauthorized, "text/plain", "who?", ClassAuth, "401"},
		{"503", http.StatusServiceUnavailable, "text/plain", "overloaded", ClassHTTP5xx, "overloaded"},
		{"502 gateway json", http.StatusBadGateway, "application/json", `{"message":"Internal server error"}`, ClassHTTP5xx, "Internal server error"},
		{"400 json-rpc", http.StatusBadRequest, "application/json", `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"bad batch"}}`, ClassProtocol, "bad batch"},
		{"404", http.StatusNotFound, "text/plain", "gone", ClassNotMCP, "ended the MCP session"},
		{"html", http.StatusOK, "text/html", "<html>", ClassTransport, "unexpected content type"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := newScripted(t)
			fail := true
			s.call = func(w http.ResponseWriter, r *http.Request, id string, body []byte) {
				s.mu.Lock()
				f := fail
				fail = false
				s.mu.Unlock()
				if f {
					w.Header().Set("Content-Type", c.ctype)
					w.WriteHeader(c.status)
					fmt.Fprint(w, c.body)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprint(w, textResult(id, "ok"))
			}
			p := s.pool(t)
			_, _, err := call(p, context.Background(), "s", "t", nil, CallOptions{})
			if ClassOf(err) != c.class || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("class %s, want %s: %v", ClassOf(err), c.class, err)
			}
			raw, _, err := call(p, context.Background(), "s", "t", nil, CallOptions{})
			if err != nil || text(t, raw) != "ok" {
				t.Fatalf("the next call: %s %v", raw, err)
			}
			if c.class == ClassNotMCP && s.sessionsOpened() != 2 {
				t.Fatalf("sessions opened %d, want 2 (a 404 ends the session)", s.sessionsOpened())
			}
		})
	}
}

// An SSE answer whose data lines are longer than the stream's buffer (a
// large result, a long progress message, data split over lines) arrives
// whole.
func TestToolsCallLongSSELines(t *testing.T) { bothWays(t, toolsCallLongSSELines) }

func toolsCallLongSSELines(t *testing.T, call callWay) {
	t.Parallel()
	s := newScripted(t)
	big := strings.Repeat("0123456789", 30_000) // 300 KB in one data line
	s.call = func(w http.ResponseWriter, r *http.Request, id string, body []byte) {
		tok := progressToken(body)
		w.Header().Set("Content-Type", "text/event-stream")
		sseEvent(w, "", fmt.Sprintf(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":%q,"progress":1,"message":%q}}`, tok, big[:5000]))
		// The response's JSON split over data lines between its tokens,
		// as SSE allows (the lines join with newlines).
		res := textResult(id, big)
		i := strings.Index(res, `"result"`)
		fmt.Fprintf(w, "event: message\ndata: %s\r\ndata: %s\n\n", res[:i], res[i:])
	}
	p := s.pool(t)
	var msgs []string
	raw, _, err := call(p, context.Background(), "s", "t", nil, CallOptions{Progress: func(_, _ float64, msg string) { msgs = append(msgs, msg) }})
	if err != nil {
		t.Fatal(err)
	}
	if got := text(t, raw); got != big {
		t.Fatalf("result of %d bytes, want %d", len(got), len(big))
	}
	if len(msgs) != 1 || msgs[0] != big[:5000] {
		t.Fatalf("progress messages %d, want one of 5000 bytes", len(msgs))
	}
}

// A redirect is followed as mcp-go's http.Client.Do followed it: the
// tools/call POST reaches the server once. A 303 (See Other: the POST was
// handled, fetch the answer elsewhere) is not posted again, and a 3xx
// without a Location is the answer, quoted, not a reason to send the
// request a second time.
func TestToolsCallRedirectPostsOnce(t *testing.T) { bothWays(t, toolsCallRedirectPostsOnce) }

func toolsCallRedirectPostsOnce(t *testing.T, call callWay) {
	t.Parallel()
	for _, c := range []struct {
		name     string
		status   int
		location string
	}{
		{"307 to another path", http.StatusTemporaryRedirect, "/mcp/"},
		{"303 see other", http.StatusSeeOther, "/result"},
		{"307 without location", http.StatusTemporaryRedirect, ""},
		{"302 without location", http.StatusFound, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := newScripted(t)
			var mu sync.Mutex
			posts := 0
			s.call = func(w http.ResponseWriter, r *http.Request, id string, body []byte) {
				if r.URL.Path != "/mcp" {
					w.Header().Set("Content-Type", "application/json")
					fmt.Fprint(w, textResult(id, "ok"))
					return
				}
				mu.Lock()
				posts++
				mu.Unlock()
				if c.location != "" {
					w.Header().Set("Location", c.location)
				}
				w.WriteHeader(c.status)
			}
			p := s.pool(t)
			raw, _, err := call(p, context.Background(), "s", "t", nil, CallOptions{})
			if (err == nil) != (c.location == "/mcp/") {
				t.Fatalf("the call: %s %v", raw, err)
			}
			mu.Lock()
			defer mu.Unlock()
			if posts != 1 {
				t.Fatalf("tools/call posted to /mcp %d times, want once (%v)", posts, err)
			}
			if c.location == "" && !strings.Contains(err.Error(), fmt.Sprint(c.status)) {
				t.Fatalf("error does not quote the status %d: %v", c.status, err)
			}
		})
	}
}

// Closing the pool does not wait on a server that holds the answer to a
// request it sent inside a tools/call stream: mcp-go's Close cancelled
// such answers, and a server that never replies to the POST would
// otherwise hold Close for the answer's 30 seconds.
func TestToolsCallCloseEndsAnswers(t *testing.T) { bothWays(t, toolsCallCloseEndsAnswers) }

func toolsCallCloseEndsAnswers(t *testing.T, call callWay) {
	t.Parallel()
	s := newScripted(t)
	arrived := make(chan struct{}, 1)
	s.onAnswer = func(r *http.Request) {
		arrived <- struct{}{}
		<-r.Context().Done() // until the client gives up on it
	}
	s.call = func(w http.ResponseWriter, r *http.Request, id string, body []byte) {
		w.Header().Set("Content-Type", "text/event-stream")
		sseEvent(w, "", `{"jsonrpc":"2.0","id":"s1","method":"ping"}`)
		sseEvent(w, "", textResult(id, "ok"))
	}
	p := New(testLog(t))
	p.Upsert(s.def())
	if _, _, err := call(p, context.Background(), "s", "t", nil, CallOptions{}); err != nil {
		t.Fatal(err)
	}
	<-arrived
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		_ = p.Close()
	}()
	select {
	case <-closed:
	case <-time.After(20 * time.Second): // the answer's own bound is 30s
		t.Fatal("Close waits for the server to take the answer to its ping")
	}
}

// A JSON answer is read as mcp-go's json.Decoder read it: the first JSON
// value is the answer (what follows it is not looked at), and a body that
// ends before one (empty, or cut off) is a broken connection (EOF), not a
// bad answer.
func TestToolsCallJSONBodyAsMCPGo(t *testing.T) { bothWays(t, toolsCallJSONBodyAsMCPGo) }

func toolsCallJSONBodyAsMCPGo(t *testing.T, call callWay) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		body  func(id string) string
		class Class
	}{
		{"empty", func(string) string { return "" }, ClassReset},
		{"cut off", func(id string) string { r := textResult(id, "ok"); return r[:len(r)/2] }, ClassReset},
		{"trailing bytes", func(id string) string { return textResult(id, "ok") + "\n\x00garbage" }, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := newScripted(t)
			s.call = func(w http.ResponseWriter, r *http.Request, id string, body []byte) {
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprint(w, c.body(id))
			}
			p := s.pool(t)
			raw, _, err := call(p, context.Background(), "s", "t", nil, CallOptions{})
			if ClassOf(err) != c.class {
				t.Fatalf("class %q, want %q: %v", ClassOf(err), c.class, err)
			}
			if err == nil && text(t, raw) != "ok" {
				t.Fatalf("result %s", raw)
			}
		})
	}
}

// Arguments that are not one JSON value fail the call before it is sent,
// as invalid parameters: spliced into the request's text, they would
// rewrite it (here, name another tool; the request stays valid JSON, so
// mcp-go's json.Marshal did not catch it either).
func TestToolsCallInvalidArgumentsNotSent(t *testing.T) {
	bothWays(t, toolsCallInvalidArgumentsNotSent)
}

func toolsCallInvalidArgumentsNotSent(t *testing.T, call callWay) {
	t.Parallel()
	s := newScripted(t)
	var mu sync.Mutex
	var names []string
	s.call = func(w http.ResponseWriter, r *http.Request, id string, body []byte) {
		var req struct {
			Params struct {
				Name string `json:"name"`
			} `json:"params"`
		}
		_ = json.Unmarshal(body, &req)
		mu.Lock()
		names = append(names, req.Params.Name)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, textResult(id, "ran "+req.Params.Name))
	}
	p := s.pool(t)
	raw, _, err := call(p, context.Background(), "s", "t", json.RawMessage(`{},"name":"other"`), CallOptions{})
	mu.Lock()
	defer mu.Unlock()
	if err == nil || len(names) != 0 {
		t.Fatalf("the server got tools/call for %v (%s, %v)", names, raw, err)
	}
	if ClassOf(err) != ClassInvalidParams {
		t.Fatalf("class %s, want %s: %v", ClassOf(err), ClassInvalidParams, err)
	}
}

// A server URL with credentials in it (http://user:pass@host/mcp) gets them
// as basic auth on tools/call too, as http.Client.Do sent them for mcp-go
// (the transport's RoundTrip alone does not).
func TestToolsCallURLCredentials(t *testing.T) { bothWays(t, toolsCallURLCredentials) }

func toolsCallURLCredentials(t *testing.T, call callWay) {
	t.Parallel()
	s := newScripted(t)
	var mu sync.Mutex
	var user, pass string
	var ok bool
	s.call = func(w http.ResponseWriter, r *http.Request, id string, body []byte) {
		mu.Lock()
		user, pass, ok = r.BasicAuth()
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, textResult(id, "ok"))
	}
	def := s.def()
	def.URL = strings.Replace(def.URL, "http://", "http://alice:s3cret@", 1)
	p := New(testLog(t))
	defer p.Close()
	p.Upsert(def)
	if _, _, err := call(p, context.Background(), "s", "t", nil, CallOptions{}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !ok || user != "alice" || pass != "s3cret" {
		t.Fatalf("tools/call basic auth %q %q %v, want alice s3cret", user, pass, ok)
	}
}

// A call reading a stream that goes quiet ends with its context: the read
// is aborted, the connection let go (the server sees it), and the call
// fails as cancelled.
func TestToolsCallStreamCancelled(t *testing.T) { bothWays(t, toolsCallStreamCancelled) }

func toolsCallStreamCancelled(t *testing.T, call callWay) {
	t.Parallel()
	s := newScripted(t)
	gone := make(chan struct{})
	s.call = func(w http.ResponseWriter, r *http.Request, id string, body []byte) {
		tok := progressToken(body)
		w.Header().Set("Content-Type", "text/event-stream")
		sseEvent(w, "", fmt.Sprintf(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":%q,"progress":1}}`, tok))
		<-r.Context().Done()
		close(gone)
	}
	p := s.pool(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, _, err := call(p, ctx, "s", "t", nil, CallOptions{Progress: func(float64, float64, string) { cancel() }})
	if ClassOf(err) != ClassCanceled {
		t.Fatalf("class %s, want %s: %v", ClassOf(err), ClassCanceled, err)
	}
	<-gone
}

// A stream that starts with a byte order mark is read as the SSE spec
// says (the mark is dropped), not with its first field lost: here the
// response. mcp-go lost it.
func TestToolsCallStreamBOM(t *testing.T) { bothWays(t, toolsCallStreamBOM) }

func toolsCallStreamBOM(t *testing.T, call callWay) {
	t.Parallel()
	s := newScripted(t)
	s.call = func(w http.ResponseWriter, r *http.Request, id string, body []byte) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "\xEF\xBB\xBF")
		sseEvent(w, "", textResult(id, "ok"))
	}
	p := s.pool(t)
	raw, _, err := call(p, context.Background(), "s", "t", nil, CallOptions{})
	if err != nil || text(t, raw) != "ok" {
		t.Fatalf("%s %v", raw, err)
	}
}

// Over https the requests go to net/http's transport, which speaks HTTP/2:
// a JSON answer and an SSE answer with progress both arrive (the call ends
// its own context before it closes the body there).
func TestToolsCallOverHTTPS(t *testing.T) { bothWays(t, toolsCallOverHTTPS) }

func toolsCallOverHTTPS(t *testing.T, call callWay) {
	t.Parallel()
	s := &scripted{answers: map[string]json.RawMessage{}, answered: make(chan struct{}, 16)}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.srv.EnableHTTP2 = true
	s.srv.StartTLS()
	t.Cleanup(s.srv.Close)
	var mu sync.Mutex
	protos := map[int]int{}
	s.call = func(w http.ResponseWriter, r *http.Request, id string, body []byte) {
		mu.Lock()
		protos[r.ProtoMajor]++
		mu.Unlock()
		tok := progressToken(body)
		if tok != "" {
			w.Header().Set("Content-Type", "text/event-stream")
			sseEvent(w, "", fmt.Sprintf(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":%q,"progress":1,"message":"tls"}}`, tok))
			sseEvent(w, "", textResult(id, "streamed"))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, textResult(id, "plain"))
	}
	trusted := s.srv.Client().Transport.(*http.Transport)
	p := New(testLog(t), WithHTTPClients(func(n int) *http.Client {
		tr := trusted.Clone()
		tr.ForceAttemptHTTP2 = true
		return &http.Client{Transport: wholeBodies{newH1(tr, n, httpIdleTimeout)}}
	}))
	defer p.Close()
	p.Upsert(s.def())
	for range 3 {
		raw, _, err := call(p, context.Background(), "s", "t", nil, CallOptions{})
		if err != nil || text(t, raw) != "plain" {
			t.Fatalf("JSON answer: %s %v", raw, err)
		}
	}
	var msgs []string
	raw, _, err := call(p, context.Background(), "s", "t", nil, CallOptions{Progress: func(_, _ float64, m string) { msgs = append(msgs, m) }})
	if err != nil || text(t, raw) != "streamed" || strings.Join(msgs, ",") != "tls" {
		t.Fatalf("SSE answer: %s %v, progress %v", raw, err, msgs)
	}
	mu.Lock()
	defer mu.Unlock()
	if protos[2] != 4 {
		t.Fatalf("tools/call by HTTP version: %v, want 4 over HTTP/2", protos)
	}
}

// A notification handler that panics on a notification inside a tools/call
// stream costs that notification, not the call or the process.
func TestToolsCallHandlerPanic(t *testing.T) { bothWays(t, toolsCallHandlerPanic) }

func toolsCallHandlerPanic(t *testing.T, call callWay) {
	t.Parallel()
	s := newScripted(t)
	s.call = func(w http.ResponseWriter, r *http.Request, id string, body []byte) {
		w.Header().Set("Content-Type", "text/event-stream")
		sseEvent(w, "", `{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"boom"}}`)
		sseEvent(w, "", textResult(id, "survived"))
	}
	p := New(testLog(t))
	defer p.Close()
	p.OnNotification(func(server string, n mcp.JSONRPCNotification) {
		if n.Method == "notifications/message" {
			panic("handler bug")
		}
	})
	p.Upsert(s.def())
	raw, _, err := call(p, context.Background(), "s", "t", nil, CallOptions{})
	if err != nil || text(t, raw) != "survived" {
		t.Fatalf("%s %v", raw, err)
	}
}

// callWay is how a test's call goes: Pool.Call, or Pool.CallThen.
type callWay func(p *Pool, ctx context.Context, server, tool string, args json.RawMessage, co CallOptions) (json.RawMessage, bool, error)

// bothWays runs a tools/call test with each way a call goes: Call, on the
// caller's goroutine, and CallThen, whose request the caller writes and
// whose answer the pool's goroutine waits for and reads (waitingApart).
func bothWays(t *testing.T, test func(*testing.T, callWay)) {
	t.Run("Call", func(t *testing.T) { test(t, (*Pool).Call) })
	t.Run("CallThen", func(t *testing.T) { test(t, waitingApart) })
}

// waitingApart is CallThen, waited for: the request is written by the
// caller's goroutine, or by one that opened the session first, and the
// answer is read by the pool's goroutine that waited for it.
func waitingApart(p *Pool, ctx context.Context, server, tool string, args json.RawMessage, co CallOptions) (raw json.RawMessage, isErr bool, err error) {
	done := make(chan struct{})
	p.CallThen(ctx, server, tool, args, co, func(r json.RawMessage, e bool, er error) {
		raw, isErr, err = r, e, er
		close(done)
	})
	<-done
	return raw, isErr, err
}

// CallThen writes a large request on a goroutine of the call's own: a
// server that stops reading the body holds that write, not the caller's
// goroutine (a worker's runner). The server here reads no body over 1 MB
// until the test ends.
func TestCallThenDoesNotWaitForALargeWrite(t *testing.T) {
	s := &scripted{answers: map[string]json.RawMessage{}, answered: make(chan struct{}, 16)}
	release := make(chan struct{})
	stalled := make(chan struct{}, 1)
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > 1<<20 {
			stalled <- struct{}{}
			<-release // the body unread: the client's write fills the socket and waits
			return
		}
		s.serve(w, r)
	}))
	t.Cleanup(s.srv.Close)
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock) // before the server's Close, which waits for the handler
	s.call = func(w http.ResponseWriter, r *http.Request, id string, body []byte) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, textResult(id, "ok"))
	}
	p := s.pool(t)
	if _, _, err := p.Call(context.Background(), "s", "t", nil, CallOptions{}); err != nil {
		t.Fatal(err) // the session is open, and a connection idle
	}
	big, _ := json.Marshal(map[string]string{"x": strings.Repeat("a", 64<<20)})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	returned := make(chan struct{})
	answered := make(chan error, 1)
	go func() {
		p.CallThen(ctx, "s", "t", big, CallOptions{}, func(_ json.RawMessage, _ bool, err error) { answered <- err })
		close(returned)
	}()
	<-stalled
	select {
	case <-returned:
	case <-time.After(time.Minute):
		t.Fatal("CallThen is still writing to a server that stopped reading: it held its caller")
	}
	cancel()
	unblock()
	if err := <-answered; err == nil {
		t.Fatal("a call cancelled mid-write answered without an error")
	}
}

// panicky is an HTTP client's transport that panics (as a bug in toolbus
// would) on a request from the agent "panic", and sends the others.
type panicky struct{ next http.RoundTripper }

func (p panicky) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get(subjects.AgentHTTPHeader) == "panic" {
		panic("a bug")
	}
	return p.next.RoundTrip(r)
}

// A panic while CallThen's goroutine handles a call is toolbus's bug
// (bugError), as the panic out of Call is: not the server's answer
// (ClassMalformed, which the worker answers as a protocol error of the
// server's).
func TestCallThenPanicIsNotTheServers(t *testing.T) {
	s := newScripted(t)
	s.call = func(w http.ResponseWriter, r *http.Request, id string, body []byte) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, textResult(id, "ok"))
	}
	p := New(testLog(t), WithHTTPClients(func(n int) *http.Client {
		return &http.Client{Transport: panicky{NewHTTPClient(n).Transport}}
	}))
	t.Cleanup(func() { _ = p.Close() })
	p.Upsert(s.def())
	if _, _, err := p.Call(context.Background(), "s", "t", nil, CallOptions{}); err != nil {
		t.Fatal(err)
	}
	_, _, err := waitingApart(p, context.Background(), "s", "t", nil, CallOptions{AgentID: "panic"})
	if err == nil || !strings.Contains(err.Error(), "a bug in toolbus") {
		t.Fatalf("err = %v, want the bug's", err)
	}
	if c := ClassOf(err); c != ClassOther {
		t.Fatalf("ClassOf = %q, want %q (%v)", c, ClassOther, err)
	}
	if h := p.Health("s"); h.ConsecutiveFailures != 0 {
		t.Fatalf("the bug counted as the server's failure: %+v", h)
	}
}
