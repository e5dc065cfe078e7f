package tracing_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/lbkit/lbkit/lb"
	"github.com/lbkit/lbkit/proxy"
	"github.com/lbkit/lbkit/tracing"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// seen records the trace headers targets received.
type seen struct {
	mu      sync.Mutex // guards parents
	parents []string
}

func (s *seen) add(v string) {
	s.mu.Lock()
	s.parents = append(s.parents, v)
	s.mu.Unlock()
}

func (s *seen) last() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.parents) == 0 {
		return ""
	}
	return s.parents[len(s.parents)-1]
}

// closedAddr returns a loopback address where nothing listens: a target
// that refuses connections.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// setup starts a load balancer traced by tr: listener "web" forwards to
// group "app", whose targets are a live one ("live") and, if dead, one
// that refuses connections ("dead", weighted so that it is tried first).
func setup(t *testing.T, tr proxy.Observer, dead bool, extra ...lb.ListenerOption) (string, *seen) {
	t.Helper()
	s := &seen{}
	live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.add(r.Header.Get("Traceparent"))
		io.WriteString(w, "live")
	}))
	t.Cleanup(live.Close)
	targets := []lb.GroupOption{lb.WithTarget(live.Listener.Addr().String(), lb.WithTargetID("live"), lb.WithWeight(1)), lb.WithoutHealthCheck()}
	if dead {
		targets = append(targets, lb.WithTarget(closedAddr(t), lb.WithTargetID("dead"), lb.WithWeight(100)))
	}
	l, err := lb.New(
		lb.WithLogger(quiet),
		lb.WithObserver(tr),
		lb.WithListener("web", lb.HTTP, "127.0.0.1:0", append([]lb.ListenerOption{lb.WithForwardTo("app")}, extra...)...),
		lb.WithTargetGroup("app", lb.HTTP, targets...),
	)
	require.NoError(t, err)
	require.NoError(t, l.Start())
	t.Cleanup(func() { require.NoError(t, l.Close()) })
	a, _ := l.Addr("web")
	return a.String(), s
}

func get(t *testing.T, url string, hdr ...string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

// serverEnds signals each server span's end: the proxy ends it just after
// the response is written, so a client may have its answer first.
type serverEnds chan struct{}

func (c serverEnds) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (c serverEnds) OnEnd(s sdktrace.ReadOnlySpan) {
	if s.SpanKind() == trace.SpanKindServer {
		c <- struct{}{}
	}
}
func (c serverEnds) Shutdown(context.Context) error   { return nil }
func (c serverEnds) ForceFlush(context.Context) error { return nil }

// wait waits for a server span to end.
func (c serverEnds) wait(t *testing.T) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(10 * time.Second):
		t.Fatal("no server span ended in 10 s")
	}
}

func newProvider(opts ...sdktrace.TracerProviderOption) (*tracetest.InMemoryExporter, *sdktrace.TracerProvider, serverEnds) {
	exp := tracetest.NewInMemoryExporter()
	end := make(serverEnds, 16)
	// The exporter first: a span is exported when the signal is sent.
	all := append([]sdktrace.TracerProviderOption{sdktrace.WithSyncer(exp), sdktrace.WithSpanProcessor(end)}, opts...)
	return exp, sdktrace.NewTracerProvider(all...), end
}

// TestSpans checks a request's server span and its attempt's client span:
// names, kinds, parentage, attributes, and the traceparent the target got.
func TestSpans(t *testing.T) {
	exp, tp, end := newProvider()
	defer tp.Shutdown(context.Background())
	addr, s := setup(t, tracing.New(tp), false)

	require.Equal(t, 200, get(t, "http://"+addr+"/shop?q=1", "User-Agent", "test-agent"))
	end.wait(t)
	spans := exp.GetSpans().Snapshots()
	require.Len(t, spans, 2)
	client, server := spans[0], spans[1] // a child ends first
	require.Equal(t, trace.SpanKindServer, server.SpanKind())
	require.Equal(t, "GET default", server.Name())
	require.Equal(t, trace.SpanKindClient, client.SpanKind())
	require.Equal(t, "GET", client.Name())
	require.Equal(t, server.SpanContext().SpanID(), client.Parent().SpanID())
	require.Equal(t, server.SpanContext().TraceID(), client.SpanContext().TraceID())
	require.False(t, server.Parent().IsValid(), "an untrusted client's request starts a new trace")

	sa := attrs(server)
	require.Equal(t, "GET", sa["http.request.method"].AsString())
	require.Equal(t, "/shop", sa["url.path"].AsString())
	require.Equal(t, "http", sa["url.scheme"].AsString())
	require.Equal(t, "127.0.0.1", sa["server.address"].AsString())
	require.Equal(t, "127.0.0.1", sa["client.address"].AsString())
	require.Equal(t, "1.1", sa["network.protocol.version"].AsString())
	require.Equal(t, "test-agent", sa["user_agent.original"].AsString())
	require.Equal(t, int64(200), sa["http.response.status_code"].AsInt64())
	require.Equal(t, "default", sa[tracing.RuleKey].AsString())
	require.Equal(t, "app", sa[tracing.GroupKey].AsString())
	_, retried := sa[tracing.RetriesKey]
	require.False(t, retried)

	ca := attrs(client)
	require.Equal(t, "live", ca[tracing.TargetKey].AsString())
	require.Equal(t, int64(200), ca["http.response.status_code"].AsInt64())
	require.Equal(t, "127.0.0.1", ca["server.address"].AsString())
	require.NotZero(t, ca["server.port"].AsInt64())
	require.Equal(t, codes.Unset, client.Status().Code)

	// The target got the attempt's span as its parent.
	tp2 := s.last()
	require.Equal(t, "00-"+client.SpanContext().TraceID().String()+"-"+client.SpanContext().SpanID().String()+"-01", tp2)
}

