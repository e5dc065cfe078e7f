package h1

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/textproto"
	"slices"
	"testing"
)

// The differential fuzz targets feed the same bytes to this package and to
// net/http, and fail whenever this package accepts a message that net/http
// refuses or frames differently. Refusing what net/http accepts is allowed:
// this parser is stricter on purpose (see doc.go).
//
// What is compared, for a message both accept: the method, the
// request-target, the version, the Host, the status code and reason, the
// body's framing (net/http's ContentLength: -1 for chunked and
// read-until-close, 0 without a body; chunked or not), the decoded body,
// the number of bytes the message takes (head, body and trailers: what a
// pipelined next message starts after), whether the connection closes
// after it, and the fields.
//
// The normalisations the comparison makes, because net/http changes what
// it read:
//   - field names are compared canonicalised (textproto.CanonicalMIMEHeaderKey);
//   - Transfer-Encoding is left out: net/http removes it from Header;
//   - Connection is left out of a response's fields: net/http removes it
//     when it holds close (Close is compared instead);
//   - Cache-Control is left out: net/http makes one up from Pragma: no-cache;
//   - Trailer is left out of a chunked message's fields: net/http moves it
//     to Trailer;
//   - Host is left out of a request's fields: net/http moves it to
//     Request.Host (which is compared);
//   - a request without body has ContentLength 0 in net/http, -1 here.

// observed is what one parser made of a message.
type observed struct {
	method, target, host string
	minor, status        int
	reason               string
	contentLength        int64 // in net/http's terms
	chunked, close       bool
	body                 []byte
	consumed             int
	header               http.Header
}

// ours parses a request (method "") or the response to method, and its
// body, with this package. ok is false for a refused or incomplete message.
func ours(data []byte, method string) (o observed, ok bool) {
	var (
		n       int
		err     error
		framing Framing
		cl      int64
		hs      []Header
	)
	if method == "" {
		var r Request
		n, err = ParseRequest(data, &r, Limits{})
		if err != nil {
			return o, false
		}
		o.method, o.target, o.host, o.minor = string(r.Method), string(r.Target), string(r.Host), r.Minor
		o.chunked, o.close = r.Chunked, r.Close
		framing, cl, hs = r.Framing, r.ContentLength, r.Headers
		o.contentLength = max(cl, 0)
		if r.Chunked {
			o.contentLength = -1
		}
	} else {
		var r Response
		n, err = ParseResponse(data, &r, []byte(method), Limits{})
		if err != nil {
			return o, false
		}
		o.status, o.reason, o.minor = r.Status, string(r.Reason), r.Minor
		o.chunked, o.close = r.Chunked, r.Close
		framing, cl, hs = r.Framing, r.ContentLength, r.Headers
		switch {
		case method == "HEAD":
			o.contentLength = cl
		case r.Status < 200 || r.Status == 204 || r.Status == 304:
			o.contentLength = 0
		case framing == FramingLength || framing == FramingNone:
			o.contentLength = cl
		default:
			o.contentLength = -1
		}
	}
	o.header = http.Header{}
	for _, h := range hs {
		k := textproto.CanonicalMIMEHeaderKey(string(h.Name))
		o.header[k] = append(o.header[k], string(h.Value))
	}
	switch framing {
	case FramingLength:
		if int64(len(data)-n) < cl {
			return o, false
		}
		o.body = data[n : n+int(cl)]
		n += int(cl)
	case FramingUntilClose:
		o.body = data[n:]
		n = len(data)
	case FramingChunked:
		var c Chunked
		for {
			k, d, done, err := c.Decode(data[n:])
			n += k
			o.body = append(o.body, d...)
			if err != nil || !done && k == 0 {
				return o, false
			}
			if done {
				break
			}
		}
	}
	o.consumed = n
	return o, true
}

// theirs parses the same with net/http: ReadRequest or ReadResponse, then
// the body read to EOF.
func theirs(data []byte, method string) (o observed, err error) {
	src := bytes.NewReader(data)
	br := bufio.NewReaderSize(src, 64<<10)
	var body io.ReadCloser
	if method == "" {
		req, err := http.ReadRequest(br)
		if err != nil {
			return o, err
		}
		o.method, o.target, o.host, o.minor = req.Method, req.RequestURI, req.Host, req.ProtoMinor
		o.contentLength, o.close = req.ContentLength, req.Close
		o.chunked = slices.Equal(req.TransferEncoding, []string{"chunked"})
		o.header, body = req.Header, req.Body
		if req.ProtoMajor != 1 {
			o.minor = -1
		}
	} else {
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			return o, err
		}
		o.status, o.minor = resp.StatusCode, resp.ProtoMinor
		o.reason = resp.Status
		if len(o.reason) >= 4 {
			o.reason = o.reason[4:]
		} else {
			o.reason = ""
		}
		o.contentLength, o.close = resp.ContentLength, resp.Close
		o.chunked = slices.Equal(resp.TransferEncoding, []string{"chunked"})
		o.header, body = resp.Header, resp.Body
		if resp.ProtoMajor != 1 {
			o.minor = -1
		}
	}
	o.body, err = io.ReadAll(body)
	if err != nil {
		return o, err
	}
	o.consumed = len(data) - src.Len() - br.Buffered()
	return o, nil
}

