package mcppool

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// h1 is the transport for plain-http MCP servers: HTTP/1.1 with each
// request written and its response read on the caller's goroutine. The
// framing is the standard library's (Request.Write, http.ReadResponse); h1
// keeps only the connections.
//
// net/http's Transport runs two goroutines per connection (a reader and a
// writer) and hands every request and response between them and the caller
// over channels. A call in flight holds a connection, so at 10,000 calls in
// flight that was 20,000 goroutines, 8 KB of stacks and a few KB of
// channels and buffers per call, and two goroutine hand-offs on every
// call's path. h1 has none of it: a waiting call is one goroutine blocked
// on its socket, the caller's (RoundTrip) or one started at the wait
// (write, then h1Written.read: httpTransport.callThen).
//
// https and proxied requests go to next (net/http's Transport), which also
// speaks HTTP/2 where the server offers it.
type h1 struct {
	next        *http.Transport
	dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	maxIdle     int           // idle connections kept per host
	idleTimeout time.Duration // an idle connection is closed after this long

	mu      sync.Mutex
	idle    map[string][]*h1Conn // by host:port, the most recently used last
	pruning bool                 // a prune is scheduled
}

// h1Conn is one connection. It holds a read buffer only while a response
// is being read, and a write buffer only while a request is written (both
// from a pool): a call waiting for its server holds neither, and neither
// does an idle connection.
type h1Conn struct {
	nc     net.Conn
	br     *bufio.Reader // nil but while a response is read
	werr   error         // the connection's own failure while a request is written
	rlimit int64         // bytes left to read: the headers' bound, then no bound
	addr   string
	idleAt time.Time
}

var (
	h1Readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, httpReadBuffer) }}
	h1Writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, httpWriteBuffer) }}
)

func newH1(next *http.Transport, maxIdle int, idleTimeout time.Duration) *h1 {
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	return &h1{next: next, dial: d.DialContext, maxIdle: maxIdle, idleTimeout: idleTimeout, idle: map[string][]*h1Conn{}}
}

func (t *h1) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" || t.proxied(req) {
		return t.next.RoundTrip(req)
	}
	w, resp, err := t.write(req, true)
	if w == nil {
		return resp, err
	}
	return w.read(w.c.waitReadable())
}

// h1Written is a request written whole on c, its response still to come:
// read takes it once c is readable. Between the two a call waits, on any
// goroutine (httpTransport.callThen waits on one of its own, started
// shallow).
type h1Written struct {
	t    *h1
	c    *h1Conn
	req  *http.Request
	stop func() bool // ends the abort on the request's context
}

// write sends req on a connection, a new one when a reused one broke
// before the request was out whole. It returns the written request, or,
// when there is nothing to wait for, the response (one that came before
// the request was out whole) or the error.
//
// Without dial, write sends req only on an idle connection: when there is
// none, or it broke before req was out whole, it returns errWouldDial,
// nothing sent, and req's body perhaps read (GetBody gives it again). A
// connect can take as long as the server's host leaves it unanswered, and
// a caller that must not wait (httpTransport.callThen's) then writes on a
// goroutine of its own.
func (t *h1) write(req *http.Request, dial bool) (*h1Written, *http.Response, error) {
	if err := checkRequest(req); err != nil {
		closeRequestBody(req)
		return nil, nil, err
	}
	ctx := req.Context()
	addr := canonicalAddr(req)
	for attempt := 0; ; attempt++ {
		var c *h1Conn
		var reused bool
		var err error
		if !dial { // only attempt 0: a retry returns errWouldDial below
			if c = t.idleConn(addr); c == nil {
				return nil, nil, errWouldDial
			}
			reused = true
		} else {
			c, reused, err = t.conn(ctx, addr)
		}
		if err != nil {
			closeRequestBody(req)
			return nil, nil, err
		}
		stop := context.AfterFunc(ctx, c.abort)
		early, err := c.writeRequest(ctx, req, t.maxHeaderBytes())
		if err == nil {
			if early != nil {
				return nil, t.hold(ctx, c, req, early, stop), nil
			}
			return &h1Written{t: t, c: c, req: req, stop: stop}, nil, nil
		}
		stop()
		c.nc.Close()
		if ctx.Err() != nil {
			return nil, nil, context.Cause(ctx) // as net/http has it
		}
		var we writeError
		if !errors.As(err, &we) || !reused || attempt > 0 || req.GetBody == nil {
			return nil, nil, err
		}
		if !dial {
			return nil, nil, errWouldDial // again, on a new connection: the caller's to dial
		}
		// The reused connection broke before the request was out whole:
		// the server has not seen all of it, so it goes again on a new
		// connection. On a copy, as net/http does: RoundTrip must not
		// change the caller's request.
		body, err := req.GetBody()
		if err != nil {
			return nil, nil, err
		}
		again := *req
		again.Body = body
		req = &again
	}
}

