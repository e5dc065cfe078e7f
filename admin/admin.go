package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/lbkit/lbkit/healthcheck"
	"github.com/lbkit/lbkit/lb"
)

// LoadBalancer is what the admin handler reads: *lb.LoadBalancer is one.
type LoadBalancer interface {
	Stats() lb.Stats
	Diagnose(lb.Query) lb.Diagnosis
}

// Option configures a Handler.
type Option func(*config)

type config struct {
	reload  func(context.Context) error
	metrics http.Handler
	log     *slog.Logger
	title   string
	timeout time.Duration
	token   string
	hosts   []string
	runtime *Runtime
	upgrade func(context.Context) (int, error)
}

// WithReload sets the function POST /reload calls: typically it reads the
// configuration file again and applies it with LoadBalancer.Reconfigure,
// returning what is wrong when it is refused. It is called on the
// request's goroutine with the request's context. Default: none (POST
// /reload answers 501).
func WithReload(f func(context.Context) error) Option {
	return func(c *config) { c.reload = f }
}

// WithMetrics mounts h at /metrics, e.g. metrics.Handler(l) from the
// metrics package (which the admin package does not import, so that it
// stays free of Prometheus's client). Default: none (404).
func WithMetrics(h http.Handler) Option { return func(c *config) { c.metrics = h } }

// WithLogger sets the logger for reloads requested over HTTP. Default:
// slog.Default().
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// WithTitle sets the status page's title. Default "lbkit".
func WithTitle(s string) Option { return func(c *config) { c.title = s } }

// WithReloadTimeout bounds a reload requested over HTTP. Default 30 s.
func WithReloadTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithToken requires "Authorization: Bearer <token>" on every request that
// changes something (POST /reload), compared in constant time; a missing
// or wrong token is answered 401. Without a token such requests are
// accepted only when they arrive on a loopback address. Read the token
// from a file only its operators can read (the daemon's
// -admin-token-file). Default: none.
func WithToken(token string) Option { return func(c *config) { c.token = token } }

// WithHosts adds host names the endpoint answers to, beside "localhost"
// and IP addresses, which it always answers to. A request whose Host
// names anything else is refused (403): that is what a hostile web page
// sends after pointing its own name at the admin address (DNS
// rebinding) to read /stats from a browser. Default: none.
func WithHosts(names ...string) Option {
	return func(c *config) { c.hosts = append(c.hosts, names...) }
}

// Handler is the admin endpoint of a load balancer, an http.Handler:
//
//	GET  /           the status page, HTML: trouble first (reloads itself every 5 s; ?refresh=N, 0 for never)
//	GET  /stats      lb.Stats as JSON
//	GET  /diagnose   lb.Diagnosis as JSON (?client=IP&port=N narrows it; ?format=text for words)
//	GET  /health     every target's health and the reason, JSON
//	POST /reload     calls the reload function; 200, or 422 with every problem
//	GET  /metrics    the handler given with WithMetrics
//
// and the runtime API, JSON in and out, in the spirit of HAProxy's:
//
//	GET    /listeners                     every listener's stats
//	GET    /listeners/{name}              one listener: stats and diagnosis (ListenerView)
//	GET    /groups                        every target group's stats
//	GET    /groups/{group}                one group: stats, diagnosis, runtime changes (GroupView)
//	GET    /groups/{group}/targets/{id}   one target (TargetView)
//	POST   /groups/{group}/targets        add a target (AddTargetRequest); 201 and the target
//	PATCH  /groups/{group}/targets/{id}   set its weight, drain it or bring it back, turn its
//	                                      health checks off or on (PatchTargetRequest)
//	DELETE /groups/{group}/targets/{id}   remove it (deregistration: it drains first)
//	GET    /runtime                       the runtime changes and what a reload does to them
//	DELETE /runtime                       forget them and reload the file
//	POST   /upgrade                       start the new binary on the listening sockets (WithUpgrade)
//
// Changes need WithRuntime (501 without it); they answer 404 for a group
// or target that does not exist, 422 for a change the load balancer
// refuses, 400 for a body that is not the call's JSON. Every JSON name is
// snake_case.
//
// It protects itself from browsers and from whoever reaches it:
//
//   - Requests whose Host is not "localhost", an IP address or a name
//     given with WithHosts are refused (403): DNS rebinding cannot read it.
//   - Requests that change something (any method but GET, HEAD and
//     OPTIONS) are refused (403) when a browser says they come from
//     another site (Sec-Fetch-Site, or an Origin naming another host:
//     net/http's CrossOriginProtection), so a page cannot make a visitor's
//     browser post a form to /reload.
//   - Those requests also need the bearer token given with WithToken
//     (401 without it); with no token configured, they are accepted only
//     on a loopback address (403 elsewhere).
//
// Reading is open to whoever reaches the endpoint, as the status page must
// load in a browser: serve it on loopback (the daemon's default) or behind
// access control, since it shows the whole configuration.
type Handler struct {
	lb     LoadBalancer
	cfg    config
	mux    *http.ServeMux
	cross  *http.CrossOriginProtection
	hosts  map[string]bool // lower case
	tokenH [sha256.Size]byte
}

