package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lbkit/lbkit/flowtable"
	"github.com/lbkit/lbkit/lb"
)

// descs are the descriptions of every metric, made once per Collector.
type descs struct {
	flowsNew, flowsActive, flowsRejected, flowsExpired, flowsMax *prometheus.Desc
	flowsEvicted, flowsUnreplied                                 *prometheus.Desc
	descriptorsLimit, descriptorsInUse, descriptorsRefused       *prometheus.Desc
	listenerAcceptErrors, listenerAcceptFailing                  *prometheus.Desc

	listenerInfo, listenerConns, listenerConnsActive        *prometheus.Desc
	listenerRecvBytes, listenerSentBytes                    *prometheus.Desc
	listenerRecvDatagrams, listenerSentDatagrams            *prometheus.Desc
	listenerRefused, listenerResets                         *prometheus.Desc
	httpRequests, httpTargetResponses, httpRequestsActive   *prometheus.Desc
	httpMalformed, httpTimeouts, httpClientClosed           *prometheus.Desc
	httpNoTarget, httpMisdirected, httpRetries, httpRetryNo *prometheus.Desc

	groupTargets, groupNoTarget *prometheus.Desc

	targetInfo, targetWeight, targetHealthy, targetEjected, targetServing, targetDraining *prometheus.Desc
	targetConnsActive, targetConns, targetConnectErrors                                   *prometheus.Desc
	targetSentBytes, targetRecvBytes                                                      *prometheus.Desc
	targetRequestsActive, targetRequests, targetResponses, targetResponseTime             *prometheus.Desc
}

