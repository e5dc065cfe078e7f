package config

import "go.yaml.in/yaml/v3"

// File is a whole configuration file: the load balancer's listeners, its
// target groups and its flow table. It mirrors the lb package's model with
// the names written in snake_case.
//
// Every field may be left out; a field left out takes the lb package's
// default, stated in its documentation here. Where 0 (or false) means
// something different from "left out", the field is a pointer: a nil
// pointer is "left out" (for example Target.Weight: absent is 1, 0 drains
// the target).
//
// A File read by Load or Parse has been checked: every problem is reported
// at once, by path. A File built in Go is checked by Validate and by
// Options.
type File struct {
	// Listeners are where clients connect (yaml: listeners). Each one
	// forwards to a target group, or, for HTTP and HTTPS, follows its rules.
	Listeners []Listener `yaml:"listeners,omitempty"`
	// TargetGroups are the sets of targets listeners forward to (yaml:
	// target_groups).
	TargetGroups []TargetGroup `yaml:"target_groups,omitempty"`
	// Flows sizes the flow table shared by the TCP, TLS and UDP listeners
	// (yaml: flows). It cannot change on a reload: a reload that changes it
	// is refused.
	Flows Flows `yaml:"flows,omitempty"`

	// dir is the directory relative file names (certificates, keys) are
	// read from: the configuration file's directory for Load, the working
	// directory otherwise.
	dir string
	// ext is what the options of Load or Parse registered.
	ext *extensions
	// sections holds the top-level sections registered with WithSection,
	// by key.
	sections map[string]*yaml.Node
}

