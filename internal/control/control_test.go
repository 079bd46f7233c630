package control

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/toolbus-dev/toolbus/internal/natstest"
	"github.com/toolbus-dev/toolbus/subjects"
)

// fleet is the smallest Fleet: a set of servers, some paused. The real one
// is the worker and its pool, wired in cmd/toolbus.
type fleet struct {
	mu      gosync.Mutex
	servers map[string]bool // name -> paused
}

func newFleet(names ...string) *fleet {
	f := &fleet{servers: map[string]bool{}}
	for _, n := range names {
		f.servers[n] = false
	}
	return f
}

func (f *fleet) Status() subjects.WorkerStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	var st subjects.WorkerStatus
	for n, p := range f.servers {
		st.Servers = append(st.Servers, subjects.WorkerServerStatus{Server: n, Breaker: "closed", Paused: p})
		if p {
			st.Paused = append(st.Paused, n)
		}
	}
	slices.Sort(st.Paused)
	return st
}

func (f *fleet) set(server string, paused bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.servers[server]; !ok {
		return fmt.Errorf("%w %q", ErrUnknownServer, server)
	}
	f.servers[server] = paused
	return nil
}

func (f *fleet) Pause(s string) error  { return f.set(s, true) }
func (f *fleet) Resume(s string) error { return f.set(s, false) }

func start(t *testing.T, srv *natstest.Server, name string, f Fleet) *Service {
	t.Helper()
	s, err := Start(srv.Conn(t), f, Config{Name: name, Version: "1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	return s
}

func TestDiscoverStatusPauseResume(t *testing.T) {
	t.Parallel()
	srv := natstest.StartBare(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	fa, fb := newFleet("demo", "files"), newFleet("demo")
	a := start(t, srv, "worker-a", fa)
	b := start(t, srv, "worker-b", fb)

	// Discover stops 300 ms after the last answer: on a loaded machine
	// one worker's answer can come later than that, so ask again until
	// both answered.
	natstest.CheckFor(t, 20*time.Second, func() error {
		found, err := Discover(ctx, srv.NC, 0)
		if err != nil {
			return err
		}
		names := map[string]string{}
		for _, in := range found {
			names[in.ID] = in.Name
		}
		if len(found) != 2 || names[a.ID()] != "worker-a" || names[b.ID()] != "worker-b" {
			return fmt.Errorf("discovered %+v", found)
		}
		return nil
	})

	if err := Pause(ctx, srv.NC, a.ID(), "files"); err != nil {
		t.Fatal(err)
	}
	st, err := Status(ctx, srv.NC, a.ID())
	if err != nil {
		t.Fatal(err)
	}
	if st.Name != "worker-a" || st.ID != a.ID() || !slices.Equal(st.Paused, []string{"files"}) {
		t.Fatalf("status of a after pause: %+v", st)
	}
	// Only the addressed worker paused.
	if st, err := Status(ctx, srv.NC, b.ID()); err != nil || len(st.Paused) != 0 {
		t.Fatalf("status of b: %+v, %v", st, err)
	}
	if err := Resume(ctx, srv.NC, a.ID(), "files"); err != nil {
		t.Fatal(err)
	}
	if st, _ := Status(ctx, srv.NC, a.ID()); len(st.Paused) != 0 {
		t.Fatalf("after resume: %+v", st)
	}

	// Bad input gets an error that says what to send.
	err = Pause(ctx, srv.NC, a.ID(), "nope")
	if !errors.Is(err, ErrUnknownServer) {
		t.Fatalf("pause unknown server: %v", err)
	}
	err = Pause(ctx, srv.NC, a.ID(), "")
	if !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("pause empty name: %v", err)
	}
	msg, err := srv.NC.RequestWithContext(ctx, subjects.ControlPause(a.ID()), []byte("demo"))
	if err != nil || msg.Header.Get("Nats-Service-Error-Code") != "400" || !strings.Contains(msg.Header.Get("Nats-Service-Error"), `want {"server":"<name>"}`) {
		t.Fatalf("raw bad body: %v %v", msg, err)
	}
	if _, err := Status(ctx, srv.NC, "NOSUCHID"); !errors.Is(err, ErrNoResponders) {
		t.Fatalf("status of a missing worker: %v", err)
	}

	// A stopped worker leaves the fleet.
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := b.Stop(); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	natstest.CheckFor(t, 20*time.Second, func() error {
		found, err := Discover(ctx, srv.NC, 0)
		if err != nil || len(found) != 1 || found[0].ID != a.ID() {
			return fmt.Errorf("after b stopped: %+v %v", found, err)
		}
		return nil
	})
}

// Run serves until its context ends, then deregisters.
func TestRunStops(t *testing.T) {
	t.Parallel()
	srv := natstest.StartBare(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, srv.Conn(t), newFleet("demo"), Config{Name: "w"}) }()
	natstest.CheckFor(t, 10*time.Second, func() error {
		found, err := Discover(context.Background(), srv.NC, 200*time.Millisecond)
		if err != nil || len(found) != 1 {
			return fmt.Errorf("found %d: %v", len(found), err)
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if found, _ := Discover(context.Background(), srv.NC, 200*time.Millisecond); len(found) != 0 {
		t.Fatalf("still listed after Run returned: %+v", found)
	}
}

// The real natscli lists the workers: `nats micro ls` and `nats micro
// info toolbus`, as the README tells operators to run.
func TestNatsCLIListsWorkers(t *testing.T) {
	t.Parallel()
	cli := os.Getenv("TOOLBUS_NATS_CLI")
	if cli == "" {
		t.Skip("TOOLBUS_NATS_CLI not set: run via `make test` (it builds bin/nats)")
	}
	srv := natstest.StartBare(t)
	a := start(t, srv, "worker-a", newFleet("demo"))
	b := start(t, srv, "worker-b", newFleet("demo"))
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(cli, append([]string{"--server", srv.URL, "--timeout", "5s"}, args...)...)
		cmd.Env = append(os.Environ(), "NATS_CONTEXT=", "HOME="+t.TempDir())
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("nats %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	ls := run("micro", "ls")
	if !strings.Contains(ls, subjects.ControlService) {
		t.Fatalf("nats micro ls:\n%s", ls)
	}
	// info shows one instance, whichever answers first, with its endpoints.
	info := run("micro", "info", subjects.ControlService, "--json")
	id := a.ID()
	if !strings.Contains(info, id) {
		id = b.ID()
	}
	for _, want := range []string{subjects.ControlStatus(id), subjects.ControlPause(id), subjects.ControlResume(id)} {
		if !strings.Contains(info, want) {
			t.Errorf("nats micro info lacks %s:\n%s", want, info)
		}
	}
	// Both instances by id.
	ls = run("micro", "ls", subjects.ControlService)
	for _, id := range []string{a.ID(), b.ID()} {
		if !strings.Contains(ls, id) {
			t.Errorf("nats micro ls toolbus lacks instance %s:\n%s", id, ls)
		}
	}
}