func newDescs(c config) descs {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(c.namespace, "", name), help, labels, c.labels)
	}
	l := []string{"listener", "protocol"}
	t := []string{"group", "target"}
	return descs{
		flowsNew:       d("flows_new_total", "Flows (TCP connections, UDP client flows) made since start (NewFlowCount).", "protocol"),
		flowsActive:    d("flows_active", "Flows in the flow table now (ActiveFlowCount).", "protocol"),
		flowsRejected:  d("flows_rejected_total", "New flows refused by the flow table: full (RejectedFlowCount) or the source at its limit.", "protocol", "reason"),
		flowsExpired:   d("flows_expired_total", "Flows removed after their idle timeout.", "protocol"),
		flowsMax:       d("flows_max", "The flow table's capacity."),
		flowsEvicted:   d("flows_evicted_total", "Unreplied UDP flows evicted to make room for new flows (EvictedFlowCount).", "protocol"),
		flowsUnreplied: d("flows_unreplied", "UDP flows held now that their target has not answered (the first evicted)."),

		descriptorsLimit:   d("descriptors_budget", "The descriptor budget of the listeners' clients (0: none)."),
		descriptorsInUse:   d("descriptors_in_use", "Descriptors the listeners' clients hold now (TCP connection 2, UDP flow 1, HTTP connection 1)."),
		descriptorsRefused: d("descriptors_refused_total", "New connections and flows refused because the descriptor budget was spent."),

		listenerAcceptErrors:  d("listener_accept_errors_total", "Failed accepts on the listener's socket (out of descriptors and the like), each retried after a back-off.", l...),
		listenerAcceptFailing: d("listener_accept_failing", "1 while the listener's accepts fail.", l...),

		listenerInfo:          d("listener_info", "A listener: always 1, with its protocol and bound address.", "listener", "protocol", "address"),
		listenerConns:         d("listener_connections_total", "Client connections accepted (udp: client flows made).", l...),
		listenerConnsActive:   d("listener_connections_active", "Client connections open now (udp: client flows).", l...),
		listenerRecvBytes:     d("listener_received_bytes_total", "Bytes received from clients and forwarded to targets (tcp, tls, udp).", l...),
		listenerSentBytes:     d("listener_sent_bytes_total", "Bytes sent to clients from targets (tcp, tls, udp).", l...),
		listenerRecvDatagrams: d("listener_received_datagrams_total", "Datagrams received from clients and forwarded (udp).", l...),
		listenerSentDatagrams: d("listener_sent_datagrams_total", "Datagrams sent back to clients (udp).", l...),
		listenerRefused:       d("listener_refused_total", "Clients (udp: datagrams) refused before reaching a target, by reason: acl, table_full, source_limit, descriptors, no_target, connect_failed, proxy_header_untrusted, proxy_header_bad, tls_handshake.", "listener", "protocol", "reason"),
		listenerResets:        d("listener_resets_total", "TCP connections reset by the load balancer: idle (the idle timeout passed) or drain (the target's deregistration delay passed).", "listener", "protocol", "reason"),

		httpRequests:        d("http_requests_total", "HTTP requests answered to clients, by the class of the status the load balancer sent (client side).", "listener", "code_class"),
		httpTargetResponses: d("http_target_responses_total", "HTTP responses received from targets, by status class (target side).", "listener", "code_class"),
		httpRequestsActive:  d("http_requests_active", "HTTP requests in flight.", "listener"),
		httpMalformed:       d("http_malformed_requests_total", "HTTP requests refused before routing (400, 431, 501, 505).", "listener"),
		httpTimeouts:        d("http_request_timeouts_total", "HTTP requests not received within the request timeout (408).", "listener"),
		httpClientClosed:    d("http_client_closed_total", "HTTP requests whose client went away before the response (499).", "listener"),
		httpNoTarget:        d("http_no_target_total", "HTTP requests answered 503 for want of a healthy target.", "listener"),
		httpMisdirected:     d("http_misdirected_total", "HTTP requests answered 421 (Host and SNI differ where mutual TLS needs them equal).", "listener"),
		httpRetries:         d("http_retries_total", "HTTP request attempts on another target.", "listener"),
		httpRetryNo:         d("http_retries_refused_total", "HTTP retries the retry budget refused.", "listener"),

		groupTargets:  d("group_targets", "Targets of a group by health state (healthy: checks pass and not ejected), whatever their weight.", "group", "state"),
		groupNoTarget: d("group_no_target_total", "Connections and requests the group refused because no target could take them.", "group"),

		targetInfo:           d("target_info", "A target: always 1, with its address.", "group", "target", "address"),
		targetWeight:         d("target_weight", "The target's weight, 0..100 (0: no new traffic).", t...),
		targetHealthy:        d("target_healthy", "1 when the target's active health checks pass.", t...),
		targetEjected:        d("target_ejected", "1 when passive checks ejected the target.", t...),
		targetServing:        d("target_serving", "1 when the target receives new traffic: healthy, not ejected, weight above 0, not draining.", t...),
		targetDraining:       d("target_draining", "1 while the target is deregistering (its established connections drain).", t...),
		targetConnsActive:    d("target_connections_active", "Open L4 connections to the target.", t...),
		targetConns:          d("target_connections_total", "L4 connections forwarded to the target.", t...),
		targetConnectErrors:  d("target_connect_errors_total", "Failed connection attempts to the target (refused, timed out).", t...),
		targetSentBytes:      d("target_sent_bytes_total", "Bytes sent to the target (from clients).", t...),
		targetRecvBytes:      d("target_received_bytes_total", "Bytes received from the target (for clients).", t...),
		targetRequestsActive: d("target_requests_active", "HTTP requests in flight to the target.", t...),
		targetRequests:       d("target_requests_total", "HTTP requests sent to the target.", t...),
		targetResponses:      d("target_responses_total", "HTTP responses from the target, by status class.", "group", "target", "code_class"),
		targetResponseTime:   d("target_response_time_average_seconds", "Mean time from sending a request to the target to receiving its response header, over every response since the target's counters started.", t...),
	}
}

