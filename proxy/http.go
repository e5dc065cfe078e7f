package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lbkit/lbkit/balancer"
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
// Forwarding follows net/http/httputil's ReverseProxy rules (hop-by-hop
// headers, trailers, 1xx, streaming). Requests with no body or a small one
// (up to 64 KiB, of known length) and no upgrade or 100-continue, nearly
// all of them, take a fast path: the proxy writes them to a pooled HTTP/1.1
// connection and reads the answer on the request's own goroutine, with no
// goroutine per target connection. Upgrades (WebSocket), larger or chunked
// uploads and 100-continue go through ReverseProxy and http.Transport.
// Targets are always spoken to in HTTP/1.1.
//
// Performance: on loopback, a proxied request costs about twice nginx's
// CPU time (see examples/bench/http), most of it in system calls and
// net/http's server, and about 30 small allocations. The garbage collector
// takes a few percent of that, so GOGC and GOMEMLIMIT can stay at their
// defaults; set GOMEMLIMIT only to bound memory, as for any Go program.
//
// Configure it by its fields before the first Serve or ServeHTTP and do not
// change them afterwards; the zero value of each means its documented
// default. What changes at run time goes through SetRouter, SetACL,
// SetTrustedProxies, SetTimeouts and TLS.Certificates, all safe while
// requests flow.
//
// The proxy answers these itself: 400 malformed request (net/http), 403
// client refused by the ACL, 408 request not received within
// RequestTimeout, 413 body over MaxBodyBytes, 414 URI over MaxURILength, 421
// Host and SNI differ where that would bypass mutual TLS, 431 headers over
// MaxHeaderBytes, 501 unsupported Transfer-Encoding, 502 target refused,
// reset or answered malformed, 503 no healthy target, 504 connect or
// response timeout. 499 is logged (never sent) when the client goes away
// first.
type HTTP struct {
	// Router routes requests; required (see NewRouter and Forward), unless
	// SetRouter is called before the first request.
	Router *Router

	// ACL is checked on the client's address when a connection is accepted
	// (refused connections are closed at once) and again on every request
	// (403), so SetACL applies to established keep-alive connections too.
	// Nil admits everyone.
	ACL *ACL

	// TrustedProxies are the peers whose X-Forwarded-For is believed: the
	// proxy appends to it and takes the client IP from it (for stickiness,
	// the log and Forwarded). From any other peer it is replaced by the
	// peer's address. Nil trusts nobody.
	TrustedProxies *ACL

	// Forwarded adds an RFC 7239 Forwarded header (kept and appended to
	// from trusted peers, replaced otherwise) beside the X-Forwarded-*
	// headers, which are always sent.
	Forwarded bool

	// TLS, if set, makes the listener HTTPS (HTTP/2 offered by ALPN).
	TLS *TLS

	// IdleTimeout is how long a keep-alive connection waits for its next
	// request. Default: DefaultIdleTimeout.
	IdleTimeout time.Duration

	// RequestTimeout is how long a client has to send a request's
	// headers, from when the proxy starts reading them, and then again
	// its body, from when the headers have arrived; a client that takes
	// longer gets 408 and the connection is closed. (A whole request may
	// so take up to twice the timeout: net/http does not tell when a
	// request's first byte arrived.) Over HTTP/2 it bounds the body only
	// (the stream gets 408; HTTP/2 has its own framing timeouts).
	// Default: DefaultRequestTimeout.
	RequestTimeout time.Duration

	// ConnectTimeout bounds a connection attempt to a target; then the
	// next target is tried, or 504. Default: DefaultConnectTimeout.
	ConnectTimeout time.Duration

	// ResponseTimeout bounds the wait for a target's response header after
	// the request was sent; then the request is retried when safe, else
	// 504. Default: DefaultResponseTimeout.
	ResponseTimeout time.Duration

	// MaxHeaderBytes limits the request line and headers: above it, 431.
	// Default: DefaultMaxHeaderBytes.
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
	// TrustedProxies), method, host, path, proto, rule ("default" for the
	// default action), group, status (what the proxy answered; 499 when
	// the client went away first), upstream_status, upstream_addr, bytes
	// (response body bytes), request_time, upstream_connect_time,
	// upstream_header_time, upstream_response_time (seconds with
	// millisecond resolution; one value per attempt joined by ", " when
	// retried; "-" when no target was reached), and error when the proxy
	// answered itself. Requests net/http refused before routing (400,
	// 431, 501 on plain HTTP) and 408s are logged too. Nil logs nothing.
	AccessLog *slog.Logger

	// ErrorLog, if set, receives net/http's errors (TLS handshakes, ...)
	// and the proxy's own. Nil discards them (accept-error episodes then
	// go to slog.Default()).
	ErrorLog *slog.Logger

	// OnRefuse, if set, is called for every client the ACL refuses, at
	// accept or on a request, with Reason RefusedACL and Err wrapping
	// ErrDenied (the hook the TCP and UDP proxies share). It is called on
	// the accepting or serving goroutine with no lock held and must not
	// block. Clients refused because the descriptor budget was spent are
	// reported with RefusedDescriptors.
	OnRefuse func(Refusal)

	// Descriptors, if set, is the descriptor budget client connections
	// are counted in (HTTPDescriptors each, from accept to close), shared
	// by the proxies of one load balancer: when it is spent a new
	// connection is closed at accept and counted (RejectedDescriptors).
	// Nil: no budget.
	Descriptors *Descriptors

	once    sync.Once
	initErr error
	router  atomic.Pointer[Router]
	acl     atomic.Pointer[ACL]
	trusted atomic.Pointer[ACL]
	tmo     atomic.Pointer[Timeouts]
	tls     *tlsSetup
	rp      *httputil.ReverseProxy
	budget  *budget
	retry   Retry
	pool    sync.Pool // *reqState
	bufs    sync.Pool // *[copyBufferSize]byte
	stats   httpCounters

	transports sync.Map // *Upstream → *transport

	baseCtx context.Context
	cancel  context.CancelFunc

	mu        sync.Mutex    // guards the fields below
	gens      []*generation // servers of connections, the current one last
	listeners []*listener
	closed    bool
	serving   sync.WaitGroup // the generations' serving goroutines

	handlers inflight // requests in ServeHTTP, upgraded ones included

	// slowOnly sends every request through ReverseProxy and
	// http.Transport: tests compare the fast path with it.
	slowOnly bool
}