// New returns the admin handler of l.
func New(l LoadBalancer, opts ...Option) *Handler {
	c := config{title: "lbkit", timeout: 30 * time.Second}
	for _, o := range opts {
		o(&c)
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	h := &Handler{lb: l, cfg: c, mux: http.NewServeMux(), cross: http.NewCrossOriginProtection(),
		hosts: map[string]bool{"localhost": true}}
	for _, n := range c.hosts {
		h.hosts[strings.ToLower(strings.TrimSuffix(n, "."))] = true
	}
	h.tokenH = sha256.Sum256([]byte(c.token))
	h.mux.HandleFunc("GET /{$}", h.status)
	h.mux.HandleFunc("GET /stats", h.stats)
	h.mux.HandleFunc("GET /diagnose", h.diagnose)
	h.mux.HandleFunc("GET /health", h.health)
	h.mux.HandleFunc("POST /reload", h.reload)
	h.routeAPI()
	if c.metrics != nil {
		h.mux.Handle("GET /metrics", c.metrics)
	}
	return h
}

// ServeHTTP serves the admin endpoints, after the checks described on
// Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if code, why := h.refuse(r); code != 0 {
		h.cfg.log.Warn("admin request refused", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path, "host", r.Host, "why", why)
		if code == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="lbkit admin"`)
		}
		writeJSON(w, code, errorBody{Error: why})
		return
	}
	h.mux.ServeHTTP(w, r)
}

// refuse returns the status and reason to refuse r with, or 0.
func (h *Handler) refuse(r *http.Request) (int, string) {
	if !h.hostAllowed(r.Host) {
		return http.StatusForbidden, "host " + strconv.Quote(r.Host) + " is not one this endpoint answers to (localhost, an IP address, or a name given to it)"
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return 0, ""
	}
	if err := h.cross.Check(r); err != nil {
		return http.StatusForbidden, "cross-site request refused"
	}
	if h.cfg.token != "" {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		// Hashes, so that the comparison's time says nothing of the
		// token's length either.
		if sum := sha256.Sum256([]byte(strings.TrimSpace(got))); !ok || subtle.ConstantTimeCompare(sum[:], h.tokenH[:]) != 1 {
			return http.StatusUnauthorized, "this call needs the admin token: Authorization: Bearer <token>"
		}
		return 0, ""
	}
	if !loopback(r) {
		return http.StatusForbidden, "changes over a non-loopback admin address need a token (WithToken, lbd -admin-token-file)"
	}
	return 0, ""
}

// hostAllowed reports whether a request's Host is one the endpoint answers
// to: none (HTTP/1.0), an IP address, localhost, or a configured name.
func (h *Handler) hostAllowed(host string) bool {
	if host == "" {
		return true
	}
	name := host
	if hn, _, err := net.SplitHostPort(host); err == nil {
		name = hn
	}
	name = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSuffix(name, "]"), "["), ".")
	if _, err := netip.ParseAddr(name); err == nil {
		return true
	}
	return h.hosts[strings.ToLower(name)]
}

// loopback reports whether r arrived on a loopback address of the server
// serving it; false when that is unknown.
func loopback(r *http.Request) bool {
	a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return false
	}
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	default:
		p, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return false
		}
		ap = p
	}
	return ap.Addr().Unmap().IsLoopback()
}

func (h *Handler) stats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, h.lb.Stats())
}

// diagnose answers /diagnose?client=IP&port=N.
func (h *Handler) diagnose(w http.ResponseWriter, r *http.Request) {
	q, err := query(r)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: err.Error()})
		return
	}
	d := h.lb.Diagnose(q)
	if r.URL.Query().Get("format") == "text" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte(d.String()))
		return
	}
	writeJSON(w, http.StatusOK, d)
}

// query reads a diagnosis query from a request's parameters.
func query(r *http.Request) (lb.Query, error) {
	var q lb.Query
	var errs []error
	if s := r.URL.Query().Get("client"); s != "" {
		a, err := netip.ParseAddr(s)
		if err != nil {
			errs = append(errs, errors.New("client "+strconv.Quote(s)+" is not an IP address"))
		}
		q.Client = a
	}
	if s := r.URL.Query().Get("port"); s != "" {
		p, err := strconv.Atoi(s)
		if err != nil || p < 1 || p > 65535 {
			errs = append(errs, errors.New("port "+strconv.Quote(s)+" is not a port number 1..65535"))
		}
		q.Port = p
	}
	return q, errors.Join(errs...)
}

// TargetHealth is one target as /health reports it.
type TargetHealth struct {
	Group   string `json:"group"`
	Target  string `json:"target"`
	Address string `json:"address"`
	Weight  int    `json:"weight"`
	// Healthy is the active checks' verdict; Serving says whether the
	// target receives new traffic (healthy, not ejected, weight above 0,
	// not draining).
	Healthy bool `json:"healthy"`
	Serving bool `json:"serving"`
	Ejected bool `json:"ejected"`
	// DrainUntil is when its deregistration ends, if it is draining.
	DrainUntil *time.Time `json:"drain_until,omitempty"`
	// Reason is the health checks' last word ("connection refused",
	// "status 503, want 200", "3 consecutive successful checks").
	Reason string `json:"reason"`
	// Since is when its health state last changed.
	Since time.Time `json:"since"`
	// Problems says why it gets no traffic, in words; empty when it does.
	Problems []string `json:"problems,omitempty"`
}

// HealthReport is the body of /health.
type HealthReport struct {
	// OK is true when every listener can forward traffic to a target.
	OK bool `json:"ok"`
	// Problems says what stands in the way, most important first.
	Problems []string       `json:"problems,omitempty"`
	Targets  []TargetHealth `json:"targets"`
}

// health answers /health: every target's health with its reason. It
// answers 200 whatever the targets' health, so that a load balancer is not
// restarted for its targets' sake; read "ok".
func (h *Handler) health(w http.ResponseWriter, _ *http.Request) {
	d := h.lb.Diagnose(lb.Query{})
	rep := HealthReport{OK: d.OK, Problems: d.Problems, Targets: []TargetHealth{}}
	for _, g := range d.Groups {
		for _, t := range g.Targets {
			th := TargetHealth{
				Group: g.Name, Target: t.ID, Address: t.Addr, Weight: t.Weight,
				Healthy: t.Health.State == healthcheck.Healthy, Serving: t.OK, Ejected: t.Health.Ejected,
				Reason: t.Health.Reason, Since: t.Health.Since, Problems: t.Reasons,
			}
			if !t.DrainUntil.IsZero() {
				du := t.DrainUntil
				th.DrainUntil = &du
			}
			rep.Targets = append(rep.Targets, th)
		}
	}
	writeJSON(w, http.StatusOK, rep)
}

// reloadBody is the body of a /reload answer.
type reloadBody struct {
	OK       bool     `json:"ok"`
	Message  string   `json:"message,omitempty"`
	Error    string   `json:"error,omitempty"`
	Problems []string `json:"problems,omitempty"`
}

// reload answers POST /reload.
func (h *Handler) reload(w http.ResponseWriter, r *http.Request) {
	if h.cfg.reload == nil {
		writeJSON(w, http.StatusNotImplemented, errorBody{Error: "reloading is not configured"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.timeout)
	defer cancel()
	if err := h.cfg.reload(ctx); err != nil {
		h.cfg.log.Warn("reload requested over HTTP refused", "remote", r.RemoteAddr, "err", err)
		writeJSON(w, http.StatusUnprocessableEntity, reloadBody{Error: err.Error(), Problems: problems(err)})
		return
	}
	writeJSON(w, http.StatusOK, reloadBody{OK: true, Message: "configuration reloaded"})
}

// problems lists an error's problems, one per joined error (or per line).
func problems(err error) []string {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []string
		for _, e := range j.Unwrap() {
			out = append(out, problems(e)...)
		}
		return out
	}
	var out []string
	for _, l := range strings.Split(err.Error(), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

type errorBody struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
