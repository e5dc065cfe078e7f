// Package lbkit is an embeddable Go load-balancing SDK: what a cloud load
// balancer gives (listeners, target groups, weighted algorithms, health
// checks, session stickiness, connection tracking with idle timeouts, TCP,
// UDP and HTTP(S) proxies), as composable packages assembled with functional
// options.
//
// This root package holds no code; it introduces the packages below. Each is
// usable alone: a custom proxy can use just balancer and flowtable, a sidecar
// just healthcheck.
//
//   - [github.com/lbkit/lbkit/balancer]: target sets and lock-free pickers:
//     smooth weighted round-robin, weighted least-connections, source-IP and
//     key consistent hashing (Maglev), weighted random.
//   - [github.com/lbkit/lbkit/flowtable]: a sharded 5-tuple flow table with
//     per-protocol idle timeouts (TCP 350 s, UDP 120 s), a capacity and
//     counters for new, active and rejected flows.
//   - [github.com/lbkit/lbkit/healthcheck]: TCP, HTTP/HTTPS and UDP (ICMP)
//     checkers and a monitor with interval, timeout, thresholds and jitter
//     that says why a target is down.
//   - [github.com/lbkit/lbkit/sticky]: session persistence by source IP,
//     load-balancer cookie and application cookie.
//   - [github.com/lbkit/lbkit/proxy]: ready-made TCP, UDP and HTTP(S) proxies.
//   - [github.com/lbkit/lbkit/lb]: the assembly: listeners, target groups,
//     targets, rules, stats and diagnosis.
//
// Optional integrations live in their own packages, so that a program that
// does not use them does not compile them or their dependencies:
//
//   - [github.com/lbkit/lbkit/config]: a YAML configuration file, checked
//     and turned into lb options (go.yaml.in/yaml/v3).
//   - [github.com/lbkit/lbkit/metrics]: lb's statistics as Prometheus
//     metrics (prometheus/client_golang).
//   - [github.com/lbkit/lbkit/admin]: an admin endpoint: status page, JSON
//     and configuration reload.
//
// The four lower packages never import each other; proxy joins them and lb
// assembles everything. No package has global mutable state: everything hangs
// off a value the user constructs and closes, so two load balancers in one
// process never see each other.
package lbkit
