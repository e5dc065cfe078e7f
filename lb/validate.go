package lb

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lbkit/lbkit/balancer"
	"github.com/lbkit/lbkit/healthcheck"
	"github.com/lbkit/lbkit/proxy"
	"github.com/lbkit/lbkit/sticky"
)

// report collects the problems of one configuration as *FieldErrors.
type report struct{ errs []error }

// add records a problem of obj (in parent) with field.
func (r *report) add(obj, parent Object, field string, err error) {
	r.errs = append(r.errs, &FieldError{Object: obj, Parent: parent, Field: field, Err: err})
}

// addf records a problem of obj (in parent) with field, in words.
func (r *report) addf(obj, parent Object, field, format string, a ...any) {
	r.add(obj, parent, field, invalidf(format, a...))
}

// validate checks the whole configuration and returns every problem at once
// (errors.Join of *FieldErrors, each wrapping ErrInvalid), or nil.
func (c *config) validate() error {
	var r report
	lb := Object{Kind: KindLoadBalancer}
	if c.maxFlows < 0 {
		r.addf(lb, Object{}, "MaxFlows", "max flows %d is negative", c.maxFlows)
	}
	if c.perSource < 0 {
		r.addf(lb, Object{}, "MaxFlowsPerSource", "max flows per source %d is negative", c.perSource)
	}
	if c.budget < 0 {
		r.addf(lb, Object{}, "DescriptorBudget", "descriptor budget %d is negative", c.budget)
	}
	if c.unreplied < 0 {
		r.addf(lb, Object{}, "UnrepliedTimeout", "unreplied timeout %v is negative", c.unreplied)
	}

	groups := map[string]*groupConfig{}
	for i, g := range c.groups {
		obj := Object{Kind: KindTargetGroup, Name: g.name, Index: i}
		if g.name == "" {
			r.addf(obj, Object{}, "Name", "name is empty")
		} else if _, dup := groups[g.name]; dup {
			r.addf(obj, Object{}, "Name", "name is used by another target group")
		} else {
			groups[g.name] = g
		}
		g.check(&r, obj)
	}

	names := map[string]bool{}
	addrs := map[string]string{}
	for i, l := range c.listeners {
		obj := Object{Kind: KindListener, Name: l.name, Index: i}
		add := func(field, format string, a ...any) { r.addf(obj, Object{}, field, format, a...) }
		before := len(r.errs)
		if l.name == "" {
			add("Name", "name is empty")
		} else if names[l.name] {
			add("Name", "name is used by another listener")
		}
		names[l.name] = true
		if !l.proto.valid() {
			add("Protocol", "protocol %d is unknown", l.proto)
		}
		if err := checkListenAddr(l.addr); err != nil {
			r.add(obj, Object{}, "Addr", err)
		} else if _, port, _ := net.SplitHostPort(l.addr); port != "0" {
			key := l.proto.network() + " " + l.addr
			if other, dup := addrs[key]; dup {
				add("Addr", "addr %q is used by listener %q", l.addr, other)
			}
			addrs[key] = l.name
		}
		l.checkActions(&r, obj, groups)
		for _, acl := range []struct {
			field, prefix string
			allow, deny   []string
		}{{"Allow", "", l.allow, nil}, {"Deny", "", nil, l.deny}, {"TrustedProxies", "trusted proxies: ", l.trusted, nil}} {
			_, err := proxy.ParseACL(acl.allow, acl.deny)
			for _, e := range unwrapAll(err) {
				r.add(obj, Object{}, acl.field, &cause{msg: acl.prefix + e.Error(), sentinel: ErrInvalid, err: e})
			}
		}
		if l.idle < 0 {
			add("IdleTimeout", "idle timeout %s is negative", l.idle)
		}
		if l.connectTimeout < 0 {
			add("ConnectTimeout", "connect timeout %s is negative", l.connectTimeout)
		}
		if l.proto.tls() && len(l.certs) == 0 && l.certSource == nil {
			add("Certificates", "a %s listener needs at least one certificate", l.proto)
		}
		l.checkL7(&r, obj)
		if l.minTLS != 0 && l.minTLS < tls.VersionTLS12 {
			add("MinTLSVersion", "minimum TLS version %s is below TLS 1.2, which lbkit does not accept", tls.VersionName(l.minTLS))
		}
		if !l.proto.tls() && (len(l.certs) > 0 || l.certSource != nil) {
			add("Certificates", "certificates are set but a %s listener does not use TLS", l.proto)
		}
		if len(r.errs) == before && l.proto.valid() {
			// The proxy's own check, behind lb's: what it refuses (an
			// error wrapping proxy.ErrInvalid) is refused here.
			for _, e := range l.proxyProblems() {
				r.add(obj, Object{}, "", invalidBy(e))
			}
		}
	}
	return errors.Join(r.errs...)
}

