package faulttest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nuid"

	"github.com/toolbus-dev/toolbus/subjects"
)

func isOK(outcome string) bool { return outcome == string(subjects.StatusOK) }

// Recovery matchers (see loadGen.recovery).
func okResult(a arrival) bool    { return isOK(a.outcome) }
func redelivered(a arrival) bool { return a.attempt > 1 }
func anyResult(arrival) bool     { return true }

// waitProgress waits until cond holds, the run ends (done closes) or ctx
// ends; the last fails the test.
func waitProgress(t *testing.T, ctx context.Context, done <-chan struct{}, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-done:
			t.Logf("the run ended before %s", what)
			return
		case <-ctx.Done():
			t.Fatalf("scenario budget spent waiting for %s", what)
		case <-tick.C:
		}
	}
}

func waitDone(t *testing.T, ctx context.Context, done <-chan struct{}) {
	t.Helper()
	select {
	case <-done:
	case <-ctx.Done():
		<-done // the load generator stops with ctx
		t.Fatalf("scenario budget spent before every call had a result")
	}
}

// scenarioCtx bounds a scenario of n calls.
func scenarioCtx(t *testing.T, n int) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), budget(n))
	t.Cleanup(cancel)
	return ctx
}

// requireAll fails unless every call ended with outcome want.
func requireAll(t *testing.T, r *row, want string) {
	t.Helper()
	if r.Outcomes[want] != r.Sent {
		t.Errorf("want every one of %d calls %s, got %s", r.Sent, want, formatOutcomes(r.Outcomes))
	}
}

// TestFaultKillWorker: kill -9 one of three workers a third into the run
// and start it again two thirds in. Every call gets one result; count is
// idempotent, so running a call twice is allowed (and reported).
func TestFaultKillWorker(t *testing.T) {
	n := soakCalls(t)
	c := newCluster(t, clusterOptions{workers: 3, httpDemo: true})
	lg := newLoadGen(t, c.natsURL)
	ctx := scenarioCtx(t, n)
	calls := countCalls("kw", n, "demo-http", 2)

	start := time.Now()
	done := lg.start(ctx, calls, loadConc)
	waitProgress(t, ctx, done, "a third of the results", func() bool { return lg.delivered() >= n/3 })
	c.Kill9(1) // returns once the process is gone
	fault := time.Now()
	t.Logf("killed w2 (kill -9) after %d results", lg.delivered())
	waitProgress(t, ctx, done, "two thirds of the results", func() bool { return lg.delivered() >= 2*n/3 })
	c.StartWorker(1)
	t.Logf("restarted w2 after %d results", lg.delivered())
	waitDone(t, ctx, done)

	r := lg.report(c, "kill -9 worker", calls, time.Since(start))
	lg.recovery(r, fault, fault, okResult)
	r.record(t)
	r.check(t)
	requireAllRan(t, r)
	t.Logf("TOOL_CALLS left: %d", c.callsLeft(10*time.Second))
}

// TestFaultRestartNATS: kill -9 the NATS server a third into the run and
// start it again on the same port and store a second later. Workers and
// the load generator reconnect; a publish that failed is retried with the
// same call id until JetStream acknowledges it.
func TestFaultRestartNATS(t *testing.T) {
	restartNATS(t, "restart NATS", clusterOptions{workers: 3, httpDemo: true})
}

// TestFaultRestartNATSBeyondRunners: the same, with each worker's
// concurrency above its runners, so calls wait for the server on the
// pool's goroutine and are settled after the restart from there.
func TestFaultRestartNATSBeyondRunners(t *testing.T) {
	restartNATS(t, "restart NATS, beyond runners", clusterOptions{workers: 3, httpDemo: true, concurrency: beyondRunners})
}

func restartNATS(t *testing.T, name string, o clusterOptions) {
	n := soakCalls(t)
	c := newCluster(t, o)
	lg := newLoadGen(t, c.natsURL)
	ctx := scenarioCtx(t, n)
	calls := countCalls("rn", n, "demo-http", 2)

	start := time.Now()
	done := lg.start(ctx, calls, loadConc)
	waitProgress(t, ctx, done, "a third of the results", func() bool { return lg.delivered() >= n/3 })
	fault, back := c.killRestart(c.nats, lg)
	t.Logf("nats-server back after %v", back.Sub(fault).Round(time.Millisecond))
	waitDone(t, ctx, done)

	r := lg.report(c, name, calls, time.Since(start))
	lg.recovery(r, fault, back, okResult)
	r.record(t)
	r.check(t)
	requireAllRan(t, r)
	t.Logf("TOOL_CALLS left: %d", c.callsLeft(10*time.Second))
}

