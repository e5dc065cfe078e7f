package lb

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"time"

	"github.com/lbkit/lbkit/balancer"
	"github.com/lbkit/lbkit/proxy"
)

// Defaults, from the reference load balancers (AWS NLB/ALB, Huawei ELB).
const (
	// DefaultDeregistrationDelay is how long a removed target keeps its
	// established connections before they are closed.
	DefaultDeregistrationDelay = 300 * time.Second
	// DefaultConnectTimeout bounds one connection attempt to a target.
	DefaultConnectTimeout = 5 * time.Second
	// DefaultDiscoveryInterval is how often a discovery source is asked
	// again for its targets.
	DefaultDiscoveryInterval = 30 * time.Second
	// DefaultMaxFlows is the largest default capacity of the flow table:
	// established L4 flows (TCP connections and UDP client flows) across
	// all listeners. With a descriptor budget the default capacity is the
	// budget if that is smaller (see WithMaxFlows).
	DefaultMaxFlows = 1 << 20
)

// Option configures a LoadBalancer, in New and Reconfigure.
type Option func(*config)

// config is a whole load balancer's configuration: what options build, what
// validation checks, and what reconciling compares.
type config struct {
	listeners    []*listenerConfig // in the order given
	groups       []*groupConfig
	maxFlows     int // 0: the default (see limits)
	perSource    int // with perSourceSet; 0: no cap per source IP
	perSourceSet bool
	budget       int // with budgetSet; 0: no descriptor budget
	budgetSet    bool
	unreplied    time.Duration // with unrepliedSet; 0: UDP flows start replied
	unrepliedSet bool
	logger       *slog.Logger
	hooks        Hooks
	sockets      Sockets        // nil: the net package
	warmup       time.Duration  // 0: listeners serve at once
	observer     proxy.Observer // WithObserver; given to every listener
	flowObserver FlowObserver   // WithFlowObserver
}

// listenerConfig is one listener's configuration.
type listenerConfig struct {
	name  string
	proto Protocol
	addr  string
	group string // default action: forward to this target group

	allow, deny []string // client ACL, CIDR prefixes or addresses
	trusted     []string // proxies trusted for X-Forwarded-For (L7) or PROXY protocol (L4)

	idle           time.Duration // 0: the protocol's default
	connectTimeout time.Duration // 0: DefaultConnectTimeout

	certs        []tls.Certificate // TLS, HTTPS
	wildcard     proxy.WildcardMode
	minTLS       uint16
	ciphers      []uint16
	clientAuth   tls.ClientAuthType
	clientCAs    *x509.CertPool
	clientHosts  []string
	disableHTTP2 bool
	certSource   CertificateSource // WithCertificatesFrom; nil: none

	connectAttempts int // L4; 0: the proxy's default
	headerTimeout   time.Duration

	// L7
	rules           []Rule
	defRedirect     *proxy.Redirect
	defFixed        *proxy.FixedResponse
	requestTimeout  time.Duration
	responseTimeout time.Duration
	maxHeaderBytes  int
	maxBodyBytes    int64
	maxURILength    int
	retry           proxy.Retry
	forwarded       bool
	accessLog       *slog.Logger
	flowLog         *slog.Logger
	requestID       bool
	eventLoop       bool
	observer        proxy.Observer // the load balancer's (WithObserver)
}

// groupConfig is one target group's configuration.
type groupConfig struct {
	name    string
	proto   Protocol
	targets []targetConfig
	algo    balancer.Algorithm

	health   HealthCheck
	noHealth bool

	stickiness Stickiness

	deregDelay    time.Duration // 0: DefaultDeregistrationDelay; <0: none
	proxyProtocol int
	targetTLS     *tls.Config

	discovery         Source
	discoveryInterval time.Duration

	ejectFailures int
	ejectPeriod   time.Duration
	ejectMaxPct   int

	limits proxy.Limits // circuit breakers; zero fields: the defaults

	// overrides are what an operator set on single targets at run time
	// (DrainTarget, SetTargetHealthCheck), by target ID; they apply to
	// static and discovered targets alike.
	overrides map[string]targetOverride
}

// targetOverride is an operator's run-time setting of one target.
type targetOverride struct {
	drained   bool // DrainTarget: no new traffic until UndrainTarget
	checksOff bool // SetTargetHealthCheck(false): not checked, treated as healthy
}

