package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// echoTarget answers with a dump of the request it received, and with the
// response the request's X-Resp header asks for: hop-by-hop headers,
// trailers, a stream, 1xx, no body.
func echoTarget(t *testing.T) *target {
	return newTarget(t, "echo", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var keys []string
		for k := range r.Header {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s %s\nHost: %s\nContent-Length: %d\nTransfer-Encoding: %v\n", r.Method, r.RequestURI, r.Proto, r.Host, r.ContentLength, r.TransferEncoding)
		for _, k := range keys {
			fmt.Fprintf(&b, "%s: %q\n", k, r.Header[k])
		}
		fmt.Fprintf(&b, "body: %q\n", body)
		hd := w.Header()
		switch r.Header.Get("X-Resp") {
		case "hop":
			hd.Set("Connection", "X-Secret")
			hd.Set("X-Secret", "s")
			hd.Set("Keep-Alive", "timeout=5")
			hd.Set("Proxy-Authenticate", "Basic")
			hd.Set("Upgrade", "foo")
			hd.Set("Te", "x")
			hd["Set-Cookie"] = []string{"a=1", "b=2"}
		case "trailer":
			hd.Set("Trailer", "X-Sum")
			io.WriteString(w, b.String())
			hd.Set("X-Sum", "42")
			hd.Set(http.TrailerPrefix+"X-Late", "late")
			return
		case "stream":
			hd.Set("Content-Type", "text/event-stream; charset=utf-8")
			io.WriteString(w, "data: 1\n\n")
			w.(http.Flusher).Flush()
		case "chunked":
			io.WriteString(w, "part one;")
			w.(http.Flusher).Flush()
		case "103":
			hd.Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			hd.Del("Link")
		case "204":
			w.WriteHeader(http.StatusNoContent)
			return
		case "304":
			w.WriteHeader(http.StatusNotModified)
			return
		}
		io.WriteString(w, b.String())
	})
}

// exchangeDump sends req on a new connection to addr and dumps every response
// (1xx ones included) as the client sees it, with port replaced by PORT.
func exchangeDump(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = io.WriteString(c, req)
	require.NoError(t, err)
	method, _, _ := strings.Cut(req, " ")
	br := bufio.NewReader(c)
	var b strings.Builder
	for {
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		resp.Header.Del("Date")
		var keys []string
		for k := range resp.Header {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		fmt.Fprintf(&b, "%s %s\n", resp.Proto, resp.Status)
		for _, k := range keys {
			fmt.Fprintf(&b, "%s: %q\n", k, resp.Header[k])
		}
		fmt.Fprintf(&b, "ContentLength %d chunked %v\n%s\ntrailer %v\n", resp.ContentLength, resp.TransferEncoding, body, resp.Trailer)
		if resp.StatusCode >= 200 {
			break
		}
	}
	_, port, _ := net.SplitHostPort(addr)
	return strings.ReplaceAll(b.String(), port, "PORT")
}

// TestHTTPFastPathMatchesReverseProxy sends the same requests through the
// fast path and through ReverseProxy with http.Transport (slowOnly), and
// compares what the target received and what the client got back, byte
// for byte but for the proxies' ports: the fast path applies ReverseProxy's
// header rules (hop-by-hop headers both ways, those Connection lists, the
// forwarding headers, query cleaning, Te: trailers, User-Agent, Content-Length,
// trailers, 1xx, streaming) exactly.
func TestHTTPFastPathMatchesReverseProxy(t *testing.T) {
	tg := echoTarget(t)
	big := strings.Repeat("b", fastBodyLimit+1)
	cases := []struct {
		name, req string
		fast      bool
	}{
		{"get", "GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: app.example\r\nUser-Agent: ua\r\nAccept: */*\r\n\r\n", true},
		{"hop by hop", "GET /h HTTP/1.1\r\nHost: app.example\r\n" + hdr(
			"Connection", "keep-alive, X-Hop, x-other",
			"X-Hop", "secret", "X-Other", "o",
			"Keep-Alive", "timeout=5",
			"Proxy-Connection", "keep-alive",
			"Proxy-Authorization", "Basic eA==",
			"Te", "deflate, trailers",
			"Trailer", "X-T",
		) + "\r\n", true},
		{"te without trailers", "GET /h HTTP/1.1\r\nHost: a\r\nTe: deflate\r\n\r\n", true},
		{"forwarding headers replaced", "GET /f HTTP/1.1\r\nHost: app.example\r\n" + hdr(
			"X-Forwarded-For", "6.6.6.6",
			"X-Forwarded-Proto", "https",
			"X-Forwarded-Host", "evil",
			"X-Forwarded-Port", "1",
			"Forwarded", "for=6.6.6.6",
		) + "\r\n", true},
		{"query cleaned", "GET /q?a=1;b=2&c=%zz&d=4 HTTP/1.1\r\nHost: a\r\n\r\n", true},
		{"query kept", "GET /q?a=1&b=%20&c HTTP/1.1\r\nHost: a\r\n\r\n", true},
		{"empty query", "GET /q? HTTP/1.1\r\nHost: a\r\n\r\n", true},
		{"escaped path", "GET /a%2Fb/c%20d/%7e HTTP/1.1\r\nHost: a\r\n\r\n", true},
		{"absolute form", "GET http://app.example/abs?z=1 HTTP/1.1\r\nHost: other\r\n\r\n", true},
		{"asterisk", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", true},
		{"no user agent", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", true},
		{"empty user agent", "GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: \r\n\r\n", true},
		{"two user agents", "GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: one\r\nUser-Agent: two\r\n\r\n", true},
		{"repeated header", "DELETE /d HTTP/1.1\r\nHost: a\r\nX-Multi: 1\r\nX-Multi: 2\r\nX-Empty: \r\n\r\n", true},
		{"post body", "POST /p HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello", true},
		{"post empty", "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", true},
		{"put no length", "PUT /p HTTP/1.1\r\nHost: a\r\n\r\n", true},
		{"patch", "PATCH /p HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}", true},
		{"head", "HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n", true},
		{"http/1.0 without host", "GET /old HTTP/1.0\r\n\r\n", true},
		{"response hop by hop", "GET / HTTP/1.1\r\nHost: a\r\nX-Resp: hop\r\n\r\n", true},
		{"response trailers", "GET / HTTP/1.1\r\nHost: a\r\nX-Resp: trailer\r\nTe: trailers\r\n\r\n", true},
		{"event stream", "GET / HTTP/1.1\r\nHost: a\r\nX-Resp: stream\r\n\r\n", true},
		{"chunked response", "GET / HTTP/1.1\r\nHost: a\r\nX-Resp: chunked\r\n\r\n", true},
		{"early hints", "GET / HTTP/1.1\r\nHost: a\r\nX-Resp: 103\r\n\r\n", true},
		{"204", "GET / HTTP/1.1\r\nHost: a\r\nX-Resp: 204\r\n\r\n", true},
		{"304", "GET / HTTP/1.1\r\nHost: a\r\nX-Resp: 304\r\n\r\n", true},
		{"chunked request", "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", false},
		{"large body", "PUT /l HTTP/1.1\r\nHost: a\r\nContent-Length: " + fmt.Sprint(len(big)) + "\r\n\r\n" + big, false},
	}
	fast := &HTTP{Router: forwardTo(t, upstreamOf(t, "web", tg))}
	slow := &HTTP{Router: forwardTo(t, upstreamOf(t, "web", tg)), slowOnly: true}
	fastAddr, slowAddr := serve(t, fast), serve(t, slow)
	// 100-continue is not compared: through ReverseProxy the client may
	// get net/http's own 100 Continue and the target's, or one, by timing.
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader("PUT /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi")))
	require.NoError(t, err)
	assert.False(t, fastEligible(r, true), "100-continue takes the slow path")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(tc.req)))
			require.NoError(t, err)
			assert.Equal(t, tc.fast, fastEligible(r, r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0), "takes the fast path")
			got, want := exchangeDump(t, fastAddr, tc.req), exchangeDump(t, slowAddr, tc.req)
			assert.Equal(t, want, got)
			assert.NotContains(t, got, "502")
		})
	}
	dials := func(h *HTTP) (n int) {
		h.transports.Range(func(_, v any) bool {
			n += int(v.(*transport).fast.dials.Load())
			return true
		})
		return n
	}
	assert.Positive(t, dials(fast), "the fast path was taken")
	assert.Zero(t, dials(slow), "slowOnly never takes it")
}

