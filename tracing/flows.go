package tracing

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/lbkit/lbkit/flowtable"
	"github.com/lbkit/lbkit/lb"
)

// Attributes of the span of an L4 flow (FlowEnded).
const (
	// ListenerKey is the listener the flow came in on.
	ListenerKey = attribute.Key("lbkit.listener")
	// BytesInKey and BytesOutKey count the bytes from the client to the
	// target and back.
	BytesInKey  = attribute.Key("lbkit.bytes_in")
	BytesOutKey = attribute.Key("lbkit.bytes_out")
	// DatagramsInKey and DatagramsOutKey count a UDP flow's datagrams.
	DatagramsInKey  = attribute.Key("lbkit.datagrams_in")
	DatagramsOutKey = attribute.Key("lbkit.datagrams_out")
	// CloseReasonKey says why the flow ended: client_close, target_close,
	// idle_timeout, drain, shutdown, evicted or error (proxy.CloseReason).
	CloseReasonKey = attribute.Key("lbkit.close_reason")
)

// FlowEnded implements lb.FlowObserver: a span per TCP, TLS or UDP flow,
// from its start to its end, made when it ends (L4 carries no trace
// context, so each flow is a trace of its own): the listener, the client,
// the target group and target, the bytes (and datagrams) each way and why
// it ended; an error ends it with an error status. Give the Tracer to
// lb.WithFlowObserver to have them.
func (t *Tracer) FlowEnded(e lb.FlowEndedEvent) {
	transport := "tcp"
	if e.Proto == flowtable.UDP {
		transport = "udp"
	}
	attrs := make([]attribute.KeyValue, 0, 14)
	attrs = append(attrs,
		semconv.NetworkTransportKey.String(transport),
		ListenerKey.String(e.Listener),
		semconv.ClientAddress(e.Client.Addr().String()),
		semconv.ClientPort(int(e.Client.Port())),
		BytesInKey.Int64(int64(e.BytesIn)),
		BytesOutKey.Int64(int64(e.BytesOut)),
		CloseReasonKey.String(e.Reason.String()),
	)
	if e.Group != "" {
		attrs = append(attrs, GroupKey.String(e.Group))
	}
	if e.Target.ID != "" {
		attrs = append(attrs, TargetKey.String(e.Target.ID), semconv.NetworkPeerAddress(e.Target.Addr))
		if host, port := splitHost(e.Target.Addr); host != "" && port > 0 {
			attrs = append(attrs, semconv.ServerAddress(host), semconv.ServerPort(port))
		}
	}
	if e.Proto == flowtable.UDP {
		attrs = append(attrs, DatagramsInKey.Int64(int64(e.DatagramsIn)), DatagramsOutKey.Int64(int64(e.DatagramsOut)))
	}
	_, span := t.tracer.Start(context.Background(), transport+" "+e.Listener,
		trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(e.Start), trace.WithAttributes(attrs...))
	if e.Err != nil {
		span.SetAttributes(semconv.ErrorTypeKey.String(errorType(e.Err)))
		span.SetStatus(codes.Error, e.Err.Error())
	}
	span.End(trace.WithTimestamp(e.Start.Add(e.Duration)))
}
