package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
)

// DefaultServiceName is the service.name of lbkit's spans when Config
// gives none.
const DefaultServiceName = "lbkit"

// Config is what NewProvider needs to export spans over OTLP: lbd's
// tracing section.
type Config struct {
	// Endpoint is the OTLP receiver (a collector): host:port, or a URL
	// (http:// for plain text, https:// for TLS; for the http protocol a
	// URL's path replaces /v1/traces). Required. A host:port is spoken
	// to in plain text.
	Endpoint string
	// Protocol is "grpc" (default; port 4317 by convention) or "http"
	// (OTLP/HTTP with protobuf; port 4318).
	Protocol string
	// SampleRatio is the share of new traces recorded, 0 to 1; a trace
	// continued from a trusted client follows its parent's decision.
	// Default (0): 1, every trace. Use a negative value to record none.
	SampleRatio float64
	// ServiceName is the resource's service.name. Default:
	// DefaultServiceName.
	ServiceName string
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.Endpoint == "" {
		errs = append(errs, errors.New("tracing: otlp_endpoint is empty"))
	} else if strings.Contains(c.Endpoint, "://") {
		if u, err := url.Parse(c.Endpoint); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			errs = append(errs, fmt.Errorf("tracing: otlp_endpoint %q is neither host:port nor an http or https URL", c.Endpoint))
		}
	}
	switch c.Protocol {
	case "", "grpc", "http":
	default:
		errs = append(errs, fmt.Errorf("tracing: protocol %q is neither grpc nor http", c.Protocol))
	}
	if c.SampleRatio > 1 {
		errs = append(errs, fmt.Errorf("tracing: sample_ratio %g is above 1", c.SampleRatio))
	}
	return errors.Join(errs...)
}

// sampler is the sampler c asks for.
func (c Config) sampler() sdktrace.Sampler {
	r := c.SampleRatio
	switch {
	case r == 0:
		r = 1
	case r < 0:
		r = 0
	}
	return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r))
}

// NewProvider returns a TracerProvider that samples as c says and exports
// spans in batches over OTLP to c.Endpoint. It starts the batching
// goroutine: call its Shutdown when done, which sends what is left. No
// connection is made before the first export; an unreachable receiver
// loses spans (the exporter retries), never requests.
func NewProvider(ctx context.Context, c Config, opts ...sdktrace.TracerProviderOption) (*sdktrace.TracerProvider, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	exp, err := c.exporter(ctx)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	name := c.ServiceName
	if name == "" {
		name = DefaultServiceName
	}
	res := resource.NewSchemaless(semconv.ServiceName(name))
	all := append([]sdktrace.TracerProviderOption{
		sdktrace.WithBatcher(exp), sdktrace.WithResource(res), sdktrace.WithSampler(c.sampler()),
	}, opts...)
	return sdktrace.NewTracerProvider(all...), nil
}

// exporter makes c's OTLP exporter.
func (c Config) exporter(ctx context.Context) (sdktrace.SpanExporter, error) {
	url := strings.Contains(c.Endpoint, "://")
	if c.Protocol == "http" {
		if url {
			return otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(c.Endpoint))
		}
		return otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(c.Endpoint), otlptracehttp.WithInsecure())
	}
	if url {
		return otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(c.Endpoint))
	}
	return otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(c.Endpoint), otlptracegrpc.WithInsecure())
}
