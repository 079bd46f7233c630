package client_test

import (
	"context"
	"os"
	"path/filepath"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/toolbus-dev/toolbus/client"
	"github.com/toolbus-dev/toolbus/internal/broker"
	"github.com/toolbus-dev/toolbus/internal/demo"
	"github.com/toolbus-dev/toolbus/internal/mcppool"
	"github.com/toolbus-dev/toolbus/internal/registry"
	"github.com/toolbus-dev/toolbus/internal/streams"
	"github.com/toolbus-dev/toolbus/internal/worker"
)

// startToolbus runs in this process what `toolbus serve` runs for a call:
// a NATS server with JetStream on a temporary directory, listening on a
// free loopback port, the demo MCP server over streamable HTTP on
// loopback, registered as "demo", and a worker. It returns the NATS URL
// and a function that stops it all.
func startToolbus() (url string, stop func(), err error) {
	var undo []func()
	stop = func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	log := zerolog.Nop()
	dir, err := os.MkdirTemp("", "toolbus-example-")
	if err != nil {
		return "", nil, err
	}
	undo = append(undo, func() { os.RemoveAll(dir) })
	emb, err := broker.StartEmbedded(broker.EmbeddedConfig{Port: -1, DataDir: filepath.Join(dir, "data")}, log)
	if err != nil {
		return "", nil, err
	}
	undo = append(undo, emb.Shutdown)
	ctx, cancel := context.WithCancel(context.Background())
	undo = append(undo, cancel)
	demoURL, stopDemo, err := demo.Serve(ctx, demo.TransportHTTP, "127.0.0.1:0", demo.Options{})
	if err != nil {
		return "", nil, err
	}
	undo = append(undo, stopDemo)

	nc, err := emb.Connect("worker")
	if err != nil {
		return "", nil, err
	}
	undo = append(undo, nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		return "", nil, err
	}
	var cfg worker.Config
	if err := broker.Provision(ctx, js, streams.Options{}, cfg.ConsumerConfig()); err != nil {
		return "", nil, err
	}
	pool := mcppool.New(log)
	undo = append(undo, func() { pool.Close() })
	pool.Upsert(registry.Server{Name: "demo", Transport: registry.TransportHTTP, URL: demoURL})
	w := worker.New(nc, js, pool, cfg, log)
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	undo = append(undo, func() { cancel(); <-done })
	return emb.ClientURL(), stop, nil
}

// startClient starts a toolbus (startToolbus) and a client on it with opts;
// stop closes both.
func startClient(opts ...client.Option) (c *client.Client, stop func(), err error) {
	url, stopBus, err := startToolbus()
	if err != nil {
		return nil, nil, err
	}
	nc, err := nats.Connect(url)
	if err != nil {
		stopBus()
		return nil, nil, err
	}
	if c, err = client.New(nc, opts...); err != nil {
		nc.Close()
		stopBus()
		return nil, nil, err
	}
	return c, func() { c.Close(); nc.Close(); stopBus() }, nil
}
