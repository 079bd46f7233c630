package telemetry

import (
	"context"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// Which environment turns tracing on, and what it refuses with a reason
// naming the variable.
func TestTracingFromEnvironment(t *testing.T) {
	vars := []string{"OTEL_SDK_DISABLED", EnvTracesExporter, EnvEndpoint, EnvTracesEndpoint, "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"}
	for _, tc := range []struct {
		name string
		env  map[string]string
		on   bool
		err  string
	}{
		{name: "nothing set", on: false},
		{name: "endpoint", env: map[string]string{EnvEndpoint: "http://127.0.0.1:4318"}, on: true},
		{name: "traces endpoint", env: map[string]string{EnvTracesEndpoint: "http://127.0.0.1:4318/v1/traces"}, on: true},
		{name: "exporter otlp alone", env: map[string]string{EnvTracesExporter: "otlp"}, on: true},
		{name: "exporter none wins", env: map[string]string{EnvTracesExporter: "none", EnvEndpoint: "http://x:4318"}, on: false},
		{name: "sdk disabled", env: map[string]string{"OTEL_SDK_DISABLED": "true", EnvEndpoint: "http://x:4318"}, on: false},
		{name: "console refused", env: map[string]string{EnvTracesExporter: "console"}, err: EnvTracesExporter},
		{name: "grpc refused", env: map[string]string{EnvEndpoint: "http://x:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, err: "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{name: "traces protocol wins", env: map[string]string{EnvEndpoint: "http://x:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}, on: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, v := range vars {
				t.Setenv(v, tc.env[v])
			}
			on, err := tracingWanted()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want one naming %s", err, tc.err)
				}
				return
			}
			if err != nil || on != tc.on {
				t.Fatalf("on %v err %v, want on %v", on, err, tc.on)
			}
		})
	}
}

// Off, Setup returns no provider and a shutdown that does nothing.
func TestSetupOff(t *testing.T) {
	for _, v := range []string{EnvTracesExporter, EnvEndpoint, EnvTracesEndpoint} {
		t.Setenv(v, "")
	}
	tp, shutdown, err := Setup(context.Background(), "i", zerolog.Nop())
	if tp != nil || err != nil || shutdown(context.Background()) != nil {
		t.Fatalf("tp %v err %v", tp, err)
	}
}

// The endpoint is logged without credentials.
func TestEndpointLoggedWithoutSecrets(t *testing.T) {
	t.Setenv(EnvTracesEndpoint, "")
	t.Setenv(EnvEndpoint, "https://user:secret@otel.example:4318/?token=abc")
	if got := endpoint(); strings.Contains(got, "secret") || strings.Contains(got, "abc") || !strings.Contains(got, "otel.example:4318") {
		t.Fatalf("endpoint() = %q", got)
	}
}
