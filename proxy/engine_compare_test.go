package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
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

// referenceProxy serves a plain httputil.ReverseProxy in front of tg, with
// the forwarding headers lbkit sets (X-Forwarded-For, -Proto, -Port,
// -Host): the behaviour lbkit's engine is compared with.
func referenceProxy(t *testing.T, tg *target) string {
	u, err := url.Parse(tg.URL)
	require.NoError(t, err)
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	srv := httptest.NewUnstartedServer(nil)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	srv.Config.Handler = &httputil.ReverseProxy{
		Transport: tr,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", u.Host
			pr.Out.Host = pr.In.Host
			peer, _, _ := net.SplitHostPort(pr.In.RemoteAddr)
			pr.Out.Header["X-Forwarded-For"] = []string{peer}
			pr.Out.Header["X-Forwarded-Proto"] = []string{"http"}
			pr.Out.Header["X-Forwarded-Port"] = []string{port}
			pr.Out.Header["X-Forwarded-Host"] = []string{pr.In.Host}
		},
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// TestHTTPMatchesReverseProxy sends the same requests through lbkit's
// engine, through lbkit as a handler under net/http's server, and through
// a plain httputil.ReverseProxy, and compares what the target received and
// what the client got back, byte for byte but for the proxies' ports: the
// engine applies ReverseProxy's rules (hop-by-hop headers both ways, those
// Connection lists, the forwarding headers, query cleaning, Te: trailers,
// User-Agent, Content-Length, trailers, 1xx, streaming) exactly. Where the
// engine differs on purpose, the case says so.
func TestHTTPMatchesReverseProxy(t *testing.T) {
	tg := echoTarget(t)
	big := strings.Repeat("b", 128<<10)
	cases := []struct {
		name, req string
		engine    string // "": as ReverseProxy; else what the engine answers instead, and why
	}{
		{"get", "GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: app.example\r\nUser-Agent: ua\r\nAccept: */*\r\n\r\n", ""},
		{"hop by hop", "GET /h HTTP/1.1\r\nHost: app.example\r\n" + hdr(
			"Connection", "keep-alive, X-Hop, x-other",
			"X-Hop", "secret", "X-Other", "o",
			"Keep-Alive", "timeout=5",
			"Proxy-Connection", "keep-alive",
			"Proxy-Authorization", "Basic eA==",
			"Te", "deflate, trailers",
			"Trailer", "X-T",
		) + "\r\n", ""},
		{"te without trailers", "GET /h HTTP/1.1\r\nHost: a\r\nTe: deflate\r\n\r\n", ""},
		{"forwarding headers replaced", "GET /f HTTP/1.1\r\nHost: app.example\r\n" + hdr(
			"X-Forwarded-For", "6.6.6.6",
			"X-Forwarded-Proto", "https",
			"X-Forwarded-Host", "evil",
			"X-Forwarded-Port", "1",
			"Forwarded", "for=6.6.6.6",
		) + "\r\n", ""},
		{"query cleaned", "GET /q?a=1;b=2&c=%zz&d=4 HTTP/1.1\r\nHost: a\r\n\r\n", ""},
		{"query kept", "GET /q?a=1&b=%20&c HTTP/1.1\r\nHost: a\r\n\r\n", ""},
		{"empty query", "GET /q? HTTP/1.1\r\nHost: a\r\n\r\n", ""},
		{"escaped path", "GET /a%2Fb/c%20d/%7e HTTP/1.1\r\nHost: a\r\n\r\n", ""},
		{"absolute form", "GET http://app.example/abs?z=1 HTTP/1.1\r\nHost: app.example\r\n\r\n", ""},
		{"absolute form, other host", "GET http://app.example/abs?z=1 HTTP/1.1\r\nHost: other\r\n\r\n",
			"400: a Host that differs from the target's authority is refused, not overridden"},
		{"asterisk", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", ""},
		{"no user agent", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", ""},
		{"empty user agent", "GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: \r\n\r\n", ""},
		{"two user agents", "GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: one\r\nUser-Agent: two\r\n\r\n", ""},
		{"repeated header", "DELETE /d HTTP/1.1\r\nHost: a\r\nX-Multi: 1\r\nX-Multi: 2\r\nX-Empty: \r\n\r\n", ""},
		{"post body", "POST /p HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello", ""},
		{"post empty", "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", ""},
		{"put no length", "PUT /p HTTP/1.1\r\nHost: a\r\n\r\n", ""},
		{"patch", "PATCH /p HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}", ""},
		{"head", "HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n", ""},
		{"http/1.0 without host", "GET /old HTTP/1.0\r\n\r\n",
			"HTTP/1.1 status line and Connection: close: RFC 9110 §6.2 (a server sends its own version)"},
		{"response hop by hop", "GET / HTTP/1.1\r\nHost: a\r\nX-Resp: hop\r\n\r\n", ""},
		{"response trailers", "GET / HTTP/1.1\r\nHost: a\r\nX-Resp: trailer\r\nTe: trailers\r\n\r\n", ""},
		{"event stream", "GET / HTTP/1.1\r\nHost: a\r\nX-Resp: stream\r\n\r\n", ""},
		{"chunked response", "GET / HTTP/1.1\r\nHost: a\r\nX-Resp: chunked\r\n\r\n", ""},
		{"early hints", "GET / HTTP/1.1\r\nHost: a\r\nX-Resp: 103\r\n\r\n", ""},
		{"204", "GET / HTTP/1.1\r\nHost: a\r\nX-Resp: 204\r\n\r\n", ""},
		{"304", "GET / HTTP/1.1\r\nHost: a\r\nX-Resp: 304\r\n\r\n", ""},
		{"chunked request", "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", ""},
		{"large body", "PUT /l HTTP/1.1\r\nHost: a\r\nContent-Length: " + fmt.Sprint(len(big)) + "\r\n\r\n" + big, ""},
	}
	// Where the proxy as a handler differs from ReverseProxy on purpose.
	handlerDiffers := map[string]string{
		"chunked request": "a short body read whole before forwarding goes with its Content-Length",
	}
	engine := configured(t, &HTTP{}, forwardTo(t, upstreamOf(t, "web", tg)))
	handler := configured(t, &HTTP{}, forwardTo(t, upstreamOf(t, "web", tg)))
	engineAddr, handlerAddr, refAddr := serve(t, engine), serveVia(t, handler, "handler"), referenceProxy(t, tg)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := exchangeDump(t, refAddr, tc.req)
			if why, ok := handlerDiffers[tc.name]; ok {
				assert.NotEqual(t, want, exchangeDump(t, handlerAddr, tc.req), "as a handler: %s", why)
			} else {
				assert.Equal(t, want, exchangeDump(t, handlerAddr, tc.req), "as a handler")
			}
			got := exchangeDump(t, engineAddr, tc.req)
			if tc.engine == "" {
				assert.Equal(t, want, got, "the engine")
				assert.NotContains(t, got, "502")
				return
			}
			assert.NotEqual(t, want, got, "the engine differs: %s", tc.engine)
			if code, _, _ := strings.Cut(tc.engine, ":"); len(code) == 3 {
				assert.Contains(t, got, " "+code+" ", tc.engine)
			}
		})
	}
	n := 0
	engine.pools.Range(func(_, v any) bool {
		n += int(v.(*pool).dials.Load())
		return true
	})
	if ls := engine.runningLoops(); ls != nil {
		n += int(ls.dials.Load())
	}
	assert.Positive(t, n, "the engine's own client was used")
}