// TestRetryTwoAttempts checks that a retried request shows two attempt
// spans under one server span: the failed one with its error, then the
// one that answered, with its resend count.
func TestRetryTwoAttempts(t *testing.T) {
	exp, tp, end := newProvider()
	defer tp.Shutdown(context.Background())
	addr, _ := setup(t, tracing.New(tp), true)

	// The dead target has weight 100 of 101: the first request of a
	// fresh balancer tries it first unless the pick says otherwise; a
	// few requests are enough to see a retry.
	var server sdktrace.ReadOnlySpan
	var attempts []sdktrace.ReadOnlySpan
	for i := 0; i < 20 && server == nil; i++ {
		exp.Reset()
		require.Equal(t, 200, get(t, "http://"+addr+"/"))
		end.wait(t)
		spans := exp.GetSpans().Snapshots()
		if len(spans) == 3 {
			attempts, server = spans[:2], spans[2]
		}
	}
	require.NotNil(t, server, "no request was retried")
	for _, a := range attempts {
		require.Equal(t, server.SpanContext().SpanID(), a.Parent().SpanID())
		require.Equal(t, trace.SpanKindClient, a.SpanKind())
	}
	failed, ok := attrs(attempts[0]), attrs(attempts[1])
	require.Equal(t, "dead", failed[tracing.TargetKey].AsString())
	require.Equal(t, "connection_refused", failed["error.type"].AsString())
	require.Equal(t, codes.Error, attempts[0].Status().Code)
	require.Equal(t, "live", ok[tracing.TargetKey].AsString())
	require.Equal(t, int64(1), ok["http.request.resend_count"].AsInt64())
	require.Equal(t, int64(200), ok["http.response.status_code"].AsInt64())
	require.Equal(t, int64(1), attrs(server)[tracing.RetriesKey].AsInt64())
	require.Equal(t, int64(200), attrs(server)["http.response.status_code"].AsInt64())
}

// TestTrustedParent checks that a trusted client's traceparent is
// continued and an untrusted one's is not (but replaced towards the
// target either way).
func TestTrustedParent(t *testing.T) {
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, trusted := range []bool{true, false} {
		t.Run(map[bool]string{true: "trusted", false: "untrusted"}[trusted], func(t *testing.T) {
			exp, tp, end := newProvider()
			defer tp.Shutdown(context.Background())
			var opts []tracing.Option
			if trusted {
				opts = append(opts, tracing.WithTrustedClients(netip.MustParsePrefix("127.0.0.0/8")))
			} else {
				opts = append(opts, tracing.WithTrustedClients(netip.MustParsePrefix("10.0.0.0/8")))
			}
			addr, s := setup(t, tracing.New(tp, opts...), false)
			require.Equal(t, 200, get(t, "http://"+addr+"/", "Traceparent", parent, "Tracestate", "vendor=x"))
			end.wait(t)
			spans := exp.GetSpans().Snapshots()
			require.Len(t, spans, 2)
			server := spans[1]
			got := s.last()
			require.NotEqual(t, parent, got, "the client's traceparent is never passed on as is")
			if trusted {
				require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", server.SpanContext().TraceID().String())
				require.Equal(t, "00f067aa0ba902b7", server.Parent().SpanID().String())
				require.True(t, strings.HasPrefix(got, "00-4bf92f3577b34da6a3ce929d0e0e4736-"))
			} else {
				require.False(t, server.Parent().IsValid())
				require.NotEqual(t, "4bf92f3577b34da6a3ce929d0e0e4736", server.SpanContext().TraceID().String())
			}
		})
	}
}

// TestSampling checks that an unsampled trace records no span and still
// tells the target it was not sampled.
func TestSampling(t *testing.T) {
	exp, tp, _ := newProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0))))
	defer tp.Shutdown(context.Background())
	addr, s := setup(t, tracing.New(tp), false)
	require.Equal(t, 200, get(t, "http://"+addr+"/"))
	// The target's traceparent says "not sampled" (it got it before it
	// answered); an unsampled span is never exported.
	require.Empty(t, exp.GetSpans())
	require.True(t, strings.HasSuffix(s.last(), "-00"), "traceparent %q", s.last())
}

// TestFixedResponse checks that a rule answering itself gets a server span
// and no attempt.
func TestFixedResponse(t *testing.T) {
	exp, tp, end := newProvider()
	defer tp.Shutdown(context.Background())
	addr, _ := setup(t, tracing.New(tp), false, lb.WithRules(lb.Rule{Name: "teapot", Path: "/tea", Fixed: &proxy.FixedResponse{Status: 418}}))
	require.Equal(t, 418, get(t, "http://"+addr+"/tea"))
	end.wait(t)
	spans := exp.GetSpans().Snapshots()
	require.Len(t, spans, 1)
	require.Equal(t, "GET teapot", spans[0].Name())
	require.Equal(t, int64(418), attrs(spans[0])["http.response.status_code"].AsInt64())
}
