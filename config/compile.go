package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lbkit/lbkit/balancer"
	"github.com/lbkit/lbkit/lb"
	"github.com/lbkit/lbkit/proxy"
	"github.com/lbkit/lbkit/sticky"
)

// Passive ejection defaults, the healthcheck package's (config may not
// import it; a test keeps them equal).
const (
	defaultEjectFailures   = 5
	defaultEjectPeriod     = 30 * time.Second
	defaultEjectMaxPercent = 50
)

// compiler turns a File into lb options, checking every field on the way
// and recording each problem at its path. A field with a problem is left
// out of the options (its default is used instead), so that lb's own
// validation, run on the result, reports only what the compiler does not
// check itself, and never the same problem twice.
type compiler struct {
	f         *File
	probs     *problems
	lines     map[string]int
	accessLog *slog.Logger
	unread    map[string]bool // paths whose value could not be decoded

	// What lb's problems are mapped back with: lb names objects by name
	// (or position when unnamed) and targets and rules by their position
	// among those it was given.
	listeners   map[string]int // lb listener name → index in the file
	listenerPos []int          // lb listener position → index in the file
	groups      map[string]int
	groupPos    []int
	targetPos   map[int][]int // group index → lb target position → index in the file
	rulePos     map[int][]int // listener index → lb rule position → index in the file
}

func newCompiler(f *File, probs *problems, lines map[string]int, accessLog *slog.Logger) *compiler {
	if lines == nil {
		lines = map[string]int{}
	}
	unread := map[string]bool{}
	for _, p := range probs.list {
		unread[p.Path] = true
	}
	return &compiler{
		f: f, probs: probs, lines: lines, accessLog: accessLog, unread: unread,
		listeners: map[string]int{}, groups: map[string]int{},
		targetPos: map[int][]int{}, rulePos: map[int][]int{},
	}
}

