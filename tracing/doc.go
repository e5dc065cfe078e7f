// Package tracing traces requests through lbkit with OpenTelemetry: a
// server span per request an HTTP or HTTPS listener routes, and a client
// span per attempt to a target (its child; a retried request shows two),
// with the attributes of the OpenTelemetry HTTP semantic conventions
// (http.request.method, url.path, server.address, client.address,
// http.response.status_code, http.request.resend_count, error.type) and
// lbkit's own (lbkit.rule, lbkit.group, lbkit.target, lbkit.retries).
// W3C trace context is sent to targets on every attempt, and continued
// from clients only when they are trusted.
//
// It is its own Go module, so that programs that do not trace never
// download OpenTelemetry: the core's hook is proxy.Observer, which a
// Tracer implements, and lb.WithObserver installs on every HTTP listener.
// With no observer the proxy pays one nil check per request.
//
//	tp, err := tracing.NewProvider(ctx, tracing.Config{Endpoint: "collector:4317", SampleRatio: 0.1})
//	if err != nil { ... }
//	defer tp.Shutdown(context.Background())
//	balancer, err := lb.New(lb.WithObserver(tracing.New(tp)), ...)
//
// NewProvider builds a TracerProvider exporting over OTLP (gRPC or HTTP);
// any other TracerProvider works with New as well.
package tracing
