// Package telemetry owns what an operator scrapes: toolbus's Prometheus
// metrics (on a registry of their own, with the Go and process collectors),
// and the /healthz and /readyz checks. It hears the worker through
// worker.Observer, the scheduler and bridge through their hooks, the pool
// through a stats function, and the sync by watching the sync status
// entries in the servers bucket, so none of them imports it.
package telemetry

import (
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/toolbus-dev/toolbus/internal/worker"
	"github.com/toolbus-dev/toolbus/subjects"
)

// Unknown is the label value of a server, tool, hook or code that is not
// known: names chosen by callers never become label values of their own,
// so a caller cannot grow the number of series.
const Unknown = "_unknown"

// PoolServerStats is one MCP server as the session pool sees it.
type PoolServerStats struct {
	Server   string
	Sessions int
	// Breaker is the circuit breaker's state: closed, open or half_open.
	Breaker  string
	InFlight int
}

// BreakerStates are the breaker states exported by toolbus_breaker_state.
var BreakerStates = []string{"closed", "open", "half_open"}

// Config says how label values are bounded and where pool stats come from.
type Config struct {
	// KnownServer and KnownTool bound the server and tool labels: a name
	// for which they return false is reported as Unknown. Nil means every
	// name is kept (tests only: a caller chooses the names).
	KnownServer func(server string) bool
	KnownTool   func(server, tool string) bool
	// PoolStats, when set, is read at every scrape for the per-server
	// session, breaker and in-flight gauges.
	PoolStats func() []PoolServerStats
}

// Metrics is toolbus's metric set. It implements worker.Observer.
type Metrics struct {
	cfg Config
	reg *prometheus.Registry

	calls         *prometheus.CounterVec
	queueWait     *prometheus.HistogramVec
	exec          *prometheus.HistogramVec
	total         *prometheus.HistogramVec
	inFlight      prometheus.Gauge
	running       atomic.Int64 // inFlight's value, for InFlight
	redeliveries  *prometheus.CounterVec
	deadLetters   *prometheus.CounterVec
	unknown       *prometheus.CounterVec
	syncRuns      *prometheus.CounterVec
	syncFailures  *prometheus.CounterVec
	catalogTools  *prometheus.GaugeVec
	syncLastOK    *prometheus.GaugeVec
	syncOK        *prometheus.GaugeVec
	schedFires    *prometheus.CounterVec
	schedMissed   *prometheus.CounterVec
	webhooks      *prometheus.CounterVec
	knownCodes    map[string]bool
	knownStatuses map[string]bool
}

var _ worker.Observer = (*Metrics)(nil)

// latencyBuckets span a fast echo (100µs) to a slow tool (2 min).
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}