// Listener is one entry of listeners: an address clients connect to, the
// protocol they speak, and where their traffic goes.
type Listener struct {
	// Name identifies the listener in logs, metrics, the admin page and
	// errors, and across reloads: a listener whose name, protocol and
	// address stay the same keeps its established connections through a
	// reload. Required; unique among listeners.
	Name string `yaml:"name"`
	// Protocol is what clients speak: tcp, udp, tls (TCP with TLS
	// terminated here), http or https. Required. A listener forwards to
	// target groups of these protocols only: tcp→tcp, udp→udp, tls→tcp or
	// tls, http→http, https→http or https.
	Protocol string `yaml:"protocol"`
	// Address is where to listen, as host:port ("127.0.0.1:8080",
	// "[::1]:443", ":80" for every address). Port 0 takes a free port
	// (the admin page and /stats show which). Required.
	Address string `yaml:"address"`

	// ForwardTo names the target group that gets the listener's traffic:
	// every connection (tcp, udp, tls) or every request no rule matches
	// (http, https). Required for tcp, udp and tls listeners; an http or
	// https listener needs exactly one of ForwardTo, Redirect and Fixed as
	// its default action.
	ForwardTo string `yaml:"forward_to,omitempty"`
	// Redirect makes an http or https listener answer requests no rule
	// matches with a redirect (e.g. {scheme: https} for HTTP to HTTPS),
	// instead of ForwardTo.
	Redirect *Redirect `yaml:"redirect,omitempty"`
	// Fixed makes an http or https listener answer requests no rule matches
	// with a fixed response, instead of ForwardTo.
	Fixed *Fixed `yaml:"fixed,omitempty"`
	// Rules route an http or https listener's requests by host and path,
	// lowest priority first, the first match winning. Default: none.
	Rules []Rule `yaml:"rules,omitempty"`

	// Allow admits only clients whose address is in one of these CIDR
	// prefixes or addresses ("10.0.0.0/8", "2001:db8::/32",
	// "192.0.2.7"). Default: everyone.
	Allow []string `yaml:"allow,omitempty"`
	// Deny refuses clients whose address is in one of these prefixes,
	// whatever Allow says. Default: nobody.
	Deny []string `yaml:"deny,omitempty"`
	// TrustedProxies are the prefixes of proxies in front of this listener
	// whose word about the client is believed: their X-Forwarded-For (http,
	// https) or PROXY protocol header (tcp, tls). Default: nobody.
	TrustedProxies []string `yaml:"trusted_proxies,omitempty"`

	// IdleTimeout is how long a connection may stay idle: tcp and tls flows
	// (default 350s, then closed with a reset both ways), udp flows
	// (default 120s), http keep-alive connections between requests
	// (default 60s). A change applies to new connections only.
	IdleTimeout Duration `yaml:"idle_timeout,omitempty"`
	// ConnectTimeout bounds one connection attempt to a target; then the
	// next target is tried. Default 5s.
	ConnectTimeout Duration `yaml:"connect_timeout,omitempty"`
	// ConnectAttempts is how many different targets a new tcp or tls
	// connection tries before it is closed. Default 3.
	ConnectAttempts int `yaml:"connect_attempts,omitempty"`
	// HeaderTimeout bounds how long a tcp or tls client may take to send
	// its PROXY protocol header and finish its TLS handshake. Default 10s.
	HeaderTimeout Duration `yaml:"header_timeout,omitempty"`

	// RequestTimeout is how long an http client has to send a whole
	// request; then it gets 408. Default 60s.
	RequestTimeout Duration `yaml:"request_timeout,omitempty"`
	// ResponseTimeout is how long a target has to answer a request with
	// its response header; then the request is retried on another target
	// when that is safe, else the client gets 504. Default 60s.
	ResponseTimeout Duration `yaml:"response_timeout,omitempty"`
	// MaxHeaderBytes limits an http request's line and headers, in bytes:
	// above it, 431. Default 65536 (64 KiB).
	MaxHeaderBytes int `yaml:"max_header_bytes,omitempty"`
	// MaxBodyBytes limits an http request's body, in bytes: above it, 413.
	// Default 10737418240 (10 GiB).
	MaxBodyBytes int64 `yaml:"max_body_bytes,omitempty"`
	// MaxURILength limits an http request's target, in bytes: above it,
	// 414. Default 8192.
	MaxURILength int `yaml:"max_uri_length,omitempty"`
	// Retry bounds how an http listener retries a request on another
	// target. Default: see Retry.
	Retry *Retry `yaml:"retry,omitempty"`
	// ForwardedHeader adds an RFC 7239 Forwarded header to requests, beside
	// the X-Forwarded-For, -Proto, -Port and -Host headers that are always
	// sent. Default false.
	ForwardedHeader bool `yaml:"forwarded_header,omitempty"`
	// AccessLog logs one record per http request (client, target, method,
	// host, path, query, status on both sides, bytes each way, timings,
	// user agent, referer, request ID, TLS version, cipher and SNI) to the
	// daemon's access log. Default false.
	AccessLog bool `yaml:"access_log,omitempty"`
	// FlowLog logs one record per tcp, tls or udp flow when it ends
	// (client, target, bytes each way, duration, why it ended) and per
	// refused connection or datagram, to the daemon's flow log (see
	// WithFlowLog). Default false.
	FlowLog bool `yaml:"flow_log,omitempty"`
	// RequestID gives every request an ID, sent to the target as
	// X-Request-Id and logged: a trusted proxy's X-Request-Id, else a
	// random one. Default: the value of access_log.
	RequestID *bool `yaml:"request_id,omitempty"`
	// EventLoop serves an http listener's connections with event loops
	// on Linux, one per CPU the daemon uses, as nginx's workers do: the
	// same behaviour at a lower cost per request (see lb.WithEventLoop).
	// Default false.
	EventLoop bool `yaml:"event_loop,omitempty"`

	// Certificates are the certificates a tls or https listener serves,
	// chosen by the client's SNI; the first is served to clients that send
	// no SNI or an unknown name. Required for tls and https listeners;
	// replaced by a reload without interrupting connections.
	Certificates []Certificate `yaml:"certificates,omitempty"`
	// TLS holds a tls or https listener's other TLS settings. Default: see
	// ListenerTLS.
	TLS *ListenerTLS `yaml:"tls,omitempty"`
}

// Rule is one entry of an http or https listener's rules: requests whose
// host and path match get its action. Set exactly one of Forward, Split,
// Redirect and Fixed.
type Rule struct {
	// Name identifies the rule in errors and the access log. Default:
	// "rule[i]".
	Name string `yaml:"name,omitempty"`
	// Priority orders the rules, lowest first; the first match wins.
	// Default 0. Two rules with the same host and path are an error.
	Priority int `yaml:"priority,omitempty"`
	// Host matches the request's host: "" (or left out) any host,
	// "example.com" exactly, "*.example.com" its subdomains.
	Host string `yaml:"host,omitempty"`
	// Path matches the request's cleaned path: "" (or left out) any path,
	// "/a" exactly, "/a/*" everything under "/a/", "~^/v[0-9]+/" a
	// regular expression.
	Path string `yaml:"path,omitempty"`
	// Forward names the target group that gets matching requests.
	Forward string `yaml:"forward,omitempty"`
	// Split shares matching requests between target groups by weight
	// (canary and blue/green releases).
	Split []Split `yaml:"split,omitempty"`
	// Redirect answers matching requests with a redirect.
	Redirect *Redirect `yaml:"redirect,omitempty"`
	// Fixed answers matching requests with a fixed response.
	Fixed *Fixed `yaml:"fixed,omitempty"`
}

