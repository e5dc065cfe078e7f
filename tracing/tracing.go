package tracing

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/lbkit/lbkit/proxy"
)

// ScopeName is the instrumentation scope of the spans: the name the tracer
// is got under from the TracerProvider.
const ScopeName = "github.com/lbkit/lbkit/tracing"

// Attributes lbkit adds beside the OpenTelemetry HTTP semantic conventions.
const (
	// RuleKey is the name of the listener rule that matched ("default"
	// for the default action).
	RuleKey = attribute.Key("lbkit.rule")
	// GroupKey is the target group the request was forwarded to.
	GroupKey = attribute.Key("lbkit.group")
	// TargetKey is the ID of the target an attempt went to.
	TargetKey = attribute.Key("lbkit.target")
	// StickyKey reports that stickiness chose an attempt's target.
	StickyKey = attribute.Key("lbkit.sticky")
	// RetriesKey is the number of retries a request took (attempts beyond
	// the first), on the server span.
	RetriesKey = attribute.Key("lbkit.retries")
)

// Tracer makes OpenTelemetry spans of an HTTP proxy's requests: a server
// span per request and a client span per attempt to a target, its child,
// so that a retried request shows two attempts. It implements
// proxy.Observer: give it to lb.WithObserver, or to proxy.HTTP.Observer.
//
// The trace context (W3C traceparent and tracestate, or the propagator
// given) is sent to targets on every attempt, in place of the client's;
// a client's own trace context is continued only when the client is
// trusted (WithTrustedClients, WithTrustedProxies): from anyone else the
// request starts a new trace, so that a client cannot choose trace IDs or
// force sampling. Sampling is the TracerProvider's (see NewProvider).
//
// A Tracer is safe for concurrent use; it holds no goroutine and needs no
// Close (the TracerProvider has one).
type Tracer struct {
	tracer       trace.Tracer
	prop         propagation.TextMapPropagator
	trusted      []netip.Prefix
	trustProxies bool
	trustAll     bool
}

// Option configures a Tracer.
type Option func(*Tracer)

// WithPropagator sets how trace context is read from clients and written
// to targets. Default: propagation.TraceContext{} (W3C traceparent and
// tracestate).
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(t *Tracer) { t.prop = p }
}

// WithTrustedClients continues the trace context of clients whose address
// (the connection's peer) is in one of prefixes. Default: none, every
// request starts a new trace.
func WithTrustedClients(prefixes ...netip.Prefix) Option {
	return func(t *Tracer) { t.trusted = append(t.trusted, prefixes...) }
}

// WithTrustedProxies continues the trace context of clients that are the
// proxy's trusted proxies (lb.TrustedProxies, proxy.HTTP.SetTrustedProxies),
// as their X-Forwarded-For is. Default: off.
func WithTrustedProxies() Option {
	return func(t *Tracer) { t.trustProxies = true }
}

// WithTrustAllClients continues every client's trace context: only for a
// proxy that untrusted clients cannot reach.
func WithTrustAllClients() Option {
	return func(t *Tracer) { t.trustAll = true }
}

// New returns a Tracer whose spans go to tp (nil: a no-op provider, which
// records nothing but still propagates trace context).
func New(tp trace.TracerProvider, opts ...Option) *Tracer {
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	t := &Tracer{tracer: tp.Tracer(ScopeName), prop: propagation.TraceContext{}}
	for _, o := range opts {
		if o != nil {
			o(t)
		}
	}
	return t
}

