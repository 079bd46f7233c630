package mcppool

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
)

// httpTransport is mcp-go's streamable HTTP transport, with tools/call sent
// and read by toolbus itself (call below); every other request, the session's
// handshake and its GET stream stay with mcp-go.
//
// Why: mcp-go's SendRequest costs a call in flight a watcher goroutine and
// its context (contextAwareOfClientClose), the request's URL parsed again,
// its headers cloned twice (by mcp-go and by http.Client for redirects),
// and, when the answer is an SSE stream (a tool that reports progress), a
// reader goroutine, a closer goroutine and a 4 KB buffer until the result.
// At 10,000 calls in flight that was about 55 MB of the serve side's memory
// (docs/benchmarks.md). call does the exchange on the caller's goroutine:
// the body read ends with the call's context (h1 and net/http both abort it),
// so nothing else has to watch.
//
// What call keeps of mcp-go's behaviour, so the pool sees the same errors:
// the headers (content type, accept, session id before 2026-07-28, protocol
// version, the server's static headers, DialOptions.HeaderFunc, the call's
// own), a 404 as transport.ErrSessionTerminated, a 401 as an
// *AuthorizationRequiredError, another non-2xx as a JSON-RPC error body or
// "request failed with status N: body", an SSE stream's notifications to the
// client's handler and a stream ended before the response resumed with
// Last-Event-ID (SEP-1699, before 2026-07-28). A redirect is followed by the
// http.Client, as mcp-go would. Requests the server sends inside the stream
// go to the client's handler, as in mcp-go.
type httpTransport struct {
	*transport.StreamableHTTP
	h *hooks

	hc         *http.Client
	u          *url.URL
	static     http.Header // the server's headers and auth, canonical keys
	headerFunc func(context.Context) map[string]string
	version    atomic.Pointer[[]string] // the Mcp-Protocol-Version header's value
	sid        atomic.Pointer[[]string] // the Mcp-Session-Id header's last value (sessionHeader)
	notify     atomic.Pointer[func(mcp.JSONRPCNotification)]
	requests   atomic.Pointer[transport.RequestHandler]
}

func newHTTPTransport(t *transport.StreamableHTTP, h *hooks, hc *http.Client, rawURL string, headers map[string]string, headerFunc func(context.Context) map[string]string) (*httpTransport, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	static := make(http.Header, len(headers))
	for k, v := range headers {
		static.Set(k, v)
	}
	return &httpTransport{StreamableHTTP: t, h: h, hc: hc, u: u, static: static, headerFunc: headerFunc}, nil
}

func (t *httpTransport) SendRequest(ctx context.Context, req transport.JSONRPCRequest) (*transport.JSONRPCResponse, error) {
	var resp *transport.JSONRPCResponse
	var err error
	if req.Method == string(mcp.MethodToolsCall) {
		resp, err = t.call(ctx, req)
	} else {
		resp, err = t.StreamableHTTP.SendRequest(ctx, req)
	}
	return t.h.after(ctx, req, resp, err)
}

func (t *httpTransport) SetProtocolVersion(v string) {
	t.h.setVersion(v)
	if v != "" {
		t.version.Store(&[]string{v})
	}
	t.StreamableHTTP.SetProtocolVersion(v)
}

// SetNotificationHandler keeps the client's handler for the notifications
// call reads from a tools/call stream, and passes it on.
func (t *httpTransport) SetNotificationHandler(f func(mcp.JSONRPCNotification)) {
	t.notify.Store(&f)
	t.StreamableHTTP.SetNotificationHandler(f)
}

// SetRequestHandler keeps the client's handler for the requests the server
// sends inside a tools/call stream, and passes it on.
func (t *httpTransport) SetRequestHandler(f transport.RequestHandler) {
	t.requests.Store(&f)
	t.StreamableHTTP.SetRequestHandler(f)
}

