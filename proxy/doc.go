// Package proxy holds lbkit's ready-made proxies: TCP and UDP (L4) and
// HTTP/HTTPS (L7), built on the balancer, flowtable and sticky packages.
//
// The pieces every proxy shares live here too: an ACL checked on the
// client's address before any other work, and the Upstream, a target group
// as the proxies see it (a balancer, an optional sticky policy, per-target
// live counters, and the registry of open connections that draining closes).
//
// Like net/http/httputil's ReverseProxy, each proxy is a plain struct whose
// fields say what their zero value means; what changes while traffic flows
// goes through Set methods that apply to new connections or requests. The lb
// package assembles them from functional options.
//
// # TCP and UDP
//
// TCP accepts a connection, checks the ACL, admits it as a flow in a
// FlowTable (refused and counted when the table is full or the client is at
// its flow limit), picks a target from its Upstream (sticky by source IP
// when configured), connects with a timeout (another target on refusal or
// timeout, bounded), and forwards bytes with splice between the two sockets,
// propagating half-closes. A connection idle for the flow table's TCP idle
// timeout is reset on both sides, as the reference load balancer does;
// idleness comes from the kernel (TCP_INFO), so splicing and idle timeouts
// coexist. PROXY protocol v1/v2 is sent to targets per Upstream and accepted
// from trusted sources only; TLS can be terminated on the listener.
//
// UDP keeps a flow per client address, each with its own connected socket
// to its target, so replies return to the client from the listener's
// address. When a flow's target turns unhealthy or leaves, its next datagram
// goes to a newly picked target. Nothing is allocated per datagram. A flow
// is unreplied until its target answers and it still sees traffic 2 s
// later (conntrack's rule): until then it idles out after
// DefaultUnrepliedTimeout and is the first evicted when room is needed.
//
// # Accept loops and descriptors
//
// TCP.Serve and HTTP.Serve end only when closed: every other accept error
// (out of descriptors, buffers or memory, an aborted connection) is retried
// with net/http's back-off, counted in Stats (AcceptErrors,
// AcceptFailingSince) and logged once when it starts and once when it ends.
// Proxies that share a Descriptors count their clients' file descriptors
// against a budget (a TCP connection 2, a UDP flow 1, an HTTP connection 1)
// and refuse new ones beyond it (RefusedDescriptors), after evicting an
// unreplied UDP flow if there is one.
//
// # HTTP and HTTPS
//
// HTTP is the L7 proxy. Its listeners are served by lbkit's own HTTP/1.1
// engine — a strict RFC 9112 parser (nothing ambiguous is forwarded),
// headers rewritten straight into the buffer sent to the target, bodies
// streamed and spliced — with a goroutine per connection, or, with
// HTTP.EventLoop on Linux, by event loops (one per GOMAXPROCS, as nginx's
// workers) that serve bodiless requests without a goroutine switch and hand
// every other connection to the goroutines; HTTP/2 goes to Go's HTTP/2
// server, and HTTP is also an http.Handler for a server of your own. The
// front ends share one forwarding core. A request passes the
// listener's ACL, is routed by a Router (rules on host and path, by
// priority, to forward, split, redirect or fixed-response actions), and is
// forwarded to a target its group's Upstream chooses, with stickiness (any
// sticky.Policy), X-Forwarded-* headers (trusted only from TrustedProxies),
// retries on another target when that is safe and the retry budget allows,
// and one access-log record with nginx's timing fields. HTTPS picks
// certificates by SNI from a Certificates store that can be replaced while
// serving, offers HTTP/2, and supports mutual TLS. The proxy's own answers
// (400, 403, 408, 413, 414, 421, 431, 501, 502, 503, 504) are counted apart
// from the targets' in Stats. Shutdown behaves as http.Server.Shutdown:
// requests in flight finish and idle keep-alive connections close.
//
// # Hooks for integrations
//
// Two small interfaces let modules with heavy dependencies plug in without
// this package importing them. An Observer (HTTP.Observer) is told when a
// request is routed, when each attempt to a target starts and ends (an
// attempt may add header fields, such as trace context) and when the request
// ends: the tracing module makes OpenTelemetry spans of it; unset, it costs a
// nil check. A CertificateSource (Certificates.SetSource) supplies
// certificates for server names the store's own do not match, and answers
// ACME TLS-ALPN-01 challenges: the acme module's Manager is one.
package proxy
