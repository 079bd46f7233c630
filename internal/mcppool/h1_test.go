package mcppool

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/toolbus-dev/toolbus/internal/demo"
	"github.com/toolbus-dev/toolbus/internal/registry"
	"github.com/toolbus-dev/toolbus/internal/testutil"
)

// connCounter counts the connections an h1 dials and closes.
type connCounter struct{ dials, closed atomic.Int64 }

// count makes hc's h1 dial through c, and returns hc.
func (c *connCounter) count(hc *http.Client) *http.Client {
	var d net.Dialer
	hc.Transport.(wholeBodies).RoundTripper.(*h1).dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		c.dials.Add(1)
		return &closeCounted{Conn: nc, closed: &c.closed}, nil
	}
	return hc
}

// closeCounted counts its Close calls.
type closeCounted struct {
	net.Conn
	closed *atomic.Int64
	once   sync.Once
}

func (c *closeCounted) Close() error {
	c.once.Do(func() { c.closed.Add(1) })
	return c.Conn.Close()
}

// SyscallConn is the TCP connection's: h1 peeks at the socket through it.
func (c *closeCounted) SyscallConn() (syscall.RawConn, error) {
	return c.Conn.(syscall.Conn).SyscallConn()
}

// h1Client is NewHTTPClient's client with its dials counted.
func h1Client(t *testing.T) (*http.Client, *h1, *atomic.Int64) {
	t.Helper()
	var cc connCounter
	hc := cc.count(NewHTTPClient(0))
	tr := hc.Transport.(wholeBodies).RoundTripper.(*h1)
	t.Cleanup(tr.CloseIdleConnections)
	return hc, tr, &cc.dials
}

// demoPool is a pool with the demo MCP server over streamable HTTP as "d",
// its connections counted by cc, and the server's URL.
func demoPool(t *testing.T, cc *connCounter) (*Pool, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	url, stop, err := demo.Serve(ctx, demo.TransportHTTP, "127.0.0.1:0", demo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	p := New(testutil.Logger(t), WithHTTPClients(func(n int) *http.Client { return cc.count(NewHTTPClient(n)) }))
	t.Cleanup(func() { p.Close() })
	p.Upsert(registry.Server{Name: "d", Transport: registry.TransportHTTP, URL: url, ProtocolVersion: "2025-11-25"})
	return p, url
}

// rawServer serves HTTP by hand, for answers net/http's server would not
// give: each connection goes to handle, with a reader on it. It returns the
// URL to post to.
func rawServer(t *testing.T, handle func(c net.Conn, br *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(c, bufio.NewReader(c))
		}
	}()
	return "http://" + ln.Addr().String() + "/mcp"
}

// readHead reads a request's line and headers, up to the blank line.
func readHead(br *bufio.Reader) error {
	for {
		line, err := br.ReadString('\n')
		if err != nil || line == "\r\n" {
			return err
		}
	}
}

func post(ctx context.Context, hc *http.Client, url, body string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// A server that closes idle connections (Node's default keep-alive is 5 s)
// costs no call: the next request finds its connection closed before it
// writes, and dials a new one. Without the check, it fails with a reset.
func TestH1RedialsAfterTheServerClosesAnIdleConnection(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "got %s", b)
	}))
	srv.Config.IdleTimeout = 50 * time.Millisecond
	srv.Start()
	defer srv.Close()
	hc, _, dials := h1Client(t)
	ctx := context.Background()
	for i := range 3 {
		if got, err := post(ctx, hc, srv.URL, fmt.Sprint(i)); err != nil || got != fmt.Sprintf("got %d", i) {
			t.Fatalf("request %d: %q, %v", i, got, err)
		}
	}
	if n := dials.Load(); n != 1 {
		t.Fatalf("%d dials for 3 requests in a row, want 1", n)
	}
	time.Sleep(300 * time.Millisecond) // the server closes the idle connection
	for i := range 2 {
		if got, err := post(ctx, hc, srv.URL, "again"); err != nil || got != "got again" {
			t.Fatalf("request %d after the server closed the connection: %q, %v", i, got, err)
		}
	}
	if n := dials.Load(); n != 2 {
		t.Errorf("%d dials, want 2 (one more after the server closed the first)", n)
	}
}

