package frontdoor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/toolbus-dev/toolbus/internal/streams"
	"github.com/toolbus-dev/toolbus/subjects"
)

// pollInterval is the interval tasks suggest between tasks/get.
const pollInterval int64 = 1000

// taskStore is the task index in KV (subjects.BucketTasks); the task's
// state is its bus call's: no result yet is working, the stored result in
// TOOL_RESULTS says how it ended.
type taskStore struct {
	kv  jetstream.KeyValue
	log zerolog.Logger
}

// taskRecord is what the index keeps of a task.
type taskRecord struct {
	CallID   string    `json:"call_id"`
	Agent    string    `json:"agent"`
	Server   string    `json:"server"`
	Tool     string    `json:"tool"`
	Name     string    `json:"name"` // as listed when it started
	Created  time.Time `json:"created"`
	TTL      int64     `json:"ttl_ms"`
	Deadline time.Time `json:"deadline"`
}

func openTasks(ctx context.Context, js jetstream.JetStream, log zerolog.Logger) (*taskStore, error) {
	kv, err := js.KeyValue(ctx, subjects.BucketTasks)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		// A bus provisioned before the front door existed.
		kv, err = js.CreateKeyValue(ctx, streams.TasksBucket(streams.Options{}))
	}
	if err != nil {
		return nil, fmt.Errorf("KV bucket %s (the front door's task index; `toolbus serve` provisions it): %w", subjects.BucketTasks, err)
	}
	return &taskStore{kv: kv, log: log}, nil
}

func taskKey(agent, callID string) string { return agent + "." + callID }

func (s *taskStore) get(ctx context.Context, agent, callID string) (*taskRecord, error) {
	if subjects.ValidateCallID(callID) != nil {
		return nil, jetstream.ErrKeyNotFound
	}
	e, err := s.kv.Get(ctx, taskKey(agent, callID))
	if err != nil {
		return nil, err
	}
	var r taskRecord
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// startTask publishes a task-augmented tools/call as a bus call and answers
// at once with the task, whose id is the call id.
func (p *profile) startTask(ctx context.Context, id json.RawMessage, ex *exposed, args []byte, callID string, taskParams json.RawMessage) []byte {
	var tp struct {
		TTL *int64 `json:"ttl"`
	}
	_ = json.Unmarshal(taskParams, &tp)
	now := time.Now().UTC()
	timeout := p.g.cfg.TaskTimeout
	ttl := timeout.Milliseconds()
	if tp.TTL != nil && *tp.TTL > 0 && *tp.TTL < timeout.Milliseconds() {
		timeout = time.Duration(*tp.TTL) * time.Millisecond
		ttl = *tp.TTL
	}
	rec := taskRecord{CallID: callID, Agent: p.agent, Server: ex.server, Tool: ex.tool, Name: ex.name, Created: now, TTL: ttl, Deadline: now.Add(timeout)}
	b, _ := json.Marshal(rec)
	if _, err := p.g.tasks.kv.Create(ctx, taskKey(p.agent, callID), b); err != nil {
		return errorResponse(id, mcp.INTERNAL_ERROR, fmt.Sprintf("toolbus: the task could not be recorded: %v", err))
	}
	subject, err := subjects.ToolCall(p.agent, ex.server, ex.tool)
	if err != nil {
		return errorResponse(id, mcp.INVALID_PARAMS, err.Error())
	}
	msg := nats.NewMsg(subject)
	msg.Data = args
	msg.Header.Set(subjects.HeaderCallID, callID)
	msg.Header.Set(subjects.HeaderDeadline, subjects.FormatDeadline(rec.Deadline))
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := p.g.js.PublishMsg(pctx, msg); err != nil {
		_ = p.g.tasks.kv.Delete(context.Background(), taskKey(p.agent, callID))
		return errorResponse(id, mcp.INTERNAL_ERROR, fmt.Sprintf("toolbus: the call was not accepted by the bus (is `toolbus serve` running?): %v", err))
	}
	p.g.log.Debug().Str("call_id", callID).Str("agent_id", p.agent).Str("server", ex.server).Str("tool", ex.tool).Msg("front door: task started")
	return resultResponse(id, mcp.CreateTaskResult{Task: rec.task(mcp.TaskStatusWorking, "", now)})
}

func (r *taskRecord) task(status mcp.TaskStatus, msg string, updated time.Time) mcp.Task {
	ttl, poll := r.TTL, pollInterval
	return mcp.Task{
		TaskId: r.CallID, Status: status, StatusMessage: msg,
		CreatedAt: r.Created.UTC().Format(time.RFC3339Nano), LastUpdatedAt: updated.UTC().Format(time.RFC3339Nano),
		TTL: &ttl, PollInterval: &poll,
	}
}

// status reads the task's state from its stored result.
func (p *profile) status(ctx context.Context, rec *taskRecord) (mcp.Task, *subjects.Result, error) {
	cl, err := p.g.client(p.agent)
	if err != nil {
		return mcp.Task{}, nil, err
	}
	res, err := stored(ctx, cl, rec.CallID)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		if lost := rec.lost(); lost != nil {
			return rec.task(mcp.TaskStatusFailed, statusMessage(lost), rec.Deadline), lost, nil
		}
		return rec.task(mcp.TaskStatusWorking, "", rec.Created), nil, nil
	}
	if err != nil {
		return mcp.Task{}, nil, err
	}
	return rec.task(taskStatus(res), statusMessage(res), rec.Created.Add(time.Duration(res.DurationMS*float64(time.Millisecond)))), res, nil
}

