package lb

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-multierror"

	"github.com/lbkit/lbkit/balancer"
	"github.com/lbkit/lbkit/healthcheck"
	"github.com/lbkit/lbkit/proxy"
	"github.com/lbkit/lbkit/sticky"
)

// validate checks the whole configuration and returns every problem at once,
// each naming the object and field, or nil.
func (c *config) validate() error {
	var errs *multierror.Error
	add := func(format string, a ...any) { errs = multierror.Append(errs, fmt.Errorf(format, a...)) }

	if c.maxFlows < 0 {
		add("max flows %d is negative", c.maxFlows)
	}
	if c.perSource < 0 {
		add("max flows per source %d is negative", c.perSource)
	}
	if c.budget < 0 {
		add("descriptor budget %d is negative", c.budget)
	}
	if c.unreplied < 0 {
		add("unreplied timeout %v is negative", c.unreplied)
	}

	groups := map[string]*groupConfig{}
	for i, g := range c.groups {
		where := fmt.Sprintf("target group %q", g.name)
		if g.name == "" {
			where = fmt.Sprintf("target group #%d", i+1)
			add("%s: name is empty", where)
		} else if _, dup := groups[g.name]; dup {
			add("%s: name is used by another target group", where)
		} else {
			groups[g.name] = g
		}
		for _, e := range g.problems() {
			errs = multierror.Append(errs, fmt.Errorf("%s: %w", where, e))
		}
	}

	names := map[string]bool{}
	addrs := map[string]string{}
	for i, l := range c.listeners {
		where := fmt.Sprintf("listener %q", l.name)
		before := count(errs)
		if l.name == "" {
			where = fmt.Sprintf("listener #%d", i+1)
			add("%s: name is empty", where)
		} else if names[l.name] {
			add("%s: name is used by another listener", where)
		}
		names[l.name] = true
		if !l.proto.valid() {
			add("%s: protocol %d is unknown", where, l.proto)
		}
		if err := checkListenAddr(l.addr); err != nil {
			add("%s: %v", where, err)
		} else if _, port, _ := net.SplitHostPort(l.addr); port != "0" {
			key := l.proto.network() + " " + l.addr
			if other, dup := addrs[key]; dup {
				add("%s: addr %q is used by listener %q", where, l.addr, other)
			}
			addrs[key] = l.name
		}
		for _, e := range l.actionProblems(groups) {
			add("%s: %v", where, e)
		}
		_, err := proxy.ParseACL(l.allow, l.deny)
		for _, e := range lines(err) {
			add("%s: %v", where, e)
		}
		_, err = proxy.ParseACL(l.trusted, nil)
		for _, e := range lines(err) {
			add("%s: trusted proxies: %v", where, e)
		}
		if l.idle < 0 {
			add("%s: idle timeout %s is negative", where, l.idle)
		}
		if l.connectTimeout < 0 {
			add("%s: connect timeout %s is negative", where, l.connectTimeout)
		}
		if l.proto.tls() && len(l.certs) == 0 && l.certSource == nil {
			add("%s: a %s listener needs at least one certificate (Certificates)", where, l.proto)
		}
		for _, e := range l.l7Problems() {
			add("%s: %v", where, e)
		}
		if l.minTLS != 0 && l.minTLS < tls.VersionTLS12 {
			add("%s: minimum TLS version %s is below TLS 1.2, which lbkit does not accept", where, tls.VersionName(l.minTLS))
		}
		if !l.proto.tls() && (len(l.certs) > 0 || l.certSource != nil) {
			add("%s: certificates are set but a %s listener does not use TLS", where, l.proto)
		}
		if count(errs) == before && l.proto.valid() {
			// The proxy's own check, behind lb's: what it refuses (an
			// error wrapping proxy.ErrInvalid) is refused here.
			for _, e := range l.proxyProblems() {
				errs = multierror.Append(errs, fmt.Errorf("%s: %w", where, e))
			}
		}
	}
	if errs != nil {
		errs.ErrorFormat = formatErrors
	}
	return errs.ErrorOrNil()
}

