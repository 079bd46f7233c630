// Package control is toolbus's control service on NATS: each worker
// registers a NATS micro service named subjects.ControlService ("toolbus"),
// so `nats micro ls`, `nats micro info toolbus` and `nats micro stats
// toolbus` show the fleet, with endpoints for a worker's status and to
// pause or resume one MCP server on it. The client half (Discover, Status,
// Pause, Resume) is what `toolbus status` uses.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/toolbus-dev/toolbus/subjects"
)

// Fleet is what the control service steers: one worker and its pool.
type Fleet interface {
	// Status reports the worker; Name and ID are filled in by the service.
	Status() subjects.WorkerStatus
	// Pause stops taking calls to server; Resume takes them again. An
	// error wrapping ErrUnknownServer answers 404.
	Pause(server string) error
	Resume(server string) error
}

// Errors.
var (
	// ErrUnknownServer: the worker has no server of that name.
	ErrUnknownServer = errors.New("unknown server")
	// ErrBadRequest: the request body is not a ControlServerRequest.
	ErrBadRequest = errors.New("bad request")
	// ErrNoResponders: no worker answered on the subject.
	ErrNoResponders = errors.New("no worker answers there (stopped, or a wrong id?)")
)

// maxBody bounds a control request; a server name is at most a few hundred bytes.
const maxBody = 4096

// Config describes the registering worker.
type Config struct {
	// Name is the worker's name, in the service metadata ("worker").
	Name string
	// Version is a SemVer version (default "0.0.0").
	Version string
}

// Service is one worker's registration.
type Service struct {
	svc  micro.Service
	nc   *nats.Conn
	name string
}

// Start registers the control service for f on nc.
func Start(nc *nats.Conn, f Fleet, cfg Config) (*Service, error) {
	if cfg.Version == "" {
		cfg.Version = "0.0.0"
	}
	svc, err := micro.AddService(nc, micro.Config{
		Name:        subjects.ControlService,
		Version:     cfg.Version,
		Description: "toolbus worker: status, pause and resume of MCP servers",
		Metadata:    map[string]string{"worker": cfg.Name},
	})
	if err != nil {
		return nil, fmt.Errorf("control service: %w", err)
	}
	s := &Service{svc: svc, nc: nc, name: cfg.Name}
	id := svc.Info().ID
	// Each endpoint's subject ends with this instance's id: no queue group
	// needed, one worker answers.
	add := func(name, subject string, h micro.HandlerFunc) error {
		return svc.AddEndpoint(name, h, micro.WithEndpointSubject(subject), micro.WithEndpointQueueGroupDisabled())
	}
	err = errors.Join(
		add("status", subjects.ControlStatus(id), func(r micro.Request) {
			st := f.Status()
			st.Name, st.ID = s.name, id
			_ = r.RespondJSON(st)
		}),
		add("pause", subjects.ControlPause(id), s.serverHandler(f.Pause)),
		add("resume", subjects.ControlResume(id), s.serverHandler(f.Resume)),
	)
	if err != nil {
		_ = svc.Stop()
		return nil, fmt.Errorf("control service: %w", err)
	}
	// Listed once Start returns: the server has the subscriptions.
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		_ = svc.Stop()
		return nil, fmt.Errorf("control service: %w", err)
	}
	return s, nil
}

// Run registers the service and keeps it until ctx ends.
func Run(ctx context.Context, nc *nats.Conn, f Fleet, cfg Config) error {
	s, err := Start(nc, f, cfg)
	if err != nil {
		return err
	}
	<-ctx.Done()
	return s.Stop()
}

// ID is the micro instance id, the last token of the endpoints' subjects.
func (s *Service) ID() string { return s.svc.Info().ID }

// Stop deregisters the service. Stopping twice is fine.
func (s *Service) Stop() error {
	if s.svc.Stopped() {
		return nil
	}
	if err := s.svc.Stop(); err != nil {
		return err
	}
	// Unlisted once Stop returns, as far as the server can tell.
	if err := s.nc.FlushTimeout(5 * time.Second); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		return err
	}
	return nil
}

func (s *Service) serverHandler(do func(string) error) micro.HandlerFunc {
	return func(r micro.Request) {
		server, err := decodeServer(r.Data())
		if err != nil {
			_ = r.Error("400", err.Error(), nil)
			return
		}
		if err := do(server); err != nil {
			code := "500"
			if errors.Is(err, ErrUnknownServer) {
				code = "404"
			}
			_ = r.Error(code, err.Error(), nil)
			return
		}
		_ = r.RespondJSON(subjects.ControlServerRequest{Server: server})
	}
}