func (t *httpTransport) Close() error {
	err := t.StreamableHTTP.Close()
	t.h.wait()
	return err
}

// Header values every request shares; nothing writes to them.
var (
	jsonType      = []string{"application/json"}
	acceptEither  = []string{"application/json, text/event-stream"}
	acceptStream  = []string{"text/event-stream"}
	errNoResponse = errors.New("the server ended the response stream before the response")
)

// call sends req and reads its answer, on the caller's goroutine.
func (t *httpTransport) call(ctx context.Context, req transport.JSONRPCRequest) (*transport.JSONRPCResponse, error) {
	body, err := requestBody(req)
	if err != nil {
		return nil, err
	}
	// Over https (net/http, HTTP/2) closing a body can wait for the
	// connection's write lock unless the request's context has ended: end
	// it first, as mcp-go does. h1 (plain http) needs no context of its own.
	stop := func() {}
	if t.u.Scheme != "http" {
		ctx, stop = context.WithCancel(ctx)
	}
	hreq := t.request(ctx, http.MethodPost, body, req.Header, acceptEither)
	resp, err := t.roundTrip(hreq)
	return t.readAnswer(ctx, resp, err, stop)
}

// callThen is call with the wait for the answer on a goroutine of its own,
// started shallow: the caller's goroutine writes the request and returns,
// and then gets the answer, as SendRequest gives it, on that goroutine
// once the server's answer starts to come. A call waiting for its server
// holds that goroutine's few frames (under 1 KB), not the caller's. then
// runs on a goroutine of its own on every path, never on the caller's, and
// exactly once unless callThen panics.
//
// Requests that h1 does not send (https, a proxy, a client of the
// caller's) go as SendRequest sends them, on that goroutine from the
// start.
func (t *httpTransport) callThen(ctx context.Context, req transport.JSONRPCRequest, then func(*transport.JSONRPCResponse, error)) {
	w := &waiting{t: t, ctx: ctx, req: req, then: then}
	h, ok := t.h1()
	if !ok {
		go w.sendRequest()
		return
	}
	body, err := requestBody(req)
	if err != nil {
		go w.sendRequest() // which fails as call does
		return
	}
	w.hreq = t.request(ctx, http.MethodPost, body, req.Header, acceptEither)
	if h.proxied(w.hreq) {
		go w.sendRequest()
		return
	}
	// The request's text and headers are in hreq now; what after needs of
	// req is its method and id. A call waiting for its server holds one
	// copy of each, not two.
	w.req.Params, w.req.Header = nil, nil
	if len(body) <= inlineWriteMax {
		w.written, w.resp, w.err = h.write(w.hreq, false)
		if w.err != errWouldDial {
			go w.await()
			return
		}
		w.err = nil
		w.hreq.Body = io.NopCloser(bytes.NewReader(body)) // whole again: a broken write may have read some
	}
	// No idle connection, or a body a socket's buffer may not take at
	// once: the connect, which a host gone away leaves unanswered until
	// the call's deadline, and a write a server that stops reading holds,
	// are a goroutine's of the call's own to wait for, not the caller's.
	// The wait goes on a goroutine started shallow, as above: the connect
	// and the write grew this one's stack.
	go func() {
		defer func() {
			if v := recover(); v != nil { // a bug: the call's error, not the process's end
				w.written, w.resp, w.err = nil, nil, bugError(v)
			}
			go w.await()
		}()
		w.written, w.resp, w.err = h.write(w.hreq, true)
	}()
}

// inlineWriteMax bounds the request body callThen writes on the caller's
// goroutine: an idle connection's empty send buffer (16 KB by Linux's
// default) takes it whole without a wait.
const inlineWriteMax = 8 << 10

// h1 is the client's own h1 transport, when requests go straight to it:
// plain http, no redirect-following client of the caller's set-up.
func (t *httpTransport) h1() (*h1, bool) {
	if t.u.Scheme != "http" || !t.direct() {
		return nil, false
	}
	wb, ok := t.hc.Transport.(wholeBodies)
	if !ok {
		return nil, false
	}
	h, ok := wb.RoundTripper.(*h1)
	return h, ok
}