// checkActions checks what a listener forwards to: its default action and,
// for HTTP and HTTPS, its rules (built into a router with stand-in groups, so
// conflicting rules are found here).
func (l *listenerConfig) checkActions(r *report, obj Object, groups map[string]*groupConfig) {
	target := func(o, parent Object, field, name string) {
		switch g, ok := groups[name]; {
		case !ok:
			r.addf(o, parent, field, "forwards to target group %q, which does not exist", name)
		case l.proto.valid() && g.proto.valid() && !forwards(l.proto, g.proto):
			r.addf(o, parent, field, "a %s listener cannot forward to %s target group %q (allowed: tcp→tcp, udp→udp, tls→tcp|tls, http→http, https→http|https)", l.proto, g.proto, g.name)
		case g.stickiness.Kind >= Cookie && !l.proto.l7():
			r.addf(o, parent, field, "target group %q uses %s stickiness, which needs an http or https listener", g.name, g.stickiness.Kind)
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
			r.addf(obj, Object{}, "Rules", "rules are for http and https listeners")
		}
		if l.requestTimeout != 0 || l.responseTimeout != 0 || l.maxHeaderBytes != 0 || l.maxBodyBytes != 0 || l.maxURILength != 0 {
			r.addf(obj, Object{}, "", "request timeout, response timeout and header, body and URI limits are for http and https listeners")
		}
		if l.group == "" {
			r.addf(obj, Object{}, "ForwardTo", "no target group to forward to")
		} else {
			target(obj, Object{}, "ForwardTo", l.group)
		}
		return
	}
	switch {
	case defaults == 0:
		r.addf(obj, Object{}, "DefaultAction", "no default action")
	case defaults > 1:
		r.addf(obj, Object{}, "DefaultAction", "more than one default action")
	}
	if l.group != "" {
		target(obj, Object{}, "ForwardTo", l.group)
	}
	before := len(r.errs)
	seen := map[[3]string]int{}
	for i, rule := range l.rules {
		ro := Object{Kind: KindRule, Name: rule.Name, Index: i}
		if rule.Forward != "" {
			target(ro, obj, "Forward", rule.Forward)
		}
		for j, s := range rule.Split {
			target(ro, obj, fmt.Sprintf("Split[%d].Group", j), s.Group)
		}
		// Each rule alone, then the set: the proxy's router says what is
		// malformed, given stand-in groups.
		if _, err := (&LoadBalancer{}).router(&listenerConfig{proto: l.proto, group: "-", rules: []Rule{rule}}, standIn()); err != nil {
			for _, e := range unwrapAll(err) {
				r.add(ro, obj, "", invalidBy(ruleCause(e)))
			}
			continue
		}
		key := [3]string{strings.ToLower(rule.Host), rule.Path, strconv.Itoa(rule.Priority)}
		if k, dup := seen[key]; dup {
			r.addf(ro, obj, "", "has the same host, path and priority as %s", Object{Kind: KindRule, Name: l.rules[k].Name, Index: k})
		} else {
			seen[key] = i
		}
	}
	if defaults == 0 || len(r.errs) > before {
		return
	}
	if _, err := (&LoadBalancer{}).router(l, standIn()); err != nil {
		for _, e := range unwrapAll(err) {
			r.add(obj, Object{}, "Rules", invalidBy(e))
		}
	}
}