// targetConfig is one target of a group.
type targetConfig struct {
	id       string // default: addr
	addr     string
	weight   int
	zone     string // discovered targets only
	priority int    // discovered targets only; 0 is the best
}

// WithListener adds a listener: clients connect to addr ("host:port"; port 0
// picks a free one, see LoadBalancer.Addr) and speak proto. Options set its
// target group, access control, timeouts and certificates. Names are unique
// among listeners.
func WithListener(name string, proto Protocol, addr string, opts ...ListenerOption) Option {
	return func(c *config) {
		l := &listenerConfig{name: name, proto: proto, addr: addr}
		for _, o := range opts {
			o(l)
		}
		c.listeners = append(c.listeners, l)
	}
}

// WithTargetGroup adds a target group: targets that speak proto, with an
// algorithm, health checks and stickiness. Names are unique among groups.
func WithTargetGroup(name string, proto Protocol, opts ...GroupOption) Option {
	return func(c *config) {
		g := &groupConfig{name: name, proto: proto}
		for _, o := range opts {
			o(g)
		}
		c.groups = append(c.groups, g)
	}
}

// WithMaxFlows sets the flow table's capacity: the established TCP
// connections and UDP client flows the load balancer tracks, across all L4
// listeners. When it is full, an unreplied UDP flow is evicted to make room
// (see WithUnrepliedTimeout), or else the new flow is refused and counted
// (RejectedFlowCount); no other established flow is ever evicted. Default:
// the descriptor budget (a UDP flow costs one descriptor, so more could not
// be held), at most DefaultMaxFlows; DefaultMaxFlows without a budget. It
// cannot change while the load balancer runs.
func WithMaxFlows(n int) Option { return func(c *config) { c.maxFlows = n } }

// WithMaxFlowsPerSource caps the flows one client IP address may hold, so
// that one host cannot fill the table (IPv4 and its IPv6-mapped form count
// as one). Beyond it new flows are refused and counted
// (RejectedSourceFlowCount). 0 turns the cap off. Without the option the cap
// is DefaultMaxFlowsPerSource of the table's capacity: 1/16 of it, at least
// 64, at most a quarter. It cannot change while the load balancer runs.
func WithMaxFlowsPerSource(n int) Option {
	return func(c *config) { c.perSource, c.perSourceSet = n, true }
}

// WithDescriptorBudget sets how many file descriptors the proxies' clients
// may hold together: a TCP or TLS connection costs 2 (client and target), a
// UDP flow 1, an HTTP client connection 1 (target connections are pooled and
// covered by the reserve). When it is spent, an unreplied UDP flow is
// evicted to make room, or else the new connection or flow is refused,
// counted (RejectedDescriptors in the listeners' stats) and reported to the
// FlowRejected hook with reason "descriptors", so that the process never
// runs out of descriptors for its listeners, health checks and the rest.
//
// Without the option the budget is the process's descriptor limit (soft
// RLIMIT_NOFILE, read at Start) minus DescriptorReserve of it; 0 turns the
// budget off (nothing is counted), and so does an unknown limit. Go raises
// the soft limit to the hard one (minus one) when a program starts, on Unix
// since Go 1.19; the budget follows what the process has. It cannot change
// while the load balancer runs.
func WithDescriptorBudget(n int) Option {
	return func(c *config) { c.budget, c.budgetSet = n, true }
}

// WithUnrepliedTimeout sets the idle timeout of unreplied UDP flows, as
// conntrack treats UDP: a flow is unreplied until its target has answered
// and it still sees traffic 2 s after that first answer. Until then it idles
// out after d instead of the UDP idle timeout, and it is the first to be
// evicted when the flow table or the descriptor budget is full, so spoofed
// one-datagram flows cost little and never push out flows in use. 0 turns
// it off: UDP flows keep the full idle timeout from the start and are never
// evicted. Default proxy.DefaultUnrepliedTimeout (30 s, conntrack's). It
// cannot change while the load balancer runs.
func WithUnrepliedTimeout(d time.Duration) Option {
	return func(c *config) { c.unreplied, c.unrepliedSet = d, true }
}

// WithLogger sets the logger for lifecycle events, health changes and (L7)
// access logs. Default: slog.Default().
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithHooks sets functions called on events, for users who export their own
// metrics. Default: none.
func WithHooks(h Hooks) Option { return func(c *config) { c.hooks = h } }