// Split is one target group's share of a Rule's split.
type Split struct {
	// Group names the target group. Required.
	Group string `yaml:"group"`
	// Weight is the group's share, 0..1000; the shares need not add up to
	// anything in particular. Required.
	Weight int `yaml:"weight"`
}

// Redirect is a redirect answer. A field left out keeps the request's own
// part, so {scheme: https} sends http://h/p?q to https://h/p?q.
type Redirect struct {
	// Scheme is http or https. Default: the request's.
	Scheme string `yaml:"scheme,omitempty"`
	// Host replaces the host. Default: the request's (without its port).
	Host string `yaml:"host,omitempty"`
	// Port replaces the port. Default: none (the scheme's default port).
	Port int `yaml:"port,omitempty"`
	// Path replaces the path; the query is always kept. Default: the
	// request's.
	Path string `yaml:"path,omitempty"`
	// Code is the status: 301, 302, 303, 307 or 308. Default 301.
	Code int `yaml:"code,omitempty"`
}

// Fixed is a fixed answer.
type Fixed struct {
	// Status is the status code, 200..599. Default 200.
	Status int `yaml:"status,omitempty"`
	// ContentType is the Content-Type header. Default "text/plain;
	// charset=utf-8" when Body is not empty.
	ContentType string `yaml:"content_type,omitempty"`
	// Body is the response body, at most 1 MiB. Default: empty.
	Body string `yaml:"body,omitempty"`
}

// Retry bounds how an http listener retries requests on another target. A
// request that never reached a target is always retried; one that did
// only when its method is idempotent and its body could be replayed. Every
// retry also takes a token from a retry budget.
type Retry struct {
	// Attempts is the most targets one request tries, the first included;
	// 1 turns retries off. Default 3.
	Attempts int `yaml:"attempts,omitempty"`
	// Timeout bounds the total time of a request's attempts: no attempt
	// starts after it. Default 15s.
	Timeout Duration `yaml:"timeout,omitempty"`
	// BodyLimit is the largest request body, in bytes, kept for replay;
	// negative: bodies are never replayed. Default 65536.
	BodyLimit int64 `yaml:"body_limit,omitempty"`
	// Ratio is the retry budget: retries may be this fraction of requests.
	// Default 0.2.
	Ratio float64 `yaml:"ratio,omitempty"`
	// MinPerSecond is the budget's floor: this many retries per second are
	// allowed whatever the request rate. Default 10.
	MinPerSecond int `yaml:"min_per_second,omitempty"`
}

// Certificate is a certificate and its private key, each in a PEM file. A
// relative file name is read from the configuration file's directory.
//
// With WithCertificateFactory, an entry may instead name a registered kind
// whose source obtains the certificates (lbd: acme).
type Certificate struct {
	// CertFile is the certificate chain, leaf first. Required, unless the
	// entry names a registered kind.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the private key. Required, unless the entry names a
	// registered kind.
	KeyFile string `yaml:"key_file"`

	// kinds holds the sections of kinds registered with
	// WithCertificateFactory, by kind.
	kinds map[string]*yaml.Node
}

// ListenerTLS holds a tls or https listener's TLS settings beyond its
// certificates.
type ListenerTLS struct {
	// MinVersion is the lowest TLS version accepted: "1.2" or "1.3"
	// (TLS 1.0 and 1.1, deprecated by RFC 8996, are refused). Default "1.2".
	MinVersion string `yaml:"min_version,omitempty"`
	// CipherSuites limits the TLS 1.0–1.2 cipher suites accepted, by their
	// Go names (e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256). Default:
	// crypto/tls's secure list.
	CipherSuites []string `yaml:"cipher_suites,omitempty"`
	// ClientAuth turns on mutual TLS (https listeners): none, optional
	// (a client certificate is verified if given) or required. Default
	// none.
	ClientAuth string `yaml:"client_auth,omitempty"`
	// ClientCAFile is a PEM file of the CAs client certificates are
	// verified against. Required when ClientAuth is not none.
	ClientCAFile string `yaml:"client_ca_file,omitempty"`
	// ClientAuthHosts limits mutual TLS to these server names (host
	// patterns as in Rule.Host); a request for one of them on a
	// connection without a client certificate gets 421. Default: every
	// name.
	ClientAuthHosts []string `yaml:"client_auth_hosts,omitempty"`
	// Wildcard is how wildcard certificates match server names: one_label
	// (*.example.com matches a.example.com only, as browsers do) or suffix
	// (also a.b.example.com, the longest suffix winning). Default
	// one_label.
	Wildcard string `yaml:"wildcard,omitempty"`
	// DisableHTTP2 stops an https listener from offering HTTP/2. Default
	// false.
	DisableHTTP2 bool `yaml:"disable_http2,omitempty"`
}