// waiting is a tools/call of callThen: its request, and, once written, what
// its goroutine waits for.
type waiting struct {
	t       *httpTransport
	ctx     context.Context
	req     transport.JSONRPCRequest
	then    func(*transport.JSONRPCResponse, error)
	hreq    *http.Request
	written *h1Written // nil: resp or err is the round trip's outcome already
	resp    *http.Response
	err     error
}

// await is the goroutine of a call waiting for its server: its frames are
// this one and the wait's, and the rest of the answer's reading runs after
// the wait, deeper. A panic while the answer is read (a bug) fails the
// call (safely): this goroutine has no caller whose recover would answer
// it.
func (w *waiting) await() {
	if w.written != nil {
		w.err = w.written.c.waitReadable()
	}
	w.then(safely(w.answer))
}

// answer reads the answer the wait ended with, as SendRequest gives it.
func (w *waiting) answer() (*transport.JSONRPCResponse, error) {
	hresp, err := w.resp, w.err
	if w.written != nil {
		hresp, err = w.written.read(err)
	}
	hresp, err = readWhole(hresp, err)
	hresp, err = w.t.followed(w.hreq, hresp, err)
	resp, err := w.t.readAnswer(w.ctx, hresp, err, func() {})
	return w.t.h.after(w.ctx, w.req, resp, err)
}

// sendRequest is the way of the requests h1 does not send: SendRequest's,
// on this goroutine.
func (w *waiting) sendRequest() {
	w.then(safely(func() (*transport.JSONRPCResponse, error) { return w.t.SendRequest(w.ctx, w.req) }))
}

// safely is f's outcome, or, when f panics (a bug), bugError.
func safely[T any](f func() (T, error)) (v T, err error) {
	defer func() {
		if r := recover(); r != nil {
			var zero T
			v, err = zero, bugError(r)
		}
	}()
	return f()
}

// bugError is the error of a call whose answer's handling panicked on a
// goroutine of the pool's, where no caller's recover reaches: the call is
// answered (the worker answers it internal), not lost, and the process
// goes on.
func bugError(v any) error {
	return &bugErr{fmt.Sprintf("a bug in toolbus: handling the answer panicked: %v\n%s", v, debug.Stack())}
}

// bugErr is bugError's type: toolsCallResult and classify pass it on as it
// is, toolbus's own failure, not the server's or its transport's (which
// would retire the session, count towards the breaker and be retried).
type bugErr struct{ msg string }

func (e *bugErr) Error() string { return e.msg }

// requestBody is req's JSON text.
func requestBody(req transport.JSONRPCRequest) ([]byte, error) {
	id, err := json.Marshal(req.ID)
	if err != nil {
		return nil, fmt.Errorf("failed to marshal request: %w", err)
	}
	params, ok := req.Params.(json.RawMessage)
	if !ok && req.Params != nil {
		if params, err = json.Marshal(req.Params); err != nil {
			return nil, fmt.Errorf("failed to marshal request: %w", err)
		}
	}
	body := make([]byte, 0, len(id)+len(req.Method)+len(params)+48)
	body = append(body, `{"jsonrpc":"2.0","id":`...)
	body = append(body, id...)
	body = append(body, `,"method":`...)
	body = strconv.AppendQuote(body, req.Method)
	if len(params) > 0 {
		body = append(body, `,"params":`...)
		body = append(body, params...)
	}
	return append(body, '}'), nil
}

