package proxy

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// FuzzHTTPRequest sends arbitrary bytes to a real proxy on loopback, in
// front of a real target, and checks that whatever a client sends, the
// proxy answers with a well-formed response of an expected status or closes
// the connection, and never panics (net/http would recover the panic and
// log it: the error log is watched).
func FuzzHTTPRequest(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AA\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.2.3.4, garbage,, [::1]:80\r\nForwarded: for=\"[::1]\"\r\n\r\n",
		"GET /../../etc/passwd?x=%00 HTTP/1.0\r\n\r\n",
		"GET http://other.example/abs HTTP/1.1\r\nHost: x\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	tg := newTarget(f, "a", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	})
	var errs logBuffer
	rt, err := NewRouter(Action{Forward: upstreamOf(f, "web", tg)},
		Rule{Host: "*.example", Path: "/abs", Action: Action{Redirect: &Redirect{Scheme: "https"}}},
		Rule{Path: "~^/etc/", Action: Action{Fixed: &FixedResponse{Status: 404}}})
	if err != nil {
		f.Fatal(err)
	}
	h := configured(f, &HTTP{MaxURILength: 512, MaxBodyBytes: 1 << 10, ErrorLog: slog.New(slog.NewTextHandler(&errs, nil))}, rt, Timeouts{Request: time.Second, Response: time.Second})
	addr := serve(f, h)
	want := map[int]bool{200: true, 301: true, 400: true, 403: true, 404: true, 408: true, 413: true,
		405: true, 414: true, 417: true, 421: true, 431: true, 501: true, 502: true, 503: true, 504: true, 505: true}

	f.Fuzz(func(t *testing.T, req []byte) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write(req)
		c.(*net.TCPConn).CloseWrite() // no more bytes: incomplete requests end now
		br := bufio.NewReader(c)
		for {
			if _, err := br.Peek(1); err != nil {
				break // the proxy closed the connection
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("malformed response to %q: %v", req, err)
			}
			if !want[resp.StatusCode] && resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("status %d for %q", resp.StatusCode, req)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusSwitchingProtocols {
				break
			}
		}
		if s := errs.String(); strings.Contains(s, "panic") {
			t.Fatalf("panic serving %q: %s", req, s)
		}
	})
}
