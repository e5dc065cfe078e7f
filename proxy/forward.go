package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/lbkit/lbkit/balancer"
	"github.com/lbkit/lbkit/proxy/internal/h1"
)

// The forwarding core: for each attempt, a target chosen by the Upstream
// (stickiness first), a connection from the pool (within the circuit
// breaker), the request written straight from what the front end parsed
// with the forwarding headers added as it is written, and the response
// head read and parsed in the connection's buffer; then the front end
// relays the response. A failed attempt is retried on another target when
// that is safe (see Retry). Both front ends run it.

// poolFor returns the connection pool to up's targets.
func (h *HTTP) poolFor(up *Upstream) *pool {
	if v, ok := h.pools.Load(up); ok {
		return v.(*pool)
	}
	maxIdle := h.MaxIdleConnsPerTarget
	if maxIdle == 0 {
		maxIdle = DefaultMaxIdleConnsPerTarget
	}
	v, _ := h.pools.LoadOrStore(up, newPool(up, maxIdle))
	return v.(*pool)
}

// closePools closes every pool's idle connections.
func (h *HTTP) closePools() {
	h.pools.Range(func(_, v any) bool {
		v.(*pool).closeIdle()
		return true
	})
}

// forward sends ex's request to a target of ex.up and relays the answer,
// or answers itself when no target does (502, 503, 504, or 499 logged when
// the client went away first). It finishes the exchange.
func (h *HTTP) forward(ex *exchange) {
	up := ex.up
	p := h.poolFor(up)
	tmo := h.tmo.Load()
	retries := h.retry.Attempts > 1 && up.Sticky() == nil && !ex.upgrade
	b := &ex.body
	b.send = b.src
	_, inline := b.src.(*inlineBody)
	if b.mode != bodyNone && b.src != nil && !inline {
		// Even without retries the body goes through a replay when it is
		// not in memory: it records nothing then, but knows what was read.
		limit := int64(0)
		if retries {
			limit = max(h.retry.BodyLimit, 0)
		}
		r := &b.spool[0]
		*r = replay{src: b.src, limit: limit}
		b.replay = r
		b.send, _ = r.next()
	}
	first := time.Now()
	var lastErr error
	for n := 0; ; n++ {
		if ex.canceled() && h.baseCtx.Err() == nil {
			ex.answer(StatusClientClosed, "client went away")
			return
		}
		c, err := up.Choose(balancer.PickInfo{Source: ex.client, Exclude: ex.tried}, &ex.sreq)
		if err != nil {
			if lastErr == nil {
				lastErr = err
			}
			ex.fail(lastErr)
			return
		}
		if n > 0 && b.replay != nil {
			ab, ok := b.replay.next()
			if !ok {
				c.Done()
				ex.fail(lastErr)
				return
			}
			b.send = ab
		}
		a := ex.beginAttempt(c, n)
		err = ex.attempt(p, c, a, tmo)
		if err == nil {
			ex.headArrived(a, &ex.tc.resp)
			ex.gotResponse()
			return
		}
		if !ex.retryAfter(err, a, n, first, retries) {
			return
		}
		lastErr = err
	}
}

// beginAttempt records that c was chosen for attempt n (0 first) and
// returns the attempt's record.
func (ex *exchange) beginAttempt(c Choice, n int) *attempt {
	ex.tried = append(ex.tried, c.Target.ID)
	ex.choice, ex.chosen = c, true
	ex.ts = c.st.stripe(ex.hs)
	ex.ts.requests.Add(1)
	ex.ts.active.Add(1)
	ex.attempts = append(ex.attempts, attempt{addr: c.Target.Addr, connect: -1, header: -1, response: -1})
	a := &ex.attempts[len(ex.attempts)-1]
	at := time.Now()
	a.start = at
	if ex.obs != nil && ex.obs.obs != nil {
		ex.observeAttempt(c, n, at)
	}
	return a
}

// headArrived records the final response head resp of attempt a: its
// time, its status in the counters, and the passive health signal.
func (ex *exchange) headArrived(a *attempt, resp *h1.Response) {
	a.header = time.Since(a.start)
	a.status = resp.Status
	ex.upStatus = resp.Status
	c := ex.choice
	c.st.observeStatus(ex.ts, resp.Status, a.header)
	ex.hs.observeUpstream(resp.Status)
	switch resp.Status {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		ex.up.report(c.Target.ID, errStatus(resp.Status))
	default:
		ex.up.report(c.Target.ID, nil)
	}
}