// TestFaultRestartMCPServer: kill -9 the streamable HTTP MCP server a third
// into the run and start it again a second later. Calls in flight are
// retried inside their deadline; each ends ok or server_unavailable, and
// after the restart the workers reconnect: a second batch all succeeds.
func TestFaultRestartMCPServer(t *testing.T) {
	restartMCPServer(t, "restart MCP server", clusterOptions{workers: 3, httpDemo: true})
}

// TestFaultRestartMCPServerBeyondRunners: the same, with calls waiting
// for the server on the pool's goroutine: the connection breaks under
// them there.
func TestFaultRestartMCPServerBeyondRunners(t *testing.T) {
	restartMCPServer(t, "restart MCP server, beyond runners", clusterOptions{workers: 3, httpDemo: true, concurrency: beyondRunners})
}

func restartMCPServer(t *testing.T, name string, o clusterOptions) {
	n := soakCalls(t)
	c := newCluster(t, o)
	lg := newLoadGen(t, c.natsURL)
	ctx := scenarioCtx(t, n)
	calls := countCalls("rm", n, "demo-http", 2)

	start := time.Now()
	done := lg.start(ctx, calls, loadConc)
	waitProgress(t, ctx, done, "a third of the results", func() bool { return lg.delivered() >= n/3 })
	c.KillHTTPDemo()
	fault := time.Now()
	t.Logf("killed the HTTP MCP server (kill -9) after %d results", lg.delivered())
	time.Sleep(time.Second) // the outage
	c.StartHTTPDemo()
	back := time.Now()
	t.Logf("HTTP MCP server back after %v, %d results so far", time.Since(fault).Round(time.Millisecond), lg.delivered())
	waitDone(t, ctx, done)
	wall := time.Since(start)

	// After the restart the fleet must work again.
	after := countCalls("rm-after", max(50, n/10), "demo-http", 2)
	lg.run(ctx, after, loadConc)

	r := lg.report(c, name, calls, wall)
	lg.recovery(r, fault, back, okResult)
	r.record(t)
	r.check(t)
	t.Logf("during the run: ok=%d server_unavailable=%d of %d", r.Outcomes["ok"], r.Outcomes[string(subjects.CodeServerUnavailable)], r.Sent)
	for o, k := range r.Outcomes {
		if o != string(subjects.StatusOK) && o != string(subjects.CodeServerUnavailable) {
			t.Errorf("%d calls ended %s; want only ok or server_unavailable", k, o)
		}
	}
	ra := lg.report(c, "after MCP restart", after, 0)
	ra.check(t)
	requireAll(t, ra, string(subjects.StatusOK))
	if r.Recovery < 0 {
		t.Errorf("no ok result after the MCP server was back")
	}
	t.Logf("TOOL_CALLS left: %d", c.callsLeft(10*time.Second))
}