// TestHTTPHeaderHelpers covers the helpers' edge cases.
func TestHTTPHeaderHelpers(t *testing.T) {
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
	assert.Equal(t, "/~", routingPath("/%7e"), "routing sees the path decoded")
	assert.Equal(t, "/a/b", routingPath("/a/b"))
	assert.Equal(t, "/%zz", routingPath("/%zz"), "an escape that does not decode is matched as it is")
}

// TestHTTPRefusesInjection: a handler chain that calls ServeHTTP with a
// header, method or target net/http's server would have refused gets 502,
// as http.Transport answered it, and nothing reaches the target.
func TestHTTPRefusesInjection(t *testing.T) {
	tg := echoTarget(t)
	for name, spoil := range map[string]func(r *http.Request){
		"value":  func(r *http.Request) { r.Header.Set("X-Bad", "v\r\nX-Injected: 1") },
		"name":   func(r *http.Request) { r.Header["Bad Name"] = []string{"v"} },
		"method": func(r *http.Request) { r.Method = "GET / HTTP/1.1\r\nX-Injected: 1\r\n\r\nGET" },
		"target": func(r *http.Request) { r.URL.RawQuery = "x=1 HTTP/1.1\r\nX-Injected: 1" },
	} {
		t.Run(name, func(t *testing.T) {
			h := configured(t, &HTTP{}, forwardTo(t, upstreamOf(t, "web", tg)))
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				spoil(r)
				h.ServeHTTP(w, r)
			})}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			go srv.Serve(ln)
			code, body := get(t, client(t), "http://"+ln.Addr().String()+"/")
			assert.Equal(t, 502, code)
			assert.NotContains(t, body, "X-Injected")
			require.NoError(t, srv.Close())
			require.NoError(t, h.Close())
		})
	}
}