// Timeouts are the HTTP proxy's timeouts that SetTimeouts changes at run
// time. Zero fields take their defaults.
type Timeouts struct {
	// Idle is the keep-alive idle timeout of connections accepted after
	// the change (established ones keep theirs).
	Idle time.Duration
	// Request bounds the receipt of a request's headers (on connections
	// accepted after the change) and, apart, of its body (from the next
	// request on); see HTTP.RequestTimeout.
	Request time.Duration
	// Connect bounds a connection attempt to a target.
	Connect time.Duration
	// Response bounds the wait for a target's response header.
	Response time.Duration
}

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

// setup checks the configuration and builds the running state, once.
func (h *HTTP) setup() error {
	h.once.Do(func() {
		var errs []error
		if h.Router != nil && h.router.Load() == nil {
			h.router.Store(h.Router)
		}
		if h.acl.Load() == nil {
			h.acl.Store(h.ACL)
		}
		if h.trusted.Load() == nil {
			h.trusted.Store(h.TrustedProxies)
		}
		if h.tmo.Load() == nil {
			t := Timeouts{Idle: h.IdleTimeout, Request: h.RequestTimeout, Connect: h.ConnectTimeout, Response: h.ResponseTimeout}.withDefaults()
			h.tmo.Store(&t)
		}
		if h.TLS != nil {
			ts, err := h.TLS.compile()
			if err != nil {
				errs = append(errs, err)
			}
			h.tls = ts
		}
		for _, c := range []struct {
			name string
			v    int64
		}{
			{"IdleTimeout", int64(h.IdleTimeout)}, {"RequestTimeout", int64(h.RequestTimeout)},
			{"ConnectTimeout", int64(h.ConnectTimeout)}, {"ResponseTimeout", int64(h.ResponseTimeout)},
			{"MaxHeaderBytes", int64(h.MaxHeaderBytes)}, {"MaxBodyBytes", h.MaxBodyBytes},
			{"MaxURILength", int64(h.MaxURILength)}, {"MaxIdleConnsPerTarget", int64(h.MaxIdleConnsPerTarget)},
			{"Retry.Attempts", int64(h.Retry.Attempts)}, {"Retry.Timeout", int64(h.Retry.Timeout)},
			{"Retry.MinPerSecond", int64(h.Retry.MinPerSecond)},
		} {
			if c.v < 0 {
				errs = append(errs, fmt.Errorf("proxy: HTTP.%s is negative: %d", c.name, c.v))
			}
		}
		if h.Retry.Ratio < 0 || h.Retry.Ratio > 10 {
			errs = append(errs, fmt.Errorf("proxy: HTTP.Retry.Ratio %v is outside 0..10", h.Retry.Ratio))
		}
		h.initErr = errors.Join(errs...)
		h.retry = h.Retry.withDefaults()
		h.budget = newBudget(h.retry, time.Now())
		h.baseCtx, h.cancel = context.WithCancel(context.Background())
		h.rp = &httputil.ReverseProxy{
			Rewrite:        h.rewrite,
			Transport:      roundTripper{h},
			ModifyResponse: h.modifyResponseRP,
			ErrorHandler:   h.errorHandlerRP,
			BufferPool:     bufferPool{&h.bufs},
			ErrorLog:       log.New(io.Discard, "", 0),
			// FlushInterval 0: ReverseProxy flushes streamed responses (no
			// Content-Length, event streams) at once by itself, and a
			// response of known length goes out in one write.
		}
		if h.ErrorLog != nil {
			h.rp.ErrorLog = slog.NewLogLogger(h.ErrorLog.Handler(), slog.LevelWarn)
		}
		h.pool.New = func() any { return &reqState{dial: new(dialTiming)} }
		h.bufs.New = func() any { return new([copyBufferSize]byte) }
	})
	return h.initErr
}