// count returns the number of problems in errs.
func count(errs *multierror.Error) int {
	if errs == nil {
		return 0
	}
	return len(errs.Errors)
}

// formatErrors lists configuration problems one per line, without the
// trailing blank line of multierror's default format.
func formatErrors(es []error) string {
	if len(es) == 1 {
		return es[0].Error()
	}
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = "\t* " + e.Error()
	}
	return fmt.Sprintf("%d problems:\n%s", len(es), strings.Join(lines, "\n"))
}

// actionProblems checks what a listener forwards to: its default action and,
// for HTTP and HTTPS, its rules (built into a router with stand-in groups, so
// conflicting rules are found here).
func (l *listenerConfig) actionProblems(groups map[string]*groupConfig) []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	target := func(prefix, name string) {
		switch g, ok := groups[name]; {
		case !ok:
			add("%sforwards to target group %q, which does not exist", prefix, name)
		case l.proto.valid() && g.proto.valid() && !forwards(l.proto, g.proto):
			add("%sa %s listener cannot forward to %s target group %q (allowed: tcp→tcp, udp→udp, tls→tcp|tls, http→http, https→http|https)", prefix, l.proto, g.proto, g.name)
		case g.stickiness.Kind >= LBCookieStickiness && !l.proto.l7():
			add("%starget group %q uses %s stickiness, which needs an http or https listener", prefix, g.name, g.stickiness.Kind)
		}
	}
	defaults := 0
	for _, set := range []bool{l.group != "", l.defRedirect != nil, l.defFixed != nil} {
		if set {
			defaults++
		}
	}
	if !l.proto.l7() {
		if len(l.rules) > 0 || l.defRedirect != nil || l.defFixed != nil {
			add("rules are for http and https listeners")
		}
		if l.requestTimeout != 0 || l.responseTimeout != 0 || l.maxHeaderBytes != 0 || l.maxBodyBytes != 0 || l.maxURILength != 0 {
			add("request timeout, response timeout and header, body and URI limits are for http and https listeners")
		}
		if l.group == "" {
			add("no target group to forward to (ForwardTo)")
		} else {
			target("", l.group)
		}
		return errs
	}
	switch {
	case defaults == 0:
		add("no default action (ForwardTo, DefaultRedirect or DefaultFixed)")
	case defaults > 1:
		add("more than one default action (ForwardTo, DefaultRedirect, DefaultFixed)")
	}
	if l.group != "" {
		target("", l.group)
	}
	for i, r := range l.rules {
		prefix := fmt.Sprintf("rule[%d]: ", i)
		if r.Forward != "" {
			target(prefix, r.Forward)
		}
		for _, s := range r.Split {
			target(prefix, s.Group)
		}
	}
	if defaults == 0 {
		return errs
	}
	// Conflicts and malformed patterns: the proxy's own router says, given
	// stand-in groups.
	stand := map[string]*proxy.Upstream{}
	_, err := (&LoadBalancer{}).router(l, func(name string) *proxy.Upstream {
		if stand[name] == nil {
			stand[name] = &proxy.Upstream{Name: name, Balancer: new(balancer.Balancer)}
		}
		return stand[name]
	})
	return append(errs, lines(errors.Unwrap(err))...) // unwrap the "listener %q: " prefix
}

