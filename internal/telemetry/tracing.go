package telemetry

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// The environment variables that turn tracing on, as OpenTelemetry's
// SDKs name them. Everything else the OTLP exporter and the SDK read
// (OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT, _COMPRESSION, OTEL_TRACES_SAMPLER,
// OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_BSP_*) works as
// documented there.
const (
	EnvEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	EnvTracesExporter = "OTEL_TRACES_EXPORTER"
)

// Setup starts the OpenTelemetry trace pipeline the environment asks for:
// OTLP over HTTP/protobuf to OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, when one
// of them is set or OTEL_TRACES_EXPORTER=otlp. Otherwise (or with
// OTEL_TRACES_EXPORTER=none, OTEL_SDK_DISABLED=true) tracing is off: tp is
// nil, and the worker and pool then only pass a caller's traceparent on.
// When on, it also becomes OpenTelemetry's global provider, with the W3C
// trace context and baggage propagators. The resource is
// service.name=toolbus (OTEL_SERVICE_NAME overrides) and
// service.instance.id=instance. shutdown flushes the spans still
// buffered; it is never nil and may be called when tracing is off.
func Setup(ctx context.Context, instance string, log zerolog.Logger) (tp trace.TracerProvider, shutdown func(context.Context) error, err error) {
	shutdown = func(context.Context) error { return nil }
	on, err := tracingWanted()
	if err != nil || !on {
		return nil, shutdown, err
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, shutdown, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	// Later detectors win: the environment overrides the defaults.
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithAttributes(attribute.String("service.name", "toolbus"), attribute.String("service.instance.id", instance)),
		resource.WithFromEnv(),
	)
	if err != nil {
		_ = exp.Shutdown(ctx)
		return nil, shutdown, fmt.Errorf("tracing: resource from %s: %w", "OTEL_RESOURCE_ATTRIBUTES", err)
	}
	sdk := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(sdk)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn().Err(err).Msg("tracing: spans not exported")
	}))
	log.Info().Str("endpoint", endpoint()).Msg("tracing on: OTLP/HTTP")
	return sdk, sdk.Shutdown, nil
}

// tracingWanted reads the variables that turn tracing on or off, and
// refuses what toolbus cannot do, naming the variable.
func tracingWanted() (bool, error) {
	if strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")), "true") {
		return false, nil
	}
	otlp := false
	if v := strings.TrimSpace(os.Getenv(EnvTracesExporter)); v != "" {
		for _, e := range strings.Split(v, ",") {
			switch strings.TrimSpace(e) {
			case "none":
				return false, nil
			case "otlp":
				otlp = true
			default:
				return false, fmt.Errorf("%s=%q: toolbus exports traces with otlp (OTLP over HTTP/protobuf) or none", EnvTracesExporter, v)
			}
		}
	}
	if !otlp && os.Getenv(EnvEndpoint) == "" && os.Getenv(EnvTracesEndpoint) == "" {
		return false, nil
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if v := strings.TrimSpace(os.Getenv(name)); v != "" {
			if v != "http/protobuf" {
				return false, fmt.Errorf("%s=%q: toolbus sends traces as http/protobuf only; unset it or point the endpoint at the collector's OTLP/HTTP port (4318)", name, v)
			}
			break // the traces one wins
		}
	}
	return true, nil
}

// endpoint is where spans go, for the log line, without credentials.
func endpoint() string {
	v := os.Getenv(EnvTracesEndpoint)
	if v == "" {
		v = os.Getenv(EnvEndpoint)
	}
	if v == "" {
		return "http://localhost:4318 (default)"
	}
	u, err := url.Parse(v)
	if err != nil {
		return "(unparsable)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}