// A response with "Connection: close", or a body closed before its end,
// leaves no connection in the pool; a body read to its end (chunked here)
// does.
func TestH1KeepsOnlyConnectionsReadToTheEnd(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/close":
			w.Header().Set("Connection", "close")
			io.WriteString(w, "bye")
		case "/long": // an SSE stream: wholeBodies leaves it to the reader
			w.Header().Set("Content-Type", "text/event-stream")
			for range 100 {
				io.WriteString(w, strings.Repeat("x", 1000))
				w.(http.Flusher).Flush()
			}
		default:
			io.WriteString(w, "ok")
		}
	}))
	defer srv.Close()
	hc, tr, dials := h1Client(t)
	ctx := context.Background()

	step := func(path string, wantDials int64) {
		t.Helper()
		if _, err := post(ctx, hc, srv.URL+path, ""); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if n := dials.Load(); n != wantDials {
			t.Fatalf("after %s: %d dials, want %d", path, n, wantDials)
		}
	}
	step("/", 1)
	step("/long", 1) // 100 KB, chunked, read to its end: the connection is kept
	step("/", 1)
	step("/close", 1)
	step("/", 2) // the server closed it: a new one

	// Closed after one read of a long body: the connection is dropped,
	// and Close does not wait for the rest.
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/long", nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := resp.Body.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	tr.mu.Lock()
	idle := len(tr.idle[canonicalAddr(req)])
	tr.mu.Unlock()
	if idle != 0 {
		t.Errorf("%d idle connections after a body closed half-read, want 0", idle)
	}
	step("/", 3)
}

// A call whose context ends while the server is still working returns at
// once with the context's error, and the next call gets a fresh connection.
func TestH1CancelWhileWaiting(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	defer close(release)
	hc, _, dials := h1Client(t)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := post(ctx, hc, srv.URL+"/slow", "")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow request: %v, want the context's deadline", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the cancelled request returned after %s", d)
	}
	if got, err := post(context.Background(), hc, srv.URL, ""); err != nil || got != "ok" {
		t.Fatalf("next request: %q, %v", got, err)
	}
	if n := dials.Load(); n != 2 {
		t.Errorf("%d dials, want 2 (the cancelled connection is not reused)", n)
	}
}

// A request the environment sends through a proxy, and any https request,
// goes to net/http's transport: h1 only speaks plain HTTP/1.1 directly.
func TestH1LeavesProxiedRequestsToNetHTTP(t *testing.T) {
	var proxied atomic.Value
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxied.Store(r.RequestURI) // a proxy sees the absolute URL
		io.WriteString(w, "via proxy")
	}))
	defer proxy.Close()
	hc, tr, dials := h1Client(t)
	pu, _ := url.Parse(proxy.URL)
	tr.next.Proxy = http.ProxyURL(pu)

	got, err := post(context.Background(), hc, "http://mcp.example.invalid/mcp", "")
	if err != nil || got != "via proxy" {
		t.Fatalf("%q, %v", got, err)
	}
	if uri, _ := proxied.Load().(string); uri != "http://mcp.example.invalid/mcp" {
		t.Errorf("the proxy saw %q", uri)
	}
	if n := dials.Load(); n != 0 {
		t.Errorf("h1 dialed %d times for a proxied request", n)
	}
}

// A server that hangs up without answering gives an error the pool reports
// as the connection closed mid-request (the call may have been delivered).
func TestH1ServerThatHangsUp(t *testing.T) {
	url := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		_, _ = br.ReadString('\n')
		c.Close() // no response at all
	})
	hc, _, _ := h1Client(t)
	_, err := post(context.Background(), hc, url, "{}")
	if err == nil {
		t.Fatal("a server that hung up without answering: no error")
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !strings.Contains(err.Error(), "reset") {
		t.Errorf("error %v: want an EOF or a reset, which the pool reports as the connection closed mid-request", err)
	}
}

// Quick answers, many in a row and side by side: a response that arrives
// before the call starts waiting for it is read, not waited for (the wait
// without a buffer must look at the socket, not only at readiness events).
func TestH1QuickAnswers(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	hc, _, _ := h1Client(t)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			for i := range 500 {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				got, err := post(ctx, hc, srv.URL, "")
				cancel()
				if err != nil || got != "ok" {
					errs <- fmt.Errorf("request %d: %q, %v", i, got, err)
					return
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// A server that refuses a request body too large, answering before it has
// read it and hanging up, gets its answer to the caller (here a 413 with its
// reason), not the broken write.
func TestH1EarlyAnswerToALargeBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		io.WriteString(w, "body over 1 MB")
	}))
	defer srv.Close()
	hc, _, _ := h1Client(t)
	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(strings.Repeat("x", 32<<20)))
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("a 32 MB body the server refused: %v, want its 413", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || string(b) != "body over 1 MB" {
		t.Errorf("got %d %q", resp.StatusCode, b)
	}
}