// readAnswer reads a tools/call's answer from the round trip's outcome;
// stop ends the request's own context (https), after the body is closed.
func (t *httpTransport) readAnswer(ctx context.Context, resp *http.Response, err error, stop func()) (*transport.JSONRPCResponse, error) {
	if err != nil {
		stop()
		return nil, err
	}
	defer func() {
		stop()
		_ = resp.Body.Close()
	}()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted {
		return statusAnswer(resp)
	}
	switch mediaType(resp.Header.Get("Content-Type")) {
	case "application/json":
		var raw []byte
		if b, ok := resp.Body.(interface{ Bytes() []byte }); ok {
			raw = b.Bytes() // wholeBodies read it already
		} else if raw, err = io.ReadAll(resp.Body); err != nil {
			return nil, fmt.Errorf("failed to read response: %w", err)
		}
		var r transport.JSONRPCResponse
		if err := json.Unmarshal(raw, &r); err != nil {
			// Read again as mcp-go's json.Decoder read it, for its
			// errors and classes: the first value is the answer, and a
			// body that ends before one is io.EOF or
			// io.ErrUnexpectedEOF (a broken connection), not a syntax
			// error.
			r = transport.JSONRPCResponse{}
			if err := json.NewDecoder(bytes.NewReader(raw)).Decode(&r); err != nil {
				return nil, fmt.Errorf("failed to decode response: %w", err)
			}
		}
		if r.ID.IsNil() {
			return nil, fmt.Errorf("response should contain RPC id: %v", r)
		}
		return &r, nil
	case "text/event-stream":
		return t.stream(ctx, resp.Body)
	default:
		return nil, fmt.Errorf("unexpected content type: %s", resp.Header.Get("Content-Type"))
	}
}

// send makes one request to the server's URL with the headers mcp-go would
// send. A 404 is the end of the session, as in mcp-go.
func (t *httpTransport) send(ctx context.Context, method string, body []byte, header http.Header, accept []string) (*http.Response, error) {
	return t.roundTrip(t.request(ctx, method, body, header, accept))
}