// read reads the response of the written request, once its connection is
// readable or waitErr says why it will not be.
func (w *h1Written) read(waitErr error) (*http.Response, error) {
	ctx := w.req.Context()
	err := waitErr
	var resp *http.Response
	if err == nil {
		resp, err = w.c.readHead(w.req, w.t.maxHeaderBytes())
	}
	if err == nil {
		return w.t.hold(ctx, w.c, w.req, resp, w.stop), nil
	}
	w.stop()
	w.c.nc.Close()
	if ctx.Err() != nil {
		return nil, context.Cause(ctx) // as net/http has it
	}
	return nil, err
}

// checkRequest refuses what net/http's Transport refuses before it sends a
// request: Request.Write would drop a header with a bad name and rewrite a
// value's line breaks, and a URL without a host would dial this machine.
// The errors are net/http's, naming the header but not its value (a token).
func checkRequest(req *http.Request) error {
	if req.URL.Host == "" {
		return errors.New("http: no Host in request URL")
	}
	if req.Method != "" && !validToken(req.Method) {
		return fmt.Errorf("net/http: invalid method %q", req.Method)
	}
	for k, vv := range req.Header {
		if !validToken(k) {
			return fmt.Errorf("net/http: invalid header field name %q", k)
		}
		for _, v := range vv {
			if !validHeaderValue(v) {
				return fmt.Errorf("net/http: invalid header field value for %q", k)
			}
		}
	}
	return nil
}

// validToken reports whether s is an RFC 9110 token: a method or a header
// name.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validHeaderValue reports whether v holds no control byte but tab.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// proxied reports whether the environment routes req through a proxy.
func (t *h1) proxied(req *http.Request) bool {
	if t.next.Proxy == nil {
		return false
	}
	u, err := t.next.Proxy(req)
	return err != nil || u != nil
}

// writeError is a failure to send a request: none of its response was read.
type writeError struct{ err error }

func (e writeError) Error() string { return e.err.Error() }
func (e writeError) Unwrap() error { return e.err }

// writeRequest writes req on c. A server may answer before it has read the
// request whole: then its answer is returned (early), not the broken write.
func (c *h1Conn) writeRequest(ctx context.Context, req *http.Request, maxHeader int64) (early *http.Response, err error) {
	bw := h1Writers.Get().(*bufio.Writer)
	c.werr = nil
	bw.Reset(c) // c, not c.nc: a failure of the connection is told from one of the body
	err = req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	bw.Reset(nil)
	h1Writers.Put(bw)
	if err != nil && c.werr == nil {
		// The request's body failed (its Read or Close), not the
		// connection: the server may have the request whole, so it is
		// not sent again.
		return nil, err
	}
	if err != nil {
		// A server may answer without reading the whole request (a 413
		// for a body too large) and hang up: its answer says more than the
		// broken write does.
		if resp := c.earlyResponse(ctx, req, maxHeader); resp != nil {
			return resp, nil
		}
		// The connection's own error: Request.Write wraps a failure while
		// it copies the body in a net/http type that hides it (a reset).
		return nil, writeError{c.werr}
	}
	return nil, nil
}

// readHead reads the final response's status line and headers, past any
// 1xx, within maxHeader bytes for them all.
func (c *h1Conn) readHead(req *http.Request, maxHeader int64) (*http.Response, error) {
	c.br = h1Readers.Get().(*bufio.Reader)
	c.br.Reset(c)
	c.rlimit = maxHeader // for the 1xx responses and the final one's headers together, as net/http
	for {
		resp, err := c.readResponse(req, maxHeader)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 {
			if resp.StatusCode == http.StatusSwitchingProtocols {
				return nil, errors.New("the server switched protocols, which an MCP call does not ask for")
			}
			continue // 1xx informational: the response follows
		}
		c.rlimit = math.MaxInt64 // the body is its reader's to bound
		return resp, nil
	}
}