// l7Problems checks the settings an HTTP or HTTPS listener's proxy checks
// only when it starts serving, so that a bad value is a configuration error
// and never a listener that accepts clients and serves none.
func (l *listenerConfig) l7Problems() []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if !l.proto.l7() {
		if l.retry != (proxy.Retry{}) || l.forwarded || l.accessLog != nil {
			add("retries, the Forwarded header and access logs are for http and https listeners")
		}
		return errs
	}
	if l.connectAttempts != 0 {
		add("connect attempts are for tcp and tls listeners; an http listener retries with Retries(proxy.Retry{Attempts: n})")
	}
	for _, c := range []struct {
		name string
		v    int64
	}{
		{"request timeout", int64(l.requestTimeout)}, {"response timeout", int64(l.responseTimeout)},
		{"max header bytes", int64(l.maxHeaderBytes)}, {"max body bytes", l.maxBodyBytes},
		{"max URI length", int64(l.maxURILength)}, {"retry attempts", int64(l.retry.Attempts)},
		{"retry timeout", int64(l.retry.Timeout)}, {"retry minimum per second", int64(l.retry.MinPerSecond)},
	} {
		if c.v < 0 {
			add("%s %d is negative", c.name, c.v)
		}
	}
	if r := l.retry.Ratio; r < 0 || r > 10 {
		add("retry ratio %v is outside 0..10", r)
	}
	switch l.clientAuth {
	case tls.NoClientCert:
	case tls.VerifyClientCertIfGiven, tls.RequireAndVerifyClientCert:
		if l.clientCAs == nil {
			add("client authentication %s needs a CA pool", l.clientAuth)
		}
		if l.proto != HTTPS {
			add("client authentication is for https listeners")
		}
	default:
		add("client authentication %s is not VerifyClientCertIfGiven or RequireAndVerifyClientCert", l.clientAuth)
	}
	if v := l.minTLS; v != 0 && v != tls.VersionTLS12 && v != tls.VersionTLS13 && v >= tls.VersionTLS12 {
		add("minimum TLS version %#x is unknown", v)
	}
	if l.proto == HTTPS && !l.disableHTTP2 && len(l.ciphers) > 0 && l.minTLS < tls.VersionTLS13 &&
		!slices.Contains(l.ciphers, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256) && !slices.Contains(l.ciphers, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256) {
		// net/http refuses to serve HTTP/2 with such a list.
		add("cipher suites need TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 or TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 for HTTP/2; add one or disable HTTP/2")
	}
	for i, h := range l.clientHosts { // host patterns as in Rule.Host: the router says
		if _, err := proxy.NewRouter(proxy.Action{Fixed: &proxy.FixedResponse{}}, proxy.Rule{Host: h, Action: proxy.Action{Fixed: &proxy.FixedResponse{}}}); err != nil {
			add("client authentication hosts[%d] %q is not a host pattern", i, h)
		}
	}
	return errs
}

// network returns the socket family a listener of the protocol binds.
func (p Protocol) network() string {
	if p == UDP {
		return "udp"
	}
	return "tcp"
}

func checkListenAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("addr %q is not host:port", addr)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p > 65535 {
		return fmt.Errorf("addr %q: port %q is out of range 0..65535", addr, port)
	}
	return nil
}