// WithWarmup makes Start wait, up to d, until every target has had its
// first health check (and every discovery source its first answer) before
// its listeners open: a load balancer that starts (or takes over from
// another process in a binary upgrade) then serves its first clients with
// the targets' health known, instead of refusing them (503, a reset) while
// every target is still unhealthy for want of a check. As Envoy warms a
// cluster before its listeners use it. Start returns when the listeners
// serve. It applies at Start only. Default 0: listeners open at once.
func WithWarmup(d time.Duration) Option { return func(c *config) { c.warmup = d } }

// Sockets opens the sockets listeners listen on. A program that hands its
// listening sockets to the next version of itself on a binary upgrade, so
// that no client is refused meanwhile (cmd/lbd does), opens them through
// its own Sockets: the ones it inherited where the address matches, new
// ones otherwise.
//
// The load balancer closes what it opened when a listener is removed or
// moves; the Sockets must then really close the socket (keep no duplicate
// of it open), or the port keeps accepting with no one serving it.
//
// name is the listener's name: with it a program matches the sockets it
// inherited to their listeners even when addresses say port 0.
type Sockets interface {
	// Listen opens a TCP listening socket ("tcp", "host:port"), as
	// net.Listen does, for the listener called name.
	Listen(name, network, addr string) (net.Listener, error)
	// ListenPacket opens a UDP socket ("udp", "host:port"), as
	// net.ListenPacket does, for the listener called name.
	ListenPacket(name, network, addr string) (net.PacketConn, error)
}

// WithSockets makes the load balancer open its listeners' sockets with s
// instead of the net package. It applies to sockets opened from then on
// (Reconfigure keeps the sockets of listeners that do not move). Sockets
// from s are used as they are: the L4 listeners' own sockets turn TCP
// keepalive off, which a socket from s may not.
func WithSockets(s Sockets) Option { return func(c *config) { c.sockets = s } }

// ListenerOption configures one listener.
type ListenerOption func(*listenerConfig)

// WithForwardTo sets the target group the listener forwards to (its default
// action). Every L4 listener needs one; an L7 listener needs one unless its
// rules cover every request.
func WithForwardTo(group string) ListenerOption {
	return func(l *listenerConfig) { l.group = group }
}

// WithAllow admits only clients whose address is in one of the prefixes
// ("10.0.0.0/8", "2001:db8::/32", or a single address). Default: everyone.
// Checked on the client's address before any other work.
func WithAllow(prefixes ...string) ListenerOption {
	return func(l *listenerConfig) { l.allow = append(l.allow, prefixes...) }
}

// WithDeny refuses clients whose address is in one of the prefixes, whatever
// WithAllow says. Default: nobody.
func WithDeny(prefixes ...string) ListenerOption {
	return func(l *listenerConfig) { l.deny = append(l.deny, prefixes...) }
}

// WithTrustedProxies names the proxies in front of this listener whose word about
// the client is trusted: their X-Forwarded-For (HTTP, HTTPS) or their PROXY
// protocol header (TCP, TLS). A PROXY header from anyone else is refused; an
// X-Forwarded-For from anyone else is replaced. Default: nobody.
func WithTrustedProxies(prefixes ...string) ListenerOption {
	return func(l *listenerConfig) { l.trusted = append(l.trusted, prefixes...) }
}

// WithIdleTimeout sets how long a connection may stay idle: TCP and TLS flows
// (default 350 s; closed with RST both ways when it passes), UDP flows
// (default 120 s), HTTP keep-alive connections between requests (default
// 60 s). A change applies to new connections only.
func WithIdleTimeout(d time.Duration) ListenerOption {
	return func(l *listenerConfig) { l.idle = d }
}

// WithConnectTimeout bounds one connection attempt to a target; when it passes
// the next target is tried. Default DefaultConnectTimeout.
func WithConnectTimeout(d time.Duration) ListenerOption {
	return func(l *listenerConfig) { l.connectTimeout = d }
}

// WithCertificates sets the certificates a TLS or HTTPS listener serves, chosen
// by the client's SNI; the first is the default for clients that send no
// SNI or an unknown name. Replacing them (Reconfigure, SetCertificates) never
// interrupts a connection: established ones keep the old certificate.
func WithCertificates(certs ...tls.Certificate) ListenerOption {
	return func(l *listenerConfig) { l.certs = append(l.certs, certs...) }
}

