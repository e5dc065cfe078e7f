// Package proxy holds lbkit's ready-made proxies: TCP and UDP (L4) and
// HTTP/HTTPS (L7), built on the balancer, flowtable and sticky packages.
//
// The pieces every proxy shares live here too: an ACL checked on the
// client's address before any other work, and the Upstream, a target group
// as the proxies see it (a balancer, an optional sticky policy, per-target
// live counters, and the registry of open connections that draining closes).
//
// Like net/http/httputil's ReverseProxy, each proxy is a plain struct whose
// fields say what their zero value means; the lb package assembles them from
// functional options.
package proxy
