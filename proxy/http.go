package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lbkit/lbkit/flowtable"
)

// Defaults of the HTTP proxy, from the reference load balancers. The
// connect timeout, DefaultConnectTimeout, is shared with the TCP proxy.
const (
	DefaultIdleTimeout           = 60 * time.Second
	DefaultRequestTimeout        = 60 * time.Second
	DefaultResponseTimeout       = 60 * time.Second
	DefaultMaxHeaderBytes        = 64 << 10
	DefaultMaxBodyBytes          = 10 << 30
	DefaultMaxURILength          = 8 << 10
	DefaultMaxIdleConnsPerTarget = 512
)

// StatusClientClosed is the status the access log records for a request
// whose client went away before the response: nginx's 499. It is never
// sent.
const StatusClientClosed = 499

// HTTP is an HTTP and HTTPS reverse proxy: the L7 listener of a load
// balancer. A request passes the listener's ACL, is routed by host and path
// to an action (forward to a target group, redirect, fixed response), and is
// forwarded to a target the group's Upstream chooses (with stickiness),
// retried on another target when that is safe, and logged.
//
// Serve runs lbkit's own HTTP/1.1 engine on the listener: requests are
// parsed in place by a strict RFC 9112 parser (whatever is ambiguous is
// refused, never guessed, so that no request can be smuggled past the
// proxy), the request head is written to the target straight from the
// client's bytes with the forwarding headers added, and bodies stream
// through, spliced between the sockets when both are plain TCP and the body
// is long. Connections that negotiate HTTP/2 (ALPN h2, on HTTPS) are served
// by net/http's HTTP/2 server, which calls ServeHTTP; HTTP is an
// http.Handler too, for programs that mount it in their own server. Both
// front ends share one forwarding core: rules, retries, stickiness,
// timeouts, limits, circuit breakers, the access log and the counters exist
// once. Targets are always spoken to in HTTP/1.1, on pooled keep-alive
// connections (see Upstream.SetLimits for their circuit breakers).
//
// Forwarding follows net/http/httputil's ReverseProxy rules: hop-by-hop
// headers and those the Connection header lists are removed both ways,
// X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Port and
// X-Forwarded-Host are set (and Forwarded when asked for), query
// parameters Go cannot parse are dropped, informational responses (103)
// are passed on, and a 101 Switching Protocols (WebSocket) becomes a byte
// tunnel. An Expect: 100-continue is answered by the proxy when it starts
// reading the body, as nginx does.
//
// Performance: see docs/benchmarks.md; a proxied keep-alive request
// allocates nothing with the access log off.
//
// Its fields are start-up configuration: set them before the first Serve or
// ServeHTTP and do not change them afterwards; the zero value of each means
// its documented default, and Validate reports every problem with them
// (Serve returns the same error before accepting). What changes at run
// time goes through SetRouter, SetACL, SetTrustedProxies, SetTimeouts and
// TLS.Certificates, all safe while requests flow; call SetRouter before
// serving (until then every request gets 503).
//
// The proxy answers these itself: 400 malformed request or body, 403
// client refused by the ACL, 408 request not received within
// Timeouts.Request, 413 body over MaxBodyBytes, 414 URI over MaxURILength, 417
// unsupported expectation, 421 Host and SNI differ where that would bypass
// mutual TLS, 431 headers over MaxHeaderBytes, 501 unsupported
// Transfer-Encoding, 502 target refused, reset or answered malformed, 503
// no healthy target or circuit breaker open, 504 connect or response
// timeout, 505 HTTP version. 499 is logged (never sent) when the client goes
// away first.
type HTTP struct {
	// Forwarded adds an RFC 7239 Forwarded header (kept and appended to
	// from trusted peers, replaced otherwise) beside the X-Forwarded-*
	// headers, which are always sent.
	Forwarded bool

	// RequestID gives every request an ID, sent to the target as
	// X-Request-Id and logged as request_id: the client's X-Request-Id
	// when the peer is a trusted proxy (SetTrustedProxies) and the value
	// is 1 to 128 visible ASCII characters, else 32 random hexadecimal
	// digits. A client's own X-Request-Id is not forwarded otherwise. Off:
	// X-Request-Id passes through untouched and is logged as it came.
	RequestID bool

	// TLS, if set, makes the listener HTTPS (HTTP/2 offered by ALPN).
	TLS *TLS

	// MaxHeaderBytes limits the request line and headers, CRLFs included,
	// exactly: above it, 431. Default: DefaultMaxHeaderBytes.
	MaxHeaderBytes int

	// MaxBodyBytes limits a request body: above it, 413. Default:
	// DefaultMaxBodyBytes (10 GiB).
	MaxBodyBytes int64

	// MaxURILength limits the request target: above it, 414. Default:
	// DefaultMaxURILength (8 KiB).
	MaxURILength int

	// Retry bounds retries on another target. Zero fields take their
	// defaults (see Retry).
	Retry Retry

	// MaxIdleConnsPerTarget is the keep-alive pool to each target. Go's
	// default of 2 would halve throughput and exhaust local ports under
	// load. Default: DefaultMaxIdleConnsPerTarget.
	MaxIdleConnsPerTarget int

	// AccessLog, if set, receives one record per request, at Info level,
	// message "http", with these attributes (nginx's names where nginx has
	// one): client (peer host:port), client_ip (as trusted, see
	// SetTrustedProxies), method, host, path, proto, rule ("default" for the
	// default action), group, status (what the proxy answered; 499 when
	// the client went away first), upstream_status, upstream_addr,
	// bytes_in (request body bytes read), bytes_out (response body bytes
	// sent), request_time, upstream_connect_time, upstream_header_time,
	// upstream_response_time (seconds with millisecond resolution; one
	// value per attempt joined by ", " when retried; "-" when no target was
	// reached), query (the query string, without "?"), user_agent,
	// referer, request_id (see RequestID; "-" when none), tls_version,
	// tls_cipher and sni on HTTPS, and error when the proxy answered
	// itself. Requests refused
	// before routing (400, 408, 414, 431, 501, 505, on HTTP and HTTPS
	// alike) are logged too. Nil logs nothing.
	AccessLog *slog.Logger

	// ErrorLog, if set, receives net/http's errors (TLS handshakes, ...)
	// and the proxy's own. Nil discards them (accept-error episodes and
	// ServeHTTP's report of an invalid configuration then go to
	// slog.Default()).
	ErrorLog *slog.Logger

	// OnRefuse, if set, is called for every client the ACL refuses, at
	// accept or on a request, with Reason RefusedACL and Err wrapping
	// ErrDenied (the hook the TCP and UDP proxies share). It is called on
	// the accepting or serving goroutine with no lock held and must not
	// block. Clients refused because the descriptor budget was spent are
	// reported with RefusedDescriptors.
	OnRefuse func(Refusal)

	// Observer, if set, watches every routed request and its attempts to
	// targets (see Observer): the tracing hook. Nil observes nothing and
	// costs a nil check per request and attempt.
	Observer Observer

	// EventLoop serves the plain-HTTP listeners' HTTP/1.x connections on
	// Linux with event loops, one per GOMAXPROCS (as nginx's workers),
	// instead of a goroutine per connection: a loop serves the common
	// request itself — no body, routed to a group of plain-HTTP targets
	// without stickiness, no Observer — with non-blocking system calls and
	// its own keep-alive connections to the targets, and hands any other
	// connection, with what it read of it, to the engine's goroutine,
	// which serves it from then on. The behaviour is the engine's either
	// way (the same parser, checks, routing, retries, heads, counters and
	// access log); what differs is the cost: fewer system calls and no
	// goroutine switch per request. Timeouts then take effect up to 100 ms
	// late (never early), as does a freed connection slot for a request
	// waiting for one (MaxConnsPerTarget), and each loop keeps its own
	// share of MaxIdleConnsPerTarget. HTTPS listeners and other systems
	// ignore it.
	EventLoop bool

	// Descriptors, if set, is the descriptor budget client connections
	// are counted in (HTTPDescriptors each, from accept to close), shared
	// by the proxies of one load balancer: when it is spent a new
	// connection is closed at accept and counted (RejectedDescriptors).
	// Nil: no budget.
	Descriptors *Descriptors

	once       sync.Once
	initErr    error       // Validate's error, kept by setup
	initLogged atomic.Bool // ServeHTTP has logged initErr
	router     atomic.Pointer[Router]
	acl        atomic.Pointer[ACL]
	trusted    atomic.Pointer[ACL]
	tmo        atomic.Pointer[Timeouts]
	tls        *tlsSetup
	budget     *budget
	retry      Retry
	stats      httpCounters

	exchanges sync.Pool // *exchange
	bufs      sync.Pool // *[copyBufferSize]byte
	connBufs  sync.Pool // *[connBufSize]byte
	preBufs   sync.Pool // *[maxPreread]byte
	pools     sync.Map  // *Upstream → *pool

	draining atomic.Int64   // responses read in the background, see drainAbandoned
	drainWG  sync.WaitGroup // their goroutines

	baseCtx context.Context
	cancel  context.CancelFunc

	mu        sync.Mutex    // guards the fields below
	gens      []*generation // HTTP/2 servers, the current one last
	listeners []*listener
	conns     map[*conn1]struct{} // the engine's connections
	closed    bool
	stopping  atomic.Bool           // Shutdown or Close was called
	failed    atomic.Pointer[error] // why an HTTP/2 server stopped by itself
	serving   sync.WaitGroup        // the generations' serving goroutines
	engines   sync.WaitGroup        // the engine's connection goroutines
	h2conns   sync.WaitGroup        // net/http's HTTP/2 connections, until StateClosed

	handlers inflight // requests in ServeHTTP, upgraded ones included

	loopsOnce sync.Once
	loops     *evloops // EventLoop's; nil until the first connection, or when they could not start
}

