package h1

import (
	"strings"
	"testing"
)

func parseOK(t *testing.T, in string) *Request {
	t.Helper()
	r := new(Request)
	n, err := ParseRequest([]byte(in), r, Limits{})
	if err != nil || n != len(in) {
		t.Fatalf("ParseRequest(%q) = %d, %v; want %d, nil", in, n, err, len(in))
	}
	return r
}

func TestRequestFields(t *testing.T) {
	r := parseOK(t, "POST /p?q=1 HTTP/1.1\r\nHost: Example.com:8080\r\nUser-Agent:  x y \t\r\n"+
		"Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nContent-Length: 3\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n")
	if string(r.Method) != "POST" || string(r.Target) != "/p?q=1" || string(r.Path) != "/p?q=1" || r.Form != FormOrigin || r.Minor != 1 {
		t.Fatalf("request line: %q %q %q %v %d", r.Method, r.Target, r.Path, r.Form, r.Minor)
	}
	if string(r.Host) != "Example.com:8080" {
		t.Errorf("Host %q", r.Host)
	}
	if r.Framing != FramingLength || r.ContentLength != 3 || r.Chunked || r.Close || r.Upgrade || r.Expect100 {
		t.Errorf("framing %v cl %d chunked %v close %v upgrade %v expect %v", r.Framing, r.ContentLength, r.Chunked, r.Close, r.Upgrade, r.Expect100)
	}
	want := []struct {
		name, value string
		kind        Kind
		hop         bool
	}{
		{"Host", "Example.com:8080", KindHost, false},
		{"User-Agent", "x y", KindOther, false},
		{"Connection", "keep-alive, X-Hop", KindConnection, true},
		{"X-Hop", "1", KindOther, true},
		{"Keep-Alive", "5", KindKeepAlive, true},
		{"Content-Length", "3", KindContentLength, false},
		{"X-Forwarded-For", "1.2.3.4", KindXForwardedFor, false},
	}
	if len(r.Headers) != len(want) {
		t.Fatalf("%d fields, want %d", len(r.Headers), len(want))
	}
	for i, w := range want {
		h := r.Headers[i]
		if string(h.Name) != w.name || string(h.Value) != w.value || h.Kind != w.kind || h.Hop != w.hop {
			t.Errorf("field %d: %q: %q %v %v, want %+v", i, h.Name, h.Value, h.Kind, h.Hop, w)
		}
	}
}

func TestRequestConnection(t *testing.T) {
	for _, c := range []struct {
		in                        string
		close, upgrade, expect100 bool
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", false, false, false},
		{"GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n", true, false, false},
		{"GET / HTTP/1.1\r\nHost: a\r\nConnection: x\r\nConnection: close\r\n\r\n", true, false, false},
		{"GET / HTTP/1.0\r\n\r\n", true, false, false},
		{"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", false, false, false},
		{"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", true, false, false},
		{"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", false, true, false},
		{"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n", false, false, false},
		{"GET / HTTP/1.0\r\nUpgrade: websocket\r\nConnection: upgrade, keep-alive\r\n\r\n", false, false, false},
		{"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n", false, false, true},
		{"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n", true, false, false},
	} {
		r := parseOK(t, c.in)
		if r.Close != c.close || r.Upgrade != c.upgrade || r.Expect100 != c.expect100 {
			t.Errorf("%q: close %v upgrade %v expect100 %v, want %v %v %v", c.in, r.Close, r.Upgrade, r.Expect100, c.close, c.upgrade, c.expect100)
		}
	}
}

func TestRequestTargetForms(t *testing.T) {
	for _, c := range []struct {
		in, host, path string
		form           Form
	}{
		{"GET /x HTTP/1.1\r\nHost: h\r\n\r\n", "h", "/x", FormOrigin},
		{"GET //x HTTP/1.1\r\nHost: h\r\n\r\n", "h", "//x", FormOrigin},
		{"GET http://h/x?y HTTP/1.1\r\nHost: h\r\n\r\n", "h", "/x?y", FormAbsolute},
		{"GET https://H:1 HTTP/1.1\r\nHost: h:1\r\n\r\n", "H:1", "/", FormAbsolute},
		{"GET http://h HTTP/1.0\r\n\r\n", "h", "/", FormAbsolute},
		{"OPTIONS http://h HTTP/1.1\r\nHost: h\r\n\r\n", "h", "*", FormAbsolute},
		{"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", "h", "*", FormAsterisk},
		{"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", "h:443", "", FormAuthority},
		{"CONNECT [::1]:443 HTTP/1.0\r\n\r\n", "[::1]:443", "", FormAuthority},
		{"GET / HTTP/1.0\r\n\r\n", "", "/", FormOrigin},
	} {
		r := parseOK(t, c.in)
		if string(r.Host) != c.host || string(r.Path) != c.path || r.Form != c.form {
			t.Errorf("%q: host %q path %q form %v, want %q %q %v", c.in, r.Host, r.Path, r.Form, c.host, c.path, c.form)
		}
	}
}