// retryAfter ends failed attempt a (number n, the first of them at first)
// and reports whether the request goes to another target; if not, it
// answered the client (ex.fail). retries says whether the request may be
// retried at all.
func (ex *exchange) retryAfter(err error, a *attempt, n int, first time.Time, retries bool) bool {
	h, up, c, b := ex.h, ex.up, ex.choice, &ex.body
	inl, inline := b.send.(*inlineBody)
	ex.release()
	if ex.obs != nil && ex.obs.obs != nil {
		ex.observeAttemptEnd(0, err)
	}
	var de *dialError
	dial := errors.As(err, &de)
	if dial {
		c.st.connectErrors.Add(1)
		a.noTarget = true
	}
	if errors.Is(err, ErrCircuitOpen) {
		a.noTarget = true
		ex.fail(err)
		return false
	}
	if ex.canceled() || ex.bodyErr() != nil {
		ex.fail(err) // the client's doing, not the target's
		return false
	}
	up.report(c.Target.ID, err)
	switch {
	case !retries, n+1 >= h.retry.Attempts, time.Since(first) >= h.retry.Timeout:
		ex.fail(err)
		return false
	case !dial && !idempotent(ex.method):
		ex.fail(err)
		return false
	case b.replay != nil && !b.replay.replayable(),
		inline && int64(len(inl.b)) > h.retry.BodyLimit:
		// A body in memory is replayed within the same limit as one
		// recorded on its way: Retry.BodyLimit says what may be sent
		// twice.
		ex.fail(err)
		return false
	}
	if !h.budget.withdraw(time.Now()) {
		h.stats.retriesRefused.Add(1)
		ex.fail(err)
		return false
	}
	h.stats.retries.Add(1)
	return true
}

// errStatus is the passive-health signal of a target's 502, 503 or 504.
type errStatus int

func (e errStatus) Error() string { return fmt.Sprintf("status %d from target", int(e)) }

// attempt gets a connection to c's target, sends the request and reads the
// response head into ex.tc. A request that fails on a reused connection
// before any byte of the answer is sent once more on a new connection when
// it has no body and may be sent twice (http.Transport's rule), as the
// target had likely closed the connection while it was idle.
func (ex *exchange) attempt(p *pool, c Choice, a *attempt, tmo *Timeouts) error {
	ctx := ex.ctx
	if ctx == nil {
		ctx = ex.h.baseCtx
	}
	_, inline := ex.body.send.(*inlineBody)
	merge := ex.body.mode == bodyNone || inline // the request goes in one write
	for try := 0; ; try++ {
		tc, dialTime, err := p.get(ctx, ex.h.baseCtx, c.st, c.Target.Addr, tmo.Connect, merge)
		if dialTime >= 0 {
			a.connect = dialTime
		}
		if err != nil {
			return err
		}
		if ex.canceled() {
			// The client went away while the connection was got: it goes
			// back unused.
			tc.p.put(tc)
			return context.Canceled
		}
		ex.tc = tc
		stop := ex.watch(tc)
		var unwritten bool
		if merge && canMerge && tc.raw != nil && !tc.tls {
			var dead bool
			dead, unwritten, err = ex.sendAndWait(tc, tmo)
			if dead {
				// The idle connection was closed, or held bytes it should
				// not: nothing was written; another one, not a retry.
				if stop != nil {
					stop()
				}
				tc.close()
				ex.tc = nil
				try--
				continue
			}
		} else {
			unwritten, err = ex.send(tc, tmo)
		}
		written := err == nil // the whole request reached the target
		if written {
			err = ex.readHead(tc, tmo)
		}
		if stop != nil {
			if !stop() && err == nil {
				err = context.Canceled // the client went away as the head arrived
			}
		}
		if err == nil {
			return nil
		}
		reused := tc.reused
		var se *staleError
		stale := errors.As(err, &se)
		if written && !stale && ex.canceled() && ex.h.drainAbandoned(ex, tc) {
			ex.tc = nil
			return err
		}
		tc.close()
		ex.tc = nil
		if try > 0 || !reused || !(stale || unwritten) || ex.body.mode != bodyNone || ex.canceled() ||
			!(unwritten || idempotent(ex.method)) || errors.Is(err, errBadHeader) {
			return err
		}
	}
}