// standIn returns stand-in groups for checking rules.
func standIn() func(string) *proxy.Upstream {
	stand := map[string]*proxy.Upstream{}
	return func(name string) *proxy.Upstream {
		if stand[name] == nil {
			stand[name] = &proxy.Upstream{Name: name, Balancer: new(balancer.Balancer)}
		}
		return stand[name]
	}
}

// ruleCause returns the cause inside the router's error about one rule
// (which wraps proxy.ErrInvalidRule, the rule's name and the cause), so
// that the rule is not named twice.
func ruleCause(err error) error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if e != proxy.ErrInvalidRule {
				return e
			}
		}
	}
	return err
}

// checkL7 checks the settings an HTTP or HTTPS listener's proxy checks
// only when it starts serving, so that a bad value is a configuration error
// and never a listener that accepts clients and serves none.
func (l *listenerConfig) checkL7(r *report, obj Object) {
	add := func(field, format string, a ...any) { r.addf(obj, Object{}, field, format, a...) }
	if !l.proto.l7() {
		if l.retry != (proxy.Retry{}) || l.forwarded || l.accessLog != nil || l.requestID {
			add("", "retries, the Forwarded header, request IDs and access logs are for http and https listeners")
		}
		if l.eventLoop {
			add("EventLoop", "event loops are for http listeners")
		}
		return
	}
	if l.eventLoop && l.proto != HTTP {
		add("EventLoop", "event loops are for http listeners; an https listener's connections are served with goroutines")
	}
	if l.connectAttempts != 0 {
		add("ConnectAttempts", "connect attempts are for tcp and tls listeners; an http listener retries with WithRetries(proxy.Retry{Attempts: n})")
	}
	if l.flowLog != nil {
		add("FlowLog", "flow logs are for tcp, tls and udp listeners; an http listener has an access log (WithAccessLog)")
	}
	for _, c := range []struct {
		field, name string
		v           int64
	}{
		{"RequestTimeout", "request timeout", int64(l.requestTimeout)}, {"ResponseTimeout", "response timeout", int64(l.responseTimeout)},
		{"MaxHeaderBytes", "max header bytes", int64(l.maxHeaderBytes)}, {"MaxBodyBytes", "max body bytes", l.maxBodyBytes},
		{"MaxURILength", "max URI length", int64(l.maxURILength)}, {"Retries.Attempts", "retry attempts", int64(l.retry.Attempts)},
		{"Retries.Timeout", "retry timeout", int64(l.retry.Timeout)}, {"Retries.MinPerSecond", "retry minimum per second", int64(l.retry.MinPerSecond)},
	} {
		if c.v < 0 {
			add(c.field, "%s %d is negative", c.name, c.v)
		}
	}
	if ratio := l.retry.Ratio; ratio < 0 || ratio > 10 {
		add("Retries.Ratio", "retry ratio %v is outside 0..10", ratio)
	}
	switch l.clientAuth {
	case tls.NoClientCert:
	case tls.VerifyClientCertIfGiven, tls.RequireAndVerifyClientCert:
		if l.clientCAs == nil {
			add("ClientAuth", "client authentication %s needs a CA pool", l.clientAuth)
		}
		if l.proto != HTTPS {
			add("ClientAuth", "client authentication is for https listeners")
		}
	default:
		add("ClientAuth", "client authentication %s is not VerifyClientCertIfGiven or RequireAndVerifyClientCert", l.clientAuth)
	}
	if v := l.minTLS; v != 0 && v != tls.VersionTLS12 && v != tls.VersionTLS13 && v >= tls.VersionTLS12 {
		add("MinTLSVersion", "minimum TLS version %#x is unknown", v)
	}
	if l.proto == HTTPS && !l.disableHTTP2 && len(l.ciphers) > 0 && l.minTLS < tls.VersionTLS13 &&
		!slices.Contains(l.ciphers, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256) && !slices.Contains(l.ciphers, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256) {
		// net/http refuses to serve HTTP/2 with such a list.
		add("CipherSuites", "cipher suites need TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 or TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 for HTTP/2; add one or disable HTTP/2")
	}
	for i, h := range l.clientHosts { // host patterns as in Rule.Host: the router says
		if _, err := proxy.NewRouter(proxy.Action{Fixed: &proxy.FixedResponse{}}, proxy.Rule{Host: h, Action: proxy.Action{Fixed: &proxy.FixedResponse{}}}); err != nil {
			add("ClientAuth", "client authentication hosts[%d] %q is not a host pattern", i, h)
		}
	}
}

