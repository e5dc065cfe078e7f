// Package metrics exposes a load balancer's counters to Prometheus.
//
// It lives in a package of its own so that programs that embed lbkit
// without Prometheus never compile github.com/prometheus/client_golang.
//
// A Collector reads lb.LoadBalancer.Stats at scrape time and turns the
// snapshot into metrics: there is no second set of counters to keep in
// step, and what Prometheus sees is what Stats, Diagnose and the admin
// page say. Names follow Prometheus's conventions (a unit suffix, _total
// on counters), under the "lbkit" namespace:
//
//	lbkit_flows_new_total{protocol}                 flows made (NewFlowCount)
//	lbkit_flows_active{protocol}                    flows held (ActiveFlowCount)
//	lbkit_flows_rejected_total{protocol,reason}     refused: table_full (RejectedFlowCount), source_limit
//	lbkit_flows_evicted_total{protocol}             unreplied UDP flows evicted to make room
//	lbkit_flows_unreplied                           UDP flows not yet answered (the first evicted)
//	lbkit_descriptors_budget, _in_use, lbkit_descriptors_refused_total   the descriptor budget
//	lbkit_listener_accept_errors_total{listener,protocol}, lbkit_listener_accept_failing
//	lbkit_listener_connections_total{listener,protocol}, lbkit_listener_received_bytes_total, ...
//	lbkit_listener_refused_total{listener,protocol,reason}
//	lbkit_http_requests_total{listener,code_class}  what clients got (client side)
//	lbkit_http_target_responses_total{listener,code_class}  what targets answered (target side)
//	lbkit_group_targets{group,state}                healthy and unhealthy targets
//	lbkit_target_serving{group,target}              1 when the target gets new traffic
//	lbkit_target_healthy, _ejected, _draining, _weight, _connections_active, _requests_total, ...
//	lbkit_target_responses_total{group,target,code_class}
//	lbkit_target_response_time_average_seconds{group,target}
//
// Each metric's help text says what it counts. Response times are the
// mean per target that lb's Stats keep and, with a ResponseTimes fed by lb's
// Response hook (it keeps state, so it is a collector of its own), a
// histogram per target:
//
//	lbkit_target_response_seconds{group,target}    response times, 1 ms to 10 s
//
// # Example
//
//	l, _ := lb.New(...)
//	http.Handle("/metrics", metrics.Handler(l))
//
// or, with the Go runtime's metrics beside them:
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(metrics.NewCollector(l), collectors.NewGoCollector())
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
package metrics