// watch makes tc's I/O abort when a ServeHTTP request's context ends (the
// client went away, an HTTP/2 stream was reset); stop ends that, reporting
// whether it had not happened. The engine needs none: see conn1.
func (ex *exchange) watch(tc *tconn) (stop func() bool) {
	if ex.ctx == nil {
		return nil
	}
	return context.AfterFunc(ex.ctx, tc.abort)
}

// staleError is a failure on a reused connection before any byte of the
// answer arrived.
type staleError struct{ err error }

func (e *staleError) Error() string { return errStaleConn.Error() + ": " + e.err.Error() }
func (e *staleError) Unwrap() error { return e.err }

// errBadHeader is a request the proxy will not forward: a method that is
// not a token, a request target with a space or control character, a
// field that is not valid (possible only through ServeHTTP from another
// server: lbkit's engine and net/http's parse them out).
var errBadHeader = errors.New("proxy: invalid request line or header field")

// send writes the request to tc: the head, with the body when it is in
// memory, then the rest of the body. unwritten reports that nothing could
// be written.
func (ex *exchange) send(tc *tconn, tmo *Timeouts) (unwritten bool, err error) {
	hb, err := ex.appendRequestHead(ex.hbuf[:0], tc.host.addr)
	ex.hbuf = hb
	if err != nil {
		return true, err
	}
	b := &ex.body
	if b.mode == bodyNone {
		if _, err := tc.nc.Write(hb); err != nil {
			return true, err
		}
		return false, nil
	}
	if inl, ok := b.send.(*inlineBody); ok {
		// The whole body is in memory: one write with the head.
		ex.hbuf = append(hb, inl.b...)
		if _, err := tc.nc.Write(ex.hbuf); err != nil {
			return true, err
		}
		return false, nil
	}
	if _, err := tc.nc.Write(hb); err != nil {
		return true, err
	}
	// A target that stops reading the body must not hold the request for
	// ever: each write has the response timeout.
	_ = tc.nc.SetWriteDeadline(time.Now().Add(tmo.Response))
	defer func() { _ = tc.nc.SetWriteDeadline(time.Time{}) }()
	switch b.mode {
	case bodyLength:
		err = ex.copyBodyTo(tc, io.LimitReader(b.send, b.n), b.n, tmo)
	case bodyChunked:
		err = ex.copyBodyTo(tc, b.send, -1, tmo)
	case bodyStream:
		err = ex.copyChunkedTo(tc, b.send, tmo)
	}
	return false, err
}