// all lists every description.
func (d *descs) all() []*prometheus.Desc {
	return []*prometheus.Desc{
		d.flowsNew, d.flowsActive, d.flowsRejected, d.flowsExpired, d.flowsMax,
		d.flowsEvicted, d.flowsUnreplied, d.descriptorsLimit, d.descriptorsInUse, d.descriptorsRefused,
		d.listenerAcceptErrors, d.listenerAcceptFailing,
		d.listenerInfo, d.listenerConns, d.listenerConnsActive, d.listenerRecvBytes, d.listenerSentBytes,
		d.listenerRecvDatagrams, d.listenerSentDatagrams, d.listenerRefused, d.listenerResets,
		d.httpRequests, d.httpTargetResponses, d.httpRequestsActive, d.httpMalformed, d.httpTimeouts,
		d.httpClientClosed, d.httpNoTarget, d.httpMisdirected, d.httpRetries, d.httpRetryNo,
		d.groupTargets, d.groupNoTarget,
		d.targetInfo, d.targetWeight, d.targetHealthy, d.targetEjected, d.targetServing, d.targetDraining,
		d.targetConnsActive, d.targetConns, d.targetConnectErrors, d.targetSentBytes, d.targetRecvBytes,
		d.targetRequestsActive, d.targetRequests, d.targetResponses, d.targetResponseTime,
	}
}

// emitter sends constant metrics.
type emitter struct{ ch chan<- prometheus.Metric }