// WithConnectAttempts sets how many different targets a new TCP or TLS
// connection tries before giving up. Default 3. (HTTP and HTTPS listeners
// retry requests with Retries.)
func WithConnectAttempts(n int) ListenerOption {
	return func(l *listenerConfig) { l.connectAttempts = n }
}

// WithHeaderTimeout bounds how long a TCP or TLS client may take to send its
// PROXY protocol header and finish its TLS handshake. Default: the proxy's
// (proxy.DefaultHeaderTimeout).
func WithHeaderTimeout(d time.Duration) ListenerOption {
	return func(l *listenerConfig) { l.headerTimeout = d }
}

// WithWildcardMatch sets how wildcard certificates match server names:
// proxy.WildcardOneLabel (the default: *.example.com matches
// a.example.com only) or proxy.WildcardSuffix (also a.b.example.com, the
// longest suffix winning).
func WithWildcardMatch(m proxy.WildcardMode) ListenerOption {
	return func(l *listenerConfig) { l.wildcard = m }
}

// WithMinTLSVersion sets the lowest TLS version a TLS or HTTPS listener
// accepts, e.g. tls.VersionTLS13. Default TLS 1.2.
func WithMinTLSVersion(v uint16) ListenerOption { return func(l *listenerConfig) { l.minTLS = v } }

// WithCipherSuites limits the TLS 1.0–1.2 cipher suites accepted. Default:
// crypto/tls's secure list.
func WithCipherSuites(ids ...uint16) ListenerOption {
	return func(l *listenerConfig) { l.ciphers = append(l.ciphers, ids...) }
}

// WithClientAuth turns on mutual TLS on an HTTPS listener:
// tls.VerifyClientCertIfGiven (optional) or tls.RequireAndVerifyClientCert
// (required), verified against cas. With hosts, only those server names
// (host patterns as in Rule.Host) ask for a client certificate, and a request
// whose Host needs one on a connection that did not present it gets 421.
// Default: no client certificates.
func WithClientAuth(mode tls.ClientAuthType, cas *x509.CertPool, hosts ...string) ListenerOption {
	return func(l *listenerConfig) { l.clientAuth, l.clientCAs, l.clientHosts = mode, cas, hosts }
}

// WithoutHTTP2 stops an HTTPS listener from offering HTTP/2. Default:
// offered.
func WithoutHTTP2() ListenerOption { return func(l *listenerConfig) { l.disableHTTP2 = true } }

// Rule is an HTTP or HTTPS listener's forwarding rule: requests whose host
// and path match get its action. Rules are tried by Priority, lowest first;
// the first match wins; the listener's default action (WithForwardTo,
// WithDefaultRedirect or WithDefaultFixed) takes the rest. Two rules with the same
// host, path and priority are a configuration error.
type Rule struct {
	// Name identifies the rule in errors and the access log.
	Name string
	// Priority orders rules, lowest first.
	Priority int
	// Host matches the request's host: "" any, "example.com" exactly,
	// "*.example.com" its subdomains.
	Host string
	// Path matches the request's cleaned path: "" any, "/a" exactly,
	// "/a/*" the prefix "/a/", "~regexp" a regular expression.
	Path string

	// Set exactly one action.

	// Forward names the target group that gets matching requests.
	Forward string
	// Split shares matching requests between target groups by weight.
	Split []GroupWeight
	// Redirect answers with a redirect (e.g. to HTTPS).
	Redirect *proxy.Redirect
	// Fixed answers with a fixed response.
	Fixed *proxy.FixedResponse
}

// GroupWeight is one target group's share of a Rule's Split.
type GroupWeight struct {
	// Group names the target group.
	Group string
	// Weight is its share, 0..1000.
	Weight int
}

// WithRules adds forwarding rules to an HTTP or HTTPS listener.
func WithRules(rules ...Rule) ListenerOption {
	return func(l *listenerConfig) { l.rules = append(l.rules, rules...) }
}

// WithDefaultRedirect makes an HTTP or HTTPS listener answer requests no rule
// matches with a redirect, e.g. proxy.Redirect{Scheme: "https"} for HTTP to
// HTTPS. It replaces WithForwardTo as the default action.
func WithDefaultRedirect(r proxy.Redirect) ListenerOption {
	return func(l *listenerConfig) { l.defRedirect = &r }
}

