package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lbkit/lbkit/proxy/internal/h1"
	"github.com/lbkit/lbkit/sticky"
)

// The net/http front end: ServeHTTP makes an exchange of an *http.Request
// and relays the target's response through the http.ResponseWriter. It
// serves HTTP/2 connections (net/http's HTTP/2 server calls it) and
// programs that mount the proxy in a server of their own. What it decides
// is decided by the forwarding core, as for the engine.

// ServeHTTP proxies one request. It makes HTTP an http.Handler, for use
// behind another server; Serve's HTTP/2 connections use it too. When the
// configuration is invalid (see Validate) it answers 500, and logs the
// error to ErrorLog (slog.Default() if nil) the first time.
func (h *HTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.setup() != nil {
		h.misconfigured(w)
		return
	}
	h.handlers.add()
	defer h.handlers.done()
	ex := h.getExchange()
	defer h.putExchange(ex)
	ex.w, ex.in, ex.ctx = w, r, r.Context()
	ex.start = time.Now()
	ex.peer, _ = netip.ParseAddrPort(r.RemoteAddr)
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok {
		ex.port = strconv.Itoa(la.Port)
	}
	ex.peer = netip.AddrPortFrom(ex.peer.Addr().Unmap(), ex.peer.Port())
	ex.tls = r.TLS
	ex.scheme = "http"
	if r.TLS != nil {
		ex.scheme = "https"
	}
	ex.method, ex.host, ex.proto = r.Method, r.Host, r.Proto
	ex.head = r.Method == http.MethodHead
	ex.path = r.URL.EscapedPath()
	if r.URL.Opaque != "" {
		v := *r.URL
		v.RawQuery = ""
		ex.path = v.RequestURI()
	}
	if ex.path == "" {
		ex.path = "/"
	}
	ex.query = cleanQuery(r.URL.RawQuery)
	ex.target = ex.path
	if ex.query != "" || r.URL.ForceQuery {
		ex.target += "?" + ex.query
	}
	ex.fields = stdFields(ex.fields[:0], r.Header)
	ex.xff = r.Header["X-Forwarded-For"]
	ex.fwd = r.Header["Forwarded"]
	ex.cookies = r.Header["Cookie"]
	ex.ua = r.Header.Get("User-Agent")
	ex.referer = r.Header.Get("Referer")
	ex.xrid = r.Header.Get("X-Request-Id")
	if r.ProtoMajor == 1 {
		up := r.Header["Upgrade"]
		ex.upgrade = len(up) > 0 && !hasToken(up, "h2c") && hasToken(r.Header["Connection"], "upgrade")
	}
	if r.Body != nil && r.Body != http.NoBody {
		sb := &stdBody{src: r.Body, w: w, limit: h.maxBodyBytes(), deadline: ex.start.Add(h.tmo.Load().Request), ctx: r.Context()}
		ex.stdb = sb
		switch {
		case r.ContentLength > 0:
			ex.body = reqBody{mode: bodyLength, n: r.ContentLength, src: sb}
		case r.ContentLength < 0:
			ex.body = reqBody{mode: bodyStream, src: sb}
		}
	}
	ex.sreq = sticky.Request{Cookies: ex.cookies, TLS: r.TLS != nil}
	if ex.body.mode != bodyNone && !ex.prereadStd() {
		h.finishAbort(ex, r)
		return
	}
	defer func() {
		if ex.body.replay != nil {
			ex.body.replay.detach()
		}
	}()
	h.serveExchange(ex)
	h.finishAbort(ex, r)
}

// finishAbort makes net/http reset the stream (or close the connection)
// when the exchange asked for it.
func (h *HTTP) finishAbort(ex *exchange, r *http.Request) {
	if ex.abort {
		// The response was cut half-way, or the request's body was
		// malformed with nothing sent: let net/http reset the stream or
		// close the connection, as ReverseProxy does.
		if r.Context().Value(http.ServerContextKey) != nil {
			panic(http.ErrAbortHandler)
		}
	}
}