// request is a request to the server's URL with the headers mcp-go would
// send.
func (t *httpTransport) request(ctx context.Context, method string, body []byte, header http.Header, accept []string) *http.Request {
	// The URL is parsed once (newHTTPTransport) and shared: nothing on the
	// way writes to a request's URL.
	req := (&http.Request{Method: method, URL: t.u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Host: t.u.Host}).WithContext(ctx)
	if body != nil {
		req.ContentLength = int64(len(body))
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	// Sized for what goes in, almost always 8 or fewer: a map of up to 8
	// is one group of slots, about 380 bytes, and one sized for more takes
	// twice that, for every call in flight.
	var sid []string
	if !t.h.modern() {
		sid = t.sessionHeader()
	}
	version := t.version.Load()
	n := len(header) + len(t.static) + 1 // Accept
	for _, more := range [...]bool{body != nil, sid != nil, version != nil} {
		if more {
			n++
		}
	}
	h := make(http.Header, n)
	for k, v := range header {
		h[k] = v
	}
	if body != nil {
		h["Content-Type"] = jsonType
	}
	h["Accept"] = accept
	if sid != nil {
		h[transport.HeaderKeySessionID] = sid
	}
	if version != nil {
		h[transport.HeaderKeyProtocolVersion] = *version
	}
	for k, v := range t.static {
		h[k] = v
	}
	if t.headerFunc != nil {
		for k, v := range t.headerFunc(ctx) {
			h.Set(k, v)
		}
	}
	req.Header = h
	if u := t.u.User; u != nil && h.Get("Authorization") == "" {
		// The URL's credentials, as http.Client.Do sends them (a
		// transport's RoundTrip does not).
		pw, _ := u.Password()
		req.SetBasicAuth(u.Username(), pw)
	}
	return req
}

// sessionHeader is the session id's header value, nil without one: one
// slice while the id stays the same, shared by the requests (nothing on the
// way writes to a header's values).
func (t *httpTransport) sessionHeader() []string {
	id := t.GetSessionId()
	if id == "" {
		return nil
	}
	if c := t.sid.Load(); c != nil && (*c)[0] == id {
		return *c
	}
	v := []string{id}
	t.sid.Store(&v)
	return v
}

// direct reports whether requests go straight to the client's transport:
// http.Client.Do would clone the headers again for a redirect that almost
// never comes. A client of the caller's, set up for more, does the round
// trip itself.
func (t *httpTransport) direct() bool {
	return t.hc.Transport != nil && t.hc.Jar == nil && t.hc.Timeout == 0
}

// roundTrip sends req and returns the response to it.
func (t *httpTransport) roundTrip(req *http.Request) (*http.Response, error) {
	if !t.direct() {
		return t.sent(t.hc.Do(req))
	}
	resp, err := t.hc.Transport.RoundTrip(req)
	return t.followed(req, resp, err)
}

// followed follows the redirect a direct round trip answered with, from the
// answer already received (replayFirst): the request is not sent again (a
// 303 says the POST was handled), and a 3xx the client does not follow (no
// Location) is the answer. Then it is sent's.
func (t *httpTransport) followed(req *http.Request, resp *http.Response, err error) (*http.Response, error) {
	if err == nil && isRedirect(resp.StatusCode) {
		hc := *t.hc
		hc.Transport = &replayFirst{resp: resp, next: t.hc.Transport}
		resp, err = hc.Do(req)
	}
	return t.sent(resp, err)
}

// sent is the outcome of a round trip as the caller sees it: a 404 is the
// end of the session, as in mcp-go.
func (t *httpTransport) sent(resp *http.Response, err error) (*http.Response, error) {
	if err != nil {
		return nil, fmt.Errorf("failed to send request: %w", err)
	}
	if resp.StatusCode == http.StatusNotFound {
		_ = resp.Body.Close()
		return nil, fmt.Errorf("failed to send request: %w", transport.ErrSessionTerminated)
	}
	return resp, nil
}

// replayFirst answers its first round trip with resp, received already,
// and sends the others (the redirects http.Client follows) to next.
type replayFirst struct {
	resp *http.Response
	next http.RoundTripper
}

func (r *replayFirst) RoundTrip(req *http.Request) (*http.Response, error) {
	if resp := r.resp; resp != nil {
		r.resp = nil
		return resp, nil
	}
	return r.next.RoundTrip(req)
}

func isRedirect(status int) bool {
	switch status {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return true
	}
	return false
}

// statusAnswer is what mcp-go makes of a non-2xx answer to a request: a 401
// is an authorization error; a body that is a JSON-RPC error is the answer;
// anything else quotes the status and the body. Unlike mcp-go, a JSON body
// that carries no JSON-RPC error (a gateway's 502 {"message":…}) is not an
// answer: mcp-go took it for an empty one, a malformed answer that is not
// retried, where the status says the server is unreachable.
func statusAnswer(resp *http.Response) (*transport.JSONRPCResponse, error) {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode == http.StatusUnauthorized {
		return nil, &transport.AuthorizationRequiredError{}
	}
	var r transport.JSONRPCResponse
	if err := json.Unmarshal(body, &r); err == nil && r.Error != nil {
		return &r, nil
	}
	return nil, fmt.Errorf("request failed with status %d: %s", resp.StatusCode, body)
}

// mediaType is a Content-Type's media type, lower case, without parameters.
func mediaType(ct string) string {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.ToLower(strings.TrimSpace(ct))
}

// sseCursor is where a stream can be resumed from (SEP-1699): the id of the
// last event dispatched, and the reconnection time the server asked for.
type sseCursor struct {
	lastID   string
	retry    time.Duration
	hasRetry bool
}

// Reconnection times for resuming a stream: the default when the server
// sent none, and the least taken from one, as mcp-go does.
const (
	sseReconnectDelay    = time.Second
	minSSEReconnectDelay = 10 * time.Millisecond
)

// stream reads an SSE response until the response to the request, passing
// on notifications and answering the server's requests. A server that ends
// the stream before the response, having sent an event id, is asked to go on
// with a GET carrying Last-Event-ID (before 2026-07-28).
func (t *httpTransport) stream(ctx context.Context, body io.Reader) (*transport.JSONRPCResponse, error) {
	var cur sseCursor
	var resumed io.ReadCloser
	defer func() {
		if resumed != nil {
			_ = resumed.Close()
		}
	}()
	for {
		resp, ended, err := t.readStream(ctx, body, &cur)
		if resp != nil || err != nil {
			return resp, err
		}
		if !ended || cur.lastID == "" || t.h.modern() {
			return nil, fmt.Errorf("%w: %w", errNoResponse, io.ErrUnexpectedEOF)
		}
		if resumed != nil {
			_ = resumed.Close()
		}
		if resumed, err = t.resume(ctx, &cur); err != nil {
			return nil, fmt.Errorf("failed to resume the SSE stream for the response: %w", err)
		}
		body = resumed
	}
}

// readStream reads events from body until a response: ended reports that the
// server ended the stream without one.
func (t *httpTransport) readStream(ctx context.Context, body io.Reader, cur *sseCursor) (resp *transport.JSONRPCResponse, ended bool, err error) {
	// The stream's buffer comes from the pool h1's connections read
	// through; a longer line is gathered below.
	br := h1Readers.Get().(*bufio.Reader)
	br.Reset(body)
	defer func() {
		br.Reset(nil)
		h1Readers.Put(br)
	}()
	// A byte order mark at the stream's start is dropped (the SSE spec).
	if b, _ := br.Peek(3); string(b) == "\xEF\xBB\xBF" {
		_, _ = br.Discard(3)
	}
	var data []byte
	var id string
	hasID, hasData := false, false
	for {
		line, rerr := br.ReadSlice('\n')
		if rerr == bufio.ErrBufferFull {
			// A long line: gather the rest of it.
			long := append([]byte(nil), line...)
			for rerr == bufio.ErrBufferFull {
				line, rerr = br.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if rerr != nil {
			if ctx.Err() != nil {
				return nil, false, ctx.Err()
			}
			if rerr != io.EOF {
				return nil, false, rerr
			}
			// The last event, unfinished: dispatched, its id not kept.
			if hasData {
				if r := t.dispatch(ctx, data); r != nil {
					return r, false, nil
				}
			}
			return nil, true, nil
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			if hasID {
				cur.lastID = id
				hasID = false
			}
			if hasData {
				if r := t.dispatch(ctx, data); r != nil {
					return r, false, nil
				}
				data, hasData = data[:0], false
			}
			continue
		}
		field, value, _ := bytes.Cut(line, []byte{':'})
		value = bytes.TrimPrefix(value, []byte{' '})
		switch string(field) {
		case "data":
			if hasData {
				data = append(data, '\n')
			}
			data, hasData = append(data, value...), true
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				id, hasID = string(value), true
			}
		case "retry":
			// Only ASCII digits (ParseUint takes no sign).
			if ms, err := strconv.ParseUint(string(value), 10, 31); err == nil {
				cur.retry, cur.hasRetry = time.Duration(ms)*time.Millisecond, true
			}
		}
	}
}

// message is any JSON-RPC message a stream carries.
type message struct {
	ID     mcp.RequestId            `json:"id"`
	Method string                   `json:"method"`
	Params json.RawMessage          `json:"params"`
	Result json.RawMessage          `json:"result"`
	Error  *mcp.JSONRPCErrorDetails `json:"error"`
}

// dispatch handles one event's data: a response is returned; a notification
// goes to the client's handler; a request from the server is answered.
// Data that is not JSON-RPC is skipped, as mcp-go does.
func (t *httpTransport) dispatch(ctx context.Context, data []byte) *transport.JSONRPCResponse {
	var m message
	if err := json.Unmarshal(data, &m); err != nil {
		t.h.log.Debug().Err(err).Int("bytes", len(data)).Msg("skipped an SSE event that is not JSON-RPC")
		return nil
	}
	switch {
	case m.ID.IsNil():
		f := t.notify.Load()
		if f == nil {
			return nil
		}
		// Decoding the notification and the handler's work (the worker
		// publishes progress) run deep: on a goroutine of their own, they
		// do not grow the stack the call waits on (docs/benchmarks.md).
		// The call waits for it, so notifications keep their order.
		done := make(chan struct{})
		go func() {
			defer close(done)
			defer func() {
				// A handler's panic is logged, as mcp-go's stream reader
				// did, not the end of the process.
				if v := recover(); v != nil {
					t.h.log.Error().Str("panic", fmt.Sprint(v)).Msg("a notification handler panicked: a bug; the notification is dropped")
				}
			}()
			var n mcp.JSONRPCNotification
			if err := json.Unmarshal(data, &n); err == nil {
				(*f)(n)
			}
		}()
		<-done
		return nil
	case m.Method != "":
		t.answer(ctx, m)
		return nil
	}
	return &transport.JSONRPCResponse{JSONRPC: mcp.JSONRPC_VERSION, ID: m.ID, Result: m.Result, Error: m.Error}
}

// answer replies to a request the server sent inside a stream, off the
// stream's path, with the client's handler (ping, roots, sampling and
// elicitation, which toolbus does not offer), as mcp-go's transport does;
// Close stops it and waits for it.
func (t *httpTransport) answer(ctx context.Context, m message) {
	t.h.spawn(func() {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), serverRequestTimeout)
		defer cancel()
		// Close stops it, as mcp-go's Close stopped its answers.
		defer context.AfterFunc(t.h.closing, cancel)()
		var r *transport.JSONRPCResponse
		var err error
		if f := t.requests.Load(); f != nil {
			req := transport.JSONRPCRequest{JSONRPC: mcp.JSONRPC_VERSION, ID: m.ID, Method: m.Method, Params: m.Params}
			r, err = (*f)(actx, req)
		} else {
			err = fmt.Errorf("no handler configured for method: %s", m.Method)
		}
		switch {
		case err != nil && m.Method == string(mcp.MethodSamplingCreateMessage):
			r = transport.NewJSONRPCErrorResponse(m.ID, mcp.INTERNAL_ERROR, "sampling request failed: "+err.Error(), nil)
		case err != nil:
			r = transport.NewJSONRPCErrorResponse(m.ID, mcp.INTERNAL_ERROR, err.Error(), nil)
		case r == nil:
			return
		}
		body, err := json.Marshal(r)
		if err != nil {
			return
		}
		resp, err := t.send(actx, http.MethodPost, body, nil, acceptEither)
		if err != nil {
			t.h.log.Debug().Err(err).Str("method", m.Method).Msg("answering the server's request failed")
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	})
}

// serverRequestTimeout bounds answering a request the server sent, as in
// mcp-go.
const serverRequestTimeout = 30 * time.Second

// resume waits the reconnection time and reopens the stream with a GET
// carrying Last-Event-ID.
func (t *httpTransport) resume(ctx context.Context, cur *sseCursor) (io.ReadCloser, error) {
	delay := sseReconnectDelay
	if cur.hasRetry {
		delay = max(cur.retry, minSSEReconnectDelay)
	}
	timer := time.NewTimer(delay)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	resp, err := t.send(ctx, http.MethodGet, nil, http.Header{"Last-Event-Id": {cur.lastID}}, acceptStream)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		_ = resp.Body.Close()
		return nil, fmt.Errorf("unexpected status %d", resp.StatusCode)
	}
	if mt := mediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		_ = resp.Body.Close()
		return nil, fmt.Errorf("unexpected content type %q", resp.Header.Get("Content-Type"))
	}
	return resp.Body, nil
}
