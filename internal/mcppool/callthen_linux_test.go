package mcppool

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// CallThen is for a caller that does not wait (the worker's runners): it
// returns once the request is on its way, not after a connect the server
// does not answer. Here the server has stopped accepting connections and
// its accept queue is full, so a new connection's SYN goes unanswered
// (as to a host that went away): a CallThen that dialled on the caller's
// goroutine held it until the call's deadline.
func TestCallThenDoesNotWaitForAConnection(t *testing.T) {
	ln := stalledListener(t)
	s := &scripted{answers: map[string]json.RawMessage{}, answered: make(chan struct{}, 16)}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.srv.Listener = ln
	s.srv.Start()
	t.Cleanup(s.srv.Close)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	var warm sync.Once
	s.call = func(w http.ResponseWriter, r *http.Request, id string, body []byte) {
		first := false
		warm.Do(func() { first = true })
		if first {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, textResult(id, "warm"))
			return
		}
		select { // the tool takes its time
		case <-r.Context().Done():
		case <-release:
		}
	}
	p := s.pool(t)
	t.Cleanup(func() { ln.Close() }) // before the pool's: its close request is refused, not left unanswered
	if _, _, err := waitingApart(p, context.Background(), "s", "t", nil, CallOptions{}); err != nil {
		t.Fatal(err) // the session is open, and a connection idle
	}
	ln.stall()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		start := time.Now()
		p.CallThen(ctx, "s", "t", nil, CallOptions{}, func(json.RawMessage, bool, error) { wg.Done() })
		if took := time.Since(start); took > 20*time.Second { // a wait for the connect lasts until the deadline
			t.Errorf("CallThen %d returned after %v: it waited for the server", i, took)
		}
	}
	cancel()
	wg.Wait()
}

// stallingListener is a listener with an accept queue of one connection
// that stops accepting when told (stall): further connects are not
// answered.
type stallingListener struct {
	net.Listener
	once    sync.Once
	stalled chan struct{}
	closed  chan struct{}
}

func stalledListener(t *testing.T) *stallingListener {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "listener")
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	return &stallingListener{Listener: ln, stalled: make(chan struct{}), closed: make(chan struct{})}
}

func (l *stallingListener) stall() { close(l.stalled) }

func (l *stallingListener) Accept() (net.Conn, error) {
	select {
	case <-l.stalled:
		<-l.closed
		return nil, net.ErrClosed
	default:
	}
	return l.Listener.Accept()
}

func (l *stallingListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}