// SetRouter replaces the router. It applies to the next request.
func (h *HTTP) SetRouter(r *Router) { h.router.Store(r) }

// SetACL replaces the access control. It applies to the next connection
// and the next request, on established connections too. Nil admits
// everyone.
func (h *HTTP) SetACL(a *ACL) {
	_ = h.setup()
	h.acl.Store(a)
}

// SetTrustedProxies replaces the peers whose X-Forwarded-For is trusted.
// It applies to the next request.
func (h *HTTP) SetTrustedProxies(a *ACL) {
	_ = h.setup()
	h.trusted.Store(a)
}

// SetTimeouts replaces the timeouts; zero fields take their defaults. The
// connect, response and body timeouts apply to the next request; the idle
// and header timeouts to connections accepted afterwards (net/http fixes a
// server's connection timeouts, so new connections go to a new server while
// the established ones stay with theirs).
func (h *HTTP) SetTimeouts(t Timeouts) {
	_ = h.setup()
	t = t.withDefaults()
	h.tmo.Store(&t)
}

func (h *HTTP) closeTransports() {
	h.transports.Range(func(k, v any) bool {
		v.(*transport).closeIdle()
		return true
	})
}

// connKey is the context key of the request's connection.
type connKey struct{}

// reqKey is the context key of the request's state.
type reqKey struct{}

// reqState is the state of one proxied request, pooled. dial outlives a
// request (the transport's dialing goroutine may read it late), so reset
// leaves it alone.
type reqState struct {
	dial *dialTiming
	reqFields
}

// reqFields are a request's state that reset clears.
type reqFields struct {
	h      *HTTP
	in     *http.Request
	w      http.ResponseWriter
	up     *Upstream
	peer   netip.AddrPort
	client netip.Addr
	start  time.Time
	rule   string
	method string
	host   string
	path   string
	proto  string
	tls    bool

	tried    []string
	attempts []attempt
	choice   Choice
	chosen   bool // choice holds a live pick to release
	upStatus int
	status   int    // what the proxy answered itself, 0 if the target did
	errText  string // why

	body  *clientBody // nil without a body
	resp  respBody
	fast  h1Body // the fast path's response body
	reply *replay

	untrack func()    // ends an upgraded connection's registration
	hc      *httpConn // nil when served by another server
}