// TargetGroup is one entry of target_groups: targets that speak one
// protocol, and how the load balancer picks among them, checks them and
// keeps sessions on them.
type TargetGroup struct {
	// Name identifies the group in listeners' forward_to and rules, in
	// logs, metrics and the admin page, and across reloads: targets of a
	// group keep their health and connections through a reload. Required;
	// unique among target groups.
	Name string `yaml:"name"`
	// Protocol is what the load balancer speaks to the targets: tcp, udp,
	// tls, http or https. Required.
	Protocol string `yaml:"protocol"`
	// Algorithm picks a target for each new connection or request:
	// round_robin (smooth weighted round-robin), least_connections,
	// source_ip_hash (consistent hashing of the client IP), random.
	// Default round_robin.
	Algorithm string `yaml:"algorithm,omitempty"`
	// Targets are the group's static targets. Default: none (a group may
	// get its targets from Discovery alone).
	Targets []Target `yaml:"targets,omitempty"`
	// HealthCheck configures active health checks. Default: checks on,
	// with the defaults of HealthCheck.
	HealthCheck *HealthCheck `yaml:"health_check,omitempty"`
	// Stickiness keeps a client's connections or requests on one target.
	// Default: none.
	Stickiness *Stickiness `yaml:"stickiness,omitempty"`
	// DeregistrationDelay is how long a removed target keeps its
	// established connections and sticky sessions before they are closed;
	// 0s closes them at once. Default 300s.
	DeregistrationDelay *Duration `yaml:"deregistration_delay,omitempty"`
	// ProxyProtocol makes tcp and tls listeners send a PROXY protocol
	// header of version 1 or 2 to this group's targets at the start of
	// every connection, so they learn the client's address. Default 0:
	// none.
	ProxyProtocol int `yaml:"proxy_protocol,omitempty"`
	// TLS configures connections to the targets of a tls or https group.
	// Default: verified against the system's CA pool, with the target's
	// host as server name.
	TLS *ClientTLS `yaml:"tls,omitempty"`
	// Discovery makes the group follow DNS: its answer's addresses become
	// targets beside the static ones, and follow it as it changes.
	// Default: none.
	Discovery *Discovery `yaml:"discovery,omitempty"`
	// PassiveEjection takes a target out for a while after consecutive
	// failures of real traffic. Default: on, with the defaults of
	// PassiveEjection.
	PassiveEjection *PassiveEjection `yaml:"passive_ejection,omitempty"`
	// CircuitBreaker bounds what the HTTP listeners ask of each target.
	// Default: CircuitBreaker's defaults.
	CircuitBreaker *CircuitBreaker `yaml:"circuit_breaker,omitempty"`
}

// Target is one entry of a target group's targets.
type Target struct {
	// Address is where the target listens, as host:port (an IP address,
	// or a name resolved when connecting). Required.
	Address string `yaml:"address"`
	// ID names the target within its group, in logs, metrics, the admin
	// page and across reloads. Default: its address. Unique in the group.
	ID string `yaml:"id,omitempty"`
	// Weight is the target's share of new traffic, 0..100; 0 sends it no
	// new traffic while its established connections continue (a drain).
	// Default 1.
	Weight *int `yaml:"weight,omitempty"`
}

