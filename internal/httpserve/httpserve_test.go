package httpserve

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// A request in flight when the context ends finishes; Run then returns nil.
func TestRunFinishesRequestsInFlight(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	inHandler, release := make(chan struct{}), make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(inHandler)
		<-release
		_, _ = io.WriteString(w, "done")
	})}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- Run(ctx, srv, ln, 10*time.Second) }()

	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String())
		if err != nil {
			got <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- string(b)
	}()
	<-inHandler
	cancel()
	close(release)
	if body := <-got; body != "done" {
		t.Fatalf("request in flight at shutdown got %q, want done", body)
	}
	if err := <-ran; err != nil {
		t.Fatalf("Run after a clean shutdown: %v", err)
	}
}

// A listener that fails makes Run return the error at once.
func TestRunReturnsServeError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	if err := Run(context.Background(), &http.Server{}, ln, time.Second); err == nil {
		t.Fatal("Run on a closed listener returned nil")
	}
}

// A request still running when the grace is spent is cut, and Run
// returns: a stream that never ends does not hold shutdown forever.
func TestRunCutsWhatOutlivesTheGrace(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	inHandler := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		close(inHandler)
		<-r.Context().Done() // a stream: ends only when cut
	})}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- Run(ctx, srv, ln, 100*time.Millisecond) }()
	resp, err := http.Get("http://" + ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	<-inHandler
	cancel()
	if err := <-ran; err != nil {
		t.Fatalf("Run after cutting a stream: %v", err)
	}
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Fatal("the stream was not cut")
	}
}
