// Package natstest starts real nats-servers for tests: in-process with
// JetStream on a temp dir, provisioned with toolbus's streams and buckets.
package natstest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/toolbus-dev/toolbus/internal/broker"
	"github.com/toolbus-dev/toolbus/internal/streams"
	"github.com/toolbus-dev/toolbus/internal/testutil"
)

// Server is a running in-process test server with a connection to it.
type Server struct {
	Srv *server.Server
	NC  *nats.Conn
	JS  jetstream.JetStream
	URL string
}

// Start runs nats-server with JetStream on t.TempDir(), on a free loopback
// port, provisions toolbus's streams, consumer and buckets, and stops it all
// in t.Cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	s := StartBare(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := broker.Provision(ctx, s.JS, streams.Options{}, streams.WorkerConsumer(0, 0, 0)); err != nil {
		t.Fatalf("provision: %v", err)
	}
	return s
}

// StartBare runs the server without provisioning anything.
func StartBare(t testing.TB) *Server {
	t.Helper()
	opts := &server.Options{
		Host:       "127.0.0.1",
		Port:       -1,
		JetStream:  true,
		StoreDir:   t.TempDir(),
		NoLog:      true,
		NoSigs:     true,
		MaxPayload: broker.DefaultMaxPayload,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats-server: %v", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	t.Cleanup(func() {
		nc.Close()
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return &Server{Srv: srv, NC: nc, JS: js, URL: srv.ClientURL()}
}

// Conn opens another connection to s, closed in t.Cleanup.
func (s *Server) Conn(t testing.TB) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.URL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// CheckFor is testutil.CheckFor, kept until the worker's and mcppool's
// tests move to it; use testutil.CheckFor.
func CheckFor(t testing.TB, d time.Duration, f func() error) {
	t.Helper()
	testutil.CheckFor(t, d, f)
}
