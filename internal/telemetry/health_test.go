package telemetry_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/toolbus-dev/toolbus/internal/broker"
	"github.com/toolbus-dev/toolbus/internal/natstest"
	"github.com/toolbus-dev/toolbus/internal/streams"
	"github.com/toolbus-dev/toolbus/internal/telemetry"
	"github.com/toolbus-dev/toolbus/subjects"
)

// standalone is a bin/nats-server process this test starts and kills by
// PID, on a fixed port and store dir so it comes back as the same server.
type standalone struct {
	t    *testing.T
	bin  string
	port int
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

func (s *standalone) start() {
	s.t.Helper()
	cmd := exec.Command(s.bin, "-a", "127.0.0.1", "-p", fmt.Sprint(s.port), "-js", "-sd", s.dir)
	log, err := os.Create(filepath.Join(s.dir, "nats-server.log"))
	if err != nil {
		s.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start nats-server: %v", err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); log.Close(); close(s.done) }()
	natstest.CheckFor(s.t, 30*time.Second, func() error {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.port))
		if err != nil {
			return err
		}
		return c.Close()
	})
}

func (s *standalone) kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill() // this test's own child, by PID
	<-s.done
	s.cmd = nil
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func readyz(url string) (int, string, error) {
	resp, err := http.Get(url + "/readyz")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// waitReadyz polls /readyz until it answers status with a body holding want.
func waitReadyz(t *testing.T, url string, status int, want string) {
	t.Helper()
	natstest.CheckFor(t, 30*time.Second, func() error {
		code, body, err := readyz(url)
		if err != nil {
			return err
		}
		if code != status || !strings.Contains(body, want) {
			return fmt.Errorf("/readyz: %d %q, want %d with %q", code, body, status, want)
		}
		return nil
	})
}

// /readyz says why it is not ready: catalog not loaded, a stream missing,
// NATS gone; and flips back when a killed nats-server returns. /healthz
// stays 200 throughout.
func TestReadyzFollowsNATS(t *testing.T) {
	t.Parallel()
	bin := os.Getenv("TOOLBUS_NATS_SERVER")
	if bin == "" {
		t.Skip("TOOLBUS_NATS_SERVER not set: this test kills a standalone nats-server (set it to bin/nats-server)")
	}
	ns := &standalone{t: t, bin: bin, port: freePort(t), dir: t.TempDir()}
	ns.start()
	t.Cleanup(ns.kill)

	nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", ns.port), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := broker.Provision(ctx, js, streams.Options{}, streams.WorkerConsumer(0, 0, 0)); err != nil {
		t.Fatal(err)
	}
	h := telemetry.NewHealth(nc, js)
	url := serveMetrics(t, nil, h)

	waitReadyz(t, url, http.StatusServiceUnavailable, "catalog not loaded yet")
	var broken atomic.Bool
	h.SetCatalog(func() error {
		if broken.Load() {
			return errors.New("catalog watch ended")
		}
		return nil
	})
	waitReadyz(t, url, http.StatusOK, "ready")

	broken.Store(true)
	waitReadyz(t, url, http.StatusServiceUnavailable, "catalog: catalog watch ended")
	broken.Store(false)

	if err := js.DeleteConsumer(ctx, subjects.StreamCalls, subjects.ConsumerWorkers); err != nil {
		t.Fatal(err)
	}
	waitReadyz(t, url, http.StatusServiceUnavailable, "consumer workers on TOOL_CALLS missing")
	if err := js.DeleteStream(ctx, subjects.StreamDead); err != nil {
		t.Fatal(err)
	}
	waitReadyz(t, url, http.StatusServiceUnavailable, "stream TOOL_DEAD missing")
	if err := broker.Provision(ctx, js, streams.Options{}, streams.WorkerConsumer(0, 0, 0)); err != nil {
		t.Fatal(err)
	}
	waitReadyz(t, url, http.StatusOK, "ready")

	ns.kill()
	waitReadyz(t, url, http.StatusServiceUnavailable, "NATS not connected")
	if resp, err := http.Get(url + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz while NATS is down: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	ns.start()
	waitReadyz(t, url, http.StatusOK, "ready")
}
