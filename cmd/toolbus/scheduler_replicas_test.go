package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	gosync "sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/toolbus-dev/toolbus/internal/scheduler"
	"github.com/toolbus-dev/toolbus/internal/testbin"
	"github.com/toolbus-dev/toolbus/internal/testutil"
	"github.com/toolbus-dev/toolbus/subjects"
)

// proc is a background process the test may kill -9 (background() only
// stops with SIGTERM). One not killed must exit 0 on SIGTERM at the end.
type proc struct {
	name, log string
	cmd       *exec.Cmd
	done      chan struct{}
	err       error
	killed    bool
}

func startProc(t *testing.T, dir, name string, cmdline ...string) *proc {
	t.Helper()
	p := &proc{name: name, log: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	logf, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(cmdline[0], cmdline[1:]...)
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); logf.Close(); close(p.done) }()
	t.Cleanup(func() {
		if !p.killed {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
				if p.err != nil {
					t.Errorf("%s on SIGTERM: %v", name, p.err)
				}
			case <-time.After(20 * time.Second):
				_ = p.cmd.Process.Kill()
				<-p.done
				t.Errorf("%s did not stop on SIGTERM", name)
			}
		}
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			t.Logf("%s.log:\n%s", name, b)
		}
	})
	return p
}

func (p *proc) kill9() {
	p.killed = true
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// tickLog records the ticks an observer receives, by scheduled time.
type tickLog struct {
	mu      gosync.Mutex
	count   map[time.Time]int
	arrived map[time.Time]time.Time
}

func newTickLog() *tickLog {
	return &tickLog{count: map[time.Time]int{}, arrived: map[time.Time]time.Time{}}
}

func (l *tickLog) add(h nats.Header) {
	at, err := time.Parse(time.RFC3339, h.Get(scheduler.HeaderScheduledAt))
	if err != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.count[at]++
	if _, ok := l.arrived[at]; !ok {
		l.arrived[at] = time.Now()
	}
}

func (l *tickLog) last() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	var max time.Time
	for at := range l.count {
		if at.After(max) {
			max = at
		}
	}
	return max
}

// summary returns the ticks seen, those seen more than once, those missing
// between the first and the last, and the latest arrival after a tick's
// scheduled time.
func (l *tickLog) summary() (seen int, dups, lost []time.Time, maxLate time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ats []time.Time
	for at, n := range l.count {
		ats = append(ats, at)
		if n > 1 {
			dups = append(dups, at)
		}
		maxLate = max(maxLate, l.arrived[at].Sub(at))
	}
	sort.Slice(ats, func(i, j int) bool { return ats[i].Before(ats[j]) })
	if len(ats) > 0 {
		for at := ats[0]; !at.After(ats[len(ats)-1]); at = at.Add(time.Second) {
			if l.count[at] == 0 {
				lost = append(lost, at)
			}
		}
	}
	return len(ats), dups, lost, maxLate
}

