package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// otlpReceiver decodes OTLP/HTTP trace exports.
type otlpReceiver struct {
	mu    sync.Mutex // guards spans
	spans []*tracepb.Span
}

func (rc *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	var req coltracepb.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(b, &req)
	}
	if r.URL.Path != "/v1/traces" || err != nil {
		http.Error(w, "bad export", http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			rc.spans = append(rc.spans, ss.Spans...)
		}
	}
	rc.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

// TestTracing runs lbd with a tracing section: a request through its HTTP
// listener reaches the OTLP receiver as a server span and a client span
// once lbd stops (its exporter sends what it holds).
func TestTracing(t *testing.T) {
	bin := lbdBinary(t)
	rc := &otlpReceiver{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: rc}
	go srv.Serve(ln)
	defer srv.Close()

	dir := t.TempDir()
	cfg := newTargets(t).config(t, dir)
	b, err := os.ReadFile(cfg)
	require.NoError(t, err)
	b = append(b, fmt.Sprintf("tracing: {otlp_endpoint: %q, protocol: http, service_name: edge}\n", ln.Addr().String())...)
	path := filepath.Join(dir, "traced.yaml")
	require.NoError(t, os.WriteFile(path, b, 0o600))

	p := startLBD(t, bin, nil, "run", "-config", path, "-admin", "127.0.0.1:0")
	front := listenerAddrs(t, p.admin)["http"]
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + front + "/traced")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, p.wait(t))
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var server, client *tracepb.Span
	for _, s := range rc.spans {
		switch s.Kind {
		case tracepb.Span_SPAN_KIND_SERVER:
			server = s
		case tracepb.Span_SPAN_KIND_CLIENT:
			client = s
		}
	}
	require.NotNil(t, server, "spans: %v", rc.spans)
	require.NotNil(t, client)
	require.Equal(t, "GET default", server.Name)
	require.Equal(t, server.SpanId, client.ParentSpanId)
}