// dialTiming passes a connect time from the transport's dialing goroutine
// to the attempt.
type dialTiming struct {
	gen   atomic.Uint64 // bumped when the request state is recycled
	nanos atomic.Int64  // the attempt's connect time; -1: none (a reused connection)
}

func (rs *reqState) reset() {
	rs.dial.gen.Add(1)
	rs.reqFields = reqFields{tried: rs.tried[:0], attempts: rs.attempts[:0]}
}

// ServeHTTP proxies one request. It makes HTTP an http.Handler too, for use
// behind another server; Serve uses it.
func (h *HTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := h.setup(); err != nil {
		http.Error(w, "proxy misconfigured", http.StatusInternalServerError)
		return
	}
	start := time.Now()
	h.handlers.add()
	defer h.handlers.done()
	var hc *httpConn
	if c, ok := r.Context().Value(connKey{}).(net.Conn); ok {
		if hc = rawConn(c); hc != nil {
			hc.served.Store(true)
		}
	}
	st := &h.stats
	st.requests.Add(1)
	st.activeRequests.Add(1)
	defer st.activeRequests.Add(-1)

	rs := h.pool.Get().(*reqState)
	defer func() { rs.reset(); h.pool.Put(rs) }()
	rs.h, rs.in, rs.w, rs.start, rs.hc = h, r, w, start, hc
	if hc != nil {
		// What r.RemoteAddr says, without parsing it again (its String
		// form unmaps an IPv4-mapped address).
		rs.peer = netip.AddrPortFrom(hc.peer.Addr().Unmap(), hc.peer.Port())
	} else {
		rs.peer, _ = netip.ParseAddrPort(r.RemoteAddr)
	}
	rs.client = rs.peer.Addr().Unmap()
	rs.method, rs.host, rs.path, rs.proto, rs.tls = r.Method, r.Host, r.URL.Path, r.Proto, r.TLS != nil
	rs.rule = "-"

	if !h.acl.Load().Allows(rs.peer.Addr()) {
		st.refusedRequests.Add(1)
		if h.OnRefuse != nil {
			h.OnRefuse(Refusal{Proto: flowtable.TCP, Client: rs.peer, Reason: RefusedACL, Err: ErrDenied})
		}
		h.answer(w, rs, http.StatusForbidden, "client refused by the ACL")
		return
	}
	h.budget.deposit()
	maxURI := h.MaxURILength
	if maxURI == 0 {
		maxURI = DefaultMaxURILength
	}
	maxBody := h.MaxBodyBytes
	if maxBody == 0 {
		maxBody = DefaultMaxBodyBytes
	}
	switch {
	case len(r.RequestURI) > maxURI:
		h.answer(w, rs, http.StatusRequestURITooLong, "URI of "+strconv.Itoa(len(r.RequestURI))+" bytes is over the limit")
		return
	case r.ContentLength > maxBody:
		w.Header().Set("Connection", "close")
		h.answer(w, rs, http.StatusRequestEntityTooLarge, "body of "+strconv.FormatInt(r.ContentLength, 10)+" bytes is over the limit")
		return
	case h.tls.misdirected(r.Host, r.TLS):
		h.stats.misdirected.Add(1)
		h.answer(w, rs, http.StatusMisdirectedRequest, "Host "+r.Host+" needs client authentication its SNI did not")
		return
	}
	if r.ProtoMajor == 1 && len(r.TransferEncoding) > 0 {
		// net/http drops a Content-Length sent beside Transfer-Encoding
		// before the handler sees the request, so the two cannot be told
		// apart: every chunked request closes its connection afterwards,
		// as RFC 9112 §6.1 asks for TE+CL (browsers send no chunked
		// requests, so only odd clients pay a reconnection).
		w.Header().Set("Connection", "close")
	}
	stripH2C(r.Header)

	rt := h.router.Load()
	if rt == nil {
		h.answer(w, rs, http.StatusServiceUnavailable, "no router")
		return
	}
	route := rt.match(normalizeHost(r.Host), cleanPath(r.URL.Path))
	rs.rule = route.name
	switch a := &route.action; {
	case a.Redirect != nil:
		rs.status = a.Redirect.serve(w, r, r.TLS != nil)
		h.finish(rs, rs.status, 0)
		return
	case a.Fixed != nil:
		rs.status = a.Fixed.serve(w)
		h.finish(rs, rs.status, int64(len(a.Fixed.Body)))
		return
	}
	rs.up = route.upstream()
	rs.client = clientAddr(r.Header["X-Forwarded-For"], rs.peer.Addr(), h.trusted.Load())
	if r.Body != nil && r.Body != http.NoBody {
		rs.body = &clientBody{src: r.Body, limit: maxBody, w: w, deadline: start.Add(h.tmo.Load().Request)}
		r.Body = rs.body
	}

	fast := !h.slowOnly && fastEligible(r, rs.body != nil)
	defer func() {
		if rs.reply != nil {
			rs.reply.detach() // the transport may still hold the body
		}
		if rs.untrack != nil {
			rs.untrack()
		}
		if rs.chosen {
			rs.release()
		}
		if p := recover(); p != nil {
			// ReverseProxy aborts with http.ErrAbortHandler when copying
			// the response fails half-way (the client or the target went
			// away): log what was sent, then let net/http close the
			// connection.
			status := rs.upStatus
			if rs.canceled() {
				status = StatusClientClosed
			}
			rs.errText = "response cut: " + fmt.Sprint(p)
			h.finish(rs, status, rs.resp.n)
			panic(p)
		}
	}()
	if fast {
		h.serveFast(w, rs)
	} else {
		h.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), reqKey{}, rs)))
	}
	status := rs.status
	if status == 0 {
		status = rs.upStatus
	}
	h.finish(rs, status, rs.resp.n)
}