// withDefaults fills in the HTTP proxy's defaults.
func (t Timeouts) withDefaults() Timeouts {
	if t.Idle <= 0 {
		t.Idle = DefaultIdleTimeout
	}
	if t.Request <= 0 {
		t.Request = DefaultRequestTimeout
	}
	if t.Connect <= 0 {
		t.Connect = DefaultConnectTimeout
	}
	if t.Response <= 0 {
		t.Response = DefaultResponseTimeout
	}
	return t
}

// Validate reports every problem with the proxy's start-up configuration
// (its fields) at once, joined with errors.Join, each a *ConfigError
// wrapping ErrInvalid; nil if there is none. Serve returns the same error
// before accepting, and ServeHTTP answers every request with 500 (and logs
// the error once); call Validate first to find out. The live settings are
// checked by their setters.
func (h *HTTP) Validate() error {
	var errs []error
	for _, c := range []struct {
		name string
		v    int64
	}{
		{"MaxHeaderBytes", int64(h.MaxHeaderBytes)}, {"MaxBodyBytes", h.MaxBodyBytes},
		{"MaxURILength", int64(h.MaxURILength)}, {"MaxIdleConnsPerTarget", int64(h.MaxIdleConnsPerTarget)},
		{"Retry.Attempts", int64(h.Retry.Attempts)}, {"Retry.Timeout", int64(h.Retry.Timeout)},
		{"Retry.MinPerSecond", int64(h.Retry.MinPerSecond)},
	} {
		if c.v < 0 {
			errs = append(errs, invalid("HTTP", c.name, "%d is negative", c.v))
		}
	}
	if h.Retry.Ratio < 0 || h.Retry.Ratio > 10 {
		errs = append(errs, invalid("HTTP", "Retry.Ratio", "%v is outside 0..10", h.Retry.Ratio))
	}
	if h.TLS != nil {
		if _, err := h.TLS.compile(); err != nil {
			errs = append(errs, &ConfigError{Proxy: "HTTP", Field: "TLS", Err: err})
		}
	}
	return errors.Join(errs...)
}