// Issue 14: `toolbus serve` and two `toolbus schedules run` replicas on one
// NATS server, one schedule ticking every second. A core subscriber of
// agent.wake.a1 heard every tick once per replica; now only the leader
// publishes. The leader is killed -9 halfway: another replica takes over
// once its lease expires and publishes the ticks of the hand-over late.
// Neither a core subscriber nor a consumer of the stream sees a tick twice,
// and at most one is lost.
func TestSchedulerReplicasPublishEachTickOnce(t *testing.T) {
	ns := os.Getenv("TOOLBUS_NATS_SERVER")
	if ns == "" {
		t.Skip("TOOLBUS_NATS_SERVER not set: run via `make test` (it installs bin/nats-server)")
	}
	bin := testbin.Build(t, "github.com/toolbus-dev/toolbus/cmd/toolbus")
	dir := t.TempDir()
	port := testutil.FreePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	background(t, dir, "nats-server", ns, "-js", "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-sd", filepath.Join(dir, "js"))
	var nc *nats.Conn
	testutil.CheckFor(t, 20*time.Second, func() error {
		var err error
		nc, err = nats.Connect(url)
		return err
	})
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}

	host, _ := os.Hostname()
	procs := map[string]*proc{}
	srv := startProc(t, dir, "serve", bin, "serve", "--nats-url", url, "--bridge", "off")
	procs[fmt.Sprintf("%s-%d", host, srv.cmd.Process.Pid)] = srv // serve's scheduler goes by host-pid
	waitLog(t, srv.log, "worker consuming tool calls")

	// Both observers listen before the first tick.
	core := newTickLog()
	sub, err := nc.Subscribe("agent.wake.a1", func(m *nats.Msg) { core.add(m.Header) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream := newTickLog()
	oc, err := js.OrderedConsumer(ctx, subjects.StreamEvents, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"agent.wake.a1"}})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := oc.Consume(func(m jetstream.Msg) { stream.add(m.Headers()) })
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Stop()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	env := []string{"NATS_URL=" + url}
	if out, errOut, code := tb(t, env, "schedules", "add", "tick", "--spec", "*/1 * * * * *", "--kind", "wake", "--agent", "a1"); code != 0 {
		t.Fatalf("schedules add: exit %d\n%s%s", code, out, errOut)
	}
	for _, name := range []string{"r1", "r2"} {
		procs[name] = startProc(t, dir, name, bin, "schedules", "run", "--nats-url", url, "--name", name)
	}
	for _, name := range []string{"r1", "r2"} {
		waitLog(t, procs[name].log, "scheduler started")
	}
	start := time.Now()
	testutil.CheckFor(t, 30*time.Second, func() error {
		if n, _, _, _ := core.summary(); n < 4 {
			return fmt.Errorf("%d ticks heard", n)
		}
		return nil
	})

	out, errOut, code := tb(t, env, "schedules", "list", "--json")
	var list struct {
		Leader    *scheduler.LeaderInfo `json:"leader"`
		Schedules []scheduler.Info      `json:"schedules"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || list.Leader == nil || len(list.Schedules) == 0 {
		t.Fatalf("schedules list --json: exit %d\n%s%s", code, out, errOut)
	}
	if list.Leader.Expired || procs[list.Leader.Name] == nil {
		t.Fatalf("leader %+v is none of the replicas", list.Leader)
	}
	out, _, _ = tb(t, env, "schedules", "list")
	t.Logf("before the kills:\n%s", out)

	// Kill the leader, twice: serve's scheduler or a replica, then whoever
	// took over. Each hand-over is [kill, new leader].
	type handOver struct {
		from, to      string
		killed, leads time.Time
	}
	var hos []handOver
	leader := list.Leader.Name
	for range 2 {
		ho := handOver{from: leader, killed: time.Now()}
		procs[leader].kill9()
		testutil.CheckFor(t, 15*time.Second, func() error {
			l, err := scheduler.CurrentLeader(ctx, js, time.Now())
			if err != nil {
				return err
			}
			if l == nil || l.Name == ho.from || l.Expired {
				return fmt.Errorf("no new leader yet: %+v", l)
			}
			ho.to = l.Name
			return nil
		})
		ho.leads = time.Now()
		hos = append(hos, ho)
		leader = ho.to
		// Ticks go on for a few seconds under the new leader.
		until := time.Now().Add(3 * time.Second).Truncate(time.Second)
		testutil.CheckFor(t, 15*time.Second, func() error {
			if last := core.last(); last.Before(until) {
				return fmt.Errorf("last tick heard %v, waiting for %v", last, until)
			}
			return nil
		})
	}
	testutil.CheckFor(t, 30*time.Second, func() error {
		if s, c := stream.last(), core.last(); s.Before(c) {
			return fmt.Errorf("stream consumer at %v, core at %v", s, c)
		}
		return nil
	})
	_ = sub.Unsubscribe()
	cc.Stop()

	for _, ho := range hos {
		t.Logf("leader %s (%s) killed -9 at +%v; %s leads %v later (lease %v, renewed every %v)",
			ho.from, procs[ho.from].name, ho.killed.Sub(start).Round(time.Millisecond), ho.to, ho.leads.Sub(ho.killed).Round(time.Millisecond), scheduler.DefaultLease, scheduler.DefaultRenew)
	}
	for _, o := range []struct {
		name string
		l    *tickLog
	}{{"core subscriber", core}, {"stream consumer", stream}} {
		seen, dups, lost, late := o.l.summary()
		t.Logf("%s: %d ticks seen, %d twice, %d lost %v; latest arrival %v after its tick", o.name, seen, len(dups), len(lost), lost, late.Round(time.Millisecond))
		if len(dups) > 0 {
			t.Errorf("%s saw ticks twice: %v", o.name, dups)
		}
		// A lost tick counts against the hand-over it fell in.
		perHandOver := make([]int, len(hos))
		for _, at := range lost {
			i := -1
			for j, ho := range hos {
				if at.After(ho.killed.Add(-2*time.Second)) && at.Before(ho.leads.Add(time.Second)) {
					i = j
				}
			}
			if i < 0 {
				t.Errorf("%s lost tick %v, outside any hand-over", o.name, at)
				continue
			}
			if perHandOver[i]++; perHandOver[i] > 1 {
				t.Errorf("%s lost %d ticks at hand-over %d, want at most 1: %v", o.name, perHandOver[i], i+1, lost)
			}
		}
	}
	out, _, _ = tb(t, env, "schedules", "list")
	t.Logf("after:\n%s", out)
	if !strings.HasPrefix(out, "leader: "+leader+" since ") {
		t.Errorf("schedules list does not name %s as the leader", leader)
	}
}