// A call whose context ends while its response body is being read gets the
// context's error (its cause), as net/http gives it: the pool and mcp-go
// tell a cancelled call from a broken server by it. An "i/o timeout" there
// reads as the server timing out.
func TestH1CancelWhileReadingTheBody(t *testing.T) {
	sent := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/sse" {
			w.Header().Set("Content-Type", "text/event-stream")
		} else {
			w.Header().Set("Content-Length", "100")
		}
		io.WriteString(w, "0123456789")
		w.(http.Flusher).Flush()
		sent <- struct{}{}
		<-r.Context().Done()
	}))
	defer srv.Close()
	hc, _, _ := h1Client(t)
	cause := errors.New("the job was cancelled")

	// A JSON answer, which wholeBodies reads before Do returns.
	ctx, cancel := context.WithCancelCause(context.Background())
	go func() { <-sent; cancel(cause) }()
	if _, err := post(ctx, hc, srv.URL+"/json", ""); !errors.Is(err, cause) {
		t.Errorf("cancelled while reading a body: %v, want the context's cause", err)
	}

	// An SSE stream, read by the caller.
	ctx, cancel = context.WithCancelCause(context.Background())
	defer cancel(nil)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/sse", nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	<-sent
	cancel(cause)
	if _, err := io.ReadAll(resp.Body); !errors.Is(err, cause) {
		t.Errorf("cancelled while reading an SSE stream: %v, want the context's cause", err)
	}
}

// A call cancelled while its request is still being written returns the
// context's error at once: the failed write is the cancellation, not a
// server that answered early, so no answer is waited for or taken.
func TestH1CancelWhileWriting(t *testing.T) {
	gotHeaders, cancelled, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	url := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		defer c.Close()
		if readHead(br) != nil {
			return
		}
		close(gotHeaders)
		<-cancelled // the body is not read: the client's write blocks
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		<-done
	})
	hc, _, _ := h1Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-gotHeaders
		cancel()
		close(cancelled)
	}()
	got, err := post(ctx, hc, url, strings.Repeat("x", 32<<20))
	close(done)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled while writing: %q, %v; want the context's error", got, err)
	}
}

// A header net/http's Transport refuses (a registry's headers are the
// operator's input: a name with a space, a value with a line break) is
// refused here too, with the header's name, not dropped or rewritten on the
// wire; and a URL without a host dials nothing.
func TestH1RefusesWhatNetHTTPRefuses(t *testing.T) {
	var got atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(fmt.Sprint(r.Header))
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	hc, _, dials := h1Client(t)
	for _, h := range [][2]string{
		{"X Token", "secret"},
		{"X-Token:", "secret"},
		{"X-Token", "secret\r\nX-Injected: 1"},
		{"X-Token", "secret\n"},
		{"X-Token", "a\x00b"},
	} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader("{}"))
		req.Header[h[0]] = []string{h[1]}
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			t.Errorf("header %q: %q went out as %v, want an error", h[0], h[1], got.Load())
			continue
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("%q", h[0])) || strings.Contains(err.Error(), "secret") {
			t.Errorf("header %q: error %q, want one naming the header and not its value", h[0], err)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, "http:///mcp", strings.NewReader("{}"))
	if resp, err := hc.Do(req); err == nil {
		resp.Body.Close()
		t.Error("a URL without a host: no error")
	}
	if n := dials.Load(); n != 0 {
		t.Errorf("%d dials for requests that should not go out", n)
	}
}

// http.Client.CloseIdleConnections reaches h1 through wholeBodies: the
// client's idle connections are closed, not left for the idle timeout.
func TestH1ClientClosesIdleConnections(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	hc, tr, _ := h1Client(t)
	if got, err := post(context.Background(), hc, srv.URL, ""); err != nil || got != "ok" {
		t.Fatalf("%q, %v", got, err)
	}
	idle := func() int {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		n := 0
		for _, cs := range tr.idle {
			n += len(cs)
		}
		return n
	}
	if n := idle(); n != 1 {
		t.Fatalf("%d idle connections after a call, want 1", n)
	}
	hc.CloseIdleConnections()
	if n := idle(); n != 0 {
		t.Errorf("%d idle connections after the client's CloseIdleConnections, want 0", n)
	}
}