// New returns the metrics, registered on a registry of their own with the
// Go runtime and process collectors.
func New(cfg Config) *Metrics {
	m := &Metrics{cfg: cfg, reg: prometheus.NewRegistry()}
	m.knownCodes = map[string]bool{"": true}
	for _, c := range []subjects.Code{subjects.CodeInvalidRequest, subjects.CodeUnknownServer, subjects.CodeUnknownTool,
		subjects.CodeInvalidArguments, subjects.CodeServerUnavailable, subjects.CodeCatalogUnavailable, subjects.CodeTimeout,
		subjects.CodeCancelled, subjects.CodeOutcomeUnknown, subjects.CodeTooLarge, subjects.CodeProtocol,
		subjects.CodeDeadLetter, subjects.CodeInternal} {
		m.knownCodes[string(c)] = true
	}
	m.knownStatuses = map[string]bool{string(subjects.StatusOK): true, string(subjects.StatusToolError): true, string(subjects.StatusError): true}

	f := factory{m.reg}
	m.calls = f.counter("toolbus_calls_total", "Calls answered, by server, tool, status (ok, tool_error, error) and error code.", "server", "tool", "status", "code")
	m.queueWait = f.histogram("toolbus_call_queue_wait_seconds", "Time from publish to a worker's first delivery of a call.", "server")
	m.exec = f.histogram("toolbus_call_exec_seconds", "Time the MCP server took to run a call.", "server")
	m.total = f.histogram("toolbus_call_duration_seconds", "End to end: from publish to the result stored.", "server")
	m.inFlight = prometheus.NewGauge(prometheus.GaugeOpts{Name: "toolbus_calls_in_flight", Help: "Calls this process is running now."})
	m.reg.MustRegister(m.inFlight)
	m.redeliveries = f.counter("toolbus_call_redeliveries_total", "Calls answered on a redelivery (attempt > 1).", "server")
	m.deadLetters = f.counter("toolbus_dead_letters_total", "Calls moved to TOOL_DEAD, by reason (max_deliveries, terminated, other).", "server", "tool", "reason")
	m.unknown = f.counter("toolbus_outcome_unknown_total", "Unsafe calls interrupted mid-run and answered outcome_unknown.", "server", "tool")
	m.syncRuns = f.counter("toolbus_sync_runs_total", "Catalog syncs finished (fleet-wide, read from the sync status), by server.", "server")
	m.syncFailures = f.counter("toolbus_sync_failures_total", "Catalog syncs that failed (fleet-wide), by server and error class.", "server", "class")
	m.catalogTools = gauge(m.reg, "toolbus_catalog_tools", "Tools in the catalog after the server's last sync.", "server")
	m.syncOK = gauge(m.reg, "toolbus_sync_ok", "1 when the server's last sync succeeded, else 0.", "server")
	m.syncLastOK = gauge(m.reg, "toolbus_sync_last_success_timestamp_seconds", "Unix time of the server's last successful sync.", "server")
	m.schedFires = f.counter("toolbus_scheduler_fires_total", "Scheduler publish attempts, by schedule and result (published, duplicate, error).", "schedule", "result")
	m.schedMissed = f.counter("toolbus_scheduler_missed_ticks_total", "Ticks skipped because they were older than the grace period.", "schedule")
	m.webhooks = f.counter("toolbus_webhook_requests_total", "Webhook requests, by hook and HTTP status.", "hook", "status")

	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if cfg.PoolStats != nil {
		m.reg.MustRegister(&poolCollector{stats: cfg.PoolStats})
	}
	return m
}

// Registry is where the metrics live; register more collectors on it.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

type factory struct{ reg *prometheus.Registry }

func (f factory) counter(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) histogram(name, help string, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: latencyBuckets}, labels)
	f.reg.MustRegister(h)
	return h
}

func gauge(reg *prometheus.Registry, name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	reg.MustRegister(g)
	return g
}

// names bounds a server and tool to known names.
func (m *Metrics) names(server, tool string) (string, string) {
	if m.cfg.KnownServer != nil && !m.cfg.KnownServer(server) {
		return Unknown, Unknown
	}
	if m.cfg.KnownTool != nil && !m.cfg.KnownTool(server, tool) {
		return server, Unknown
	}
	return server, tool
}

// CallStarted implements worker.Observer: one more call in flight.
func (m *Metrics) CallStarted(server, tool string) {
	m.inFlight.Inc()
	m.running.Add(1)
}

// InFlight is the number of calls this process is running, as the
// observer heard it.
func (m *Metrics) InFlight() int { return int(m.running.Load()) }

// CallFinished implements worker.Observer. A call that ran (Ran) ends the
// CallStarted that began it.
func (m *Metrics) CallFinished(e worker.CallEvent) {
	if e.Ran {
		m.inFlight.Dec()
		m.running.Add(-1)
	}
	server, tool := m.names(e.Server, e.Tool)
	status, code := e.Status, e.Code
	if !m.knownStatuses[status] {
		status = Unknown
	}
	if !m.knownCodes[code] {
		code = Unknown
	}
	m.calls.WithLabelValues(server, tool, status, code).Inc()
	if e.QueueWait > 0 {
		m.queueWait.WithLabelValues(server).Observe(e.QueueWait.Seconds())
	}
	if e.Ran && e.Exec > 0 {
		m.exec.WithLabelValues(server).Observe(e.Exec.Seconds())
	}
	if e.Total > 0 {
		m.total.WithLabelValues(server).Observe(e.Total.Seconds())
	}
	if e.Attempt > 1 {
		m.redeliveries.WithLabelValues(server).Inc()
	}
	if code == string(subjects.CodeOutcomeUnknown) {
		m.unknown.WithLabelValues(server, tool).Inc()
	}
}

