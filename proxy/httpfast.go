package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// The fast path: most requests (no body or a small one of known length, no
// upgrade, no 100-continue, no trailers; see fastEligible) bypass
// httputil.ReverseProxy and http.Transport. The request is written to the
// target straight from the client's request, with ReverseProxy's header
// rules applied as it is written, and the response is copied back on the
// same goroutine. Profiles showed the per-request goroutine handoffs of
// http.Transport and the copies ReverseProxy makes (the outgoing request
// and its header map, the response header re-added value by value, a client
// trace) costing more than the proxying; everything else (upgrades, large
// and chunked uploads, 100-continue) still goes through ReverseProxy.
// TestHTTPFastPathMatchesReverseProxy sends the same requests both ways
// and compares what targets and clients receive.

// hopHeaders are the hop-by-hop headers removed in both directions, beside
// those the Connection header lists: ReverseProxy's list.
var hopHeaders = [...]string{
	"Connection",
	"Proxy-Connection",
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

// fastEligible reports whether the fast path may serve the client's
// request r: no body or a small one of known length, no upgrade,
// 100-continue or trailers. Everything else goes through ReverseProxy and
// http.Transport.
func fastEligible(r *http.Request, hasBody bool) bool {
	if hasBody {
		if r.ContentLength <= 0 || r.ContentLength > fastBodyLimit {
			return false
		}
	} else if r.ContentLength > 0 {
		return false
	}
	if len(r.TransferEncoding) > 0 || r.Trailer != nil {
		return false
	}
	if _, ok := r.Header["Upgrade"]; ok {
		return false
	}
	if _, ok := r.Header["Expect"]; ok {
		return false
	}
	return true
}

// serveFast forwards rs's request by the fast path, as ReverseProxy would.
func (h *HTTP) serveFast(w http.ResponseWriter, rs *reqState) {
	resp, err := h.try(rs, nil)
	if err != nil {
		h.errorHandler(w, rs, err)
		return
	}
	h.modifyResponse(rs, resp)
	removeHopHeaders(resp.Header)
	dst := w.Header()
	for k, vv := range resp.Header {
		// resp is ours alone: its values are handed over, not copied.
		if old, ok := dst[k]; ok {
			vv = append(old, vv...)
		}
		dst[k] = vv
	}
	announced := len(resp.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		dst.Add("Trailer", strings.Join(keys, ", "))
	}
	w.WriteHeader(resp.StatusCode)
	if err := h.copyBody(w, resp); err != nil {
		resp.Body.Close()
		if rs.in.Context().Value(http.ServerContextKey) == nil {
			// Not under net/http's server, which would recover the
			// panic: ReverseProxy only logs then.
			h.rp.ErrorLog.Printf("proxy: response cut: %v", err)
			return
		}
		panic(http.ErrAbortHandler)
	}
	resp.Body.Close()
	if len(resp.Trailer) > 0 {
		// Chunked, so that net/http does not compute a Content-Length
		// and drop the trailers.
		_ = http.NewResponseController(w).Flush()
	}
	if len(resp.Trailer) == announced {
		for k, vv := range resp.Trailer {
			dst[k] = append(dst[k], vv...)
		}
		return
	}
	for k, vv := range resp.Trailer {
		dst[http.TrailerPrefix+k] = append(dst[http.TrailerPrefix+k], vv...)
	}
}

// copyBody copies the response body to the client with a pooled buffer,
// flushing after every write when the response streams (no length, or
// server-sent events), as ReverseProxy does. It returns write errors and
// read errors other than EOF.
func (h *HTTP) copyBody(w http.ResponseWriter, resp *http.Response) error {
	if resp.Body == http.NoBody {
		return nil
	}
	var flush func() error
	if resp.ContentLength == -1 || isEventStream(resp.Header["Content-Type"]) {
		flush = http.NewResponseController(w).Flush
		_ = flush() // the header now, even if the body takes its time
	}
	bp := h.bufs.Get().(*[copyBufferSize]byte)
	defer h.bufs.Put(bp)
	buf := bp[:]
	for {
		nr, rerr := resp.Body.Read(buf)
		if rerr != nil && rerr != io.EOF && rerr != context.Canceled {
			h.rp.ErrorLog.Printf("proxy: read error during body copy: %v", rerr)
		}
		if nr > 0 {
			nw, werr := w.Write(buf[:nr])
			if werr != nil {
				return werr
			}
			if nw != nr {
				return io.ErrShortWrite
			}
			if flush != nil {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// isEventStream reports whether a Content-Type is text/event-stream.
func isEventStream(ct []string) bool {
	if len(ct) == 0 {
		return false
	}
	v := ct[0]
	if i := strings.IndexByte(v, ';'); i >= 0 {
		v = v[:i]
	}
	return strings.EqualFold(strings.TrimSpace(v), "text/event-stream")
}

// removeHopHeaders removes the hop-by-hop headers of a response.
func removeHopHeaders(hd http.Header) {
	for _, f := range hd["Connection"] {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = strings.TrimSpace(sf); sf != "" {
				hd.Del(sf)
			}
		}
	}
	for _, f := range hopHeaders {
		delete(hd, f)
	}
}

// errBadHeader is a request header the proxy will not forward: a name that
// is not a token or a value with a control character (http.Transport's
// refusal). net/http's server never lets such a request through; another
// server calling ServeHTTP might.
var errBadHeader = errors.New("proxy: invalid header field in the request")

// writeRequest writes rs's request to a target, as ReverseProxy with the
// proxy's rewrite would send it: hop-by-hop headers and those the
// Connection header lists removed, the client's forwarding headers replaced
// by the proxy's, unparsable query parameters dropped, "Te: trailers"
// kept, no default User-Agent added. body is the attempt's body, nil
// without one.
func (h *HTTP) writeRequest(bw *bufio.Writer, rs *reqState, addr string, body io.Reader) error {
	in := rs.in
	if !isToken(in.Method) {
		return errBadHeader
	}
	bw.WriteString(in.Method)
	bw.WriteByte(' ')
	if !writeRequestURI(bw, in.URL) {
		return errBadHeader
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	host := removeZone(in.Host)
	if host == "" {
		host = addr
	}
	if !validHeaderValue(host) {
		return errBadHeader
	}
	bw.WriteString(host)
	bw.WriteString("\r\n")
	f := h.forwarding(rs)
	conn := in.Header["Connection"]
	for k, vv := range in.Header {
		if skipRequestHeader(k, conn) || k == "X-Forwarded-Port" && f.port != nil || k == "X-Real-Ip" && !f.trusted {
			continue
		}
		if !validHeaderName(k) {
			return errBadHeader
		}
		for _, v := range vv {
			if !validHeaderValue(v) {
				return errBadHeader
			}
		}
		if k == "User-Agent" {
			// net/http sends the first User-Agent only, and none when
			// it is empty.
			if vv[0] != "" {
				writeField(bw, k, vv[0])
			}
			continue
		}
		for _, v := range vv {
			writeField(bw, k, v)
		}
	}
	if te := in.Header["Te"]; len(te) > 0 && hasToken(te, "trailers") {
		bw.WriteString("Te: trailers\r\n")
	}
	for _, v := range f.xff {
		writeField(bw, "X-Forwarded-For", v)
	}
	for _, v := range f.proto {
		writeField(bw, "X-Forwarded-Proto", v)
	}
	for _, v := range f.port {
		writeField(bw, "X-Forwarded-Port", v)
	}
	writeField(bw, "X-Forwarded-Host", in.Host)
	if f.forwarded != "" {
		writeField(bw, "Forwarded", f.forwarded)
	}
	switch {
	case in.ContentLength > 0:
		bw.WriteString("Content-Length: ")
		bw.WriteString(strconv.FormatInt(in.ContentLength, 10))
		bw.WriteString("\r\n")
	case in.Method == http.MethodPost || in.Method == http.MethodPut || in.Method == http.MethodPatch:
		bw.WriteString("Content-Length: 0\r\n") // as net/http sends it
	}
	bw.WriteString("\r\n")
	if body != nil && in.ContentLength > 0 {
		n, err := io.Copy(bw, io.LimitReader(body, in.ContentLength))
		if err != nil {
			return err
		}
		if n != in.ContentLength {
			return io.ErrUnexpectedEOF
		}
	}
	return nil
}

// skipRequestHeader reports whether the client's header k is not forwarded
// as it is: hop-by-hop, listed in Connection, a forwarding header the proxy
// replaces, or one writeRequest writes itself.
func skipRequestHeader(k string, conn []string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade",
		"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
		"Host", "Content-Length":
		return true
	}
	return len(conn) > 0 && hasToken(conn, k)
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

// writeField writes one header field.
func writeField(bw *bufio.Writer, k, v string) {
	bw.WriteString(k)
	bw.WriteString(": ")
	bw.WriteString(trimOWS(v))
	bw.WriteString("\r\n")
}

// trimOWS trims the whitespace HTTP allows around a field value (and line
// breaks), as net/http does when it writes a header.
func trimOWS(v string) string {
	for len(v) > 0 && isOWS(v[0]) {
		v = v[1:]
	}
	for len(v) > 0 && isOWS(v[len(v)-1]) {
		v = v[:len(v)-1]
	}
	return v
}

func isOWS(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// removeZone removes an IPv6 zone from a Host ("[fe80::1%en0]:80"), as
// net/http does: a zone means nothing to another host.
func removeZone(host string) string {
	if !strings.HasPrefix(host, "[") {
		return host
	}
	i := strings.LastIndex(host, "]")
	if i < 0 {
		return host
	}
	j := strings.LastIndex(host[:i], "%")
	if j < 0 {
		return host
	}
	return host[:j] + host[i:]
}

// writeRequestURI writes u's request target in origin form, with the
// query's unparsable parameters dropped (ReverseProxy's cleanQueryParams).
// It reports false, writing nothing, for a target with a space or a
// control character, which net/http's server never passes on but another
// caller of ServeHTTP might.
func writeRequestURI(bw *bufio.Writer, u *url.URL) bool {
	q := cleanQuery(u.RawQuery)
	var p string
	if u.Opaque != "" {
		v := *u
		v.RawQuery = ""
		p = v.RequestURI()
	} else if p = u.EscapedPath(); p == "" {
		p = "/"
	}
	if !validRequestTarget(p) || !validRequestTarget(q) {
		return false
	}
	bw.WriteString(p)
	if u.ForceQuery || q != "" {
		bw.WriteByte('?')
		bw.WriteString(q)
	}
	return true
}

// validRequestTarget reports whether s holds no space or control
// character.
func validRequestTarget(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// cleanQuery drops the query parameters Go cannot parse (a semicolon, a
// bad escape), re-encoding the rest, as ReverseProxy does: a target that
// split them differently could otherwise see other parameters than the
// proxy's rules.
func cleanQuery(s string) string {
	for i := 0; i < len(s); {
		switch s[i] {
		case ';':
			v, _ := url.ParseQuery(s)
			return v.Encode()
		case '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				v, _ := url.ParseQuery(s)
				return v.Encode()
			}
			i += 3
		default:
			i++
		}
	}
	return s
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// validHeaderName reports whether k is an HTTP token.
func validHeaderName(k string) bool {
	return isToken(k)
}

// validHeaderValue reports whether v holds no control character other
// than tab.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// got1xx forwards an informational response (103 Early Hints) to the
// client, as ReverseProxy does.
func (rs *reqState) got1xx(code int, hd http.Header) {
	w := rs.w
	dst := w.Header()
	for k, vv := range hd {
		dst[k] = append(dst[k], vv...)
	}
	w.WriteHeader(code)
	clear(dst) // WriteHeader keeps a 1xx's fields
}
