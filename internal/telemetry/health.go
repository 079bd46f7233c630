package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/toolbus-dev/toolbus/subjects"
)

// ReadyTimeout bounds one readiness check's JetStream requests.
const ReadyTimeout = 2 * time.Second

// RequiredStreams are the streams a worker needs to take calls.
var RequiredStreams = []string{subjects.StreamCalls, subjects.StreamResults, subjects.StreamDead, subjects.StreamAdvisories}

// Health answers /healthz and /readyz for one process.
type Health struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	catalog atomic.Pointer[func() error]
}

// NewHealth checks readiness over nc and js.
func NewHealth(nc *nats.Conn, js jetstream.JetStream) *Health {
	return &Health{nc: nc, js: js}
}

// SetCatalog says the catalog is loaded; check returns why it no longer
// serves (nil while it does). Until it is called, the process is not ready.
func (h *Health) SetCatalog(check func() error) { h.catalog.Store(&check) }

// Ready returns nil when the process can take calls: NATS connected, the
// streams and the workers' consumer present, the catalog loaded. Otherwise
// the error says what is missing.
func (h *Health) Ready(ctx context.Context) error {
	if st := h.nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("NATS not connected (%s)", st)
	}
	ctx, cancel := context.WithTimeout(ctx, ReadyTimeout)
	defer cancel()
	for _, name := range RequiredStreams {
		if _, err := h.js.Stream(ctx, name); err != nil {
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				return fmt.Errorf("stream %s missing (run `toolbus serve`, which provisions it)", name)
			}
			return fmt.Errorf("stream %s: %w", name, err)
		}
	}
	if _, err := h.js.Consumer(ctx, subjects.StreamCalls, subjects.ConsumerWorkers); err != nil {
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("consumer %s on %s missing", subjects.ConsumerWorkers, subjects.StreamCalls)
		}
		return fmt.Errorf("consumer %s on %s: %w", subjects.ConsumerWorkers, subjects.StreamCalls, err)
	}
	check := h.catalog.Load()
	if check == nil {
		return errors.New("catalog not loaded yet")
	}
	if err := (*check)(); err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	return nil
}

// ServeHealthz answers 200 "ok" while the process runs.
func ServeHealthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte("ok\n"))
}

// ServeHTTP answers /readyz: 200 "ready", or 503 with the reason.
func (h *Health) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := h.Ready(r.Context()); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = fmt.Fprintf(w, "not ready: %v\n", err)
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// Mount serves /metrics (when m is set), /healthz and /readyz (when h is
// set) on mux.
func Mount(mux *http.ServeMux, m *Metrics, h *Health) {
	if m != nil {
		mux.Handle("GET /metrics", m.Handler())
	}
	mux.HandleFunc("GET /healthz", ServeHealthz)
	if h != nil {
		mux.Handle("GET /readyz", h)
	}
}