// HealthCheck configures a target group's active health checks. A target
// gets traffic only while its checks pass; a new target is healthy after
// its first passing check.
type HealthCheck struct {
	// Enabled turns checks off when false: every target then counts as
	// healthy. Default true.
	Enabled *bool `yaml:"enabled,omitempty"`
	// Protocol is how targets are checked: tcp (a connection opens), http
	// or https (a request gets an expected status), udp (an ICMP echo is
	// answered, then a UDP probe draws no ICMP port unreachable; needs
	// root). Default: the group's protocol, tcp for tls groups. A UDP
	// service is often better checked over tcp or http on another port.
	Protocol string `yaml:"protocol,omitempty"`
	// Port is the port to check. Default: each target's traffic port.
	Port int `yaml:"port,omitempty"`
	// Path is the http(s) request path, absolute. Default "/".
	Path string `yaml:"path,omitempty"`
	// Host is the http(s) Host header (and TLS server name), for targets
	// that check it. Default: the target's address.
	Host string `yaml:"host,omitempty"`
	// Method is the http(s) method. Default GET.
	Method string `yaml:"method,omitempty"`
	// Status lists the http(s) status codes that count as healthy, as
	// codes and ranges: "200", "200,202,401", "200-299". Default "200".
	Status string `yaml:"status,omitempty"`
	// Interval is the time between two checks of a target. Default 5s.
	Interval Duration `yaml:"interval,omitempty"`
	// Timeout bounds one check; it must be below Interval. Default 3s.
	Timeout Duration `yaml:"timeout,omitempty"`
	// HealthyThreshold is the consecutive passing checks that make an
	// unhealthy target healthy, 1..10. Default 3.
	HealthyThreshold int `yaml:"healthy_threshold,omitempty"`
	// UnhealthyThreshold is the consecutive failing checks that make a
	// healthy target unhealthy, 1..10. Default 3.
	UnhealthyThreshold int `yaml:"unhealthy_threshold,omitempty"`
	// TLS configures https checks. Default: verified against the system's
	// CA pool.
	TLS *ClientTLS `yaml:"tls,omitempty"`
}

// ClientTLS configures the load balancer as a TLS client: to a group's
// targets, or for https health checks.
type ClientTLS struct {
	// CAFile is a PEM file of the CAs the targets' certificates are
	// verified against. Default: the system's CA pool.
	CAFile string `yaml:"ca_file,omitempty"`
	// CertFile and KeyFile are a client certificate and its key, PEM, for
	// targets that require one. Default: none.
	CertFile string `yaml:"cert_file,omitempty"`
	KeyFile  string `yaml:"key_file,omitempty"`
	// ServerName is the name verified in the targets' certificates (and
	// sent as SNI). Default: each target's host.
	ServerName string `yaml:"server_name,omitempty"`
	// InsecureSkipVerify turns certificate verification off: anyone on the
	// path can then read and change the traffic. Default false.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify,omitempty"`
}

// Stickiness configures a target group's session persistence. Sessions
// follow their target while it is healthy; when it turns unhealthy or is
// removed they move.
type Stickiness struct {
	// Kind is none, source_ip (each client IP stays on one target; any
	// protocol), lb_cookie (the load balancer sets a cookie; http and https
	// groups) or app_cookie (follows the application's own session cookie;
	// http and https groups). Required.
	Kind string `yaml:"kind"`
	// Duration is how long a session lasts without use. Default 20m.
	Duration Duration `yaml:"duration,omitempty"`
	// CookieName is the load balancer's cookie (lb_cookie; default "LBKIT")
	// or the application's cookie to follow (app_cookie; required, e.g.
	// JSESSIONID).
	CookieName string `yaml:"cookie_name,omitempty"`
	// Keys authenticate the lb_cookie: standard base64, each at least 32
	// bytes of secret randomness once decoded (e.g. from `openssl rand
	// -base64 32`). The first signs new cookies, all verify, so keys rotate
	// by prepending. Load balancers serving one site must share them.
	// Default: a random key made at start, good for one process.
	Keys []string `yaml:"keys,omitempty"`
	// KeysFile names a file of such keys, one per line, read beside Keys
	// (after them), so the secrets need not sit in the configuration.
	KeysFile string `yaml:"keys_file,omitempty"`
	// Capacity bounds the sessions remembered (source_ip, app_cookie);
	// when full, new clients are balanced without being remembered.
	// Default 262144.
	Capacity int `yaml:"capacity,omitempty"`
	// PrefixV4 and PrefixV6 make source_ip stickiness key on the client's
	// network rather than its address (e.g. 24 and 64), for clients behind
	// rotating NAT. Default: the whole address (32 and 128).
	PrefixV4 int `yaml:"prefix_v4,omitempty"`
	PrefixV6 int `yaml:"prefix_v6,omitempty"`
	// Store shares the sessions of source_ip and app_cookie stickiness
	// with the other load balancers that name the same store: one section
	// of a kind registered with WithStoreFactory (lbd has redis), e.g.
	// {redis: {address: 10.0.0.5:6379}}, beside timeout. Default: none.
	Store *StickyStore `yaml:"store,omitempty"`
}

