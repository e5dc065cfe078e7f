package tracing_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/lbkit/lbkit/lb"
	"github.com/lbkit/lbkit/tracing"
)

// Example traces a load balancer's requests: a server span per request,
// a client span per attempt to a target, its child.
func Example() {
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	defer target.Close()

	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())

	l, err := lb.New(
		lb.WithLogger(quiet),
		lb.WithObserver(tracing.New(tp)),
		lb.WithListener("web", lb.HTTP, "127.0.0.1:0", lb.WithForwardTo("app")),
		lb.WithTargetGroup("app", lb.HTTP, lb.WithTarget(target.Listener.Addr().String()), lb.WithoutHealthCheck()),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := l.Start(); err != nil {
		fmt.Println(err)
		return
	}
	front, _ := l.Addr("web")
	resp, err := http.Get("http://" + front.String() + "/")
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	l.Close() // every request has ended, and with it its spans

	var lines []string
	for _, s := range exp.GetSpans() {
		lines = append(lines, fmt.Sprintf("%s %q", s.SpanKind, s.Name))
	}
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Println(l)
	}
	// Output:
	// client "GET"
	// server "GET default"
}

// ExampleNewProvider makes a TracerProvider that exports spans over
// OTLP/gRPC to a collector, for one trace in ten.
func ExampleNewProvider() {
	tp, err := tracing.NewProvider(context.Background(), tracing.Config{
		Endpoint:    "127.0.0.1:4317",
		Protocol:    "grpc",
		SampleRatio: 0.1,
		ServiceName: "edge",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer tp.Shutdown(context.Background())
	_ = lb.WithObserver(tracing.New(tp)) // give it to lb.New
	fmt.Println("ok")
	// Output: ok
}

// ExampleConfig_Validate shows every problem of a configuration at once.
func ExampleConfig_Validate() {
	fmt.Println(tracing.Config{Protocol: "udp", SampleRatio: 2}.Validate())
	// Output:
	// tracing: otlp_endpoint is empty
	// tracing: protocol "udp" is neither grpc nor http
	// tracing: sample_ratio 2 is above 1
}