// copyBodyTo copies a request body to the target: n bytes (or, with n <
// 0, until EOF), spliced when the engine's client and the target are both
// plain TCP and the rest of the body is long.
func (ex *exchange) copyBodyTo(tc *tconn, src io.Reader, n int64, tmo *Timeouts) error {
	if cb, ok := ex.body.send.(*clientBody1); ok && n >= 0 && tc.tcp != nil {
		if done, err := cb.spliceTo(tc, tmo); done {
			return err
		}
	}
	bp := ex.h.copyBuf()
	defer ex.h.putCopyBuf(bp)
	var written int64
	for {
		m, rerr := src.Read(bp[:])
		if m > 0 {
			if _, err := tc.nc.Write(bp[:m]); err != nil {
				return err
			}
			written += int64(m)
			_ = tc.nc.SetWriteDeadline(time.Now().Add(tmo.Response))
		}
		if rerr == io.EOF {
			if n >= 0 && written < n {
				return io.ErrUnexpectedEOF
			}
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// copyChunkedTo sends a body of unknown length chunked.
func (ex *exchange) copyChunkedTo(tc *tconn, src io.Reader, tmo *Timeouts) error {
	bp := ex.h.copyBuf()
	defer ex.h.putCopyBuf(bp)
	const hdr = 18 // room for a chunk-size line: 16 hex digits and CRLF
	for {
		m, rerr := src.Read(bp[hdr : len(bp)-2])
		if m > 0 {
			line := fmt.Appendf(nil, "%x\r\n", m)
			start := hdr - len(line)
			copy(bp[start:], line)
			bp[hdr+m], bp[hdr+m+1] = '\r', '\n'
			if _, err := tc.nc.Write(bp[start : hdr+m+2]); err != nil {
				return err
			}
			_ = tc.nc.SetWriteDeadline(time.Now().Add(tmo.Response))
		}
		if rerr == io.EOF {
			_, err := io.WriteString(tc.nc, "0\r\n\r\n")
			return err
		}
		if rerr != nil {
			return rerr
		}
	}
}

// appendRequestHead appends the request head as sent to a target: the
// request line in origin form, Host, the client's fields without the
// hop-by-hop ones and those the proxy sets, the forwarding headers, and
// the framing of the body as the core sends it.
func (ex *exchange) appendRequestHead(hb []byte, addr string) ([]byte, error) {
	var err error
	if hb, err = h1.AppendRequestLine(hb, ex.method, ex.target); err != nil {
		return hb, errBadHeader
	}
	host := removeZone(ex.host)
	if host == "" {
		host = addr
	}
	if hb, err = h1.AppendField(hb, "Host", host); err != nil {
		return hb, errBadHeader
	}
	teTrailers, ua := false, false
	var repl *ObservedAttempt // fields an Observer sets in place of the client's
	if ex.obs != nil && ex.obs.attOpen {
		repl = &ex.obs.att
	}
	for i := range ex.fields {
		f := &ex.fields[i]
		if repl != nil && repl.replaced(f.Name) {
			continue // the observer's value is sent instead
		}
		if f.Hop {
			if f.Kind == h1.KindTE && h1.HasToken(f.Value, "trailers") {
				teTrailers = true
			}
			continue
		}
		switch f.Kind {
		case h1.KindHost, h1.KindContentLength, h1.KindExpect, h1.KindForwarded,
			h1.KindXForwardedFor, h1.KindXForwardedHost, h1.KindXForwardedProto, h1.KindHTTP2Settings:
			continue
		case h1.KindXForwardedPort:
			if ex.port != "" {
				continue
			}
		case h1.KindOther:
			switch len(f.Name) {
			case len("X-Real-Ip"):
				if !ex.trust && h1.EqualFold(f.Name, "X-Real-Ip") {
					continue // only a trusted proxy may say who the client is
				}
			case len("X-Request-Id"):
				if ex.h.RequestID && h1.EqualFold(f.Name, "X-Request-Id") {
					continue // replaced by the request's ID
				}
			case len("User-Agent"):
				if h1.EqualFold(f.Name, "User-Agent") {
					// The first only, and none when empty, as net/http
					// sends it.
					if ua || len(f.Value) == 0 {
						continue
					}
					ua = true
				}
			}
		}
		if ex.c == nil && ex.lc == nil {
			// Fields from another server's request are checked; the
			// engine's were checked when parsed.
			if hb, err = h1.AppendField(hb, f.Name, f.Value); err != nil {
				return hb, errBadHeader
			}
			continue
		}
		hb = append(hb, f.Name...)
		hb = append(hb, ": "...)
		hb = append(hb, f.Value...)
		hb = append(hb, "\r\n"...)
	}
	if teTrailers {
		hb = append(hb, "Te: trailers\r\n"...)
	}
	hb = ex.appendForwarding(hb)
	if repl != nil {
		for f := repl.fields; len(f) >= 2; f = f[2:] {
			if hb, err = h1.AppendField(hb, f[0], f[1]); err != nil {
				return hb, errBadHeader
			}
		}
	}
	if ex.upgrade {
		hb = append(hb, "Connection: Upgrade\r\n"...)
		for i := range ex.fields {
			if f := &ex.fields[i]; f.Kind == h1.KindUpgrade {
				hb = append(hb, "Upgrade: "...)
				hb = append(hb, f.Value...)
				hb = append(hb, "\r\n"...)
			}
		}
	}
	switch ex.body.mode {
	case bodyLength:
		hb = h1.AppendContentLength(hb, ex.body.n)
	case bodyChunked, bodyStream:
		hb = append(hb, "Transfer-Encoding: chunked\r\n"...)
	default:
		switch ex.method {
		case http.MethodPost, http.MethodPut, http.MethodPatch:
			hb = append(hb, "Content-Length: 0\r\n"...) // as net/http sends it
		}
	}
	return h1.AppendEnd(hb), nil
}

// appendForwarding appends the forwarding headers: X-Forwarded-For with
// the peer appended to a trusted peer's, or the peer alone; the scheme,
// port and host the client used; and Forwarded when asked for, appended to
// a trusted peer's.
func (ex *exchange) appendForwarding(hb []byte) []byte {
	peer := ex.peer.Addr()
	hb = append(hb, "X-Forwarded-For: "...)
	if ex.trust {
		for _, v := range ex.xff {
			if v = trimOWS(v); v != "" {
				hb = append(hb, v...)
				hb = append(hb, ", "...)
			}
		}
	}
	hb = peer.AppendTo(hb)
	hb = append(hb, "\r\nX-Forwarded-Proto: "...)
	hb = append(hb, ex.scheme...)
	if ex.port != "" {
		hb = append(hb, "\r\nX-Forwarded-Port: "...)
		hb = append(hb, ex.port...)
	}
	hb = append(hb, "\r\n"...)
	if host := trimOWS(ex.host); validHeaderValue(host) {
		hb = append(hb, "X-Forwarded-Host: "...)
		hb = append(hb, host...)
		hb = append(hb, "\r\n"...)
	}
	if ex.h.Forwarded {
		hb = append(hb, "Forwarded: "...)
		if ex.trust {
			for _, v := range ex.fwd {
				if v = trimOWS(v); v != "" {
					hb = append(hb, v...)
					hb = append(hb, ", "...)
				}
			}
		}
		hb = append(hb, forwardedValue(peer, ex.host, ex.scheme)...)
		hb = append(hb, "\r\n"...)
	}
	if ex.h.RequestID {
		hb = append(hb, "X-Request-Id: "...)
		hb = append(hb, ex.requestID()...)
		hb = append(hb, "\r\n"...)
	}
	return hb
}

// requestID returns the request's ID (HTTP.RequestID), making it on first
// use: a trusted peer's X-Request-Id when it is a valid one, else 32
// random hexadecimal digits.
func (ex *exchange) requestID() string {
	if ex.rid != "" {
		return ex.rid
	}
	if ex.xrid != "" && validRequestID(ex.xrid) {
		if t := ex.h.trusted.Load(); t != nil && t.Allows(ex.peer.Addr()) {
			ex.rid = ex.xrid
			return ex.rid
		}
	}
	const hex = "0123456789abcdef"
	a, b := rand.Uint64(), rand.Uint64()
	for i := range 16 {
		ex.ridBuf[i] = hex[a>>(60-4*i)&0xf]
		ex.ridBuf[16+i] = hex[b>>(60-4*i)&0xf]
	}
	ex.rid = b2s(ex.ridBuf[:])
	return ex.rid
}

// validRequestID reports whether a client's X-Request-Id may be kept: 1 to
// 128 visible ASCII characters.
func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// sendAndWait writes a request that fits in one write (no body, or one in
// memory) and waits for the answer to start arriving, in one step with the
// poller: the liveness peek of a reused connection, the write, and the wait
// for readability, with no read that finds nothing. Waiting without first
// reading is safe here because the poller is armed before the request is
// written: whatever the target sends arrives after. dead reports that the
// peek found the connection closed or holding bytes (nothing was
// written). Errors are as send's; a timeout of the wait is left to
// readHead.
func (ex *exchange) sendAndWait(tc *tconn, tmo *Timeouts) (dead, unwritten bool, err error) {
	hb, err := ex.appendRequestHead(ex.hbuf[:0], tc.host.addr)
	if err != nil {
		ex.hbuf = hb
		return false, true, err
	}
	if inl, ok := ex.body.send.(*inlineBody); ok {
		hb = append(hb, inl.b...)
	}
	ex.hbuf = hb
	headAt := ex.headDeadline(tmo)
	tc.setReadDeadline(ex, headAt)
	s := &tc.sw
	if s.fn == nil {
		s.tc, s.fn = tc, s.step
	}
	s.hb, s.first, s.dead, s.wrote, s.werr = hb, true, false, 0, nil
	rerr := tc.raw.Read(s.fn)
	dead, wrote, werr := s.dead, s.wrote, s.werr
	s.hb, s.werr = nil, nil // nothing of the exchange kept
	tc.unchecked = false
	switch {
	case dead:
		return true, true, nil
	case werr != nil:
		if wrote == 0 && tc.reused {
			return false, true, &staleError{werr}
		}
		return false, wrote == 0, werr
	}
	if wrote < len(hb) {
		if _, err := tc.nc.Write(hb[wrote:]); err != nil {
			return false, wrote == 0, err
		}
	}
	if rerr != nil && !isTimeout(rerr) {
		return false, false, rerr
	}
	tc.headAt = headAt // readHead's first deadline, set already
	return false, false, nil
}

// headDeadline returns the first read deadline of a response head: the
// response timeout, or, on the engine, the moment it starts watching its
// client (see conn1.watch) when that comes first.
func (ex *exchange) headDeadline(tmo *Timeouts) time.Time {
	now := time.Now()
	end := now.Add(tmo.Response)
	if ex.c != nil {
		if w := now.Add(watchAfter); w.Before(end) {
			return w
		}
	}
	return end
}

// setReadDeadline sets tc's read deadline without undoing an abort: if the
// request was abandoned meanwhile (its context done, or the engine's
// client gone), the abort is done again.
func (tc *tconn) setReadDeadline(ex *exchange, t time.Time) {
	_ = tc.nc.SetReadDeadline(t)
	if ex.ctx != nil && ex.ctx.Err() != nil || ex.c != nil && ex.c.gone() {
		tc.abort()
	}
}

// readHead reads the target's response head into tc.resp, within the
// response timeout, forwarding informational responses (103 Early Hints)
// to the client as ReverseProxy does.
func (ex *exchange) readHead(tc *tconn, tmo *Timeouts) error {
	if tc.buf == nil {
		tc.buf = make([]byte, targetBufSize)
	}
	end := time.Now().Add(tmo.Response)
	// The engine watches its client connection when the target takes its
	// time (see conn1.watch); until then the first deadline is earlier.
	watchAt := tc.headAt
	tc.headAt = time.Time{}
	if watchAt.IsZero() {
		watchAt = ex.headDeadline(tmo)
		tc.setReadDeadline(ex, watchAt)
	}
	lim := h1.Limits{MaxHeaderBytes: maxResponseHeaderBytes}
	method := s2b(ex.method)
	got := false // a byte of the answer arrived
	for n1xx := 0; ; {
		n, err := h1.ParseResponse(tc.buf[tc.r:tc.w], &tc.resp, method, lim)
		if err == h1.ErrIncomplete {
			err := tc.fill()
			if err != nil && watchAt.Before(end) && isTimeout(err) && !ex.canceled() {
				// The deadline first: a watcher that finds the client
				// gone at once aborts tc, which a later deadline would
				// undo.
				watchAt = end
				tc.setReadDeadline(ex, end)
				ex.c.watch(tc)
				continue
			}
			if err != nil && ex.c != nil && ex.c.gone() {
				return errClientGone
			}
			if err != nil {
				if !got && tc.reused && !isTimeout(err) {
					return &staleError{err}
				}
				return err
			}
			got = true
			continue
		}
		if err != nil {
			return err
		}
		tc.r += n
		resp := &tc.resp
		switch {
		case resp.Framing == h1.FramingTunnel && !ex.upgrade:
			return errors.New("unexpected 101 Switching Protocols: no upgrade was asked for")
		case resp.Status >= 200 || resp.Framing == h1.FramingTunnel:
			// The response body has no deadline (a download may take its
			// time); the relay sets one per read.
			_ = tc.nc.SetReadDeadline(time.Time{})
			return nil
		}
		if n1xx++; n1xx > max1xx {
			return errors.New("too many 1xx informational responses")
		}
		ex.forward1xx(resp)
	}
}

// fill reads more of the response into tc's buffer, moving what is unread
// to its start or growing it when it is full.
func (tc *tconn) fill() error {
	if tc.r > 0 && tc.w == len(tc.buf) {
		tc.w = copy(tc.buf, tc.buf[tc.r:tc.w])
		tc.r = 0
	}
	if tc.w == len(tc.buf) {
		if len(tc.buf) >= maxResponseHeaderBytes {
			return errors.New("response head over " + fmt.Sprint(maxResponseHeaderBytes) + " bytes")
		}
		nb := make([]byte, min(2*len(tc.buf), maxResponseHeaderBytes))
		tc.w = copy(nb, tc.buf[tc.r:tc.w])
		tc.r = 0
		tc.buf = nb
	}
	n, err := tc.nc.Read(tc.buf[tc.w:])
	tc.w += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// forward1xx passes an informational response to the client.
func (ex *exchange) forward1xx(resp *h1.Response) {
	if ex.c != nil {
		ex.c.write1xx(ex, resp)
		return
	}
	if ex.lc != nil {
		ex.lc.write1xx(ex, resp)
		return
	}
	dst := ex.w.Header()
	for i := range resp.Headers {
		f := &resp.Headers[i]
		if !f.Hop {
			dst.Add(string(f.Name), string(f.Value))
		}
	}
	ex.w.WriteHeader(resp.Status)
	clear(dst) // WriteHeader keeps a 1xx's fields
}

// gotResponse runs when a target's final response head has arrived:
// stickiness is remembered (a cookie policy may add its Set-Cookie), then
// the front end relays the response.
func (ex *exchange) gotResponse() {
	ex.remember(&ex.tc.resp)
	if ex.c != nil {
		ex.c.relay(ex)
	} else {
		ex.relayStd()
	}
}

// remember runs when a target's final response head resp has arrived:
// stickiness is remembered (a cookie policy may add its Set-Cookie).
func (ex *exchange) remember(resp *h1.Response) {
	for i := range resp.Headers {
		if f := &resp.Headers[i]; f.Kind == h1.KindOther && len(f.Name) == len("Set-Cookie") && h1.EqualFold(f.Name, "Set-Cookie") {
			ex.respCookies = append(ex.respCookies, b2s(f.Value))
		}
	}
	if resp.Framing != h1.FramingTunnel || ex.upgrade {
		ex.up.Remember(balancer.PickInfo{Source: ex.client}, &ex.sreq, ex.choice, ex)
	}
}

// endAttempt records the end of the response body.
func (ex *exchange) endAttempt() {
	if k := len(ex.attempts); k > 0 && ex.attempts[k-1].response < 0 {
		ex.attempts[k-1].response = time.Since(ex.attempts[k-1].start)
	}
	if ex.obs != nil && ex.obs.obs != nil {
		ex.observeAttemptEnd(ex.upStatus, nil)
	}
}

// releaseTarget ends the use of the target connection once its response
// was read: back to the pool when it was read exactly and the target keeps
// it open, closed otherwise.
func (ex *exchange) releaseTarget(keep bool) {
	tc := ex.tc
	if tc == nil {
		return
	}
	ex.tc = nil
	if keep && !tc.resp.Close && tc.r == tc.w && !tc.closed.Load() {
		tc.p.put(tc)
		return
	}
	tc.close()
}

// fail answers when no target gave a response.
func (ex *exchange) fail(err error) {
	code, why := ex.classify(err)
	switch code {
	case http.StatusServiceUnavailable:
		ex.h.stats.noTarget.Add(1)
	}
	if ex.chosen {
		ex.release()
	}
	if code == http.StatusBadRequest && ex.in != nil && ex.in.ProtoMajor == 2 && !ex.started {
		// A malformed HTTP/2 request body: the stream is reset (ServeHTTP
		// aborts the handler), nothing is sent; the log says 400 and why.
		ex.h.stats.malformedBodies.Add(1)
		ex.status, ex.errText, ex.abort = code, why+" (HTTP/2 stream reset)", true
		ex.finish(code)
		return
	}
	if code == http.StatusBadRequest {
		ex.h.stats.malformedBodies.Add(1)
	}
	ex.answer(code, why)
}

// classify maps a failed request to the proxy's answer.
func (ex *exchange) classify(err error) (int, string) {
	if be := ex.bodyErr(); be != nil {
		var pe *h1.Error
		switch {
		case errors.Is(be, errBodyTooLarge):
			return http.StatusRequestEntityTooLarge, "body over the limit"
		case isTimeout(be):
			return http.StatusRequestTimeout, "request body not received in time"
		case errors.As(be, &pe):
			return pe.Status, "request body: " + pe.Reason
		case errors.Is(be, errMalformedBody):
			return http.StatusBadRequest, "request body: " + be.Error()
		}
		return StatusClientClosed, "client body: " + be.Error()
	}
	if ex.canceled() && ex.h.baseCtx.Err() == nil {
		return StatusClientClosed, "client went away"
	}
	var de *dialError
	switch {
	case errors.Is(err, ErrCircuitOpen):
		return http.StatusServiceUnavailable, err.Error()
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

// bodyErr returns why reading the client's body failed, if it did.
func (ex *exchange) bodyErr() error {
	if ex.stdb != nil {
		return ex.stdb.failure()
	}
	if b, ok := ex.body.src.(*clientBody1); ok {
		return b.err
	}
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded)
}

// errBodyTooLarge is a client body's read error past MaxBodyBytes.
var errBodyTooLarge = errors.New("proxy: request body over the limit")

// errMalformedBody is a client body that ended before its framing said
// (truncated) or that net/http refused: the client gets 400, never a
// target's answer to part of it.
var errMalformedBody = errors.New("malformed request body")

// maxDrain and drainTime bound the background reading of a response whose
// client went away, so that its connection can be reused: a client that
// cancels requests in a loop (HTTP/2 rapid reset) then costs no new
// connection per request. Larger or later answers close the connection.
const (
	maxDrain    = 256 << 10
	drainTime   = 2 * time.Second
	maxDraining = 256 // per proxy
)

// drainAbandoned takes over tc, whose request was written whole but whose
// client went away before the answer: a goroutine reads the answer to its
// end, within maxDrain and drainTime, and returns the connection to the
// pool. It reports false (the caller closes tc) when too many are already
// draining.
func (h *HTTP) drainAbandoned(ex *exchange, tc *tconn) bool {
	if h.draining.Add(1) > maxDraining {
		h.draining.Add(-1)
		return false
	}
	method := ex.method
	if ex.c != nil {
		method = strings.Clone(method) // the engine's buffer is reused
	}
	h.drainWG.Add(1)
	go func() {
		defer h.drainWG.Done()
		defer h.draining.Add(-1)
		if tc.drain(method) {
			h.stats.drained.Add(1)
			tc.p.put(tc)
			return
		}
		tc.close()
	}()
	return true
}

// drain reads a response to a request of method whose client is gone,
// reporting whether it ended within the bounds with the connection
// reusable.
func (tc *tconn) drain(method string) bool {
	if tc.buf == nil {
		tc.buf = make([]byte, targetBufSize)
	}
	_ = tc.nc.SetDeadline(time.Now().Add(drainTime))
	defer func() { _ = tc.nc.SetDeadline(time.Time{}) }()
	read := 0
	for {
		tc.resp.Reset()
		for {
			n, err := h1.ParseResponse(tc.buf[tc.r:tc.w], &tc.resp, s2b(method), h1.Limits{MaxHeaderBytes: maxResponseHeaderBytes})
			if err == h1.ErrIncomplete {
				if tc.fill() != nil {
					return false
				}
				continue
			}
			if err != nil {
				return false
			}
			tc.r += n
			break
		}
		resp := &tc.resp
		if resp.Status < 200 && resp.Framing != h1.FramingTunnel {
			continue
		}
		switch resp.Framing {
		case h1.FramingNone:
			return !resp.Close && tc.r == tc.w
		case h1.FramingLength:
			left := resp.ContentLength
			for {
				k := min(left, int64(tc.w-tc.r))
				tc.r += int(k)
				if left -= k; left == 0 {
					return !resp.Close && tc.r == tc.w
				}
				tc.r, tc.w = 0, 0
				if tc.fill() != nil {
					return false
				}
				if read += tc.w; read > maxDrain {
					return false
				}
			}
		case h1.FramingChunked:
			var ch h1.Chunked
			for {
				n, done, err := ch.Scan(tc.buf[tc.r:tc.w])
				if err != nil {
					return false
				}
				tc.r += n
				if done {
					return !resp.Close && tc.r == tc.w
				}
				if read += n; read > maxDrain || tc.fill() != nil {
					return false
				}
			}
		}
		return false
	}
}