func taskStatus(res *subjects.Result) mcp.TaskStatus {
	switch {
	case res.Status == subjects.StatusOK:
		return mcp.TaskStatusCompleted
	case res.Error != nil && res.Error.Code == subjects.CodeCancelled:
		return mcp.TaskStatusCancelled
	}
	return mcp.TaskStatusFailed
}

func statusMessage(res *subjects.Result) string {
	switch {
	case res.Status == subjects.StatusToolError:
		return "the tool returned an error"
	case res.Error != nil:
		return errorText(res.CallID, res.Server, res.Tool, res.Error)
	}
	return ""
}

// resultGrace is how long past its deadline a task waits for the timeout
// result its worker stores before the front door calls it lost.
const resultGrace = time.Minute

// lost returns the error a task ends with when no result came by its
// deadline and the grace after it: the call never reached the bus (its
// gateway died between recording and publishing it) or its result expired.
func (r *taskRecord) lost() *subjects.Result {
	if time.Now().Before(r.Deadline.Add(resultGrace)) {
		return nil
	}
	return &subjects.Result{CallID: r.CallID, Agent: r.Agent, Server: r.Server, Tool: r.Tool, Status: subjects.StatusError,
		Error: &subjects.Error{Code: subjects.CodeTimeout, Message: fmt.Sprintf("no result by the task's deadline %s (and a minute's grace): the call was lost before it reached the bus, or its result expired", subjects.FormatDeadline(r.Deadline))}}
}

// taskMethod answers tasks/get, tasks/result, tasks/list and tasks/cancel
// for the profile's agent from the bus.
func (p *profile) taskMethod(ctx context.Context, m rpcMsg) []byte {
	var params struct {
		TaskID string  `json:"taskId"`
		Cursor *string `json:"cursor"`
	}
	_ = json.Unmarshal(m.Params, &params)
	if mcp.MCPMethod(m.Method) == mcp.MethodTasksList {
		return p.listTasks(ctx, m.ID, params.Cursor)
	}
	rec, err := p.g.tasks.get(ctx, p.agent, params.TaskID)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return errorResponse(m.ID, mcp.INVALID_PARAMS, fmt.Sprintf("no task %q for agent %q (tasks are kept %s)", params.TaskID, p.agent, "as long as results"))
	}
	if err != nil {
		return errorResponse(m.ID, mcp.INTERNAL_ERROR, fmt.Sprintf("toolbus: task index: %v", err))
	}
	switch mcp.MCPMethod(m.Method) {
	case mcp.MethodTasksGet:
		t, _, err := p.status(ctx, rec)
		if err != nil {
			return errorResponse(m.ID, mcp.INTERNAL_ERROR, fmt.Sprintf("toolbus: task %s: %v", rec.CallID, err))
		}
		return resultResponse(m.ID, mcp.GetTaskResult{Task: t})
	case mcp.MethodTasksCancel:
		t, _, err := p.status(ctx, rec)
		if err != nil {
			return errorResponse(m.ID, mcp.INTERNAL_ERROR, fmt.Sprintf("toolbus: task %s: %v", rec.CallID, err))
		}
		if t.Status.IsTerminal() {
			return errorResponse(m.ID, mcp.INVALID_PARAMS, fmt.Sprintf("task %s already ended (%s)", rec.CallID, t.Status))
		}
		cl, err := p.g.client(p.agent)
		if err == nil {
			err = cl.Cancel(rec.CallID)
		}
		if err != nil {
			return errorResponse(m.ID, mcp.INTERNAL_ERROR, fmt.Sprintf("toolbus: cancel task %s: %v", rec.CallID, err))
		}
		t.Status, t.StatusMessage = mcp.TaskStatusCancelled, "cancelled by the client"
		return resultResponse(m.ID, mcp.CancelTaskResult{Task: t})
	default: // tasks/result: wait for the result
		res, err := p.await(ctx, rec)
		if err != nil {
			return errorResponse(m.ID, mcp.REQUEST_INTERRUPTED, fmt.Sprintf("toolbus: task %s: no result yet: %v", rec.CallID, err))
		}
		out, err := callResult(res)
		if err != nil {
			return errorResponse(m.ID, mcp.INVALID_PARAMS, err.Error())
		}
		out.Meta = mergeMeta(out.Meta, mcp.WithRelatedTask(rec.CallID))
		return resultResponse(m.ID, out)
	}
}