// compare fails t if ours accepted data and net/http refused it or read it
// differently.
func compare(t *testing.T, data []byte, method string) {
	o, ok := ours(data, method)
	if !ok {
		return
	}
	n, err := theirs(data, method)
	if err != nil {
		t.Fatalf("accepted what net/http refuses (%v): %q", err, data)
	}
	diff := func(what string, a, b any) {
		t.Helper()
		t.Fatalf("%s differs: ours %#v, net/http %#v; message %q", what, a, b, data)
	}
	switch {
	case o.method != n.method:
		diff("method", o.method, n.method)
	case o.target != n.target:
		diff("target", o.target, n.target)
	case o.host != n.host:
		diff("host", o.host, n.host)
	case o.minor != n.minor:
		diff("minor version", o.minor, n.minor)
	case o.status != n.status:
		diff("status", o.status, n.status)
	case method != "" && o.reason != n.reason:
		diff("reason", o.reason, n.reason)
	case o.contentLength != n.contentLength:
		diff("content length", o.contentLength, n.contentLength)
	case o.chunked != n.chunked:
		diff("chunked", o.chunked, n.chunked)
	case !bytes.Equal(o.body, n.body):
		diff("body", string(o.body), string(n.body))
	case o.consumed != n.consumed:
		diff("bytes consumed", o.consumed, n.consumed)
	case o.close != n.close:
		diff("close", o.close, n.close)
	}
	skip := []string{"Transfer-Encoding", "Cache-Control"}
	if method == "" {
		skip = append(skip, "Host")
	} else {
		skip = append(skip, "Connection")
	}
	if o.chunked {
		skip = append(skip, "Trailer")
	}
	for _, k := range skip {
		delete(o.header, k)
		delete(n.header, k)
	}
	if len(o.header) != len(n.header) {
		diff("fields", o.header, n.header)
	}
	for k, v := range o.header {
		if !slices.Equal(v, n.header[k]) {
			diff("field "+k, v, n.header[k])
		}
	}
}

func FuzzRequestDifferential(f *testing.F) {
	for _, c := range requestCases {
		f.Add([]byte(c.in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		compare(t, data, "")
	})
}

func FuzzResponseDifferential(f *testing.F) {
	for _, c := range responseCases {
		if c.method == "GET" || c.method == "HEAD" {
			f.Add([]byte(c.in), c.method == "HEAD")
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, head bool) {
		method := "GET"
		if head {
			method = "HEAD"
		}
		compare(t, data, method)
	})
}

// TestDifferentialCases runs the comparison on the cases, and reports for
// each refused case whether net/http accepts it (what this parser is
// stricter about), to keep an eye on it.
func TestDifferentialCases(t *testing.T) {
	for _, c := range requestCases {
		compare(t, []byte(c.in), "")
		if c.want.status > 0 {
			if _, err := theirs([]byte(c.in), ""); err == nil && testing.Verbose() {
				t.Logf("stricter than net/http: %s (%d)", c.name, c.want.status)
			}
		}
	}
	for _, c := range responseCases {
		if c.method == "GET" || c.method == "HEAD" {
			compare(t, []byte(c.in), c.method)
		}
	}
}

// FuzzFieldsDifferential is the same comparison on messages assembled from
// parts, so that the fuzzer varies field names and values (where framing
// hides) instead of mostly breaking the start line. mode chooses: bit 0 a
// response rather than a request, bit 1 HEAD (or an answer to it), bit 2
// HTTP/1.0, bit 3 no Host field; the high bits the method or status.
func FuzzFieldsDifferential(f *testing.F) {
	seeds := [][2]string{
		{"Transfer-Encoding", "chunked"}, {"Content-Length", "5"}, {"Trailer", "Content-Length"},
		{"Connection", "close"}, {"Connection", "keep-alive"}, {"Host", "b"}, {"Expect", "100-continue"},
		{"Upgrade", "websocket"}, {"Transfer-Encoding", "gzip, chunked"}, {"Content-Length", "0"},
		{"Pragma", "no-cache"}, {"X-A", "b"},
	}
	bodies := []string{"", "hello", "5\r\nhello\r\n0\r\n\r\n", "0\r\nX: y\r\n\r\nGET / HTTP/1.1\r\n\r\n"}
	for i, a := range seeds {
		b := seeds[(i+3)%len(seeds)]
		f.Add(a[0], a[1], b[0], b[1], []byte(bodies[i%len(bodies)]), uint8(i*37))
	}
	methods := []string{"GET", "POST", "PUT", "OPTIONS", "CONNECT", "PATCH", "DELETE", "PRI"}
	statuses := []string{"200 OK", "204 No Content", "304 Not Modified", "100 Continue", "101 Switching Protocols", "404 Not Found", "500 Oops", "206 Partial"}
	f.Fuzz(func(t *testing.T, n1, v1, n2, v2 string, body []byte, mode uint8) {
		version := "HTTP/1.1"
		if mode&4 != 0 {
			version = "HTTP/1.0"
		}
		var msg []byte
		method := ""
		if mode&1 != 0 {
			method = "GET"
			if mode&2 != 0 {
				method = "HEAD"
			}
			msg = append(msg, version+" "+statuses[mode>>5]+"\r\n"...)
		} else {
			m := methods[mode>>5]
			target, host := "/x", "a"
			switch m {
			case "CONNECT":
				target, host = "a:443", "a:443"
			case "OPTIONS":
				target = "*"
			}
			if mode&2 != 0 {
				m = "HEAD"
			}
			msg = append(msg, m+" "+target+" "+version+"\r\n"...)
			if mode&8 == 0 {
				msg = append(msg, "Host: "+host+"\r\n"...)
			}
		}
		msg = append(msg, n1+": "+v1+"\r\n"+n2+": "+v2+"\r\n\r\n"...)
		msg = append(msg, body...)
		compare(t, msg, method)
	})
}
