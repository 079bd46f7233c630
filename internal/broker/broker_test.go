package broker

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/toolbus-dev/toolbus/internal/streams"
	"github.com/toolbus-dev/toolbus/subjects"
)

// The embedded server starts on a data dir, takes in-process connections,
// and provisioning is idempotent (every start runs it).
func TestEmbeddedAndProvision(t *testing.T) {
	js := embedded(t, EmbeddedConfig{Port: -1, DataDir: t.TempDir()})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := 0; i < 2; i++ {
		if err := Provision(ctx, js, streams.Options{}, streams.WorkerConsumer(0, 0, 0)); err != nil {
			t.Fatalf("provision #%d: %v", i+1, err)
		}
	}
	for _, cfg := range streams.Streams(streams.Options{}) {
		if _, err := js.Stream(ctx, cfg.Name); err != nil {
			t.Errorf("stream %s: %v", cfg.Name, err)
		}
	}
}

// A taken port is reported at once, in words a person can act on.
func TestEmbeddedPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	_, err = StartEmbedded(EmbeddedConfig{Port: port, DataDir: t.TempDir()}, zerolog.Nop())
	if err == nil || !strings.Contains(err.Error(), "cannot listen on") {
		t.Fatalf("err = %v", err)
	}
}

// MonitorAddr serves nats-server's monitoring endpoints (what
// nats-surveyor and the NATS exporter read); a bad address is refused.
func TestEmbeddedMonitor(t *testing.T) {
	e, err := StartEmbedded(EmbeddedConfig{Port: -1, DataDir: t.TempDir(), MonitorAddr: "127.0.0.1:0"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown()
	u := e.MonitorURL()
	if u == "" {
		t.Fatal("no monitor URL")
	}
	resp, err := http.Get(u + "/jsz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var jsz struct {
		Config struct {
			StoreDir string `json:"store_dir"`
		} `json:"config"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&jsz); err != nil || resp.StatusCode != http.StatusOK || jsz.Config.StoreDir == "" {
		t.Fatalf("/jsz: status %d, %+v, %v", resp.StatusCode, jsz, err)
	}
	_, err = StartEmbedded(EmbeddedConfig{Port: -1, DataDir: t.TempDir(), MonitorAddr: "8222"}, zerolog.Nop())
	if err == nil || !strings.Contains(err.Error(), "want host:port") {
		t.Fatalf("bad monitor address: err = %v", err)
	}
}

// A TOOL_CALLS and workers' consumer made by an earlier toolbus (calls
// only, no message TTLs, a consumer taking every subject) are brought up
// to date by the provisioning `toolbus serve` runs: the keeper subject and
// TTLs on the stream, the consumer filtered to calls.
func TestProvisionUpdatesEarlierCallsStream(t *testing.T) {
	js := embedded(t, EmbeddedConfig{NoListen: true, DataDir: t.TempDir()})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	old := streams.Streams(streams.Options{})[0]
	if old.Name != subjects.StreamCalls {
		t.Fatalf("first stream is %s", old.Name)
	}
	old.Subjects, old.AllowMsgTTL = []string{subjects.ToolCallAll}, false
	if _, err := js.CreateStream(ctx, old); err != nil {
		t.Fatal(err)
	}
	oldCons := streams.WorkerConsumer(0, 0, 0)
	oldCons.FilterSubject = ""
	if _, err := js.CreateConsumer(ctx, subjects.StreamCalls, oldCons); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "tool.call.agent1.demo.echo", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if err := Provision(ctx, js, streams.Options{}, streams.WorkerConsumer(0, 0, 0)); err != nil {
		t.Fatalf("provision over the earlier layout: %v", err)
	}
	s, err := js.Stream(ctx, subjects.StreamCalls)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	if !cfg.AllowMsgTTL || len(cfg.Subjects) != 2 || cfg.Subjects[1] != subjects.CallsKeeper {
		t.Errorf("TOOL_CALLS after provisioning: subjects %v, message TTLs %v", cfg.Subjects, cfg.AllowMsgTTL)
	}
	if n := s.CachedInfo().State.Msgs; n != 1 {
		t.Errorf("%d calls after provisioning, want the queued one kept", n)
	}
	c, err := js.Consumer(ctx, subjects.StreamCalls, subjects.ConsumerWorkers)
	if err != nil {
		t.Fatal(err)
	}
	if f := c.CachedInfo().Config.FilterSubject; f != subjects.ToolCallAll {
		t.Errorf("workers' consumer filter %q, want %q", f, subjects.ToolCallAll)
	}
	if p := c.CachedInfo().NumPending; p != 1 {
		t.Errorf("the queued call is not pending on the updated consumer: %d", p)
	}
}

// embedded starts an embedded server for the test and connects to it.
func embedded(t *testing.T, cfg EmbeddedConfig) jetstream.JetStream {
	t.Helper()
	e, err := StartEmbedded(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	nc, err := e.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}
