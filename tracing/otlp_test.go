package tracing_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/lbkit/lbkit/tracing"
)

// receiver is an OTLP/HTTP trace receiver: it decodes the protobuf
// payload of POST /v1/traces, the wire format a collector gets.
type receiver struct {
	mu    sync.Mutex // guards spans, service
	spans []*tracepb.Span
	attrs map[string]string // resource attributes
	got   chan struct{}     // a payload arrived
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/traces" || r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "not an OTLP/HTTP protobuf trace export", http.StatusBadRequest)
		return
	}
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	for _, rs := range req.ResourceSpans {
		for _, kv := range rs.GetResource().GetAttributes() {
			rc.attrs[kv.Key] = kv.GetValue().GetStringValue()
		}
		for _, ss := range rs.ScopeSpans {
			rc.spans = append(rc.spans, ss.Spans...)
		}
	}
	rc.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
	select {
	case rc.got <- struct{}{}:
	default:
	}
}

// TestOTLPHTTP sends a traced request's spans with NewProvider's OTLP/HTTP
// exporter to a receiver in the test, which decodes them.
func TestOTLPHTTP(t *testing.T) {
	rc := &receiver{attrs: map[string]string{}, got: make(chan struct{}, 1)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: rc}
	go srv.Serve(ln)
	defer srv.Close()

	ctx := context.Background()
	end := make(serverEnds, 1)
	tp, err := tracing.NewProvider(ctx, tracing.Config{Endpoint: ln.Addr().String(), Protocol: "http", ServiceName: "edge"},
		sdktrace.WithSpanProcessor(end))
	require.NoError(t, err)
	addr, _ := setup(t, tracing.New(tp), false)
	require.Equal(t, 200, get(t, "http://"+addr+"/cart"))
	end.wait(t)

	// Shutdown flushes the batch to the receiver.
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	require.NoError(t, tp.Shutdown(sctx))
	rc.mu.Lock()
	defer rc.mu.Unlock()
	require.Equal(t, "edge", rc.attrs["service.name"])
	require.Len(t, rc.spans, 2)
	var server, client *tracepb.Span
	for _, s := range rc.spans {
		switch s.Kind {
		case tracepb.Span_SPAN_KIND_SERVER:
			server = s
		case tracepb.Span_SPAN_KIND_CLIENT:
			client = s
		}
	}
	require.NotNil(t, server)
	require.NotNil(t, client)
	require.Equal(t, server.SpanId, client.ParentSpanId)
	require.Equal(t, server.TraceId, client.TraceId)
	require.Equal(t, "GET default", server.Name)
	attrs := map[string]any{}
	for _, kv := range server.Attributes {
		if v := kv.GetValue(); v.GetStringValue() != "" {
			attrs[kv.Key] = v.GetStringValue()
		} else {
			attrs[kv.Key] = v.GetIntValue()
		}
	}
	require.Equal(t, "/cart", attrs["url.path"])
	require.Equal(t, int64(200), attrs["http.response.status_code"])
	require.Equal(t, "app", attrs["lbkit.group"])
	require.Less(t, server.StartTimeUnixNano, server.EndTimeUnixNano)
}

// TestConfig checks NewProvider's validation.
func TestConfig(t *testing.T) {
	err := tracing.Config{Protocol: "udp", SampleRatio: 2}.Validate()
	require.ErrorContains(t, err, "otlp_endpoint is empty")
	require.ErrorContains(t, err, `protocol "udp" is neither grpc nor http`)
	require.ErrorContains(t, err, "sample_ratio 2 is above 1")
	require.NoError(t, tracing.Config{Endpoint: "collector:4317"}.Validate())
	require.NoError(t, tracing.Config{Endpoint: "https://collector.example:4318/v1/traces", Protocol: "http"}.Validate())
	require.Error(t, tracing.Config{Endpoint: "ftp://x"}.Validate())
	tp, err := tracing.NewProvider(context.Background(), tracing.Config{Endpoint: "127.0.0.1:1", Protocol: "grpc", SampleRatio: 0.5})
	require.NoError(t, err, "no connection is made before the first export")
	require.NoError(t, tp.Shutdown(context.Background()))
}