// problems lists what is wrong with a group's own configuration.
func (g *groupConfig) problems() []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if !g.proto.valid() {
		add("protocol %d is unknown", g.proto)
	}
	if _, err := balancer.New(balancer.WithAlgorithm(g.algo), balancer.WithTargets(g.balancerTargets()...)); err != nil {
		errs = append(errs, unwrapAll(err)...)
	}
	if k := g.stickiness.Kind; k > AppCookieStickiness {
		add("stickiness %d is unknown", k)
	} else if k >= LBCookieStickiness && g.proto.valid() && !g.proto.l7() {
		add("%s stickiness needs an http or https target group, not %s", k, g.proto)
	}
	if g.algo == balancer.KeyHash {
		add("algorithm key_hash needs a key per request, which lb does not provide; use source_ip_hash, or balancer.KeyHash directly")
	}
	if g.stickiness.Kind != NoStickiness && g.algo == balancer.SourceIPHash {
		add("%s stickiness with algorithm %s: the algorithm already keeps each client on its target; choose one", g.stickiness.Kind, g.algo)
	}
	if g.stickiness.Kind == NoStickiness && (g.stickiness.Store != nil || g.stickiness.StoreTimeout != 0) {
		add("a sticky store is set without stickiness")
	}
	if g.stickiness.Kind == AppCookieStickiness && g.stickiness.CookieName == "" {
		add("app_cookie stickiness needs the application's cookie name (CookieName)")
	}
	if g.stickiness.Duration < 0 {
		add("stickiness duration %s is negative", g.stickiness.Duration)
	} else if g.stickiness.Kind != NoStickiness && g.stickiness.Kind <= AppCookieStickiness && (g.stickiness.Kind != AppCookieStickiness || g.stickiness.CookieName != "") {
		if _, err := buildPolicy(g.name, g.stickiness, func(string) sticky.TargetState { return sticky.Usable }); err != nil {
			for _, e := range lines(err) {
				add("stickiness: %v", e)
			}
		}
	}
	if g.proxyProtocol != 0 && g.proxyProtocol != 1 && g.proxyProtocol != 2 {
		add("proxy protocol version %d is not 1 or 2", g.proxyProtocol)
	}
	if g.proxyProtocol != 0 && g.proto.valid() && g.proto != TCP && g.proto != TLS {
		add("proxy protocol is for tcp and tls target groups, not %s", g.proto)
	}
	if g.targetTLS != nil && g.proto.valid() && !g.proto.tls() {
		add("target TLS is set but a %s target group does not use TLS", g.proto)
	}
	if g.discovery == nil && g.discoveryInterval != 0 {
		add("discovery interval set without a source")
	}
	if g.discoveryInterval < 0 {
		add("discovery interval %s is negative", g.discoveryInterval)
	}
	if g.ejectFailures > 0 && (g.ejectPeriod <= 0 || g.ejectMaxPct < 0 || g.ejectMaxPct > 100) {
		add("passive ejection: period %s must be positive and max percent %d within 0..100", g.ejectPeriod, g.ejectMaxPct)
	}
	if !g.noHealth {
		errs = append(errs, g.health.problems(g.proto)...)
	}
	return errs
}

// problems lists what is wrong with a health check for a group of protocol p.
func (h *HealthCheck) problems(p Protocol) []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf("health check: "+format, a...)) }
	switch h.Protocol {
	case 0, TCP, HTTP, HTTPS, UDP:
	default:
		add("protocol %s cannot be checked (tcp, http, https or udp)", h.Protocol)
	}
	if h.Port < 0 || h.Port > 65535 {
		add("port %d is out of range 0..65535", h.Port)
	}
	if h.Interval < 0 || h.Timeout < 0 {
		add("interval %s and timeout %s must not be negative", h.Interval, h.Timeout)
	}
	iv, to := orDuration(h.Interval, healthcheck.DefaultInterval), orDuration(h.Timeout, healthcheck.DefaultTimeout)
	if to >= iv {
		add("timeout %s must be below the interval %s", to, iv)
	}
	if h.HealthyThreshold < 0 || h.HealthyThreshold > 10 || h.UnhealthyThreshold < 0 || h.UnhealthyThreshold > 10 {
		add("thresholds %d and %d must be within 1..10", h.HealthyThreshold, h.UnhealthyThreshold)
	}
	if h.Status != "" {
		if _, err := healthcheck.ParseStatusCodes(h.Status); err != nil {
			add("%v", err)
		}
	}
	if h.Path != "" && h.Path[0] != '/' {
		add("path %q is not absolute", h.Path)
	}
	return errs
}

func orDuration(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// lines splits an error of several lines (errors.Join) into one error per
// line, so each can be prefixed with where it comes from.
func lines(err error) []error {
	if err == nil {
		return nil
	}
	var out []error
	for _, l := range strings.Split(err.Error(), "\n") {
		if l != "" {
			out = append(out, errors.New(l))
		}
	}
	return out
}

// unwrapAll flattens an errors.Join tree into its leaves.
func unwrapAll(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unwrapAll(e)...)
		}
		return out
	}
	return []error{err}
}