// readResponse reads a response's headers from c.br within c.rlimit.
func (c *h1Conn) readResponse(req *http.Request, maxHeader int64) (*http.Response, error) {
	resp, err := http.ReadResponse(c.br, req)
	if err != nil && c.rlimit <= 0 {
		return nil, fmt.Errorf("net/http: server response headers exceeded %d bytes; aborted", maxHeader)
	}
	return resp, err
}

// Read is the connection as a response's bufio.Reader sees it: a server's
// headers are bounded (net/http's MaxResponseHeaderBytes), or one that
// sends an endless header line would have all of this process's memory.
func (c *h1Conn) Read(p []byte) (int, error) {
	if c.rlimit <= 0 {
		return 0, errors.New("response header limit exhausted")
	}
	if int64(len(p)) > c.rlimit {
		p = p[:c.rlimit]
	}
	n, err := c.nc.Read(p)
	c.rlimit -= int64(n)
	return n, err
}

// maxHeaderBytes is net/http's bound on a response's headers.
func (t *h1) maxHeaderBytes() int64 {
	if t.next.MaxResponseHeaderBytes > 0 {
		return t.next.MaxResponseHeaderBytes
	}
	return 10 << 20
}

// Write and ReadFrom are the connection as a request's bufio.Writer sees
// it: they note the connection's own failure, which Request.Write's error
// does not tell from one of the request's body.
func (c *h1Conn) Write(p []byte) (int, error) {
	n, err := c.nc.Write(p)
	if err != nil {
		c.werr = err
	}
	return n, err
}

// ReadFrom keeps the connection's ReadFrom (a large body goes out without
// bufio's small buffer) and tells the body's failure from the connection's.
func (c *h1Conn) ReadFrom(r io.Reader) (int64, error) {
	src := &failReader{r: r}
	var n int64
	var err error
	if rf, ok := c.nc.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(struct{ io.Writer }{c.nc}, src)
	}
	if err != nil && src.err == nil {
		c.werr = err
	}
	return n, err
}

// failReader notes its reader's failure.
type failReader struct {
	r   io.Reader
	err error
}

func (f *failReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err != nil && err != io.EOF {
		f.err = err
	}
	return n, err
}

// earlyResponseWait bounds the look for an answer after a failed write.
const earlyResponseWait = time.Second

// earlyResponse reads a response that came before the request was written
// whole, or returns nil. The connection goes with the response. A write the
// context cut short (abort's deadline) is no early answer: nothing is waited
// for, and the deadline set here must not undo abort's.
func (c *h1Conn) earlyResponse(ctx context.Context, req *http.Request, maxHeader int64) *http.Response {
	if ctx.Err() != nil {
		return nil
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(earlyResponseWait))
	if ctx.Err() != nil { // abort ran before the deadline above replaced its own
		return nil
	}
	c.br = h1Readers.Get().(*bufio.Reader)
	c.br.Reset(c)
	c.rlimit = maxHeader
	resp, err := c.readResponse(req, maxHeader)
	if err != nil || resp.StatusCode < 200 {
		return nil
	}
	c.rlimit = math.MaxInt64
	// The wait bounded the answer's start, not its body.
	_ = c.nc.SetReadDeadline(time.Time{})
	if ctx.Err() != nil {
		c.abort()
	}
	resp.Close = true
	return resp
}

// hold gives resp a body that returns c to the pool once it is read to its
// end, and closes c if it is closed before.
func (t *h1) hold(ctx context.Context, c *h1Conn, req *http.Request, resp *http.Response, stop func() bool) *http.Response {
	keep := !resp.Close && !req.Close
	if resp.Body == http.NoBody || resp.Body == nil {
		t.release(c, stop, keep)
		return resp
	}
	resp.Body = &h1Body{t: t, c: c, ctx: ctx, rc: resp.Body, stop: stop, keep: keep}
	return resp
}

// release ends c's request: back to the pool when keep and the context did
// not cut it short, else closed.
func (t *h1) release(c *h1Conn, stop func() bool, keep bool) {
	if !stop() || !keep || c.br.Buffered() > 0 {
		// Cut short, or the server sent more than its response: the
		// connection goes, and its reader with it (a reader of the body may
		// still hold it).
		c.nc.Close()
		return
	}
	c.br.Reset(nil)
	h1Readers.Put(c.br)
	c.br = nil
	t.put(c)
}

// abort makes the call's pending read or write fail now: its context ended.
func (c *h1Conn) abort() { _ = c.nc.SetDeadline(time.Unix(1, 0)) }