// prereadStd reads a ServeHTTP request's body into memory when it is at
// most maxPreread bytes, as the engine does: a body that turns out
// malformed (an HTTP/2 stream whose DATA do not match its Content-Length)
// is refused before any target sees the request, and the body goes with
// its head in one write and can be sent again on a retry. A longer body
// streams, what was read going first. It reports false when it answered
// (or aborted) the request itself.
func (ex *exchange) prereadStd() bool {
	b := &ex.body
	if b.mode == bodyLength && b.n > maxPreread {
		return true
	}
	sb := ex.stdb
	if ex.pre == nil {
		ex.pre = ex.h.getPreBuf()
	}
	buf := ex.pre[:]
	n := 0
	var err error
	for n < len(buf) && err == nil {
		var m int
		m, err = sb.Read(buf[n:])
		n += m
	}
	if err == nil {
		// Full: the end of the body is still to come (a Content-Length
		// body of exactly maxPreread bytes ends now).
		var one [1]byte
		var m int
		m, err = sb.Read(one[:])
		if m > 0 {
			b.src = io.MultiReader(bytes.NewReader(append(buf[:n:n], one[0])), sb)
			return true
		}
	}
	if err != io.EOF {
		ex.fail(err)
		return false
	}
	if b.mode == bodyLength && int64(n) != b.n {
		ex.fail(fmt.Errorf("%w: %d bytes of %d", errMalformedBody, n, b.n))
		return false
	}
	ex.inl.b = buf[:n]
	*b = reqBody{mode: bodyLength, n: int64(n), src: &ex.inl}
	if n == 0 {
		*b = reqBody{}
	}
	return true
}

// stdFields appends hd's fields, as the engine's parser would have
// described them: kinds, and hop-by-hop ones marked (the standard ones and
// those Connection lists).
func stdFields(dst []h1.Header, hd http.Header) []h1.Header {
	conn := hd["Connection"]
	for k, vv := range hd {
		kind := h1.KindOf(k)
		hop := h1.HopKind(kind) || len(conn) > 0 && kind == h1.KindOther && hasToken(conn, k)
		for _, v := range vv {
			dst = append(dst, h1.Header{Name: s2b(k), Value: s2b(v), Kind: kind, Hop: hop})
		}
	}
	return dst
}