// setup checks the configuration and builds the running state, once.
func (h *HTTP) setup() error {
	h.once.Do(func() {
		if h.tmo.Load() == nil {
			t := Timeouts{}.withDefaults()
			h.tmo.CompareAndSwap(nil, &t) // unless SetTimeouts came first
		}
		h.initErr = h.Validate()
		if h.TLS != nil && h.initErr == nil {
			h.tls, _ = h.TLS.compile() // checked by Validate
		}
		h.retry = h.Retry.withDefaults()
		h.budget = newBudget(h.retry, time.Now())
		h.baseCtx, h.cancel = context.WithCancel(context.Background())
		h.stats.hot = make([]httpStripe, stripeCount())
	})
	return h.initErr
}

// misconfigured answers a request to a proxy whose configuration is
// invalid, and logs why the first time.
func (h *HTTP) misconfigured(w http.ResponseWriter) {
	if !h.initLogged.Swap(true) {
		log := h.ErrorLog
		if log == nil {
			log = slog.Default()
		}
		log.Error("proxy: HTTP configuration is invalid; every request gets 500", "err", h.initErr)
	}
	http.Error(w, "proxy misconfigured", http.StatusInternalServerError)
}

// SetRouter replaces the router, which routes requests by host and path
// to their action (see NewRouter and Forward). It applies to the next
// request. Until it is called every request gets 503. A nil Router, or
// one not made by NewRouter, is refused with an error wrapping ErrInvalid.
func (h *HTTP) SetRouter(r *Router) error {
	if r == nil || r.def.name == "" {
		return invalid("HTTP", "SetRouter", "the Router is nil or was not made by NewRouter")
	}
	h.router.Store(r)
	return nil
}

