package lb

import (
	"crypto/tls"
	"log/slog"
	"time"

	"github.com/lbkit/lbkit/balancer"
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
	// DefaultMaxFlows is the flow table's capacity: established L4 flows
	// (TCP connections and UDP client flows) across all listeners.
	DefaultMaxFlows = 1 << 20
)

// Option configures a LoadBalancer, in New and Reconfigure.
type Option func(*config)

// config is a whole load balancer's configuration: what options build, what
// validation checks, and what reconciling compares.
type config struct {
	listeners []*listenerConfig // in the order given
	groups    []*groupConfig
	maxFlows  int // 0: DefaultMaxFlows
	perSource int // 0: no cap per source IP
	logger    *slog.Logger
	hooks     Hooks
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

	certs []tls.Certificate // TLS, HTTPS
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
}

// targetConfig is one target of a group.
type targetConfig struct {
	id     string // default: addr
	addr   string
	weight int
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
// listeners. When it is full, new flows are refused and counted
// (RejectedFlowCount); established ones are never evicted. Default
// DefaultMaxFlows.
func WithMaxFlows(n int) Option { return func(c *config) { c.maxFlows = n } }

// WithMaxFlowsPerSource caps the flows one client IP may hold, so spoofed or
// abusive sources cannot fill the table. Default 0: no cap.
func WithMaxFlowsPerSource(n int) Option { return func(c *config) { c.perSource = n } }

// WithLogger sets the logger for lifecycle events, health changes and (L7)
// access logs. Default: slog.Default().
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithHooks sets functions called on events, for users who export their own
// metrics. Default: none.
func WithHooks(h Hooks) Option { return func(c *config) { c.hooks = h } }

// ListenerOption configures one listener.
type ListenerOption func(*listenerConfig)

// ForwardTo sets the target group the listener forwards to (its default
// action). Every L4 listener needs one; an L7 listener needs one unless its
// rules cover every request.
func ForwardTo(group string) ListenerOption {
	return func(l *listenerConfig) { l.group = group }
}

// Allow admits only clients whose address is in one of the prefixes
// ("10.0.0.0/8", "2001:db8::/32", or a single address). Default: everyone.
// Checked on the client's address before any other work.
func Allow(prefixes ...string) ListenerOption {
	return func(l *listenerConfig) { l.allow = append(l.allow, prefixes...) }
}

// Deny refuses clients whose address is in one of the prefixes, whatever
// Allow says. Default: nobody.
func Deny(prefixes ...string) ListenerOption {
	return func(l *listenerConfig) { l.deny = append(l.deny, prefixes...) }
}

// TrustProxies names the proxies in front of this listener whose word about
// the client is trusted: their X-Forwarded-For (HTTP, HTTPS) or their PROXY
// protocol header (TCP, TLS). A PROXY header from anyone else is refused; an
// X-Forwarded-For from anyone else is replaced. Default: nobody.
func TrustProxies(prefixes ...string) ListenerOption {
	return func(l *listenerConfig) { l.trusted = append(l.trusted, prefixes...) }
}

// IdleTimeout sets how long a connection may stay idle: TCP and TLS flows
// (default 350 s; closed with RST both ways when it passes), UDP flows
// (default 120 s), HTTP keep-alive connections between requests (default
// 60 s). A change applies to new connections only.
func IdleTimeout(d time.Duration) ListenerOption {
	return func(l *listenerConfig) { l.idle = d }
}

// ConnectTimeout bounds one connection attempt to a target; when it passes
// the next target is tried. Default DefaultConnectTimeout.
func ConnectTimeout(d time.Duration) ListenerOption {
	return func(l *listenerConfig) { l.connectTimeout = d }
}

// Certificates sets the certificates a TLS or HTTPS listener serves, chosen
// by the client's SNI; the first is the default for clients that send no
// SNI or an unknown name. Replacing them (Reconfigure, SetCertificates) never
// interrupts a connection: established ones keep the old certificate.
func Certificates(certs ...tls.Certificate) ListenerOption {
	return func(l *listenerConfig) { l.certs = append(l.certs, certs...) }
}

// GroupOption configures one target group.
type GroupOption func(*groupConfig)

// Target adds a target at addr ("host:port"; an IP address, or a name the
// health checks and connections resolve). Its ID defaults to addr and its
// weight to 1.
func Target(addr string, opts ...TargetOption) GroupOption {
	return func(g *groupConfig) {
		t := targetConfig{id: addr, addr: addr, weight: balancer.DefaultWeight}
		for _, o := range opts {
			o(&t)
		}
		g.targets = append(g.targets, t)
	}
}

// Algorithm sets how the group picks a target for a new connection or
// request. Default balancer.RoundRobin (smooth weighted round-robin).
func Algorithm(a balancer.Algorithm) GroupOption {
	return func(g *groupConfig) { g.algo = a }
}

// WithHealthCheck sets the group's active health check. Default: a TCP
// connect for TCP, TLS and UDP groups... see HealthCheck for every field and
// default. A target gets traffic only while its checks pass.
func WithHealthCheck(h HealthCheck) GroupOption {
	return func(g *groupConfig) { g.health, g.noHealth = h, false }
}

// WithoutHealthCheck turns active health checking off: every target counts
// as healthy (passive ejection, if configured, still applies).
func WithoutHealthCheck() GroupOption {
	return func(g *groupConfig) { g.noHealth = true }
}

// Sticky sets the group's session persistence (see Stickiness). Default:
// none.
func Sticky(s Stickiness) GroupOption {
	return func(g *groupConfig) { g.stickiness = s }
}

// DeregistrationDelay sets how long a removed target keeps its established
// connections (and sticky sessions) before they are closed. New connections
// stop at once. Default DefaultDeregistrationDelay; a negative delay closes
// them at once.
func DeregistrationDelay(d time.Duration) GroupOption {
	return func(g *groupConfig) {
		if d == 0 {
			d = -1 // 0 from the user means "none", not "default"
		}
		g.deregDelay = d
	}
}

// ProxyProtocol makes TCP and TLS listeners send a PROXY protocol header of
// version 1 or 2 at the start of every connection to this group's targets,
// so they learn the client's address. Default 0: none.
func ProxyProtocol(version int) GroupOption {
	return func(g *groupConfig) { g.proxyProtocol = version }
}

// TargetTLS sets the TLS configuration for connections to targets of a TLS
// or HTTPS group (CA pool, client certificate, ServerName; an empty
// ServerName is taken from each target's host). Default: the system's CA
// pool, verification on.
func TargetTLS(cfg *tls.Config) GroupOption {
	return func(g *groupConfig) { g.targetTLS = cfg }
}

// Discover makes the group follow a discovery source (see DNS and
// DNSSRV): its targets are asked for every interval (default
// DefaultDiscoveryInterval) and changes are applied as live changes
// (new targets added, vanished ones deregistered with the delay). When the
// source fails, the last good answer is kept. Static Targets of the group
// stay as they are.
func Discover(src Source, interval time.Duration) GroupOption {
	return func(g *groupConfig) { g.discovery, g.discoveryInterval = src, interval }
}

// PassiveEjection ejects a target after failures consecutive failed
// connections or requests, for period, and caps the share of the group's
// targets ejected at once at maxPercent (so a bad deploy cannot empty the
// group). Default: failures 5, period 30 s, maxPercent 50. failures 0
// turns passive ejection off.
func PassiveEjection(failures int, period time.Duration, maxPercent int) GroupOption {
	return func(g *groupConfig) {
		if failures == 0 {
			failures = -1
		}
		g.ejectFailures, g.ejectPeriod, g.ejectMaxPct = failures, period, maxPercent
	}
}

// TargetOption configures one target.
type TargetOption func(*targetConfig)

// ID names the target within its group. Default: its address.
func ID(id string) TargetOption { return func(t *targetConfig) { t.id = id } }

// Weight sets the target's share of new traffic, 0..100. 0 takes no new
// traffic while established connections continue. Default 1.
func Weight(w int) TargetOption { return func(t *targetConfig) { t.weight = w } }