// StickyStore is a stickiness's shared store: the section of a kind
// registered with WithStoreFactory, and how long a call may take.
type StickyStore struct {
	// Timeout bounds each call to the store; a slower or failing store
	// leaves the node's own table to serve. Default 50ms.
	Timeout Duration `yaml:"timeout,omitempty"`

	// kinds holds the sections of kinds registered with
	// WithStoreFactory, by kind.
	kinds map[string]*yaml.Node
}

// Discovery makes a target group follow DNS. Set DNS or SRV.
type Discovery struct {
	// DNS is a name whose A and AAAA records are the targets, each at
	// Port (Consul and Kubernetes headless services answer such queries).
	DNS string `yaml:"dns,omitempty"`
	// Port is the targets' port, with DNS. Required with DNS.
	Port int `yaml:"port,omitempty"`
	// Network restricts a DNS answer to ip (both families), ip4 or ip6.
	// Default ip.
	Network string `yaml:"network,omitempty"`
	// SRV is a full SRV query name, e.g. "_http._tcp.app.service.consul":
	// each record's target and port is a target, weighted by the record's
	// weight (clamped to 1..100); only the lowest priority value is used.
	SRV string `yaml:"srv,omitempty"`
	// Interval is how often the name is resolved again. Default 30s.
	// For a source that pushes its changes (lb.Watcher), it bounds the
	// back-off before a lost watch is started again.
	Interval Duration `yaml:"interval,omitempty"`

	// kinds holds the sections of kinds registered with
	// WithSourceFactory, by kind.
	kinds map[string]*yaml.Node
}

// PassiveEjection takes a target out of rotation for Period after Failures
// consecutive failed connections or requests of real traffic, capped so
// that a bad deploy cannot empty the group.
type PassiveEjection struct {
	// Failures is the consecutive failures that eject a target; 0 turns
	// passive ejection off. Default 5.
	Failures *int `yaml:"failures,omitempty"`
	// Period is how long an ejection lasts. Default 30s.
	Period *Duration `yaml:"period,omitempty"`
	// MaxPercent caps the share of the group's targets ejected at once,
	// 0..100. Default 50.
	MaxPercent *int `yaml:"max_percent,omitempty"`
}

// CircuitBreaker is a target group's circuit breakers for HTTP: beyond
// them, 503.
type CircuitBreaker struct {
	// MaxConnectionsPerTarget bounds the connections the HTTP listeners
	// keep open to each target, idle ones included; a request that needs
	// one more waits up to the connect timeout. Default 1024; negative: no
	// limit.
	MaxConnectionsPerTarget int `yaml:"max_connections_per_target,omitempty"`
	// MaxPendingRequests bounds the group's requests waiting for a
	// connection at once. Default 1024.
	MaxPendingRequests int `yaml:"max_pending_requests,omitempty"`
}

// Flows sizes the flow table (the established TCP connections and UDP
// flows of every tcp, tls and udp listener) and the descriptor budget of
// every listener's clients. A reload may not change them.
type Flows struct {
	// Max is the table's capacity; when it is full, an unreplied UDP flow
	// is evicted to make room, or else new flows are refused and counted.
	// Default: the descriptor budget, at most 1048576.
	Max int `yaml:"max,omitempty"`
	// MaxPerSource caps the flows one client IP may hold; 0: no cap.
	// Default: 1/16 of the capacity, at least 64, at most 1/4.
	MaxPerSource *int `yaml:"max_per_source,omitempty"`
	// DescriptorBudget is how many file descriptors clients may hold (a
	// TCP or TLS connection 2, a UDP flow 1, an HTTP connection 1); 0
	// turns the budget off. Default: the process's limit minus a reserve
	// (1/8 of it, at least 256).
	DescriptorBudget *int `yaml:"descriptor_budget,omitempty"`
	// UnrepliedTimeout is the idle timeout of UDP flows their target has
	// not answered yet (as conntrack); 0s turns it off. Default 30s.
	UnrepliedTimeout *Duration `yaml:"unreplied_timeout,omitempty"`
}
