package proxy

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/lbkit/lbkit/proxy/internal/h1"
	"github.com/lbkit/lbkit/sticky"
)

// exchange is one request on its way through the proxy, whichever front end
// received it: lbkit's HTTP/1.1 engine (engine.go) or net/http's server,
// which serves HTTP/2 and embedders (ServeHTTP, frontstd.go). Everything
// that decides what happens to a request (access control, limits, routing,
// stickiness, retries, timeouts, circuit breakers, the access log and the
// counters) works on it, in one place; only reading the request and writing
// the response differ between the front ends. Exchanges are pooled.
//
// Strings of the request and of the target's response may alias the
// engine's buffers: they are valid until the exchange ends, and are copied
// by whatever keeps them longer (the access log).
type exchange struct {
	h  *HTTP
	hs *httpStripe   // the proxy's counters this exchange writes
	ts *targetStripe // the chosen target's, while chosen

	// The front end: c for the engine, lc for its event loops (Linux), w
	// and in for ServeHTTP.
	c   *conn1
	lc  *lclient
	w   http.ResponseWriter
	in  *http.Request
	ctx context.Context // ServeHTTP's request context; nil for the engine

	start  time.Time
	peer   netip.AddrPort // the connection's peer, IPv4 unmapped
	client netip.Addr     // the client as trusted (X-Forwarded-For)
	trust  bool           // the peer is a trusted proxy
	tls    *tls.ConnectionState
	scheme string // "http" or "https"
	port   string // the listener's port, "" when unknown

	// The request.
	method  string
	host    string // Host, or the target's authority
	target  string // the request-target to send, origin form
	path    string // for routing and logging, without the query
	query   string
	proto   string      // "HTTP/1.1", "HTTP/2.0"
	fields  []h1.Header // the engine's request's (borrowed), or ServeHTTP's own
	xff     []string    // X-Forwarded-For values, for clientAddr
	fwd     []string    // Forwarded values
	cookies []string
	ua      string // the first User-Agent, for the access log
	referer string // the first Referer, for the access log
	xrid    string // the client's X-Request-Id
	rid     string // the request's ID (HTTP.RequestID); "" until made
	ridBuf  [32]byte
	body    reqBody
	upgrade bool // a protocol switch (WebSocket) is asked for
	head    bool // HEAD: the response has no body whatever it says
	sreq    sticky.Request

	// Routing.
	rule string
	up   *Upstream

	// The attempts and the outcome.
	tried    []string
	attempts []attempt
	choice   Choice
	chosen   bool // choice holds a live pick to release
	tc       *tconn
	upStatus int
	status   int    // what the proxy answered itself, 0 if a target did
	errText  string // why
	sent     int64  // response body bytes sent to the client
	started  bool   // response bytes reached the client front end
	finished bool
	abort    bool // ServeHTTP: reset the stream (or close the connection) when done

	respCookies []string // the target's Set-Cookie values (sticky.Response)
	addCookies  []string // Set-Cookie values a policy added

	hbuf []byte // the head being written (to a target or the client)

	obs *observation // HTTP.Observer's state, kept across requests; nil until one is observed

	stdb *stdBody          // ServeHTTP's request body, if any
	pre  *[maxPreread]byte // ServeHTTP's body read before forwarding
	inl  inlineBody        // over pre
}

// reqBody is a request's body as the core sends it.
type reqBody struct {
	mode   bodyMode
	n      int64     // the length, for bodyLength
	src    bodySrc   // the client's body
	replay *replay   // set when it may be sent again
	send   bodySrc   // what the current attempt reads: src or the replay
	spool  [1]replay // backing for replay, so that it is not allocated
}

// bodySrc is a request body's source: the engine's reader over the client
// connection, or a ServeHTTP request's Body.
type bodySrc interface {
	Read(p []byte) (int, error)
}

// bodyMode says how a request body is framed.
type bodyMode uint8

const (
	bodyNone    bodyMode = iota
	bodyLength           // Content-Length: n bytes
	bodyChunked          // chunked: the engine forwards the validated framing
	bodyStream           // unknown length (ServeHTTP): sent chunked
)

// reset readies ex for the next request, keeping the capacity of its
// slices.
func (ex *exchange) reset() {
	if ex.c != nil || ex.lc != nil {
		ex.fields = nil // the engine's request's own: not ours to keep
	}
	clear(ex.fields)
	clear(ex.xff)
	clear(ex.fwd)
	clear(ex.cookies)
	clear(ex.tried)
	clear(ex.respCookies)
	clear(ex.addCookies)
	*ex = exchange{
		h:           ex.h,
		fields:      ex.fields[:0],
		xff:         ex.xff[:0],
		fwd:         ex.fwd[:0],
		cookies:     ex.cookies[:0],
		tried:       ex.tried[:0],
		attempts:    ex.attempts[:0],
		respCookies: ex.respCookies[:0],
		addCookies:  ex.addCookies[:0],
		hbuf:        ex.hbuf[:0],
		obs:         ex.obs,
	}
	ex.pre = nil
}

// getExchange takes an exchange from the pool.
func (h *HTTP) getExchange() *exchange {
	ex, _ := h.exchanges.Get().(*exchange)
	if ex == nil {
		ex = &exchange{h: h}
	}
	ex.h = h
	return ex
}

// putExchange returns ex to the pool.
func (h *HTTP) putExchange(ex *exchange) {
	if cap(ex.hbuf) > 64<<10 {
		ex.hbuf = nil
	}
	if ex.pre != nil {
		h.preBufs.Put(ex.pre)
	}
	ex.reset()
	h.exchanges.Put(ex)
}