// DeadLettered implements worker.Observer.
func (m *Metrics) DeadLettered(server, tool, reason string) {
	server, tool = m.names(server, tool)
	m.deadLetters.WithLabelValues(server, tool, deadReason(reason)).Inc()
}

// deadReason folds the worker's free-text reason into a few label values.
func deadReason(reason string) string {
	switch {
	case strings.HasPrefix(reason, "terminated"):
		return "terminated"
	case strings.HasPrefix(reason, "delivered "), strings.Contains(reason, "max_deliver"):
		return "max_deliveries"
	default:
		return "other"
	}
}

// SchedulerFired counts one publish attempt of schedule: result is
// "published", "duplicate" or "error". Wire it to scheduler.WithOnFire.
func (m *Metrics) SchedulerFired(schedule string, duplicate bool, err error) {
	result := "published"
	switch {
	case err != nil:
		result = "error"
	case duplicate:
		result = "duplicate"
	}
	m.schedFires.WithLabelValues(schedule, result).Inc()
}

// SchedulerMissed counts n ticks of schedule skipped as missed. Wire it to
// scheduler.WithOnMissed.
func (m *Metrics) SchedulerMissed(schedule string, n int) {
	m.schedMissed.WithLabelValues(schedule).Add(float64(n))
}

// WebhookRequest counts one webhook request: hook is the configured
// hook's name, or "" when the path named none (counted as Unknown), status
// the HTTP status answered. Wire it to bridge.WithOnRequest.
func (m *Metrics) WebhookRequest(hook string, status int) {
	if hook == "" {
		hook = Unknown
	}
	m.webhooks.WithLabelValues(hook, statusText(status)).Inc()
}

func statusText(code int) string {
	if code < 100 || code > 599 {
		return Unknown
	}
	return itoa(code)
}

func itoa(n int) string {
	var b [3]byte
	b[2] = byte('0' + n%10)
	b[1] = byte('0' + n/10%10)
	b[0] = byte('0' + n/100)
	return string(b[:])
}

// SyncStatus records one sync status entry; counted is false for the
// entries a watch replays at its start (they set the gauges only).
func (m *Metrics) SyncStatus(st subjects.SyncStatus, counted bool) {
	server := st.Server
	if counted {
		m.syncRuns.WithLabelValues(server).Inc()
		if !st.OK {
			class := string(st.ErrorClass)
			if class == "" {
				class = string(subjects.SyncOther)
			}
			m.syncFailures.WithLabelValues(server, class).Inc()
		}
	}
	m.catalogTools.WithLabelValues(server).Set(float64(st.Tools))
	ok := 0.0
	if st.OK {
		ok = 1
	}
	m.syncOK.WithLabelValues(server).Set(ok)
	if !st.LastOK.IsZero() {
		m.syncLastOK.WithLabelValues(server).Set(float64(st.LastOK.UnixNano()) / 1e9)
	}
}

// SyncRemoved forgets a removed server's sync gauges.
func (m *Metrics) SyncRemoved(server string) {
	m.catalogTools.DeleteLabelValues(server)
	m.syncOK.DeleteLabelValues(server)
	m.syncLastOK.DeleteLabelValues(server)
}

// poolCollector reads the pool at scrape time.
type poolCollector struct{ stats func() []PoolServerStats }

var (
	descSessions = prometheus.NewDesc("toolbus_pool_sessions", "Open MCP sessions per server.", []string{"server"}, nil)
	descBreaker  = prometheus.NewDesc("toolbus_breaker_state", "1 for the server's current circuit breaker state (closed, open, half_open), else 0.", []string{"server", "state"}, nil)
	descPoolBusy = prometheus.NewDesc("toolbus_pool_in_flight", "Calls in flight on a server's sessions.", []string{"server"}, nil)
)

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descSessions
	ch <- descBreaker
	ch <- descPoolBusy
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.stats() {
		ch <- prometheus.MustNewConstMetric(descSessions, prometheus.GaugeValue, float64(s.Sessions), s.Server)
		ch <- prometheus.MustNewConstMetric(descPoolBusy, prometheus.GaugeValue, float64(s.InFlight), s.Server)
		for _, st := range BreakerStates {
			v := 0.0
			if s.Breaker == st {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descBreaker, prometheus.GaugeValue, v, s.Server, st)
		}
	}
}