// TestFaultPoison: a call whose tool kills the worker running it (the stdio
// demo's kill_parent) is delivered MaxDeliver times, killing a worker each
// time (a supervisor restarts them), then ends in TOOL_DEAD with its reason;
// its caller hears a dead_letter error and the normal calls all succeed.
func TestFaultPoison(t *testing.T) {
	n := soakCalls(t)
	c := newCluster(t, clusterOptions{workers: 3})
	stop := c.supervise(3, 4*maxDeliver)
	lg := newLoadGen(t, c.natsURL)
	ctx := scenarioCtx(t, n)
	poison := callSpec{id: "poison-" + nuid.Next(), server: "demo", tool: "kill_parent", args: []byte(`{}`)}
	normal := countCalls("pn", max(100, n/5), "demo", 20)
	calls := append([]callSpec{poison}, normal...)

	start := time.Now()
	done := lg.start(ctx, calls, loadConc)
	waitDone(t, ctx, done)
	wall := time.Since(start)
	deaths := stop()

	r := lg.report(c, "poison (kill_parent)", calls, wall)
	if len(deaths) > 0 {
		lg.recovery(r, deaths[0], deaths[0], redelivered)
	}
	r.record(t)
	r.check(t)
	t.Logf("workers killed by the poison call: %d (MaxDeliver %d)", len(deaths), maxDeliver)
	if len(deaths) == 0 {
		t.Errorf("kill_parent killed no worker: is the demo's kill_parent tool there?")
	}

	ps := lg.state(poison.id)
	res := ps.first
	if res == nil {
		res = ps.stored
	}
	if got := outcome(res); got != string(subjects.CodeDeadLetter) {
		t.Errorf("poison call: got %s, want an error result with code dead_letter", describe(res))
	} else {
		t.Logf("poison call's result: %s", describe(res))
	}
	okNormal := 0
	for _, cs := range normal {
		st := lg.state(cs.id)
		res := st.first
		if res == nil {
			res = st.stored
		}
		if isOK(outcome(res)) {
			okNormal++
		}
	}
	if okNormal != len(normal) {
		t.Errorf("%d of %d normal calls succeeded; want all", okNormal, len(normal))
	}

	// The dead letter: on tool.dead.<agent>.demo.kill_parent, with its reason.
	dead, _ := subjects.ToolDead(loadAgent, "demo", "kill_parent")
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if s, err := c.js.Stream(dctx, subjects.StreamDead); err != nil {
		t.Errorf("stream %s: %v", subjects.StreamDead, err)
	} else if m, err := s.GetLastMsgForSubject(dctx, dead); err != nil {
		t.Errorf("no dead letter on %s: %v", dead, err)
	} else {
		reason := m.Header.Get(subjects.HeaderDeadReason)
		t.Logf("dead letter on %s (%d bytes): headers %v", dead, len(m.Data), m.Header)
		if reason == "" {
			t.Errorf("dead letter on %s has no %s header", dead, subjects.HeaderDeadReason)
		}
	}
	// ... and gone from the work queue.
	if left := c.callsLeft(10 * time.Second); left != 0 {
		t.Errorf("%d messages left in %s after the run; the dead call must be removed", left, subjects.StreamCalls)
	}
}

// TestFaultDestructiveInterrupted: a destructive, non-idempotent call
// (destroy, 3s) whose worker is killed -9 one second into it is redelivered
// to another worker, which must not run it again: the result is
// outcome_unknown and the MCP server saw exactly one execution.
func TestFaultDestructiveInterrupted(t *testing.T) {
	c := newCluster(t, clusterOptions{workers: 1})
	c.WaitCatalog("demo", "destroy")
	lg := newLoadGen(t, c.natsURL)
	ctx := scenarioCtx(t, 1)
	id := "destroy-" + nuid.Next()
	call := callSpec{id: id, server: "demo", tool: "destroy", args: fmt.Appendf(nil, `{"key":%q,"ms":3000}`, id)}

	start := time.Now()
	done := lg.start(ctx, []callSpec{call}, 1)
	if !waitFor(30*time.Second, func() bool { return c.execCount(id) > 0 }) {
		t.Fatalf("destroy %s never started on w1", id)
	}
	time.Sleep(time.Second) // one second into the call
	if st := lg.state(id); st.replies > 0 {
		t.Fatalf("destroy finished before the kill: %+v", st.first)
	}
	c.Kill9(0)
	fault := time.Now()
	t.Logf("killed w1 (kill -9) one second into destroy")
	c.StartWorker(1)
	c.StartWorker(2)
	waitDone(t, ctx, done)

	r := lg.report(c, "destructive interrupted", []callSpec{call}, time.Since(start))
	lg.recovery(r, fault, fault, anyResult)
	r.record(t)
	r.check(t)
	st := lg.state(id)
	res := st.first
	if res == nil {
		res = st.stored
	}
	t.Logf("interrupted destroy's result: %s", describe(res))
	if got := outcome(res); got != string(subjects.CodeOutcomeUnknown) {
		t.Errorf("interrupted destroy: got %s; want an error result with code outcome_unknown", describe(res))
	} else if res.Worker == "w1" {
		t.Errorf("the result came from w1, which was killed")
	}
	if k := c.execCount(id); k != 1 {
		t.Errorf("destroy ran %d times on the MCP server; want exactly once", k)
	}
	t.Logf("TOOL_CALLS left: %d", c.callsLeft(10*time.Second))
}