// WithDefaultFixed makes an HTTP or HTTPS listener answer requests no rule
// matches with a fixed response. It replaces WithForwardTo as the default action.
func WithDefaultFixed(f proxy.FixedResponse) ListenerOption {
	return func(l *listenerConfig) { l.defFixed = &f }
}

// WithRequestTimeout is how long an HTTP client has to send a request's
// headers, and then its body; then it gets 408 (see
// proxy.HTTP.RequestTimeout). Default 60 s.
func WithRequestTimeout(d time.Duration) ListenerOption {
	return func(l *listenerConfig) { l.requestTimeout = d }
}

// WithResponseTimeout is how long a target has to answer a request's header;
// then the request is retried on another target when safe, else 504.
// Default 60 s.
func WithResponseTimeout(d time.Duration) ListenerOption {
	return func(l *listenerConfig) { l.responseTimeout = d }
}

// WithMaxHeaderBytes limits an HTTP request's line and headers: above it, 431.
// Default 64 KiB.
func WithMaxHeaderBytes(n int) ListenerOption {
	return func(l *listenerConfig) { l.maxHeaderBytes = n }
}

// WithMaxBodyBytes limits an HTTP request's body: above it, 413. Default 10 GiB.
func WithMaxBodyBytes(n int64) ListenerOption { return func(l *listenerConfig) { l.maxBodyBytes = n } }

// WithMaxURILength limits an HTTP request's target: above it, 414. Default
// 8 KiB.
func WithMaxURILength(n int) ListenerOption { return func(l *listenerConfig) { l.maxURILength = n } }

// WithRetries bounds how an HTTP listener retries requests on another target
// (see proxy.Retry for what is retried, and the retry budget). Zero fields
// take their defaults.
func WithRetries(r proxy.Retry) ListenerOption { return func(l *listenerConfig) { l.retry = r } }

// WithForwardedHeader adds an RFC 7239 Forwarded header to requests, beside the
// X-Forwarded-For, -Proto, -Port and -Host headers that are always sent.
func WithForwardedHeader() ListenerOption { return func(l *listenerConfig) { l.forwarded = true } }

// WithRequestIDs gives every request of an HTTP listener an ID, sent to the
// target as X-Request-Id and logged as request_id: a trusted proxy's
// X-Request-Id (see WithTrustedProxies), else a random one (see
// proxy.HTTP.RequestID).
func WithRequestIDs() ListenerOption { return func(l *listenerConfig) { l.requestID = true } }

// WithEventLoop serves an http listener's connections with event loops on
// Linux, one per GOMAXPROCS, as nginx's workers do, instead of a goroutine
// per connection (proxy.HTTP.EventLoop): the same behaviour at a lower
// cost per request for bodiless requests to plain-HTTP groups without
// stickiness; other requests are served as without it. Elsewhere than
// Linux it changes nothing. For http listeners only.
func WithEventLoop() ListenerOption { return func(l *listenerConfig) { l.eventLoop = true } }

// WithAccessLog logs one record per HTTP request to logger: client and
// target addresses, method, host, path and query, status (client side and
// target side), bytes each way, timings, user agent, referer, request ID,
// TLS version, cipher and SNI (the attributes are listed at
// proxy.HTTP.AccessLog). Default: none.
func WithAccessLog(logger *slog.Logger) ListenerOption {
	return func(l *listenerConfig) { l.accessLog = logger }
}

// GroupOption configures one target group.
type GroupOption func(*groupConfig)

// WithTarget adds a target at addr ("host:port"; an IP address, or a name the
// health checks and connections resolve). Its ID defaults to addr and its
// weight to 1.
func WithTarget(addr string, opts ...TargetOption) GroupOption {
	return func(g *groupConfig) {
		t := targetConfig{id: addr, addr: addr, weight: balancer.DefaultWeight}
		for _, o := range opts {
			o(&t)
		}
		g.targets = append(g.targets, t)
	}
}

// WithAlgorithm sets how the group picks a target for a new connection or
// request. Default balancer.RoundRobin (smooth weighted round-robin).
func WithAlgorithm(a balancer.Algorithm) GroupOption {
	return func(g *groupConfig) { g.algo = a }
}

