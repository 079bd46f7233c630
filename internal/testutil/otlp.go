package testutil

import (
	"compress/gzip"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	gosync "sync"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// OTLPReceiver is an OTLP/HTTP trace receiver for tests (serve it with
// httptest): it decodes the protobuf ExportTraceServiceRequests a real
// exporter posts to /v1/traces and keeps their spans.
type OTLPReceiver struct {
	mu       gosync.Mutex
	spans    []*tracepb.Span
	services []string
	errs     []string
}

func (r *OTLPReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	fail := func(format string, a ...any) {
		r.mu.Lock()
		r.errs = append(r.errs, fmt.Sprintf(format, a...))
		r.mu.Unlock()
		http.Error(w, "bad request", http.StatusBadRequest)
	}
	if req.URL.Path != "/v1/traces" || req.Header.Get("Content-Type") != "application/x-protobuf" {
		fail("%s %s (%s)", req.Method, req.URL.Path, req.Header.Get("Content-Type"))
		return
	}
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			fail("gzip: %v", err)
			return
		}
		body = zr
	}
	data, err := io.ReadAll(body)
	if err != nil {
		fail("read: %v", err)
		return
	}
	var ex collectortrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(data, &ex); err != nil {
		fail("decode: %v", err)
		return
	}
	r.mu.Lock()
	for _, rs := range ex.ResourceSpans {
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.Key == "service.name" {
				r.services = append(r.services, kv.GetValue().GetStringValue())
			}
		}
		for _, ss := range rs.ScopeSpans {
			r.spans = append(r.spans, ss.Spans...)
		}
	}
	r.mu.Unlock()
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// Trace returns the received spans of a trace (hex id) by name; a name
// seen twice keeps the last.
func (r *OTLPReceiver) Trace(traceID string) map[string]*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := map[string]*tracepb.Span{}
	for _, s := range r.spans {
		if hex.EncodeToString(s.TraceId) == traceID {
			m[s.Name] = s
		}
	}
	return m
}

// Problems returns what the receiver refused, and the service.name of
// every resource that is not want.
func (r *OTLPReceiver) Problems(wantService string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := append([]string(nil), r.errs...)
	for _, s := range r.services {
		if s != wantService {
			p = append(p, fmt.Sprintf("service.name %q, want %q", s, wantService))
		}
	}
	return p
}

// SpanAttr is a span's attribute as text ("" when absent).
func SpanAttr(s *tracepb.Span, key string) string {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			if v, ok := kv.Value.Value.(*commonpb.AnyValue_IntValue); ok {
				return fmt.Sprint(v.IntValue)
			}
			return kv.GetValue().GetStringValue()
		}
	}
	return ""
}