// TestFaultDestroyNATSKill: destructive, non-idempotent calls (destroy)
// over streamable HTTP while the nats-server (sync_interval: always) is
// killed -9 and restarted. After the restart JetStream redelivers calls
// whose acks it lost, some with their delivery count reset to 1; the start
// mark (a KV create on every delivery) must keep each from running twice.
// Every call ends ok or outcome_unknown, none runs twice, none is lost.
func TestFaultDestroyNATSKill(t *testing.T) {
	n := max(60, soakCalls(t)/5)
	c := newCluster(t, clusterOptions{workers: 3, httpDemo: true})
	c.WaitCatalog("demo-http", "destroy")
	lg := newLoadGen(t, c.natsURL)
	ctx := scenarioCtx(t, n)
	calls := countCalls("dk", n, "demo-http", 20)
	for i := range calls {
		calls[i].tool = "destroy"
	}

	start := time.Now()
	done := lg.start(ctx, calls, loadConc)
	waitProgress(t, ctx, done, "a third of the results", func() bool { return lg.delivered() >= n/3 })
	fault, back := c.killRestart(c.nats, lg)
	waitDone(t, ctx, done)

	r := lg.report(c, "destroy, kill -9 NATS", calls, time.Since(start))
	lg.recovery(r, fault, back, okResult)
	r.record(t)
	r.check(t)
	if r.ExecGT1 > 0 {
		t.Errorf("%d destroy calls ran more than once", r.ExecGT1)
	}
	for o, k := range r.Outcomes {
		if o != string(subjects.StatusOK) && o != string(subjects.CodeOutcomeUnknown) {
			t.Errorf("%d destroy calls ended %s; want ok or outcome_unknown", k, o)
		}
	}
}

// TestFaultClusterLeaderKill: a 3-node JetStream cluster (every stream and
// bucket at replicas 3), three workers, destroy and count calls over
// streamable HTTP; a third in, the node leading TOOL_CALLS is killed -9 and
// restarted a second later. No call is lost or answered twice, no destroy
// runs twice, and no finished result is thrown away (the workers' writes
// retry across the leader change inside their budgets).
func TestFaultClusterLeaderKill(t *testing.T) {
	n := max(60, soakCalls(t)/5)
	c := newCluster(t, clusterOptions{workers: 3, httpDemo: true, natsSize: 3})
	c.WaitCatalog("demo-http", "destroy")
	lg := newLoadGen(t, c.natsURL)
	ctx := scenarioCtx(t, n)
	calls := countCalls("cl", n, "demo-http", 20)
	for i := range calls {
		if i%2 == 0 {
			calls[i].tool = "destroy"
		}
	}

	start := time.Now()
	done := lg.start(ctx, calls, loadConc)
	waitProgress(t, ctx, done, "a third of the results", func() bool { return lg.delivered() >= n/3 })
	leader := c.streamLeader(subjects.StreamCalls)
	t.Logf("%s leads %s", leader.name, subjects.StreamCalls)
	fault, back := c.killRestart(leader, lg)
	waitDone(t, ctx, done)

	r := lg.report(c, "3-node cluster, leader kill -9", calls, time.Since(start))
	lg.recovery(r, fault, back, okResult)
	r.record(t)
	r.check(t)
	exec := c.execCounts()
	for _, cs := range calls {
		if cs.tool == "destroy" && exec[cs.id] > 1 {
			t.Errorf("destroy %s ran %d times", cs.id, exec[cs.id])
		}
	}
	if r.Discarded > 0 {
		t.Errorf("%d finished results were thrown away", r.Discarded)
	}
}

// requireAllRan: every call was answered ok, and every ok ran on the MCP
// server (none answered without running).
func requireAllRan(t *testing.T, r *row) {
	t.Helper()
	requireAll(t, r, string(subjects.StatusOK))
	if r.Exec0 > 0 {
		t.Errorf("%d calls answered ok never ran on the MCP server", r.Exec0)
	}
}