// network returns the socket family a listener of the protocol binds.
func (p Protocol) network() string {
	if p == UDP {
		return "udp"
	}
	return "tcp"
}

// checkListenAddr returns what is wrong with a listener's address, or nil.
func checkListenAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return invalidf("addr %q is not host:port", addr)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p > 65535 {
		return invalidf("addr %q: port %q is out of range 0..65535", addr, port)
	}
	return nil
}

// check records what is wrong with a group's own configuration and its
// targets.
func (g *groupConfig) check(r *report, obj Object) {
	add := func(field, format string, a ...any) { r.addf(obj, Object{}, field, format, a...) }
	if !g.proto.valid() {
		add("Protocol", "protocol %d is unknown", g.proto)
	}
	if _, err := balancer.New(balancer.WithAlgorithm(g.algo)); err != nil {
		for _, e := range unwrapAll(err) {
			r.add(obj, Object{}, "Algorithm", invalidBy(e))
		}
	}
	g.checkTargets(r, obj)
	st := g.stickiness
	if k := st.Kind; k > AppCookie {
		add("Stickiness.Kind", "stickiness %d is unknown", k)
	} else if k >= Cookie && g.proto.valid() && !g.proto.l7() {
		add("Stickiness.Kind", "%s stickiness needs an http or https target group, not %s", k, g.proto)
	}
	if g.algo == balancer.KeyHash {
		add("Algorithm", "algorithm key_hash needs a key per request, which lb does not provide; use source_ip_hash, or balancer.KeyHash directly")
	}
	if st.Kind != NotSticky && g.algo == balancer.SourceIPHash {
		add("Stickiness.Kind", "%s stickiness with algorithm %s: the algorithm already keeps each client on its target; choose one", st.Kind, g.algo)
	}
	if st.Kind == NotSticky && (st.Store != nil || st.StoreTimeout != 0) {
		add("Stickiness.Store", "a sticky store is set without stickiness")
	}
	if st.Kind == Cookie && (st.Store != nil || st.StoreTimeout != 0) {
		add("Stickiness.Store", "a sticky store is for source_ip and app_cookie stickiness; the lb_cookie carries its target")
	}
	if st.Kind == AppCookie && st.CookieName == "" {
		add("Stickiness.CookieName", "app_cookie stickiness needs the application's cookie name")
	}
	if st.Duration < 0 {
		add("Stickiness.Duration", "stickiness duration %s is negative", st.Duration)
	} else if st.Kind != NotSticky && st.Kind <= AppCookie && (st.Kind != AppCookie || st.CookieName != "") {
		if _, err := buildPolicy(g.name, st, func(string) sticky.TargetState { return sticky.Usable }); err != nil {
			for _, e := range unwrapAll(err) {
				r.add(obj, Object{}, "Stickiness", &cause{msg: "stickiness: " + e.Error(), sentinel: ErrInvalid, err: e})
			}
		}
	}
	if g.proxyProtocol != 0 && g.proxyProtocol != 1 && g.proxyProtocol != 2 {
		add("ProxyProtocol", "proxy protocol version %d is not 1 or 2", g.proxyProtocol)
	}
	if g.proxyProtocol != 0 && g.proto.valid() && g.proto != TCP && g.proto != TLS {
		add("ProxyProtocol", "proxy protocol is for tcp and tls target groups, not %s", g.proto)
	}
	if g.targetTLS != nil && g.proto.valid() && !g.proto.tls() {
		add("TargetTLS", "target TLS is set but a %s target group does not use TLS", g.proto)
	}
	if g.discovery == nil && g.discoveryInterval != 0 {
		add("Discovery.Interval", "discovery interval set without a source")
	}
	if g.discoveryInterval < 0 {
		add("Discovery.Interval", "discovery interval %s is negative", g.discoveryInterval)
	}
	if g.ejectFailures > 0 && (g.ejectPeriod <= 0 || g.ejectMaxPct < 0 || g.ejectMaxPct > 100) {
		add("PassiveEjection", "passive ejection: period %s must be positive and max percent %d within 0..100", g.ejectPeriod, g.ejectMaxPct)
	}
	if !g.noHealth {
		g.health.check(r, obj)
	}
}