// canceled reports whether the client went away (or the proxy closed):
// the request's context is done, or its connection saw the client leave a
// moment before net/http cancels that context.
func (rs *reqState) canceled() bool {
	return rs.in.Context().Err() != nil || rs.hc != nil && rs.hc.gone.Load()
}

// bodyErr returns why reading the client's body failed, if it did.
func (rs *reqState) bodyErr() error {
	if rs.body == nil {
		return nil
	}
	return rs.body.failure()
}

// release ends the chosen target's request.
func (rs *reqState) release() {
	rs.chosen = false
	rs.choice.st.activeRequests.Add(-1)
	rs.choice.Done()
}

// answer writes the proxy's own response and finishes the request.
func (h *HTTP) answer(w http.ResponseWriter, rs *reqState, code int, why string) {
	rs.status, rs.errText = code, why
	if code != StatusClientClosed {
		body := strconv.Itoa(code) + " " + http.StatusText(code) + "\n"
		hd := w.Header()
		hd.Set("Content-Type", "text/plain; charset=utf-8")
		hd.Set("Content-Length", strconv.Itoa(len(body)))
		hd.Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(code)
		io.WriteString(w, body)
		h.finish(rs, code, int64(len(body)))
		return
	}
	h.finish(rs, code, 0)
}

// finish counts and logs a request once.
func (h *HTTP) finish(rs *reqState, status int, n int64) {
	if rs.h == nil { // already finished
		return
	}
	h.stats.observe(status)
	switch status {
	case http.StatusRequestTimeout:
		h.stats.requestTimeouts.Add(1)
	case StatusClientClosed:
		h.stats.clientClosed.Add(1)
	}
	h.logAccess(rs.in.Context(), rs, status, n, time.Since(rs.start), rs.errText)
	rs.h = nil
}

// rewrite builds the outgoing request's headers (ReverseProxy has already
// removed hop-by-hop headers and the incoming Forwarded and X-Forwarded-*).
func (h *HTTP) rewrite(pr *httputil.ProxyRequest) {
	rs := pr.In.Context().Value(reqKey{}).(*reqState)
	in, out := pr.In, pr.Out
	out.URL.Scheme = "http"
	if rs.up.TLS != nil {
		out.URL.Scheme = "https"
	}
	out.URL.Host = "target" // set per attempt
	out.Host = in.Host
	f := h.forwarding(rs)
	hd := out.Header
	hd["X-Forwarded-For"] = f.xff
	hd["X-Forwarded-Proto"] = f.proto
	if f.port != nil {
		hd["X-Forwarded-Port"] = f.port
	}
	hd["X-Forwarded-Host"] = []string{in.Host}
	if f.forwarded != "" {
		hd["Forwarded"] = []string{f.forwarded}
	}
}