// add records a problem at path, on the line of the field or of its
// nearest parent in the file, unless the field could not even be read
// (that was reported, and its zero value says nothing).
func (c *compiler) add(path, format string, a ...any) {
	for p := path; ; {
		if c.unread[p] {
			return
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	c.probs.add(path, c.line(path), format, a...)
}

// line returns the line of the field at path, or of its nearest parent in
// the file, or 0.
func (c *compiler) line(path string) int {
	for path != "" {
		if l, ok := c.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

// compile returns the options the file describes, its problems recorded.
func (c *compiler) compile() []lb.Option {
	f := c.f
	c.durations(reflect.ValueOf(f).Elem(), "")
	var opts []lb.Option
	if f.Flows.Max < 0 {
		c.add("flows.max", "%d is negative", f.Flows.Max)
	} else if f.Flows.Max > 0 {
		opts = append(opts, lb.WithMaxFlows(f.Flows.Max))
	}
	if n := f.Flows.MaxPerSource; n != nil && *n < 0 {
		c.add("flows.max_per_source", "%d is negative", *n)
	} else if n != nil {
		opts = append(opts, lb.WithMaxFlowsPerSource(*n))
	}
	if n := f.Flows.DescriptorBudget; n != nil && *n < 0 {
		c.add("flows.descriptor_budget", "%d is negative", *n)
	} else if n != nil {
		opts = append(opts, lb.WithDescriptorBudget(*n))
	}
	if d := f.Flows.UnrepliedTimeout; d != nil && *d >= 0 { // negative: reported by durations
		opts = append(opts, lb.WithUnrepliedTimeout(time.Duration(*d)))
	}
	opts = append(opts, c.sectionOptions()...)
	seen := map[string]int{}
	for i := range f.TargetGroups {
		if o, ok := c.group(i, &f.TargetGroups[i], seen); ok {
			opts = append(opts, o)
		}
	}
	seen = map[string]int{}
	for i := range f.Listeners {
		if o, ok := c.listener(i, &f.Listeners[i], seen); ok {
			opts = append(opts, o)
		}
	}
	return opts
}

// name checks an object's name and returns the name to give lb: the name,
// or a unique stand-in when it is a duplicate (already reported).
func (c *compiler) name(path, kind, name string, i int, seen map[string]int) string {
	switch j, dup := seen[name]; {
	case name == "":
		c.add(path+".name", "is required")
	case dup:
		c.add(path+".name", "%q is also the name of %s[%d]", name, kind, j)
		return fmt.Sprintf("%s#dup%d", name, i)
	default:
		seen[name] = i
	}
	return name
}

func (c *compiler) listener(i int, l *Listener, seen map[string]int) (lb.Option, bool) {
	path := fmt.Sprintf("listeners[%d]", i)
	name := c.name(path, "listeners", l.Name, i, seen)
	var proto lb.Protocol
	if l.Protocol == "" {
		c.add(path+".protocol", "is required: tcp, udp, tls, http or https")
	} else if p, err := lb.ParseProtocol(l.Protocol); err != nil {
		c.add(path+".protocol", "%q is not one of tcp, udp, tls, http, https", l.Protocol)
	} else {
		proto = p
	}
	addr := l.Address
	if l.Address == "" {
		c.add(path+".address", "is required, as host:port (e.g. 127.0.0.1:8080)")
		addr = "127.0.0.1:0"
	} else if err := checkHostPort(l.Address, 0); err != nil {
		c.add(path+".address", "%v", err)
		addr = "127.0.0.1:0" // a stand-in that lb accepts
	}

	var opts []lb.ListenerOption
	if l.ForwardTo != "" {
		opts = append(opts, lb.WithForwardTo(l.ForwardTo))
	}
	opts = append(opts, c.acl(path+".allow", l.Allow, lb.WithAllow)...)
	opts = append(opts, c.acl(path+".deny", l.Deny, lb.WithDeny)...)
	opts = append(opts, c.acl(path+".trusted_proxies", l.TrustedProxies, lb.WithTrustedProxies)...)
	if l.IdleTimeout > 0 {
		opts = append(opts, lb.WithIdleTimeout(time.Duration(l.IdleTimeout)))
	}
	if l.ConnectTimeout > 0 {
		opts = append(opts, lb.WithConnectTimeout(time.Duration(l.ConnectTimeout)))
	}
	if l.ConnectAttempts < 0 {
		c.add(path+".connect_attempts", "%d is negative", l.ConnectAttempts)
	} else if l.ConnectAttempts > 0 {
		opts = append(opts, lb.WithConnectAttempts(l.ConnectAttempts))
	}

	l7 := proto == lb.HTTP || proto == lb.HTTPS
	onlyFor := func(field string, set bool, want bool, kinds string) bool {
		if set && !want && proto != 0 {
			c.add(path+"."+field, "is for %s listeners, not %s", kinds, proto)
			return false
		}
		return set
	}
	if onlyFor("header_timeout", l.HeaderTimeout > 0, !l7, "tcp and tls") {
		opts = append(opts, lb.WithHeaderTimeout(time.Duration(l.HeaderTimeout)))
	}
	const http = "http and https"
	if onlyFor("redirect", l.Redirect != nil, l7, http) {
		if r, ok := c.redirect(path+".redirect", l.Redirect); ok {
			opts = append(opts, lb.WithDefaultRedirect(r))
		}
	}
	if onlyFor("fixed", l.Fixed != nil, l7, http) {
		if fx, ok := c.fixed(path+".fixed", l.Fixed); ok {
			opts = append(opts, lb.WithDefaultFixed(fx))
		}
	}
	if onlyFor("rules", len(l.Rules) > 0, l7, http) {
		opts = append(opts, lb.WithRules(c.rules(i, path, l.Rules)...))
	}
	if onlyFor("request_timeout", l.RequestTimeout > 0, l7, http) {
		opts = append(opts, lb.WithRequestTimeout(time.Duration(l.RequestTimeout)))
	}
	if onlyFor("response_timeout", l.ResponseTimeout > 0, l7, http) {
		opts = append(opts, lb.WithResponseTimeout(time.Duration(l.ResponseTimeout)))
	}
	if c.nonNegative(path+".max_header_bytes", int64(l.MaxHeaderBytes)) && onlyFor("max_header_bytes", l.MaxHeaderBytes > 0, l7, http) {
		opts = append(opts, lb.WithMaxHeaderBytes(l.MaxHeaderBytes))
	}
	if c.nonNegative(path+".max_body_bytes", l.MaxBodyBytes) && onlyFor("max_body_bytes", l.MaxBodyBytes > 0, l7, http) {
		opts = append(opts, lb.WithMaxBodyBytes(l.MaxBodyBytes))
	}
	if c.nonNegative(path+".max_uri_length", int64(l.MaxURILength)) && onlyFor("max_uri_length", l.MaxURILength > 0, l7, http) {
		opts = append(opts, lb.WithMaxURILength(l.MaxURILength))
	}
	if onlyFor("retry", l.Retry != nil, l7, http) {
		if r, ok := c.retry(path+".retry", l.Retry); ok {
			opts = append(opts, lb.WithRetries(r))
		}
	}
	if onlyFor("forwarded_header", l.ForwardedHeader, l7, http) {
		opts = append(opts, lb.WithForwardedHeader())
	}
	if onlyFor("access_log", l.AccessLog, l7, http) {
		opts = append(opts, lb.WithAccessLog(cmpLogger(c.accessLog)))
	}
	if onlyFor("flow_log", l.FlowLog, !l7, "tcp, tls and udp") {
		var fl *slog.Logger
		if c.f.ext != nil {
			fl = c.f.ext.flowLog
		}
		opts = append(opts, lb.WithFlowLog(cmpLogger(fl)))
	}
	if l.RequestID != nil {
		if onlyFor("request_id", *l.RequestID, l7, http) {
			opts = append(opts, lb.WithRequestIDs())
		}
	} else if l.AccessLog && l7 {
		opts = append(opts, lb.WithRequestIDs())
	}
	if onlyFor("event_loop", l.EventLoop, proto == lb.HTTP, "http") {
		opts = append(opts, lb.WithEventLoop())
	}

	tlsProto := proto == lb.TLS || proto == lb.HTTPS
	if onlyFor("certificates", len(l.Certificates) > 0, tlsProto, "tls and https") {
		var certs []tls.Certificate
		sources := 0
		for k, cf := range l.Certificates {
			at := fmt.Sprintf("%s.certificates[%d]", path, k)
			if len(cf.kinds) > 0 {
				if sources++; sources > 1 {
					c.add(at, "a listener has one certificate source; this is its second")
					continue
				}
				if src, ok := c.extensionCertificate(at, l.Name, &l.Certificates[k]); ok {
					opts = append(opts, lb.WithCertificatesFrom(src))
				}
				continue
			}
			if cert, ok := c.keyPair(at, cf.CertFile, cf.KeyFile, true); ok {
				certs = append(certs, cert)
			}
		}
		if len(certs) > 0 {
			opts = append(opts, lb.WithCertificates(certs...))
		} else if tlsProto && sources == 0 {
			// Every certificate failed and was reported; a stand-in
			// keeps lb from reporting a missing one as well.
			opts = append(opts, lb.WithCertificates(tls.Certificate{}))
		}
	}
	if onlyFor("tls", l.TLS != nil, tlsProto, "tls and https") {
		opts = append(opts, c.listenerTLS(path+".tls", l.TLS, proto)...)
	}

	if proto == 0 {
		return nil, false // lb could say nothing useful about it
	}
	c.listeners[name] = i
	c.listenerPos = append(c.listenerPos, i)
	return lb.WithListener(name, proto, addr, opts...), true
}

// acl checks a list of prefixes and returns the option of the valid ones.
func (c *compiler) acl(path string, list []string, opt func(...string) lb.ListenerOption) []lb.ListenerOption {
	var ok []string
	for k, s := range list {
		if _, err := proxy.ParseACL([]string{s}, nil); err != nil {
			_, msg, _ := strings.Cut(err.Error(), "]: ")
			c.add(fmt.Sprintf("%s[%d]", path, k), "%s", msg)
			continue
		}
		ok = append(ok, s)
	}
	if len(ok) == 0 {
		return nil
	}
	return []lb.ListenerOption{opt(ok...)}
}

func (c *compiler) nonNegative(path string, v int64) bool {
	if v < 0 {
		c.add(path, "%d is negative", v)
		return false
	}
	return true
}

// rules checks a listener's rules one by one (and against each other) and
// returns the valid ones.
func (c *compiler) rules(li int, path string, rules []Rule) []lb.Rule {
	var out []lb.Rule
	var pos []int
	seen := map[[2]string]int{}
	for k, r := range rules {
		rp := fmt.Sprintf("%s.rules[%d]", path, k)
		ok := true
		n := 0
		for _, set := range []bool{r.Forward != "", len(r.Split) > 0, r.Redirect != nil, r.Fixed != nil} {
			if set {
				n++
			}
		}
		if n != 1 {
			c.add(rp, "set exactly one action of forward, split, redirect and fixed (%d set)", n)
			ok = false
		}
		lr := lb.Rule{Name: r.Name, Priority: r.Priority, Host: r.Host, Path: r.Path, Forward: r.Forward}
		// Host and path patterns: the proxy's own router says, given a
		// stand-in action.
		if _, err := proxy.NewRouter(proxy.Action{Fixed: &proxy.FixedResponse{}}, proxy.Rule{Host: r.Host, Path: r.Path, Action: proxy.Action{Fixed: &proxy.FixedResponse{}}}); err != nil {
			for _, msg := range strings.Split(err.Error(), "\n") {
				if i := strings.Index(msg, ": "); i >= 0 && strings.HasPrefix(msg, proxy.ErrInvalidRule.Error()) {
					msg = msg[i+2:] // `invalid rule: "rule[0]": `
					if j := strings.Index(msg, ": "); j >= 0 {
						msg = msg[j+2:]
					}
				}
				field := ".path"
				if strings.HasPrefix(msg, "host ") {
					field = ".host"
				}
				c.add(rp+field, "%s", msg)
			}
			ok = false
		}
		key := [2]string{strings.TrimSuffix(strings.ToLower(r.Host), "."), r.Path}
		if j, dup := seen[key]; dup {
			c.add(rp, "has the same host and path as rules[%d]; one of them could never match", j)
			ok = false
		} else {
			seen[key] = k
		}
		for j, s := range r.Split {
			sp := fmt.Sprintf("%s.split[%d]", rp, j)
			if s.Group == "" {
				c.add(sp+".group", "is required")
				ok = false
			}
			if s.Weight < 0 || s.Weight > 1000 {
				c.add(sp+".weight", "%d is out of range 0..1000", s.Weight)
				ok = false
			}
			lr.Split = append(lr.Split, lb.GroupWeight{Group: s.Group, Weight: s.Weight})
		}
		if len(r.Split) > 0 && !slices.ContainsFunc(r.Split, func(s Split) bool { return s.Weight > 0 }) {
			c.add(rp+".split", "the weights add up to 0")
			ok = false
		}
		if r.Redirect != nil {
			rd, rok := c.redirect(rp+".redirect", r.Redirect)
			lr.Redirect, ok = &rd, ok && rok
		}
		if r.Fixed != nil {
			fx, fok := c.fixed(rp+".fixed", r.Fixed)
			lr.Fixed, ok = &fx, ok && fok
		}
		if ok {
			out = append(out, lr)
			pos = append(pos, k)
		}
	}
	c.rulePos[li] = pos
	return out
}

func (c *compiler) redirect(path string, r *Redirect) (proxy.Redirect, bool) {
	ok := true
	bad := func(field, format string, a ...any) {
		c.add(path+"."+field, format, a...)
		ok = false
	}
	if r.Scheme != "" && r.Scheme != "http" && r.Scheme != "https" {
		bad("scheme", "%q is not http or https", r.Scheme)
	}
	if r.Port < 0 || r.Port > 65535 {
		bad("port", "%d is out of range 0..65535", r.Port)
	}
	if r.Path != "" && !strings.HasPrefix(r.Path, "/") {
		bad("path", "%q is not an absolute path", r.Path)
	}
	switch r.Code {
	case 0, 301, 302, 303, 307, 308:
	default:
		bad("code", "%d is not 301, 302, 303, 307 or 308", r.Code)
	}
	pr := proxy.Redirect{Scheme: r.Scheme, Host: r.Host, Port: r.Port, Path: r.Path, Code: r.Code}
	if ok && r.Host != "" {
		if _, err := proxy.NewRouter(proxy.Action{Redirect: &pr}); err != nil {
			_, msg, _ := strings.Cut(err.Error(), "redirect: ")
			bad("host", "%s", msg)
		}
	}
	return pr, ok
}

func (c *compiler) fixed(path string, f *Fixed) (proxy.FixedResponse, bool) {
	ok := true
	if f.Status != 0 && (f.Status < 200 || f.Status > 599) {
		c.add(path+".status", "%d is out of range 200..599", f.Status)
		ok = false
	}
	if len(f.Body) > 1<<20 {
		c.add(path+".body", "%d bytes is over the limit of 1 MiB", len(f.Body))
		ok = false
	}
	if strings.ContainsAny(f.ContentType, "\r\n") {
		c.add(path+".content_type", "%q has a line break", f.ContentType)
		ok = false
	}
	return proxy.FixedResponse{Status: f.Status, ContentType: f.ContentType, Body: f.Body}, ok
}

func (c *compiler) retry(path string, r *Retry) (proxy.Retry, bool) {
	ok := c.nonNegative(path+".attempts", int64(r.Attempts))
	ok = c.nonNegative(path+".min_per_second", int64(r.MinPerSecond)) && ok
	if r.Ratio < 0 || r.Ratio > 1 {
		c.add(path+".ratio", "%v is out of range 0..1", r.Ratio)
		ok = false
	}
	return proxy.Retry{Attempts: r.Attempts, Timeout: time.Duration(r.Timeout), BodyLimit: r.BodyLimit, Ratio: r.Ratio, MinPerSecond: r.MinPerSecond}, ok
}

// tlsVersions are the minimum versions a listener accepts: lbkit refuses
// TLS 1.0 and 1.1 (deprecated by RFC 8996).
var tlsVersions = map[string]uint16{"1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13}

func (c *compiler) listenerTLS(path string, t *ListenerTLS, proto lb.Protocol) []lb.ListenerOption {
	var opts []lb.ListenerOption
	if t.MinVersion != "" {
		if v, ok := tlsVersions[t.MinVersion]; ok {
			opts = append(opts, lb.WithMinTLSVersion(v))
		} else {
			c.add(path+".min_version", "%q is not one of 1.2, 1.3 (TLS 1.0 and 1.1 are not accepted)", t.MinVersion)
		}
	}
	var ids []uint16
	for k, name := range t.CipherSuites {
		if id, ok := cipherSuite(name); ok {
			ids = append(ids, id)
		} else {
			c.add(fmt.Sprintf("%s.cipher_suites[%d]", path, k), "%q is not a cipher suite Go knows (e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)", name)
		}
	}
	if len(ids) > 0 {
		opts = append(opts, lb.WithCipherSuites(ids...))
	}
	switch t.Wildcard {
	case "", "one_label":
	case "suffix":
		opts = append(opts, lb.WithWildcardMatch(proxy.WildcardSuffix))
	default:
		c.add(path+".wildcard", "%q is not one_label or suffix", t.Wildcard)
	}
	if t.DisableHTTP2 {
		if proto == lb.HTTPS {
			opts = append(opts, lb.WithoutHTTP2())
		} else {
			c.add(path+".disable_http2", "is for https listeners, not %s", proto)
		}
	}
	var mode tls.ClientAuthType
	switch t.ClientAuth {
	case "", "none":
	case "optional":
		mode = tls.VerifyClientCertIfGiven
	case "required":
		mode = tls.RequireAndVerifyClientCert
	default:
		c.add(path+".client_auth", "%q is not none, optional or required", t.ClientAuth)
	}
	if mode != tls.NoClientCert && proto != lb.HTTPS {
		c.add(path+".client_auth", "is for https listeners, not %s", proto)
		mode = tls.NoClientCert
	}
	var pool *x509.CertPool
	switch {
	case t.ClientCAFile != "":
		pool, _ = c.certPool(path+".client_ca_file", t.ClientCAFile)
	case mode != tls.NoClientCert:
		c.add(path+".client_ca_file", "is required with client_auth %q", t.ClientAuth)
	}
	if mode != tls.NoClientCert && pool != nil {
		opts = append(opts, lb.WithClientAuth(mode, pool, t.ClientAuthHosts...))
	} else if len(t.ClientAuthHosts) > 0 && mode == tls.NoClientCert && (t.ClientAuth == "" || t.ClientAuth == "none") {
		c.add(path+".client_auth_hosts", "is set but client_auth is none")
	}
	return opts
}

func cipherSuite(name string) (uint16, bool) {
	for _, s := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		if s.Name == name {
			return s.ID, true
		}
	}
	return 0, false
}

// keyPair loads a certificate and its key; the problem, if any, is
// recorded at path.
func (c *compiler) keyPair(path, certFile, keyFile string, required bool) (tls.Certificate, bool) {
	if certFile == "" && keyFile == "" && !required {
		return tls.Certificate{}, false
	}
	ok := true
	if certFile == "" {
		c.add(path+".cert_file", "is required")
		ok = false
	}
	if keyFile == "" {
		c.add(path+".key_file", "is required")
		ok = false
	}
	if !ok {
		return tls.Certificate{}, false
	}
	certPEM, err := readFile(c.f.dir, certFile)
	if err != nil {
		c.add(path+".cert_file", "%v", err)
		ok = false
	}
	keyPEM, err := readFile(c.f.dir, keyFile)
	if err != nil {
		c.add(path+".key_file", "%v", err)
		ok = false
	}
	if !ok {
		return tls.Certificate{}, false
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		c.add(path, "%s and %s: %v", certFile, keyFile, err)
		return tls.Certificate{}, false
	}
	return cert, true
}

// certPool loads a PEM file of CA certificates.
func (c *compiler) certPool(path, file string) (*x509.CertPool, bool) {
	b, err := readFile(c.f.dir, file)
	if err != nil {
		c.add(path, "%v", err)
		return nil, false
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		c.add(path, "%s holds no PEM certificate", file)
		return nil, false
	}
	return pool, true
}

// clientTLS builds the TLS configuration of connections to targets.
func (c *compiler) clientTLS(path string, t *ClientTLS) (*tls.Config, bool) {
	cfg := &tls.Config{ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
	ok := true
	if t.CAFile != "" {
		pool, pok := c.certPool(path+".ca_file", t.CAFile)
		cfg.RootCAs, ok = pool, pok
	}
	if t.CertFile != "" || t.KeyFile != "" {
		cert, cok := c.keyPair(path, t.CertFile, t.KeyFile, false)
		if cok {
			cfg.Certificates = []tls.Certificate{cert}
		}
		ok = ok && cok
	}
	return cfg, ok
}

func (c *compiler) group(i int, g *TargetGroup, seen map[string]int) (lb.Option, bool) {
	path := fmt.Sprintf("target_groups[%d]", i)
	name := c.name(path, "target_groups", g.Name, i, seen)
	var proto lb.Protocol // 0 when invalid: lb then skips the checks that need it
	if g.Protocol == "" {
		c.add(path+".protocol", "is required: tcp, udp, tls, http or https")
	} else if p, err := lb.ParseProtocol(g.Protocol); err != nil {
		c.add(path+".protocol", "%q is not one of tcp, udp, tls, http, https", g.Protocol)
	} else {
		proto = p
	}
	var opts []lb.GroupOption
	if g.Algorithm != "" {
		if a, err := balancer.ParseAlgorithm(g.Algorithm); err != nil {
			c.add(path+".algorithm", "%q is not one of round_robin, least_connections, source_ip_hash, random", g.Algorithm)
		} else {
			opts = append(opts, lb.WithAlgorithm(a))
		}
	}

	ids := map[string]int{}
	var pos []int
	for k, t := range g.Targets {
		tp := fmt.Sprintf("%s.targets[%d]", path, k)
		ok := true
		if t.Address == "" {
			c.add(tp+".address", "is required")
			ok = false
		} else if err := checkHostPort(t.Address, 1); err != nil {
			c.add(tp+".address", "%v", err)
			ok = false
		}
		id := cmpOr(t.ID, t.Address)
		if j, dup := ids[id]; dup && id != "" {
			field := ".id"
			if t.ID == "" {
				field = ".address"
			}
			c.add(tp+field, "%q is also the id of targets[%d] (ids default to the address)", id, j)
			ok = false
		} else {
			ids[id] = k
		}
		topts := []lb.TargetOption{lb.WithTargetID(id)}
		if t.Weight != nil {
			if w := *t.Weight; w < 0 || w > balancer.MaxWeight {
				c.add(tp+".weight", "%d is out of range 0..%d", w, balancer.MaxWeight)
				ok = false
			}
			topts = append(topts, lb.WithWeight(*t.Weight))
		}
		if ok {
			opts = append(opts, lb.WithTarget(t.Address, topts...))
			pos = append(pos, k)
		}
	}
	c.targetPos[i] = pos

	if h := g.HealthCheck; h != nil {
		if o, ok := c.healthCheck(path+".health_check", h); ok {
			opts = append(opts, o)
		}
	}
	if s := g.Stickiness; s != nil {
		if st, ok := c.stickiness(path+".stickiness", s); ok {
			opts = append(opts, lb.WithStickiness(st))
		}
	}
	if d := g.DeregistrationDelay; d != nil && *d >= 0 {
		opts = append(opts, lb.WithDeregistrationDelay(time.Duration(*d)))
	}
	if g.ProxyProtocol != 0 {
		opts = append(opts, lb.WithProxyProtocol(g.ProxyProtocol))
	}
	if g.TLS != nil {
		if cfg, ok := c.clientTLS(path+".tls", g.TLS); ok {
			opts = append(opts, lb.WithTargetTLS(cfg))
		}
	}
	if d := g.Discovery; d != nil {
		if src, ok := c.discovery(path+".discovery", d); ok {
			opts = append(opts, lb.WithDiscovery(src, time.Duration(max(d.Interval, 0))))
		}
	}
	if p := g.PassiveEjection; p != nil {
		if o, ok := c.ejection(path+".passive_ejection", p); ok {
			opts = append(opts, o)
		}
	}
	if cb := g.CircuitBreaker; cb != nil {
		if cb.MaxPendingRequests < 0 {
			c.add(path+".circuit_breaker.max_pending_requests", "%d is negative", cb.MaxPendingRequests)
		} else {
			opts = append(opts, lb.WithCircuitBreaker(proxy.Limits{MaxConnsPerTarget: cb.MaxConnectionsPerTarget, MaxPendingRequests: cb.MaxPendingRequests}))
		}
	}
	c.groups[name] = i
	c.groupPos = append(c.groupPos, i)
	return lb.WithTargetGroup(name, proto, opts...), true
}

func (c *compiler) healthCheck(path string, h *HealthCheck) (lb.GroupOption, bool) {
	if h.Enabled != nil && !*h.Enabled {
		return lb.WithoutHealthCheck(), true
	}
	hc := lb.HealthCheck{
		Port: h.Port, Path: h.Path, Host: h.Host, Method: h.Method, Status: h.Status,
		Interval: time.Duration(max(h.Interval, 0)), Timeout: time.Duration(max(h.Timeout, 0)),
	}
	if h.Protocol != "" {
		switch p, err := lb.ParseProtocol(h.Protocol); {
		case err != nil || p == lb.TLS:
			c.add(path+".protocol", "%q is not one of tcp, http, https, udp", h.Protocol)
		default:
			hc.Protocol = p
		}
	}
	if h.Port < 0 || h.Port > 65535 {
		c.add(path+".port", "%d is out of range 0..65535", h.Port)
		hc.Port = 0
	}
	if h.Path != "" && !strings.HasPrefix(h.Path, "/") {
		c.add(path+".path", "%q is not an absolute path", h.Path)
		hc.Path = ""
	}
	if h.Method != "" && strings.ContainsAny(h.Method, " \t\r\n/:") {
		c.add(path+".method", "%q is not an HTTP method", h.Method)
		hc.Method = ""
	}
	for _, th := range []struct {
		field string
		v     int
	}{{"healthy_threshold", h.HealthyThreshold}, {"unhealthy_threshold", h.UnhealthyThreshold}} {
		if th.v < 0 || th.v > 10 {
			c.add(path+"."+th.field, "%d is out of range 1..10", th.v)
		}
	}
	if h.HealthyThreshold >= 0 && h.HealthyThreshold <= 10 {
		hc.HealthyThreshold = h.HealthyThreshold
	}
	if h.UnhealthyThreshold >= 0 && h.UnhealthyThreshold <= 10 {
		hc.UnhealthyThreshold = h.UnhealthyThreshold
	}
	if h.TLS != nil {
		if cfg, ok := c.clientTLS(path+".tls", h.TLS); ok {
			hc.TLS = cfg
		}
	}
	return lb.WithHealthCheck(hc), true
}

func (c *compiler) stickiness(path string, s *Stickiness) (lb.Stickiness, bool) {
	st := lb.Stickiness{Duration: time.Duration(max(s.Duration, 0)), CookieName: s.CookieName, Capacity: s.Capacity, PrefixV4: s.PrefixV4, PrefixV6: s.PrefixV6}
	ok := true
	if s.Kind == "" {
		c.add(path+".kind", "is required: none, source_ip, lb_cookie or app_cookie")
		ok = false
	} else if k, err := lb.ParseStickyKind(s.Kind); err != nil {
		c.add(path+".kind", "%q is not one of none, source_ip, lb_cookie, app_cookie", s.Kind)
		ok = false
	} else {
		st.Kind = k
	}
	for k, key := range s.Keys {
		if b, kok := c.key(fmt.Sprintf("%s.keys[%d]", path, k), key); kok {
			st.Keys = append(st.Keys, b)
		} else {
			ok = false
		}
	}
	if s.KeysFile != "" {
		if b, err := readFile(c.f.dir, s.KeysFile); err != nil {
			c.add(path+".keys_file", "%v", err)
			ok = false
		} else {
			n := 0
			for k, line := range strings.Split(string(b), "\n") {
				line = strings.TrimSpace(line)
				if line == "" || strings.HasPrefix(line, "#") {
					continue
				}
				n++
				if key, kok := c.key(path+".keys_file", line); kok {
					st.Keys = append(st.Keys, key)
				} else {
					c.add(path+".keys_file", "%s: line %d is not a key (see the line above)", s.KeysFile, k+1)
					ok = false
				}
			}
			if n == 0 {
				c.add(path+".keys_file", "%s holds no key", s.KeysFile)
				ok = false
			}
		}
	}
	if s.Capacity < 0 || s.Capacity > sticky.MaxCapacity {
		c.add(path+".capacity", "%d is out of range 0..%d", s.Capacity, sticky.MaxCapacity)
		ok = false
	}
	if s.PrefixV4 < 0 || s.PrefixV4 > 32 {
		c.add(path+".prefix_v4", "%d is out of range 0..32", s.PrefixV4)
		ok = false
	}
	if s.PrefixV6 < 0 || s.PrefixV6 > 128 {
		c.add(path+".prefix_v6", "%d is out of range 0..128", s.PrefixV6)
		ok = false
	}
	if ok {
		// What lb checks only when it starts the policy: the sticky
		// package's own validation (cookie name, keys).
		var err error
		opts := []sticky.CookieOption{}
		if st.CookieName != "" && st.Kind == lb.Cookie {
			opts = append(opts, sticky.WithCookieName(st.CookieName))
		}
		if len(st.Keys) > 0 {
			opts = append(opts, sticky.WithKeys(st.Keys[0], st.Keys[1:]...))
		}
		switch st.Kind {
		case lb.Cookie:
			_, err = sticky.NewCookie(opts...)
		case lb.AppCookie:
			if st.CookieName != "" {
				_, err = sticky.NewAppCookie(st.CookieName)
			}
		}
		for _, e := range unwrapAll(err) {
			field := ""
			if strings.Contains(e.Error(), "cookie name") || strings.Contains(e.Error(), "token") {
				field = ".cookie_name"
			} else if strings.Contains(e.Error(), "key") {
				field = ".keys"
			}
			msg := strings.TrimPrefix(e.Error(), "sticky: ")
			c.add(path+field, "%s", strings.TrimPrefix(msg, "invalid option: "))
			ok = false
		}
	}
	if s.Store != nil && !c.stickyStore(path+".store", s.Store, &st) {
		ok = false
	}
	return st, ok
}

// stickyStore builds a stickiness's shared store into st.
func (c *compiler) stickyStore(path string, s *StickyStore, st *lb.Stickiness) bool {
	ok := true
	switch st.Kind {
	case lb.SourceIP, lb.AppCookie:
	default:
		c.add(path, "is for source_ip and app_cookie stickiness (an lb_cookie carries its target itself)")
		ok = false
	}
	if s.Timeout < 0 {
		c.add(path+".timeout", "%v is negative", time.Duration(s.Timeout))
		ok = false
	}
	st.StoreTimeout = time.Duration(max(s.Timeout, 0))
	kinds := slices.Sorted(maps.Keys(s.kinds))
	switch {
	case len(kinds) == 0:
		if c.probs.hasUnder(path) {
			return false // an unknown kind, reported where it is
		}
		if known := c.f.ext.storeKinds(); len(known) > 0 {
			c.add(path, "names no store: set one of %s", strings.Join(known, ", "))
		} else {
			c.add(path, "names no store, and this program knows none (lbd knows redis)")
		}
		return false
	case len(kinds) > 1:
		c.add(path, "names %d stores (%s); a stickiness shares its sessions through one", len(kinds), strings.Join(kinds, ", "))
		return false
	}
	f, _ := c.f.ext.store(kinds[0])
	store, err := f(s.kinds[kinds[0]])
	if err != nil {
		c.add(path+"."+kinds[0], "%v", err)
		return false
	}
	st.Store = store
	return ok
}

// key decodes one cookie key.
func (c *compiler) key(path, s string) ([]byte, bool) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		c.add(path, "is not standard base64: %v", err)
		return nil, false
	}
	if len(b) < sticky.MinKeyLen {
		c.add(path, "is %d bytes once decoded, want at least %d (e.g. `openssl rand -base64 32`)", len(b), sticky.MinKeyLen)
		return nil, false
	}
	return b, true
}

func (c *compiler) discovery(path string, d *Discovery) (lb.Source, bool) {
	if kinds := d.Kinds(); len(kinds) > 0 {
		if d.DNS != "" {
			kinds = append(kinds, "dns")
		}
		if d.SRV != "" {
			kinds = append(kinds, "srv")
		}
		if len(kinds) > 1 {
			c.add(path, "names %s; set one kind of discovery", strings.Join(kinds, " and "))
			return nil, false
		}
		if d.Port != 0 || d.Network != "" {
			c.add(path, "port and network are for dns discovery, not %s", kinds[0])
			return nil, false
		}
		return c.extensionSource(path+"."+kinds[0], kinds[0], d.kinds[kinds[0]])
	}
	switch {
	case d.DNS != "" && d.SRV != "":
		c.add(path, "set dns or srv, not both")
	case d.DNS != "":
		ok := true
		if d.Port < 1 || d.Port > 65535 {
			c.add(path+".port", "%d is out of range 1..65535 (dns discovery needs the targets' port)", d.Port)
			ok = false
		}
		switch d.Network {
		case "", "ip", "ip4", "ip6":
		default:
			c.add(path+".network", "%q is not ip, ip4 or ip6", d.Network)
			ok = false
		}
		return &lb.DNS{Name: d.DNS, Port: d.Port, Network: d.Network}, ok
	case d.SRV != "":
		ok := true
		if d.Port != 0 {
			c.add(path+".port", "is for dns discovery; SRV records carry their own ports")
			ok = false
		}
		if d.Network != "" {
			c.add(path+".network", "is for dns discovery")
			ok = false
		}
		return &lb.DNSSRV{Name: d.SRV}, ok
	default:
		if kinds := c.f.ext.kinds(); len(kinds) > 0 {
			c.add(path, "set dns (with port), srv or %s", strings.Join(kinds, ", "))
		} else {
			c.add(path, "set dns (with port) or srv")
		}
	}
	return nil, false
}

func (c *compiler) ejection(path string, p *PassiveEjection) (lb.GroupOption, bool) {
	failures, period, pct := defaultEjectFailures, defaultEjectPeriod, defaultEjectMaxPercent
	ok := true
	if p.Failures != nil {
		if failures = *p.Failures; failures < 0 {
			c.add(path+".failures", "%d is negative", failures)
			ok = false
		}
	}
	if p.Period != nil {
		if period = time.Duration(*p.Period); period == 0 {
			c.add(path+".period", "must be above 0")
			ok = false
		}
	}
	if p.MaxPercent != nil {
		if pct = *p.MaxPercent; pct < 0 || pct > 100 {
			c.add(path+".max_percent", "%d is out of range 0..100", pct)
			ok = false
		}
	}
	return lb.WithPassiveEjection(failures, period, pct), ok
}

// durations reports every negative duration in v, at its path.
func (c *compiler) durations(v reflect.Value, path string) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			c.durations(v.Elem(), path)
		}
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			if name, ok := yamlName(t.Field(i)); ok {
				c.durations(v.Field(i), join(path, name))
			}
		}
	case reflect.Slice:
		for i := range v.Len() {
			c.durations(v.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.Int64:
		if d, ok := v.Interface().(Duration); ok && d < 0 {
			c.add(path, "%s is negative", d)
		}
	}
}

// checkHostPort checks a host:port address whose port is at least min.
func checkHostPort(addr string, min int) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port (e.g. 127.0.0.1:8080, [::1]:8080)", addr)
	}
	if min > 0 && host == "" {
		return fmt.Errorf("%q has no host", addr)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return fmt.Errorf("%q: port %q is not a number", addr, port)
	}
	if p < min || p > 65535 {
		return fmt.Errorf("%q: port %d is out of range %d..65535", addr, p, min)
	}
	return nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func cmpLogger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.Default()
	}
	return l
}

// unwrapAll flattens a tree of joined errors into its leaves.
func unwrapAll(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unwrapAll(e)...)
		}
		return out
	}
	return []error{err}
}