// TestHTTPFastPathHeaderCases covers what TestHTTPFastPathMatchesReverseProxy
// cannot send through net/http's server: the helpers' edge cases.
func TestHTTPFastPathHeaderCases(t *testing.T) {
	assert.Equal(t, "c=3", cleanQuery("a=1;b=2&c=3"), "a parameter with a semicolon is dropped whole")
	assert.Equal(t, "a=1&b=%20", cleanQuery("a=1&b=%20"))
	assert.Equal(t, "", cleanQuery("a=%z"))
	assert.Equal(t, "[fe80::1]:80", removeZone("[fe80::1%25en0]:80"))
	assert.Equal(t, "example.com:80", removeZone("example.com:80"))
	assert.Equal(t, "a b", trimOWS(" \ta b\r\n"))
	assert.Equal(t, "\u00a0x\u00a0", trimOWS("\u00a0x\u00a0"), "only HTTP's whitespace is trimmed")
	assert.True(t, validHeaderValue("a\tb"))
	assert.False(t, validHeaderValue("a\r\nX-Injected: 1"))
	assert.False(t, validHeaderValue("a\x00"))
	assert.False(t, validHeaderName("Bad Name"))
	var b strings.Builder
	bw := bufio.NewWriter(&b)
	assert.True(t, writeRequestURI(bw, &url.URL{Path: "/a b", RawQuery: "x=1"}))
	assert.False(t, writeRequestURI(bw, &url.URL{Path: "/", RawQuery: "x=1 HTTP/1.1\r\nX-Injected: 1"}))
	assert.True(t, writeRequestURI(bw, &url.URL{Scheme: "http", Opaque: "//h/o", RawQuery: "q"}))
	bw.Flush()
	assert.Equal(t, "/a%20b?x=1http://h/o?q", b.String(), "nothing written for the refused target; an opaque target as url.URL.RequestURI writes it")
	assert.True(t, isEventStream([]string{"Text/Event-Stream ; charset=utf-8"}))
	assert.False(t, isEventStream([]string{"text/plain"}))
	assert.False(t, isEventStream(nil))
}

// TestHTTPFastPathRefusesInjection: a handler chain that calls ServeHTTP
// with a header net/http's server would have refused gets 502, as
// http.Transport answered it, and nothing reaches the target.
func TestHTTPFastPathRefusesInjection(t *testing.T) {
	tg := echoTarget(t)
	for _, slowOnly := range []bool{false, true} {
		h := &HTTP{Router: forwardTo(t, upstreamOf(t, "web", tg)), slowOnly: slowOnly}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.Header.Set("X-Bad", "v\r\nX-Injected: 1")
			h.ServeHTTP(w, r)
		})}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		go srv.Serve(ln)
		code, body := get(t, client(t), "http://"+ln.Addr().String()+"/")
		assert.Equal(t, 502, code, "slowOnly=%v", slowOnly)
		assert.NotContains(t, body, "X-Injected")
		require.NoError(t, srv.Close())
		require.NoError(t, h.Close())
	}
}