// checkTargets records what is wrong with a group's targets: each field
// alone (the balancer checks the address), then ids used twice.
func (g *groupConfig) checkTargets(r *report, group Object) {
	seen := make(map[string]int, len(g.targets))
	for i, t := range g.targets {
		obj := Object{Kind: KindTarget, Name: t.id, Index: i}
		if t.id == "" {
			r.addf(obj, group, "ID", "id is empty")
		}
		if _, err := balancer.New(balancer.WithTargets(balancer.Target{ID: "-", Addr: t.addr, Weight: 1})); err != nil {
			for _, e := range unwrapAll(err) {
				// Without the balancer's "target[0] ..." prefix: this
				// target is named already.
				r.add(obj, group, "Addr", invalidBy(cmp.Or(errors.Unwrap(e), e)))
			}
		}
		if t.weight < 0 || t.weight > balancer.MaxWeight {
			r.addf(obj, group, "Weight", "weight %d is out of range 0..%d", t.weight, balancer.MaxWeight)
		}
		if t.id == "" {
			continue
		}
		if j, dup := seen[t.id]; dup {
			r.addf(obj, group, "ID", "id also used by target[%d]", j)
			continue
		}
		seen[t.id] = i
	}
}

// check records what is wrong with the health check of group obj. Its
// fields are "HealthCheck.<field>".
func (h *HealthCheck) check(r *report, obj Object) {
	add := func(field, format string, a ...any) {
		r.addf(obj, Object{}, "HealthCheck."+field, format, a...)
	}
	switch h.Protocol {
	case 0, TCP, HTTP, HTTPS, UDP:
	default:
		add("Protocol", "protocol %s cannot be checked (tcp, http, https or udp)", h.Protocol)
	}
	if h.Port < 0 || h.Port > 65535 {
		add("Port", "port %d is out of range 0..65535", h.Port)
	}
	if h.Interval < 0 || h.Timeout < 0 {
		field := "Interval"
		if h.Interval >= 0 {
			field = "Timeout"
		}
		add(field, "interval %s and timeout %s must not be negative", h.Interval, h.Timeout)
	}
	iv, to := orDuration(h.Interval, healthcheck.DefaultInterval), orDuration(h.Timeout, healthcheck.DefaultTimeout)
	if to >= iv {
		add("Timeout", "timeout %s must be below the interval %s", to, iv)
	}
	if h.HealthyThreshold < 0 || h.HealthyThreshold > 10 {
		add("HealthyThreshold", "healthy threshold %d must be within 1..10", h.HealthyThreshold)
	}
	if h.UnhealthyThreshold < 0 || h.UnhealthyThreshold > 10 {
		add("UnhealthyThreshold", "unhealthy threshold %d must be within 1..10", h.UnhealthyThreshold)
	}
	if h.Status != "" {
		if _, err := healthcheck.ParseStatusCodes(h.Status); err != nil {
			r.add(obj, Object{}, "HealthCheck.Status", &cause{
				msg:      fmt.Sprintf("status codes %q are not codes 100..599 and ranges lo-hi, comma-separated", h.Status),
				sentinel: ErrInvalid, err: err,
			})
		}
	}
	if h.Path != "" && h.Path[0] != '/' {
		add("Path", "path %q is not absolute", h.Path)
	}
}

func orDuration(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// unwrapAll flattens an errors.Join tree into its leaves. An error is taken
// for a join when it unwraps to several errors and its text is theirs, one
// a line; one that wraps several with words around them (fmt.Errorf with
// two %w) is a leaf.
func unwrapAll(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		es := j.Unwrap()
		texts := make([]string, len(es))
		for i, e := range es {
			texts[i] = e.Error()
		}
		if strings.Join(texts, "\n") == err.Error() {
			var out []error
			for _, e := range es {
				out = append(out, unwrapAll(e)...)
			}
			return out
		}
	}
	return []error{err}
}
