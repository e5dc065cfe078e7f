package proxy

import (
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// ErrInvalidRule is wrapped by every error NewRouter returns about a rule or
// action: a malformed pattern, an action that is not exactly one kind, two
// identical rules.
var ErrInvalidRule = errors.New("invalid rule")

// Rule is a forwarding rule of an HTTP listener: requests whose host and path
// match go to the rule's action. Rules are tried by Priority, lowest first;
// the first match wins, and the router's default action takes what none
// matches.
type Rule struct {
	// Name identifies the rule in errors and the access log. Empty: the
	// rule's position, "rule[3]".
	Name string

	// Priority orders rules: lower numbers are tried first. Rules of equal
	// priority are tried in the order given.
	Priority int

	// Host is the host condition, matched on the request's Host without its
	// port, case-insensitively: "" for any host, "example.com" for that
	// host, "*.example.com" for its subdomains at any depth (not
	// example.com itself).
	Host string

	// Path is the path condition, matched on the request's path with "."
	// and ".." resolved and repeated slashes merged (so "/a/../admin" is
	// routed like "/admin"): "" for any path, "/a/b" for that path exactly,
	// "/a/*" for the prefix "/a/", "~regexp" for a Go regular expression
	// (unanchored unless it says ^ or $).
	Path string

	// Action is what a matching request gets.
	Action Action
}

// Action is what a routed request gets: set exactly one of Forward, Split,
// Redirect and Fixed.
type Action struct {
	// Forward sends the request to a target group.
	Forward *Upstream
	// Split sends the request to one of several target groups, chosen at
	// random in proportion to their weights (blue/green, canaries).
	Split []Split
	// Redirect answers with a redirect, e.g. HTTP to HTTPS.
	Redirect *Redirect
	// Fixed answers with a fixed response.
	Fixed *FixedResponse
}

// Split is one target group of a weighted split.
type Split struct {
	// Upstream is the target group.
	Upstream *Upstream
	// Weight is its share, 0..1000; 0 sends it nothing.
	Weight int
}

// Redirect is a redirect action. Empty fields keep the request's own part,
// so Redirect{Scheme: "https"} sends http://h/p?q to https://h/p?q.
type Redirect struct {
	// Scheme is "http" or "https"; empty keeps the request's.
	Scheme string
	// Host replaces the host; empty keeps the request's (without its port).
	Host string
	// Port replaces the port; 0 keeps none (the scheme's default port).
	Port int
	// Path replaces the path; empty keeps the request's. The query is
	// always kept.
	Path string
	// Code is 301, 302, 303, 307 or 308. Default: 301.
	Code int
}

// FixedResponse is a fixed-response action.
type FixedResponse struct {
	// Status is the status code, 200..599. Default: 200.
	Status int
	// ContentType is the Content-Type header. Default: text/plain;
	// charset=utf-8 when Body is not empty.
	ContentType string
	// Body is the response body, at most 1 MiB.
	Body string
}

// Router holds a listener's compiled rules and default action. It is
// immutable once built, so an HTTP proxy can swap it atomically while
// requests flow (HTTP.SetRouter); matching takes no lock and allocates
// nothing unless the path needs cleaning or the host has upper case.
type Router struct {
	rules []route // sorted by priority, stable
	def   route
}

// route is a compiled rule.
type route struct {
	name   string
	host   hostPattern
	path   pathPattern
	action Action
	total  int // sum of split weights
	prio   int
}

// NewRouter compiles rules and a default action into a Router. Every
// problem is reported at once: malformed patterns, actions that are not
// exactly one kind, and identical rules (same host and path conditions, a
// configuration error naming both rules).
func NewRouter(def Action, rules ...Rule) (*Router, error) {
	var errs []error
	r := &Router{def: route{name: "default", action: def}}
	if err := checkAction(&def); err != nil {
		errs = append(errs, fmt.Errorf("%w: default action: %w", ErrInvalidRule, err))
	}
	r.def.total = splitTotal(def.Split)
	seen := map[[2]string]string{}
	for i, rule := range rules {
		name := rule.Name
		if name == "" {
			name = "rule[" + strconv.Itoa(i) + "]"
		}
		c := route{name: name, action: rule.Action, total: splitTotal(rule.Action.Split), prio: rule.Priority}
		var err error
		if c.host, err = parseHostPattern(rule.Host); err != nil {
			errs = append(errs, fmt.Errorf("%w: %q: %w", ErrInvalidRule, name, err))
		}
		if c.path, err = parsePathPattern(rule.Path); err != nil {
			errs = append(errs, fmt.Errorf("%w: %q: %w", ErrInvalidRule, name, err))
		}
		if err := checkAction(&rule.Action); err != nil {
			errs = append(errs, fmt.Errorf("%w: %q: %w", ErrInvalidRule, name, err))
		}
		key := [2]string{c.host.src, c.path.src}
		if other, dup := seen[key]; dup {
			errs = append(errs, fmt.Errorf("%w: rules %q and %q are identical (host %q, path %q)", ErrInvalidRule, other, name, rule.Host, rule.Path))
		} else {
			seen[key] = name
		}
		r.rules = append(r.rules, c)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	slices.SortStableFunc(r.rules, func(a, b route) int { return cmp.Compare(a.prio, b.prio) })
	return r, nil
}

func splitTotal(ss []Split) int {
	t := 0
	for _, s := range ss {
		t += s.Weight
	}
	return t
}

// checkAction reports what is wrong with an action.
func checkAction(a *Action) error {
	n := 0
	var errs []error
	if a.Forward != nil {
		n++
		errs = append(errs, checkUpstream("forward", a.Forward))
	}
	if a.Split != nil {
		n++
		total := 0
		for i, s := range a.Split {
			errs = append(errs, checkUpstream(fmt.Sprintf("split[%d]", i), s.Upstream))
			if s.Weight < 0 || s.Weight > 1000 {
				errs = append(errs, fmt.Errorf("split[%d]: weight %d is outside 0..1000", i, s.Weight))
			}
			total += s.Weight
		}
		if total <= 0 {
			errs = append(errs, errors.New("split: the weights add up to 0"))
		}
	}
	if rd := a.Redirect; rd != nil {
		n++
		if rd.Scheme != "" && rd.Scheme != "http" && rd.Scheme != "https" {
			errs = append(errs, fmt.Errorf("redirect: scheme %q is not http or https", rd.Scheme))
		}
		if rd.Host != "" {
			if err := validHostname(strings.ToLower(rd.Host)); err != nil {
				errs = append(errs, fmt.Errorf("redirect: host %q: %w", rd.Host, err))
			}
		}
		if rd.Port < 0 || rd.Port > 65535 {
			errs = append(errs, fmt.Errorf("redirect: port %d is outside 0..65535", rd.Port))
		}
		if rd.Path != "" && (rd.Path[0] != '/' || strings.ContainsAny(rd.Path, " \r\n\t?#")) {
			errs = append(errs, fmt.Errorf("redirect: path %q is not an absolute path", rd.Path))
		}
		switch rd.Code {
		case 0, 301, 302, 303, 307, 308:
		default:
			errs = append(errs, fmt.Errorf("redirect: code %d is not 301, 302, 303, 307 or 308", rd.Code))
		}
	}
	if f := a.Fixed; f != nil {
		n++
		if f.Status != 0 && (f.Status < 200 || f.Status > 599) {
			errs = append(errs, fmt.Errorf("fixed response: status %d is outside 200..599", f.Status))
		}
		if len(f.Body) > 1<<20 {
			errs = append(errs, fmt.Errorf("fixed response: body of %d bytes is over 1 MiB", len(f.Body)))
		}
		if strings.ContainsAny(f.ContentType, "\r\n") {
			errs = append(errs, fmt.Errorf("fixed response: content type %q has a line break", f.ContentType))
		}
	}
	if n != 1 {
		errs = append(errs, fmt.Errorf("%d kinds of action set; want exactly one of Forward, Split, Redirect, Fixed", n))
	}
	return errors.Join(errs...)
}

func checkUpstream(what string, u *Upstream) error {
	switch {
	case u == nil:
		return fmt.Errorf("%s: nil upstream", what)
	case u.Balancer == nil:
		return fmt.Errorf("%s: upstream %q has no balancer", what, u.Name)
	}
	return nil
}

// Forward is the router with no rules that forwards every request to u.
// It returns an error only for an Upstream without a Balancer.
func Forward(u *Upstream) (*Router, error) { return NewRouter(Action{Forward: u}) }

// match returns the route for a normalised host and cleaned path.
func (r *Router) match(host, path string) *route {
	for i := range r.rules {
		rt := &r.rules[i]
		if rt.host.match(host) && rt.path.match(path) {
			return rt
		}
	}
	return &r.def
}

// Match returns the name of the rule that a request for host (a Host
// header, with or without port) and path takes, and its action; the name
// is "default" for the default action.
func (r *Router) Match(host, path string) (name string, a Action) {
	rt := r.match(normalizeHost(host), cleanPath(path))
	return rt.name, rt.action
}

// upstream returns the target group a forwarding route sends to, or nil.
func (rt *route) upstream() *Upstream {
	if rt.action.Forward != nil {
		return rt.action.Forward
	}
	if len(rt.action.Split) == 0 {
		return nil
	}
	n := rand.IntN(rt.total)
	for _, s := range rt.action.Split {
		if n < s.Weight {
			return s.Upstream
		}
		n -= s.Weight
	}
	return rt.action.Split[len(rt.action.Split)-1].Upstream
}

// location returns the redirect's status and Location for a request for
// host (its Host), path (as sent, escaped) and query, over TLS or not.
func (rd *Redirect) location(host, path, query string, tls bool) (int, string) {
	scheme := rd.Scheme
	if scheme == "" {
		scheme = "http"
		if tls {
			scheme = "https"
		}
	}
	h := rd.Host
	if h == "" {
		h = normalizeHost(host)
		if strings.Contains(h, ":") {
			h = "[" + h + "]"
		}
	}
	if rd.Port != 0 {
		h += ":" + strconv.Itoa(rd.Port)
	}
	p := rd.Path
	if p == "" {
		p = path
	}
	loc := scheme + "://" + h + p
	if query != "" {
		loc += "?" + query
	}
	code := rd.Code
	if code == 0 {
		code = http.StatusMovedPermanently
	}
	return code, loc
}

// status returns the fixed response's status.
func (f *FixedResponse) status() int {
	if f.Status == 0 {
		return http.StatusOK
	}
	return f.Status
}