type h1Body struct {
	t    *h1
	c    *h1Conn
	ctx  context.Context
	rc   io.Reader // not closed: closing it would read the rest of the body
	stop func() bool
	keep bool
	mu   sync.Mutex
	done bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil {
		b.finish(err == io.EOF)
		if err != io.EOF && b.ctx.Err() != nil {
			// The read failed on the deadline abort set, or on the
			// connection closed after it: the caller is told why, as
			// net/http tells it, not "i/o timeout", which reads as the
			// server's fault.
			err = context.Cause(b.ctx)
		}
	}
	return n, err
}

func (b *h1Body) Close() error {
	b.finish(false)
	return nil
}

// finish settles the connection once: whole tells whether the body was
// read to its end.
func (b *h1Body) finish(whole bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return
	}
	b.done = true
	b.t.release(b.c, b.stop, b.keep && whole)
}

// conn returns an idle connection to addr that the server has not closed,
// or dials a new one.
func (t *h1) conn(ctx context.Context, addr string) (*h1Conn, bool, error) {
	if c := t.idleConn(addr); c != nil {
		return c, true, nil
	}
	nc, err := t.dialAside(ctx, addr)
	if err != nil {
		return nil, false, err
	}
	return &h1Conn{nc: nc, addr: addr}, false, nil
}

// errWouldDial is write's answer, without dial, when no connection is
// idle: nothing was sent.
var errWouldDial = errors.New("h1: no idle connection")

// idleConn returns an idle connection to addr that the server has not
// closed, or nil.
func (t *h1) idleConn(addr string) *h1Conn {
	for {
		c := t.take(addr)
		if c == nil || !c.closedByPeer() {
			return c
		}
		c.nc.Close()
	}
}

// dialAside dials on a goroutine of its own. Dialing runs deep (resolver,
// socket, connect), and on the caller's goroutine it grows the stack that
// the call then waits on for as long as the server takes.
func (t *h1) dialAside(ctx context.Context, addr string) (net.Conn, error) {
	type dialed struct {
		nc  net.Conn
		err error
	}
	ch := make(chan dialed, 1)
	go func() {
		nc, err := t.dial(ctx, "tcp", addr)
		ch <- dialed{nc, err}
	}()
	d := <-ch
	return d.nc, d.err
}

func (t *h1) take(addr string) *h1Conn {
	t.mu.Lock()
	defer t.mu.Unlock()
	for cs := t.idle[addr]; len(cs) > 0; cs = t.idle[addr] {
		c := cs[len(cs)-1]
		cs[len(cs)-1] = nil
		t.idle[addr] = cs[:len(cs)-1]
		if time.Since(c.idleAt) < t.idleTimeout {
			return c
		}
		c.nc.Close()
	}
	return nil
}

func (t *h1) put(c *h1Conn) {
	_ = c.nc.SetDeadline(time.Time{})
	c.idleAt = time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	cs := t.idle[c.addr]
	if len(cs) >= t.maxIdle {
		c.nc.Close()
		return
	}
	t.idle[c.addr] = append(cs, c)
	if !t.pruning {
		t.pruning = true
		time.AfterFunc(t.idleTimeout, t.prune)
	}
}

// prune closes the connections idle for longer than idleTimeout, and comes
// back while any are left.
func (t *h1) prune() {
	t.mu.Lock()
	defer t.mu.Unlock()
	cutoff := time.Now().Add(-t.idleTimeout)
	left := false
	for addr, cs := range t.idle {
		n := 0
		for _, c := range cs { // oldest first
			if c.idleAt.After(cutoff) {
				break
			}
			c.nc.Close()
			n++
		}
		cs = append(cs[:0], cs[n:]...)
		if len(cs) == 0 {
			delete(t.idle, addr)
		} else {
			t.idle[addr] = cs
			left = true
		}
	}
	t.pruning = left
	if left {
		time.AfterFunc(t.idleTimeout/2, t.prune)
	}
}

// CloseIdleConnections closes every idle connection (http.Client calls it).
func (t *h1) CloseIdleConnections() {
	t.mu.Lock()
	for addr, cs := range t.idle {
		for _, c := range cs {
			c.nc.Close()
		}
		delete(t.idle, addr)
	}
	t.mu.Unlock()
	t.next.CloseIdleConnections()
}

func canonicalAddr(req *http.Request) string {
	host, port := req.URL.Hostname(), req.URL.Port()
	if port == "" {
		port = "80"
	}
	return net.JoinHostPort(host, port)
}

func closeRequestBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}