// failingBody gives its bytes, then an error where io.EOF belongs (a source
// that fails as it ends, or on Close).
type failingBody struct{ r *strings.Reader }

func (b failingBody) Read(p []byte) (int, error) {
	if b.r.Len() == 0 {
		return 0, errors.New("the body's source failed")
	}
	return b.r.Read(p)
}

func (failingBody) Close() error { return nil }

// A request whose body fails after its last byte went out is not sent
// again on a new connection: only a connection that broke is the sign the
// server has not seen the request, and this server has it whole.
func TestH1NoRetryWhenTheBodyFails(t *testing.T) {
	release := make(chan struct{})
	var whole atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if len(b) > 2 && whole.Add(1) == 1 {
			<-release // slower than the client's look for an early answer
		}
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	defer close(release)
	hc, _, dials := h1Client(t)
	if _, err := post(context.Background(), hc, srv.URL, "{}"); err != nil {
		t.Fatal(err)
	}
	body := strings.Repeat("x", 64<<10)
	req, _ := http.NewRequest(http.MethodPost, srv.URL, failingBody{strings.NewReader(body)})
	req.ContentLength = int64(len(body))
	req.GetBody = func() (io.ReadCloser, error) { return failingBody{strings.NewReader(body)}, nil }
	resp, err := hc.Do(req)
	if err == nil {
		resp.Body.Close()
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("%d dials, want 1: the request went again (%d times whole at the server)", n, whole.Load())
	}
	if err == nil || !strings.Contains(err.Error(), "the body's source failed") {
		t.Errorf("error %v, want the body's", err)
	}
}

// A server that resets the connection while a large request body is being
// written gives an error the pool classifies as a reset, as through
// net/http: Request.Write wraps every failure while it copies the body in a
// type of net/http's own, which hides the ECONNRESET or EPIPE.
func TestH1ResetDuringTheBodyIsAReset(t *testing.T) {
	url := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		_ = readHead(br)
		c.(*net.TCPConn).SetLinger(0) // a reset, not a FIN
		c.Close()
	})
	hc, _, _ := h1Client(t)
	_, err := post(context.Background(), hc, url, strings.Repeat("x", 32<<20))
	if c, _ := transportClass(err); c != ClassReset {
		t.Errorf("reset while the body was written: %v, class %q, want %q", err, c, ClassReset)
	}
}

// A server's response headers are bounded as net/http bounds them (10 MB by
// default): a server that sends an endless header gets an error, not all
// of toolbus's memory.
func TestH1BoundsResponseHeaders(t *testing.T) {
	url := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		defer c.Close()
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		w := bufio.NewWriter(c)
		w.WriteString("HTTP/1.1 200 OK\r\nX-Big: ")
		w.WriteString(strings.Repeat("a", 11<<20))
		w.WriteString("\r\nContent-Length: 2\r\n\r\nok")
		w.Flush()
	})
	hc, _, _ := h1Client(t)
	got, err := post(context.Background(), hc, url, "{}")
	if err == nil || !strings.Contains(err.Error(), "response headers exceeded") {
		t.Errorf("11 MB of headers: %q, %v; want an error for headers too large", got, err)
	}
}

// Removing a server, and closing the pool, closes the idle connections to
// it at once (before, they stayed open for the 90 s idle timeout).
func TestRemoveClosesIdleConnections(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cc connCounter
	p, url := demoPool(t, &cc)
	if _, _, err := p.Call(ctx, "d", "echo", json.RawMessage(`{"message":"x"}`), CallOptions{}); err != nil {
		t.Fatal(err)
	}
	p.Remove("d")
	checkFor(t, 10*time.Second, "every connection to the removed server closed", func() bool {
		return cc.dials.Load() > 0 && cc.closed.Load() == cc.dials.Load()
	})

	// The server again, called, then the pool closed.
	p.Upsert(registry.Server{Name: "d", Transport: registry.TransportHTTP, URL: url, ProtocolVersion: "2025-11-25"})
	before := cc.dials.Load()
	if _, _, err := p.Call(ctx, "d", "echo", json.RawMessage(`{"message":"x"}`), CallOptions{}); err != nil {
		t.Fatal(err)
	}
	p.Close()
	checkFor(t, 3*time.Second, "every connection closed with the pool", func() bool {
		t.Logf("dials %d closed %d", cc.dials.Load(), cc.closed.Load())
		return cc.dials.Load() > before && cc.closed.Load() == cc.dials.Load()
	})
}