// getPreBuf returns a buffer for a body read before forwarding.
func (h *HTTP) getPreBuf() *[maxPreread]byte {
	if bp, ok := h.preBufs.Get().(*[maxPreread]byte); ok {
		return bp
	}
	return new([maxPreread]byte)
}

// SetCookies implements sticky.Response: the target's Set-Cookie values.
func (ex *exchange) SetCookies() []string { return ex.respCookies }

// AddSetCookie implements sticky.Response: a policy's cookie, sent with
// the response.
func (ex *exchange) AddSetCookie(v string) { ex.addCookies = append(ex.addCookies, v) }

// canceled reports whether the client went away (or the proxy closed).
func (ex *exchange) canceled() bool {
	if ex.c != nil {
		return ex.c.gone()
	}
	if ex.lc != nil {
		return ex.lc.gone
	}
	return ex.ctx.Err() != nil
}

// release ends the chosen target's request.
func (ex *exchange) release() {
	ex.chosen = false
	ex.ts.active.Add(-1)
	ex.choice.Done()
}

// answer sends the proxy's own response, unless the client went away
// (499, logged only), and finishes the exchange.
func (ex *exchange) answer(code int, why string) {
	ex.status, ex.errText = code, why
	if code == StatusClientClosed || ex.started {
		ex.finish(code)
		return
	}
	body := strconv.Itoa(code) + " " + http.StatusText(code) + "\n"
	if ex.c != nil {
		// Counted and logged before it is written, so that whoever
		// reads the answer finds it counted.
		if !ex.head {
			ex.sent = int64(len(body))
		}
		ex.finish(code)
		ex.c.answer(ex, code, body)
		return
	} else if ex.lc != nil {
		if !ex.head {
			ex.sent = int64(len(body))
		}
		ex.finish(code)
		ex.lc.answer(ex, code, body)
		return
	} else {
		hd := ex.w.Header()
		hd.Set("Content-Type", "text/plain; charset=utf-8")
		hd.Set("Content-Length", strconv.Itoa(len(body)))
		hd.Set("X-Content-Type-Options", "nosniff")
		switch code {
		case http.StatusRequestTimeout, http.StatusRequestEntityTooLarge, http.StatusBadRequest:
			hd.Set("Connection", "close")
		}
		ex.w.WriteHeader(code)
		_, _ = ex.w.Write([]byte(body))
		ex.started = true
		ex.sent = int64(len(body))
	}
	ex.finish(code)
}

// finish counts and logs the exchange once.
func (ex *exchange) finish(status int) {
	if ex.finished {
		return
	}
	ex.finished = true
	h := ex.h
	if ex.hs == nil {
		ex.hs = h.stats.stripe()
	}
	ex.hs.observe(status)
	switch status {
	case http.StatusRequestTimeout:
		h.stats.requestTimeouts.Add(1)
	case StatusClientClosed:
		h.stats.clientClosed.Add(1)
	}
	h.logExchange(ex, status)
	if ex.obs != nil && ex.obs.obs != nil {
		ex.observeEnd(status)
	}
}

// b2s returns the bytes of b as a string, without copying: the string is
// valid as long as b is not modified.
func b2s(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// s2b returns the bytes of s, without copying; they must not be modified.
func s2b(s string) []byte {
	if s == "" {
		return nil
	}
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

// fromRequest fills in the request's part of ex from an engine's parsed
// request (its strings alias the request's buffer), reporting whether it
// asks for a cleartext HTTP/2 upgrade (h2c), which is not forwarded.
func (ex *exchange) fromRequest(req *h1.Request) (h2c bool) {
	ex.method = b2s(req.Method)
	ex.host = b2s(req.Host)
	ex.head = ex.method == http.MethodHead
	ex.proto = "HTTP/1.1"
	if req.Minor == 0 {
		ex.proto = "HTTP/1.0"
	}
	target := b2s(req.Path)
	ex.path, ex.query, _ = strings.Cut(target, "?")
	if ex.query != "" {
		if q := cleanQuery(ex.query); q != ex.query {
			ex.query = q
			target = ex.path + "?" + q
		}
	}
	ex.target = target
	ex.fields = req.Headers
	h2c = false
	for i := range req.Headers {
		f := &req.Headers[i]
		switch f.Kind {
		case h1.KindXForwardedFor:
			ex.xff = append(ex.xff, b2s(f.Value))
		case h1.KindForwarded:
			ex.fwd = append(ex.fwd, b2s(f.Value))
		case h1.KindUpgrade:
			h2c = h2c || h1.HasToken(f.Value, "h2c")
		case h1.KindOther:
			switch len(f.Name) {
			case len("Cookie"):
				if h1.EqualFold(f.Name, "Cookie") {
					ex.cookies = append(ex.cookies, b2s(f.Value))
				}
			case len("Referer"):
				if ex.referer == "" && h1.EqualFold(f.Name, "Referer") {
					ex.referer = b2s(f.Value)
				}
			case len("User-Agent"):
				if ex.ua == "" && h1.EqualFold(f.Name, "User-Agent") {
					ex.ua = b2s(f.Value)
				}
			case len("X-Request-Id"):
				if ex.xrid == "" && h1.EqualFold(f.Name, "X-Request-Id") {
					ex.xrid = b2s(f.Value)
				}
			}
		}
	}
	return h2c
}