// Router returns the current router, or nil.
func (h *HTTP) Router() *Router { return h.router.Load() }

// SetACL replaces the access control, checked on the client's address
// when a connection is accepted (refused connections are closed at once)
// and again on every request (403): it applies to the next connection and
// the next request, on established connections too. Nil admits everyone.
func (h *HTTP) SetACL(a *ACL) { h.acl.Store(a) }

// ACL returns the current access control, or nil.
func (h *HTTP) ACL() *ACL { return h.acl.Load() }

// SetTrustedProxies replaces the peers whose X-Forwarded-For is believed:
// the proxy appends to it and takes the client IP from it (for
// stickiness, the log and Forwarded). From any other peer it is replaced
// by the peer's address, and an X-Real-IP header is removed (only a
// trusted proxy's is passed on). Nil (the default) trusts nobody. It
// applies to the next request.
func (h *HTTP) SetTrustedProxies(a *ACL) { h.trusted.Store(a) }

// SetTimeouts replaces the timeouts: Idle, Request, Connect and Response
// (see Timeouts; Header is ignored). Every field is replaced, a zero one
// taking its default. The connect, response and body timeouts apply to
// the next request; the idle and header timeouts to connections accepted
// afterwards (net/http fixes a server's connection timeouts, so new
// HTTP/2 connections go to a new server while the established ones stay
// with theirs). A negative field is refused with an error wrapping
// ErrInvalid, and nothing changes.
func (h *HTTP) SetTimeouts(t Timeouts) error {
	if err := t.check("HTTP"); err != nil {
		return err
	}
	t = t.withDefaults()
	h.tmo.Store(&t)
	return nil
}

func (h *HTTP) maxHeaderBytes() int {
	if h.MaxHeaderBytes > 0 {
		return h.MaxHeaderBytes
	}
	return DefaultMaxHeaderBytes
}

func (h *HTTP) maxURILength() int {
	if h.MaxURILength > 0 {
		return h.MaxURILength
	}
	return DefaultMaxURILength
}

func (h *HTTP) maxBodyBytes() int64 {
	if h.MaxBodyBytes > 0 {
		return h.MaxBodyBytes
	}
	return DefaultMaxBodyBytes
}

// serveExchange decides what happens to a request both front ends have
// read: the ACL (403, for connections accepted before an ACL change), the
// mutual-TLS host check (421), the route (a redirect or a fixed response
// answered here), the client address, and the forwarding. It finishes the
// exchange.
func (h *HTTP) serveExchange(ex *exchange) {
	st := &h.stats
	if ex.hs == nil {
		ex.hs = st.stripe()
	}
	ex.hs.requests.Add(1)
	ex.hs.active.Add(1)
	defer ex.hs.active.Add(-1)
	ex.rule = "-"
	ex.client = ex.peer.Addr()
	defer func() {
		if ex.chosen {
			ex.release()
		}
	}()
	rt := h.router.Load()
	var route *route
	if rt != nil {
		route = rt.match(normalizeHost(ex.host), cleanPath(routingPath(ex.path)))
	}
	if h.dispatch(ex, route) {
		h.forward(ex)
	}
}