func mergeMeta(m, related *mcp.Meta) *mcp.Meta {
	if m == nil {
		return related
	}
	if m.AdditionalFields == nil {
		m.AdditionalFields = map[string]any{}
	}
	for k, v := range related.AdditionalFields {
		m.AdditionalFields[k] = v
	}
	return m
}

// await returns the task's result once it is stored: it listens on the
// call's reply subject, then reads the stored result in case it came
// before.
func (p *profile) await(ctx context.Context, rec *taskRecord) (*subjects.Result, error) {
	sub, err := p.g.nc.SubscribeSync(subjects.ToolReply(p.agent, rec.CallID))
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := p.g.nc.FlushTimeout(10 * time.Second); err != nil {
		return nil, err
	}
	cl, err := p.g.client(p.agent)
	if err != nil {
		return nil, err
	}
	for {
		res, err := stored(ctx, cl, rec.CallID)
		if err == nil {
			return res, nil
		}
		if !errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil, err
		}
		if lost := rec.lost(); lost != nil {
			return lost, nil
		}
		// Wait for the delivery, and look again at least every few
		// seconds in case it was missed (a reconnect).
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = sub.NextMsgWithContext(wctx)
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return nil, err
		}
	}
}

// listTasks lists the agent's tasks, newest first, 50 a page.
func (p *profile) listTasks(ctx context.Context, id json.RawMessage, cursor *string) []byte {
	const page = 50
	lister, err := p.g.tasks.kv.ListKeysFiltered(ctx, p.agent+".*")
	if err != nil {
		return errorResponse(id, mcp.INTERNAL_ERROR, fmt.Sprintf("toolbus: task index: %v", err))
	}
	var recs []*taskRecord
	for k := range lister.Keys() {
		e, err := p.g.tasks.kv.Get(ctx, k)
		if err != nil {
			continue
		}
		var r taskRecord
		if json.Unmarshal(e.Value(), &r) == nil && r.Agent == p.agent {
			recs = append(recs, &r)
		}
	}
	sort.Slice(recs, func(i, j int) bool {
		if !recs[i].Created.Equal(recs[j].Created) {
			return recs[i].Created.After(recs[j].Created)
		}
		return recs[i].CallID < recs[j].CallID
	})
	start := 0
	if cursor != nil && *cursor != "" {
		n, err := strconv.Atoi(*cursor)
		if err != nil || n < 0 || n > len(recs) {
			return errorResponse(id, mcp.INVALID_PARAMS, fmt.Sprintf("invalid cursor %q", *cursor))
		}
		start = n
	}
	end := min(start+page, len(recs))
	out := mcp.ListTasksResult{Tasks: []mcp.Task{}}
	for _, r := range recs[start:end] {
		t, _, err := p.status(ctx, r)
		if err != nil {
			continue
		}
		out.Tasks = append(out.Tasks, t)
	}
	if end < len(recs) {
		out.NextCursor = mcp.Cursor(strconv.Itoa(end))
	}
	return resultResponse(id, out)
}

// stored reads a call's stored result, with a deadline of its own.
func stored(ctx context.Context, cl interface {
	Result(context.Context, string) (*subjects.Result, error)
}, callID string) (*subjects.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return cl.Result(ctx, callID)
}