func decodeServer(data []byte) (string, error) {
	if len(data) > maxBody {
		return "", fmt.Errorf("%w: body of %d bytes, at most %d", ErrBadRequest, len(data), maxBody)
	}
	var req subjects.ControlServerRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return "", fmt.Errorf(`%w: want {"server":"<name>"}: %v`, ErrBadRequest, err)
	}
	if _, err := subjects.EscapeToken(req.Server); err != nil {
		return "", fmt.Errorf("%w: server: %v", ErrBadRequest, err)
	}
	return req.Server, nil
}

// Instance is one registered worker, as discovery finds it.
type Instance struct {
	ID       string            `json:"id"`
	Name     string            `json:"name"`
	Version  string            `json:"version"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// DiscoverWait is how long Discover waits for the first answer, and
// discoverQuiet how long after the last answer it waits for more.
const (
	DiscoverWait  = time.Second
	discoverQuiet = 300 * time.Millisecond
)

// Discover asks every registered worker for its info ($SRV.INFO.toolbus)
// and returns those that answered: it waits up to wait for a first answer
// and gathers until no more arrive for a moment. No worker is no error.
func Discover(ctx context.Context, nc *nats.Conn, wait time.Duration) ([]Instance, error) {
	if wait <= 0 {
		wait = DiscoverWait
	}
	subject, err := micro.ControlSubject(micro.InfoVerb, subjects.ControlService, "")
	if err != nil {
		return nil, err
	}
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(subject, inbox, nil); err != nil {
		return nil, err
	}
	var out []Instance
	seen := map[string]bool{}
	timeout := wait
	for {
		mctx, cancel := context.WithTimeout(ctx, timeout)
		msg, err := sub.NextMsgWithContext(mctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return out, ctx.Err()
			}
			return out, nil // quiet: everyone answered
		}
		timeout = discoverQuiet
		var info micro.Info
		if json.Unmarshal(msg.Data, &info) != nil || info.ID == "" || seen[info.ID] {
			continue
		}
		seen[info.ID] = true
		out = append(out, Instance{ID: info.ID, Name: info.Metadata["worker"], Version: info.Version, Metadata: info.Metadata})
	}
}

// Status asks the worker with instance id for its status.
func Status(ctx context.Context, nc *nats.Conn, id string) (subjects.WorkerStatus, error) {
	var st subjects.WorkerStatus
	data, err := request(ctx, nc, subjects.ControlStatus(id), nil)
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("worker %s status: %w", id, err)
	}
	return st, nil
}

// Pause asks the worker with instance id to stop taking calls to server.
func Pause(ctx context.Context, nc *nats.Conn, id, server string) error {
	return serverRequest(ctx, nc, subjects.ControlPause(id), server)
}

// Resume asks the worker with instance id to take calls to server again.
func Resume(ctx context.Context, nc *nats.Conn, id, server string) error {
	return serverRequest(ctx, nc, subjects.ControlResume(id), server)
}

func serverRequest(ctx context.Context, nc *nats.Conn, subject, server string) error {
	body, err := json.Marshal(subjects.ControlServerRequest{Server: server})
	if err != nil {
		return err
	}
	_, err = request(ctx, nc, subject, body)
	return err
}

// RemoteError is an error a worker answered with.
type RemoteError struct {
	Code        string // "400", "404", "500"
	Description string
}

func (e *RemoteError) Error() string { return e.Description + " (" + e.Code + ")" }

// Is makes a 404 match ErrUnknownServer and a 400 ErrBadRequest.
func (e *RemoteError) Is(target error) bool {
	return (e.Code == "404" && target == ErrUnknownServer) || (e.Code == "400" && target == ErrBadRequest)
}

func request(ctx context.Context, nc *nats.Conn, subject string, body []byte) ([]byte, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	msg, err := nc.RequestWithContext(ctx, subject, body)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return nil, fmt.Errorf("%s: %w", subject, ErrNoResponders)
		}
		return nil, fmt.Errorf("%s: %w", subject, err)
	}
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		return nil, &RemoteError{Code: code, Description: msg.Header.Get(micro.ErrorHeader)}
	}
	return msg.Data, nil
}