// fwdHeaders are the forwarding headers the proxy sends a target.
type fwdHeaders struct {
	xff, proto []string
	port       []string // nil: the proxy does not know its port
	forwarded  string   // "" unless HTTP.Forwarded
}

// forwarding returns the forwarding headers of rs's request:
// X-Forwarded-For with the peer appended to a trusted peer's, or the peer
// alone; the scheme and port the client used; and Forwarded when asked
// for, appended to a trusted peer's. The values computed once per client
// connection are shared, read-only.
func (h *HTTP) forwarding(rs *reqState) fwdHeaders {
	in := rs.in
	peer := rs.peer.Addr()
	trusted := h.trusted.Load().Allows(peer) && h.trusted.Load() != nil
	prior := in.Header["X-Forwarded-For"]
	var f fwdHeaders
	if hc := rs.hc; hc != nil {
		if trusted && len(prior) > 0 {
			f.xff = []string{xffValue(prior, peer, trusted)}
		} else {
			f.xff = hc.xff
		}
		f.proto, f.port = hc.proto, hc.port
	} else {
		f.xff = []string{xffValue(prior, peer, trusted)}
		f.proto = []string{scheme(in)}
		if la, ok := in.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok {
			f.port = []string{strconv.Itoa(la.Port)}
		}
	}
	if h.Forwarded {
		f.forwarded = forwardedValue(peer, in.Host, scheme(in))
		if prior := in.Header["Forwarded"]; trusted && len(prior) > 0 {
			f.forwarded = strings.Join(prior, ", ") + ", " + f.forwarded
		}
	}
	return f
}

// scheme returns the scheme the client used.
func scheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// modifyResponseRP is ReverseProxy's ModifyResponse.
func (h *HTTP) modifyResponseRP(resp *http.Response) error {
	h.modifyResponse(resp.Request.Context().Value(reqKey{}).(*reqState), resp)
	return nil
}

// modifyResponse runs when a target's response header arrives, before it is
// written to the client: stickiness is remembered here, so that a cookie
// policy can set its cookie.
func (h *HTTP) modifyResponse(rs *reqState, resp *http.Response) {
	rs.upStatus = resp.StatusCode
	rs.up.Remember(balancer.PickInfo{Source: rs.client}, rs.in, rs.choice, resp.Header)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		rs.resp = respBody{rs: rs, src: resp.Body, at: rs.resp.at}
		resp.Body = &rs.resp
		return
	}
	// An upgraded connection (WebSocket) lives on with its target: it is
	// registered so that draining the target closes it at the deadline.
	// Plain requests are not: they end by themselves well before any
	// sensible drain delay, and registering each would cost a lock.
	rs.untrack = rs.choice.st.track(resp.Body)
}

// errorHandlerRP is ReverseProxy's ErrorHandler.
func (h *HTTP) errorHandlerRP(w http.ResponseWriter, r *http.Request, err error) {
	h.errorHandler(w, r.Context().Value(reqKey{}).(*reqState), err)
}

// errorHandler answers when no target gave a response.
func (h *HTTP) errorHandler(w http.ResponseWriter, rs *reqState, err error) {
	code, why := h.classify(rs, rs.in, err)
	switch code {
	case http.StatusRequestTimeout, http.StatusRequestEntityTooLarge:
		w.Header().Set("Connection", "close")
	case http.StatusServiceUnavailable:
		h.stats.noTarget.Add(1)
	}
	rs.status, rs.errText = code, why
	if code == StatusClientClosed {
		return
	}
	body := strconv.Itoa(code) + " " + http.StatusText(code) + "\n"
	hd := w.Header()
	hd.Set("Content-Type", "text/plain; charset=utf-8")
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	io.WriteString(w, body)
	rs.resp.n = int64(len(body))
}