// WithHealthCheck sets the group's active health check (see HealthCheck
// for every field and its default: by default a TCP connect for TCP and TLS
// groups, an HTTP or HTTPS request for HTTP and HTTPS groups, ICMP echo and
// a UDP probe for UDP groups). A target gets traffic only while its checks
// pass.
func WithHealthCheck(h HealthCheck) GroupOption {
	return func(g *groupConfig) { g.health, g.noHealth = h, false }
}

// WithCircuitBreaker sets the group's circuit breakers for HTTP: the most
// connections the HTTP listeners keep open to each target (idle ones
// included; a request that needs one more waits up to the connect timeout)
// and the most requests of the group waiting at once; beyond them, 503.
// They keep a flood of requests (an HTTP/2 rapid reset, a slow target) from
// turning into a storm of connections. Zero fields take the defaults,
// proxy.DefaultMaxConnsPerTarget and proxy.DefaultMaxPendingRequests (1024
// each, Envoy's); a negative MaxConnsPerTarget means no limit. It changes
// live.
func WithCircuitBreaker(l proxy.Limits) GroupOption {
	return func(g *groupConfig) { g.limits = l }
}

// WithoutHealthCheck turns active health checking off: every target counts
// as healthy (passive ejection, if configured, still applies).
func WithoutHealthCheck() GroupOption {
	return func(g *groupConfig) { g.noHealth = true }
}

// WithStickiness sets the group's session persistence (see Stickiness). Default:
// none.
func WithStickiness(s Stickiness) GroupOption {
	return func(g *groupConfig) { g.stickiness = s }
}

// WithDeregistrationDelay sets how long a removed target keeps its established
// connections (and sticky sessions) before they are closed. New connections
// stop at once. Default DefaultDeregistrationDelay; a negative delay closes
// them at once.
func WithDeregistrationDelay(d time.Duration) GroupOption {
	return func(g *groupConfig) {
		if d == 0 {
			d = -1 // 0 from the user means "none", not "default"
		}
		g.deregDelay = d
	}
}

// WithProxyProtocol makes TCP and TLS listeners send a PROXY protocol header of
// version 1 or 2 at the start of every connection to this group's targets,
// so they learn the client's address. Default 0: none.
func WithProxyProtocol(version int) GroupOption {
	return func(g *groupConfig) { g.proxyProtocol = version }
}

// WithTargetTLS sets the TLS configuration for connections to targets of a TLS
// or HTTPS group (CA pool, client certificate, ServerName; an empty
// ServerName is taken from each target's host). Default: the system's CA
// pool, verification on.
func WithTargetTLS(cfg *tls.Config) GroupOption {
	return func(g *groupConfig) { g.targetTLS = cfg }
}

// WithDiscovery makes the group follow a discovery source (see DNS and
// DNSSRV): its targets are asked for every interval (default
// DefaultDiscoveryInterval) and changes are applied as live changes
// (new targets added, vanished or draining ones deregistered with the
// delay). A Watcher is not polled: its pushes apply at once, and the
// interval only bounds the back-off before a disconnected watch is
// started again. When the source fails or disconnects, the last good
// answer is kept. Static Targets of the group stay as they are.
func WithDiscovery(src Source, interval time.Duration) GroupOption {
	return func(g *groupConfig) { g.discovery, g.discoveryInterval = src, interval }
}

// WithPassiveEjection ejects a target after failures consecutive failed
// connections or requests, for period, and caps the share of the group's
// targets ejected at once at maxPercent (so a bad deploy cannot empty the
// group). Default: failures 5, period 30 s, maxPercent 50. failures 0
// turns passive ejection off.
func WithPassiveEjection(failures int, period time.Duration, maxPercent int) GroupOption {
	return func(g *groupConfig) {
		if failures == 0 {
			failures = -1
		}
		g.ejectFailures, g.ejectPeriod, g.ejectMaxPct = failures, period, maxPercent
	}
}

// TargetOption configures one target.
type TargetOption func(*targetConfig)

// WithTargetID names the target within its group. Default: its address.
func WithTargetID(id string) TargetOption { return func(t *targetConfig) { t.id = id } }

// WithWeight sets the target's share of new traffic, 0..100. 0 takes no new
// traffic while established connections continue. Default 1.
func WithWeight(w int) TargetOption { return func(t *targetConfig) { t.weight = w } }