// hasToken reports whether a comma-separated header value lists token,
// case-insensitively.
func hasToken(vv []string, token string) bool {
	for _, v := range vv {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// relayStd writes the target's response through the ResponseWriter.
func (ex *exchange) relayStd() {
	tc := ex.tc
	resp := &tc.resp
	w := ex.w
	ex.started = true
	dst := w.Header()
	for i := range resp.Headers {
		f := &resp.Headers[i]
		if f.Hop || f.Kind == h1.KindContentLength {
			continue
		}
		k := http.CanonicalHeaderKey(string(f.Name))
		dst[k] = append(dst[k], string(f.Value))
	}
	if len(ex.addCookies) > 0 {
		dst["Set-Cookie"] = append(dst["Set-Cookie"], ex.addCookies...)
	}
	framing := resp.Framing
	if ex.head && framing != h1.FramingTunnel {
		framing = h1.FramingNone
	}
	switch framing {
	case h1.FramingLength:
		dst["Content-Length"] = []string{strconv.FormatInt(resp.ContentLength, 10)}
	case h1.FramingNone:
		if resp.ContentLength >= 0 && resp.Status >= 200 && resp.Status != http.StatusNoContent {
			dst["Content-Length"] = []string{strconv.FormatInt(resp.ContentLength, 10)}
		}
	case h1.FramingTunnel:
		ex.tunnelStd()
		return
	}
	w.WriteHeader(resp.Status)
	stop := context.AfterFunc(ex.ctx, tc.abort)
	err := ex.copyStd(framing)
	if !stop() && err == nil {
		err = context.Canceled
	}
	if err != nil {
		if ex.canceled() {
			ex.errText = "client went away: " + err.Error()
			ex.endAttempt()
			ex.releaseTarget(false)
			ex.finish(StatusClientClosed)
			return
		}
		ex.errText = "response cut: " + err.Error()
		ex.abort = true
		ex.endAttempt()
		ex.releaseTarget(false)
		ex.finish(ex.upStatus)
		return
	}
	ex.endAttempt()
	ex.releaseTarget(framing != h1.FramingUntilClose)
	ex.finish(ex.upStatus)
}

// copyStd copies the response body to the ResponseWriter, flushing after
// every write when the response streams (no length, or server-sent
// events), as ReverseProxy does.
func (ex *exchange) copyStd(framing h1.Framing) error {
	tc := ex.tc
	resp := &tc.resp
	w := ex.w
	var flush func() error
	if framing == h1.FramingChunked || framing == h1.FramingUntilClose || isEventStream(resp) {
		flush = http.NewResponseController(w).Flush
		_ = flush() // the header now, even if the body takes its time
	}
	tmo := ex.h.tmo.Load()
	read := func() error {
		if tc.r > 0 {
			tc.w = copy(tc.buf, tc.buf[tc.r:tc.w])
			tc.r = 0
		}
		if tc.w == len(tc.buf) {
			nb := make([]byte, 2*len(tc.buf))
			tc.w = copy(nb, tc.buf[:tc.w])
			tc.buf = nb
		}
		_ = tc.nc.SetReadDeadline(time.Now().Add(tmo.Response))
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
	write := func(b []byte) error {
		if len(b) == 0 {
			return nil
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		ex.sent += int64(len(b))
		if flush != nil {
			return flush()
		}
		return nil
	}
	switch framing {
	case h1.FramingLength:
		left := resp.ContentLength
		for {
			k := int(min(int64(tc.w-tc.r), left))
			if err := write(tc.buf[tc.r : tc.r+k]); err != nil {
				return err
			}
			tc.r += k
			if left -= int64(k); left == 0 {
				return nil
			}
			if err := read(); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return err
			}
		}
	case h1.FramingChunked:
		var ch h1.Chunked
		var trailer []h1.Header
		ch.OnTrailer = func(f h1.Header) { trailer = append(trailer, f) }
		for {
			n, data, done, err := ch.Decode(tc.buf[tc.r:tc.w])
			if err != nil {
				return err
			}
			if err := write(data); err != nil {
				return err
			}
			tc.r += n
			if done {
				for _, f := range trailer {
					k := http.TrailerPrefix + http.CanonicalHeaderKey(string(f.Name))
					w.Header()[k] = append(w.Header()[k], string(f.Value))
				}
				return nil
			}
			if n > 0 {
				continue
			}
			if err := read(); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return err
			}
		}
	case h1.FramingUntilClose:
		for {
			if err := write(tc.buf[tc.r:tc.w]); err != nil {
				return err
			}
			tc.r, tc.w = 0, 0
			if err := read(); err != nil {
				if err == io.EOF {
					return nil
				}
				return err
			}
		}
	}
	return nil
}

// isEventStream reports whether a response is text/event-stream.
func isEventStream(resp *h1.Response) bool {
	for i := range resp.Headers {
		f := &resp.Headers[i]
		if len(f.Name) == len("Content-Type") && h1.EqualFold(f.Name, "Content-Type") {
			v := string(f.Value)
			if i := strings.IndexByte(v, ';'); i >= 0 {
				v = v[:i]
			}
			return strings.EqualFold(strings.TrimSpace(v), "text/event-stream")
		}
	}
	return false
}

// tunnelStd takes over the client connection after a 101 Switching
// Protocols (a WebSocket through a server that allows it) and relays bytes
// both ways.
func (ex *exchange) tunnelStd() {
	tc := ex.tc
	ex.tc = nil
	defer tc.close()
	cc, brw, err := http.NewResponseController(ex.w).Hijack()
	if err != nil {
		ex.errText = "upgrade: " + err.Error()
		ex.finish(http.StatusBadGateway)
		return
	}
	defer cc.Close()
	ex.finish(http.StatusSwitchingProtocols)
	untrack := ex.choice.st.track(tc.nc)
	defer untrack()
	resp := &tc.resp
	hb, _ := h1.AppendStatusLine(nil, resp.Status, resp.Reason)
	for i := range resp.Headers {
		if f := &resp.Headers[i]; !f.Hop || f.Kind == h1.KindUpgrade {
			hb = appendRaw(hb, f)
		}
	}
	hb = append(hb, "Connection: Upgrade\r\n\r\n"...)
	hb = append(hb, tc.buf[tc.r:tc.w]...)
	if _, err := cc.Write(hb); err != nil {
		return
	}
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		if _, err := tc.nc.Write(b); err != nil {
			return
		}
	}
	_ = cc.SetDeadline(time.Time{})
	errc := make(chan error, 1)
	go func() {
		_, err := io.Copy(tc.nc, cc)
		closeWrite(tc.nc)
		errc <- err
	}()
	_, err = io.Copy(cc, tc.nc)
	closeWrite(cc)
	if err != nil {
		cc.Close()
		tc.nc.Close()
	}
	<-errc
}

// stdBody wraps a ServeHTTP request's body: it enforces MaxBodyBytes on
// bodies of unknown length, bounds the wait for the body by the request
// timeout (a read deadline on the connection, set on first read and
// cleared at the end, so bodiless requests pay nothing), and remembers why
// reading failed, so that the answer can be 400, 408 or 413 rather than
// 502, and a malformed body is never answered with a target's response to
// part of it.
type stdBody struct {
	src      io.ReadCloser
	w        http.ResponseWriter
	ctx      context.Context
	limit    int64
	deadline time.Time

	mu    sync.Mutex // guards the fields below
	rc    *http.ResponseController
	n     int64
	armed bool
	done  bool
	err   error
}

func (b *stdBody) Read(p []byte) (int, error) {
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
		if b.ctx.Err() == nil && !isTimeout(err) && !errors.Is(err, errBodyTooLarge) {
			// The client is still there: what it sent could not be
			// read as a body (net/http refused its chunked framing, an
			// HTTP/2 stream ended short of its Content-Length).
			err = errors.Join(errMalformedBody, err)
		}
		b.err = err
	}
	return n, err
}

// failure returns why reading failed, if it did.
func (b *stdBody) failure() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

func (b *stdBody) disarmLocked() {
	if b.armed && !b.done {
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
}