// classify maps a failed request to the proxy's answer.
func (h *HTTP) classify(rs *reqState, r *http.Request, err error) (int, string) {
	if be := rs.bodyErr(); be != nil {
		switch {
		case errors.Is(be, errBodyTooLarge):
			return http.StatusRequestEntityTooLarge, "body over the limit"
		case isTimeout(be):
			return http.StatusRequestTimeout, "request body not received in time"
		}
		return StatusClientClosed, "client body: " + be.Error()
	}
	if rs.canceled() && h.baseCtx.Err() == nil {
		return StatusClientClosed, "client went away"
	}
	var de *dialError
	switch {
	case errors.Is(err, balancer.ErrNoTarget):
		return http.StatusServiceUnavailable, err.Error()
	case errors.As(err, &de):
		if isTimeout(de.err) {
			return http.StatusGatewayTimeout, "connect: " + de.err.Error()
		}
		return http.StatusBadGateway, "connect: " + de.err.Error()
	case isTimeout(err):
		return http.StatusGatewayTimeout, "response timeout"
	}
	return http.StatusBadGateway, err.Error()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded)
}

// errBodyTooLarge is a client body's read error past MaxBodyBytes.
var errBodyTooLarge = errors.New("proxy: request body over the limit")

// clientBody wraps the client's request body: it enforces MaxBodyBytes on
// bodies of unknown length, bounds the wait for the body by the request
// timeout (a read deadline on the connection, set on first read and cleared
// at the end, so bodiless requests pay nothing), and remembers why reading
// failed so the answer can be 408 or 413 rather than 502. Reads come from
// the transport's goroutine, through a replay that the handler detaches
// before the request state is recycled.
type clientBody struct {
	src      io.ReadCloser
	w        http.ResponseWriter
	limit    int64
	deadline time.Time

	mu    sync.Mutex // guards the fields below
	rc    *http.ResponseController
	n     int64
	armed bool
	done  bool
	err   error
}

func (b *clientBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	if err := b.err; err != nil {
		b.mu.Unlock()
		return 0, err
	}
	if !b.armed {
		b.armed = true
		b.rc = http.NewResponseController(b.w)
		_ = b.rc.SetReadDeadline(b.deadline)
	}
	b.mu.Unlock()
	n, err := b.src.Read(p)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n += int64(n)
	if b.n > b.limit {
		b.err = errBodyTooLarge
		return n, b.err
	}
	switch {
	case err == io.EOF:
		b.disarmLocked()
	case err != nil:
		b.err = err
	}
	return n, err
}

// failure returns why reading failed, if it did.
func (b *clientBody) failure() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

func (b *clientBody) disarmLocked() {
	if b.armed && !b.done {
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
}

func (b *clientBody) Close() error {
	b.mu.Lock()
	b.disarmLocked()
	b.mu.Unlock()
	return b.src.Close()
}

// respBody wraps a target's response body to count bytes and time its end.
type respBody struct {
	rs   *reqState
	src  io.ReadCloser
	n    int64
	at   time.Time // the attempt's start
	done bool
}

func (b *respBody) Read(p []byte) (int, error) {
	n, err := b.src.Read(p)
	b.n += int64(n)
	if err != nil {
		b.end()
	}
	return n, err
}

func (b *respBody) end() {
	if !b.done {
		b.done = true
		if k := len(b.rs.attempts); k > 0 {
			b.rs.attempts[k-1].response = time.Since(b.at)
		}
	}
}

func (b *respBody) Close() error {
	b.end()
	return b.src.Close()
}

// copyBufferSize is the size of ReverseProxy's copy buffers.
const copyBufferSize = 32 << 10

// bufferPool is ReverseProxy's copy buffers, pooled as array pointers so
// that Put allocates nothing.
type bufferPool struct{ p *sync.Pool }

func (b bufferPool) Get() []byte { return b.p.Get().(*[copyBufferSize]byte)[:] }

func (b bufferPool) Put(buf []byte) {
	if len(buf) == copyBufferSize {
		b.p.Put((*[copyBufferSize]byte)(buf))
	}
}

// serverLog receives net/http's error log: it counts TLS handshake errors
// and passes the lines to ErrorLog.
type serverLog struct{ h *HTTP }

func (l *serverLog) Write(p []byte) (int, error) {
	s := strings.TrimSpace(string(p))
	if strings.Contains(s, "TLS handshake error") {
		l.h.stats.tlsErrors.Add(1)
	}
	if l.h.ErrorLog != nil {
		l.h.ErrorLog.Warn(s)
	}
	return len(p), nil
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