func TestRequestReuse(t *testing.T) {
	var r Request
	big := "GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X: y\r\n", 20) + "\r\n"
	if _, err := ParseRequest([]byte(big), &r, Limits{}); err != nil {
		t.Fatal(err)
	}
	small := "GET /s HTTP/1.0\r\n\r\n"
	if _, err := ParseRequest([]byte(small), &r, Limits{}); err != nil {
		t.Fatal(err)
	}
	if len(r.Headers) != 0 || r.Host != nil || string(r.Target) != "/s" || cap(r.Headers) < 21 {
		t.Errorf("reused Request kept state: %d fields, host %q, cap %d", len(r.Headers), r.Host, cap(r.Headers))
	}
	if got := r.Headers[:cap(r.Headers)][0].Name; got != nil {
		t.Errorf("reused Request holds on to the old buffer: %q", got)
	}
}

func TestRequestAllocs(t *testing.T) {
	in := []byte(browserRequest)
	var r Request
	if _, err := ParseRequest(in, &r, Limits{}); err != nil {
		t.Fatal(err)
	}
	if a := testing.AllocsPerRun(100, func() { _, _ = ParseRequest(in, &r, Limits{}) }); a != 0 {
		t.Errorf("%v allocations per parse", a)
	}
	bad := []byte("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n")
	if a := testing.AllocsPerRun(100, func() { _, _ = ParseRequest(bad, &r, Limits{}) }); a != 0 {
		t.Errorf("%v allocations per refusal", a)
	}
}

// TestLimitsExact checks that MaxHeaderBytes counts the whole head, and
// that a full buffer without a head is an error, not ErrIncomplete.
func TestLimitsExact(t *testing.T) {
	in := "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
	var r Request
	if n, err := ParseRequest([]byte(in), &r, Limits{MaxHeaderBytes: len(in)}); err != nil || n != len(in) {
		t.Errorf("head of exactly MaxHeaderBytes: %d, %v", n, err)
	}
	for k := 1; k < len(in); k++ {
		_, err := ParseRequest([]byte(in[:k]), &r, Limits{MaxHeaderBytes: k})
		if s := statusOf(t, err); s != 431 {
			t.Errorf("%d bytes of a longer head, limit %d: %v, want 431", k, k, err)
		}
		_, err = ParseRequest([]byte(in[:k]), &r, Limits{MaxHeaderBytes: k + 1})
		if err != ErrIncomplete {
			t.Errorf("%d bytes, limit %d: %v, want ErrIncomplete", k, k+1, err)
		}
	}
	// Bytes after the head do not count.
	if _, err := ParseRequest([]byte(in+"more bytes"), &r, Limits{MaxHeaderBytes: len(in)}); err != nil {
		t.Errorf("bytes after the head: %v", err)
	}
	// 414 as soon as the target is too long, before the line ends.
	long := "GET /" + strings.Repeat("a", 100)
	if _, err := ParseRequest([]byte(long), &r, Limits{MaxURILength: 50}); statusOf(t, err) != 414 {
		t.Errorf("long target, line incomplete: %v, want 414", err)
	}
	if _, err := ParseRequest([]byte("GET /"+strings.Repeat("a", 49)+" HTTP/1.1\r\nHost: a\r\n\r\n"), &r, Limits{MaxURILength: 50}); err != nil {
		t.Errorf("target of exactly MaxURILength: %v", err)
	}
	// MaxHeaders is exact too.
	h := "GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\nY: 2\r\n\r\n"
	if _, err := ParseRequest([]byte(h), &r, Limits{MaxHeaders: 3}); err != nil {
		t.Errorf("3 fields, limit 3: %v", err)
	}
	if _, err := ParseRequest([]byte(h), &r, Limits{MaxHeaders: 2}); statusOf(t, err) != 431 {
		t.Errorf("3 fields, limit 2: %v, want 431", err)
	}
}

// TestEarlyRefusal checks that a bad request line is refused before the
// head is complete: a client cannot hold a connection with one.
func TestEarlyRefusal(t *testing.T) {
	for _, c := range []struct {
		in     string
		status int
	}{
		{"G@", 400},
		{"GET /\x00", 400},
		{"GET / HTTP/2.0\r\n", 505},
		{"GET / HTTX", 400},
		{"GET / HTTP/1.1\n", 400},
		{"GET / HTTP/1.1\r\nHost: a\n", 400},
		{"\r\n", 400},
		{"GET / HTTP/1.1\r\nHost: a\r\n", incomplete},
		{"GET / HTTP/1.1\r", incomplete},
		{"GET / HTTP/1.", incomplete},
	} {
		var r Request
		_, err := ParseRequest([]byte(c.in), &r, Limits{})
		if s := statusOf(t, err); s != c.status {
			t.Errorf("%q: %v, want %d", c.in, err, c.status)
		}
	}
}

func TestSkipEmptyLines(t *testing.T) {
	for in, want := range map[string]int{"": 0, "\r": 0, "\r\n": 2, "\r\n\r\nGET": 4, "\r\n\r\n\r\n": 4, "\n": 0, "\r\nGET": 2} {
		if got := SkipEmptyLines([]byte(in)); got != want {
			t.Errorf("SkipEmptyLines(%q) = %d, want %d", in, got, want)
		}
	}
}