// dispatch runs a counted request's checks (the ACL, the limits, CONNECT)
// and its route (rt.match's result; nil without a router), answering
// itself when the request goes no further (a refusal, a redirect, a fixed
// response); it reports whether ex is to be forwarded to ex.up. Both front
// ends of the engine and ServeHTTP go through it.
func (h *HTTP) dispatch(ex *exchange, route *route) bool {
	st := &h.stats
	if !h.acl.Load().Allows(ex.peer.Addr()) {
		st.refusedRequests.Add(1)
		if h.OnRefuse != nil {
			h.OnRefuse(Refusal{Proto: flowtable.TCP, Client: ex.peer, Reason: RefusedACL, Err: ErrDenied})
		}
		ex.answer(http.StatusForbidden, "client refused by the ACL")
		return false
	}
	h.budget.deposit()
	if len(ex.target) > h.maxURILength() {
		ex.answer(http.StatusRequestURITooLong, "URI of "+strconv.Itoa(len(ex.target))+" bytes is over the limit")
		return false
	}
	if ex.body.mode == bodyLength && ex.body.n > h.maxBodyBytes() {
		ex.answer(http.StatusRequestEntityTooLarge, "body of "+strconv.FormatInt(ex.body.n, 10)+" bytes is over the limit")
		return false
	}
	if h.tls.misdirected(ex.host, ex.tls) {
		st.misdirected.Add(1)
		ex.answer(http.StatusMisdirectedRequest, "Host "+ex.host+" needs client authentication its SNI did not")
		return false
	}
	if ex.method == http.MethodConnect {
		ex.answer(http.StatusMethodNotAllowed, "CONNECT is not proxied")
		return false
	}
	if route == nil {
		ex.answer(http.StatusServiceUnavailable, "no router")
		return false
	}
	ex.rule = route.name
	if a := &route.action; a.Redirect == nil && a.Fixed == nil {
		ex.up = route.upstream()
	}
	if o := h.Observer; o != nil {
		ex.observeStart(o)
	}
	switch a := &route.action; {
	case a.Redirect != nil:
		code, loc := a.Redirect.location(ex.host, ex.path, ex.query, ex.tls != nil)
		ex.respond(code, []string{"Location", loc}, "")
		return false
	case a.Fixed != nil:
		f := a.Fixed
		ct := f.ContentType
		if ct == "" && f.Body != "" {
			ct = "text/plain; charset=utf-8"
		}
		var fields []string
		if ct != "" {
			fields = []string{"Content-Type", ct}
		}
		ex.respond(f.status(), fields, f.Body)
		return false
	}
	trusted := h.trusted.Load()
	ex.trust = trusted != nil && trusted.Allows(ex.peer.Addr())
	ex.client = clientAddr(ex.xff, ex.peer.Addr(), trusted)
	return true
}

// routingPath returns the path routing matches: percent-encoding decoded,
// as net/http's Request.URL.Path is, so that an encoded path cannot slip
// past a rule.
func routingPath(p string) string {
	if strings.IndexByte(p, '%') < 0 {
		return p
	}
	if d, err := url.PathUnescape(p); err == nil {
		return d
	}
	return p
}

// respond writes a response the proxy makes (a redirect, a fixed
// response) and finishes the exchange.
func (ex *exchange) respond(code int, fields []string, body string) {
	ex.status = code
	if ex.c != nil {
		if !ex.head {
			ex.sent = int64(len(body))
		}
		ex.finish(code) // before the write, as answer does
		ex.c.respond(ex, code, fields, body)
		return
	} else if ex.lc != nil {
		if !ex.head {
			ex.sent = int64(len(body))
		}
		ex.finish(code)
		ex.lc.respond(ex, code, fields, body)
		return
	} else {
		hd := ex.w.Header()
		for i := 0; i+1 < len(fields); i += 2 {
			hd.Set(fields[i], fields[i+1])
		}
		hd.Set("Content-Length", strconv.Itoa(len(body)))
		ex.w.WriteHeader(code)
		if body != "" {
			_, _ = io.WriteString(ex.w, body)
		}
		ex.sent = int64(len(body))
		ex.started = true
	}
	ex.finish(code)
}

// inflight counts handlers in flight. Unlike a sync.WaitGroup it may be
// waited on while handlers still start (a request arriving as Close runs),
// and it takes no lock on the request path unless someone is waiting.
type inflight struct {
	n       atomic.Int64
	waiting atomic.Bool
	mu      sync.Mutex    // guards ch
	ch      chan struct{} // closed when n reaches 0 while waiting
}

func (f *inflight) add() { f.n.Add(1) }

func (f *inflight) done() {
	if f.n.Add(-1) == 0 && f.waiting.Load() {
		f.mu.Lock()
		if f.ch != nil && f.n.Load() == 0 {
			close(f.ch)
			f.ch = nil
		}
		f.mu.Unlock()
	}
}

// idle returns a channel closed once no handler is in flight.
func (f *inflight) idle() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.waiting.Store(true)
	if f.n.Load() == 0 {
		c := make(chan struct{})
		close(c)
		return c
	}
	if f.ch == nil {
		f.ch = make(chan struct{})
	}
	return f.ch
}