// trusts reports whether r's client may continue its own trace.
func (t *Tracer) trusts(r *proxy.ObservedRequest) bool {
	if t.trustAll || t.trustProxies && r.TrustedPeer {
		return true
	}
	a := r.Peer.Addr()
	for _, p := range t.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// StartRequest implements proxy.Observer: it starts the request's server
// span.
func (t *Tracer) StartRequest(r *proxy.ObservedRequest) proxy.RequestObserver {
	ctx := context.Background()
	if t.trusts(r) {
		ctx = t.prop.Extract(ctx, requestCarrier{r})
	}
	method := strings.Clone(r.Method)
	attrs := make([]attribute.KeyValue, 0, 14)
	attrs = append(attrs,
		semconv.HTTPRequestMethodKey.String(method),
		semconv.URLScheme(r.Scheme),
		semconv.URLPath(strings.Clone(r.Path)),
		semconv.NetworkProtocolVersion(protoVersion(r.Proto)),
		semconv.NetworkPeerAddress(r.Peer.Addr().String()),
		semconv.NetworkPeerPort(int(r.Peer.Port())),
		RuleKey.String(r.Rule),
	)
	if r.Client.IsValid() {
		attrs = append(attrs, semconv.ClientAddress(r.Client.String()))
	}
	if host, port := splitHost(r.Host); host != "" {
		attrs = append(attrs, semconv.ServerAddress(host))
		if port > 0 {
			attrs = append(attrs, semconv.ServerPort(port))
		} else if p, err := strconv.Atoi(r.Port); err == nil {
			attrs = append(attrs, semconv.ServerPort(p))
		}
	}
	if r.Group != "" {
		attrs = append(attrs, GroupKey.String(r.Group))
	}
	if ua := r.Header("User-Agent"); len(ua) > 0 {
		attrs = append(attrs, semconv.UserAgentOriginal(strings.Clone(ua[0])))
	}
	ctx, span := t.tracer.Start(ctx, method+" "+r.Rule,
		trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(r.Start), trace.WithAttributes(attrs...))
	return &request{t: t, ctx: ctx, span: span, method: method}
}

// request is one request's spans.
type request struct {
	t      *Tracer
	ctx    context.Context // the server span's
	span   trace.Span
	method string
	att    trace.Span // the open attempt's client span, if any
}

// StartAttempt implements proxy.RequestObserver: it starts the attempt's
// client span and sends its context to the target.
func (q *request) StartAttempt(a *proxy.ObservedAttempt) {
	attrs := make([]attribute.KeyValue, 0, 8)
	attrs = append(attrs,
		semconv.HTTPRequestMethodKey.String(q.method),
		TargetKey.String(strings.Clone(a.Target)),
		semconv.NetworkPeerAddress(strings.Clone(a.Addr)),
	)
	if host, port := splitHost(a.Addr); host != "" {
		attrs = append(attrs, semconv.ServerAddress(host))
		if port > 0 {
			attrs = append(attrs, semconv.ServerPort(port))
		}
	}
	if a.Retry > 0 {
		attrs = append(attrs, semconv.HTTPRequestResendCount(a.Retry))
	}
	if a.Sticky {
		attrs = append(attrs, StickyKey.Bool(true))
	}
	ctx, span := q.t.tracer.Start(q.ctx, q.method,
		trace.WithSpanKind(trace.SpanKindClient), trace.WithTimestamp(a.Start), trace.WithAttributes(attrs...))
	q.att = span
	q.t.prop.Inject(ctx, attemptCarrier{a})
}

// EndAttempt implements proxy.RequestObserver.
func (q *request) EndAttempt(a *proxy.ObservedAttempt) {
	span := q.att
	if span == nil {
		return
	}
	q.att = nil
	switch {
	case a.Err != nil:
		span.SetAttributes(semconv.ErrorTypeKey.String(errorType(a.Err)))
		span.SetStatus(codes.Error, a.Err.Error())
	case a.Status > 0:
		span.SetAttributes(semconv.HTTPResponseStatusCode(a.Status))
		if a.Status >= 400 {
			span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(a.Status)))
			span.SetStatus(codes.Error, "")
		}
	}
	span.End()
}

// EndRequest implements proxy.RequestObserver: it ends the server span.
func (q *request) EndRequest(r *proxy.ObservedRequest) {
	span := q.span
	span.SetAttributes(semconv.HTTPResponseStatusCode(r.Status))
	if r.Attempts > 1 {
		span.SetAttributes(RetriesKey.Int(r.Attempts - 1))
	}
	if r.Status >= 500 {
		span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(r.Status)))
		span.SetStatus(codes.Error, strings.Clone(r.Error))
	}
	span.End()
}

// errorType is a low-cardinality name of an attempt's failure.
func errorType(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case strings.Contains(err.Error(), "connection refused"):
		return "connection_refused"
	case strings.Contains(err.Error(), "reset"):
		return "connection_reset"
	}
	return semconv.ErrorTypeOther.Value.AsString()
}

// protoVersion turns "HTTP/1.1" into "1.1" and "HTTP/2.0" into "2".
func protoVersion(p string) string {
	v := strings.TrimPrefix(p, "HTTP/")
	if v == "2.0" {
		return "2"
	}
	return v
}

// splitHost splits a host[:port]; port is 0 when absent.
func splitHost(hp string) (string, int) {
	if host, port, err := net.SplitHostPort(hp); err == nil {
		p, _ := strconv.Atoi(port)
		return strings.Clone(host), p
	}
	return strings.Clone(strings.Trim(hp, "[]")), 0
}

// requestCarrier reads a client's trace context from its request.
type requestCarrier struct{ r *proxy.ObservedRequest }

func (c requestCarrier) Get(key string) string {
	if vs := c.r.Header(key); len(vs) > 0 {
		return strings.Clone(vs[0])
	}
	return ""
}
func (c requestCarrier) Set(string, string) {}
func (c requestCarrier) Keys() []string     { return nil }

// attemptCarrier writes trace context into an attempt's request.
type attemptCarrier struct{ a *proxy.ObservedAttempt }

func (c attemptCarrier) Get(string) string     { return "" }
func (c attemptCarrier) Set(key, value string) { c.a.SetHeader(key, value) }
func (c attemptCarrier) Keys() []string        { return nil }