func (e emitter) counter(d *prometheus.Desc, v uint64, labels ...string) {
	e.ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func (e emitter) gauge(d *prometheus.Desc, v float64, labels ...string) {
	e.ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

// collect turns one snapshot into metrics.
func collect(st lb.Stats, d *descs, ch chan<- prometheus.Metric) {
	e := emitter{ch}
	for _, p := range []struct {
		name string
		c    flowtable.Counters
	}{{"tcp", st.Flows.TCP}, {"udp", st.Flows.UDP}} {
		e.counter(d.flowsNew, p.c.NewFlowCount, p.name)
		e.gauge(d.flowsActive, float64(p.c.ActiveFlowCount), p.name)
		e.counter(d.flowsRejected, p.c.RejectedFlowCount, p.name, "table_full")
		e.counter(d.flowsRejected, p.c.RejectedSourceFlowCount, p.name, "source_limit")
		e.counter(d.flowsExpired, p.c.ExpiredFlowCount, p.name)
		e.counter(d.flowsEvicted, p.c.EvictedFlowCount, p.name)
	}
	e.gauge(d.flowsMax, float64(st.Flows.MaxFlows))
	e.gauge(d.flowsUnreplied, float64(st.Flows.Unreplied))
	e.gauge(d.descriptorsLimit, float64(st.Descriptors.Limit))
	e.gauge(d.descriptorsInUse, float64(st.Descriptors.InUse))
	e.counter(d.descriptorsRefused, st.Descriptors.Refused)

	for _, ls := range st.Listeners {
		name, proto := ls.Name, ls.Protocol.String()
		e.gauge(d.listenerInfo, 1, name, proto, ls.Addr)
		if ls.Protocol != lb.UDP {
			failing := 0.0
			if !ls.AcceptFailingSince.IsZero() {
				failing = 1
			}
			e.counter(d.listenerAcceptErrors, ls.AcceptErrors, name, proto)
			e.gauge(d.listenerAcceptFailing, failing, name, proto)
		}
		refused := func(v uint64, reason string) { e.counter(d.listenerRefused, v, name, proto, reason) }
		switch {
		case ls.TCP != nil:
			s := ls.TCP
			e.counter(d.listenerConns, s.Accepted, name, proto)
			e.gauge(d.listenerConnsActive, float64(s.Active), name, proto)
			e.counter(d.listenerRecvBytes, s.BytesIn, name, proto)
			e.counter(d.listenerSentBytes, s.BytesOut, name, proto)
			refused(s.Denied, "acl")
			refused(s.RejectedTableFull, "table_full")
			refused(s.RejectedSourceLimit, "source_limit")
			refused(s.RejectedDescriptors, "descriptors")
			refused(s.NoTarget, "no_target")
			refused(s.ConnectFailed, "connect_failed")
			refused(s.ProxyHeaderUntrusted, "proxy_header_untrusted")
			refused(s.ProxyHeaderBad, "proxy_header_bad")
			refused(s.TLSHandshakeErrors, "tls_handshake")
			e.counter(d.listenerResets, s.IdleResets, name, proto, "idle")
			e.counter(d.listenerResets, s.DrainResets, name, proto, "drain")
		case ls.UDP != nil:
			s := ls.UDP
			e.counter(d.listenerConns, s.Flows, name, proto)
			e.gauge(d.listenerConnsActive, float64(s.ActiveFlows), name, proto)
			e.counter(d.listenerRecvBytes, s.BytesIn, name, proto)
			e.counter(d.listenerSentBytes, s.BytesOut, name, proto)
			e.counter(d.listenerRecvDatagrams, s.DatagramsIn, name, proto)
			e.counter(d.listenerSentDatagrams, s.DatagramsOut, name, proto)
			refused(s.Denied, "acl")
			refused(s.RejectedTableFull, "table_full")
			refused(s.RejectedSourceLimit, "source_limit")
			refused(s.RejectedDescriptors, "descriptors")
			refused(s.NoTarget, "no_target")
		case ls.HTTP != nil:
			s := ls.HTTP
			e.counter(d.listenerConns, s.Connections, name, proto)
			e.gauge(d.listenerConnsActive, float64(s.ActiveConnections), name, proto)
			refused(s.RefusedConnections+s.RefusedRequests, "acl")
			refused(s.RejectedDescriptors, "descriptors")
			refused(s.TLSHandshakeErrors, "tls_handshake")
			for i, class := range codeClasses {
				e.counter(d.httpRequests, s.Status[i], name, class)
				e.counter(d.httpTargetResponses, s.UpstreamStatus[i], name, class)
			}
			e.gauge(d.httpRequestsActive, float64(s.ActiveRequests), name)
			e.counter(d.httpMalformed, s.Malformed, name)
			e.counter(d.httpTimeouts, s.RequestTimeouts, name)
			e.counter(d.httpClientClosed, s.ClientClosed, name)
			e.counter(d.httpNoTarget, s.NoTarget, name)
			e.counter(d.httpMisdirected, s.Misdirected, name)
			e.counter(d.httpRetries, s.Retries, name)
			e.counter(d.httpRetryNo, s.RetriesRefused, name)
		}
	}

	for _, g := range st.Groups {
		e.gauge(d.groupTargets, float64(g.Healthy), g.Name, "healthy")
		e.gauge(d.groupTargets, float64(g.Unhealthy), g.Name, "unhealthy")
		e.counter(d.groupNoTarget, g.NoTarget, g.Name)
		for _, t := range g.Targets {
			id := t.ID
			c := &t.Counters
			e.gauge(d.targetInfo, 1, g.Name, id, t.Addr)
			e.gauge(d.targetWeight, float64(t.Weight), g.Name, id)
			e.gauge(d.targetHealthy, boolValue(t.Healthy), g.Name, id)
			e.gauge(d.targetEjected, boolValue(t.Ejected), g.Name, id)
			e.gauge(d.targetServing, boolValue(t.Serving), g.Name, id)
			e.gauge(d.targetDraining, boolValue(!t.DrainUntil.IsZero()), g.Name, id)
			e.gauge(d.targetConnsActive, float64(c.ActiveConnections), g.Name, id)
			e.counter(d.targetConns, c.Connections, g.Name, id)
			e.counter(d.targetConnectErrors, c.ConnectErrors, g.Name, id)
			e.counter(d.targetSentBytes, c.BytesIn, g.Name, id)
			e.counter(d.targetRecvBytes, c.BytesOut, g.Name, id)
			e.gauge(d.targetRequestsActive, float64(c.ActiveRequests), g.Name, id)
			e.counter(d.targetRequests, c.Requests, g.Name, id)
			for i, class := range codeClasses {
				e.counter(d.targetResponses, c.Status[i], g.Name, id, class)
			}
			e.gauge(d.targetResponseTime, c.AvgResponseTime.Seconds(), g.Name, id)
		}
	}
}
