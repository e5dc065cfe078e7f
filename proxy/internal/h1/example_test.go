package h1_test

import (
	"fmt"

	"github.com/lbkit/lbkit/proxy/internal/h1"
)

// A request parsed in place, and the head sent on to a target rewritten
// straight into a buffer: hop-by-hop fields dropped, framing written from
// the parsed values.
func ExampleParseRequest() {
	buf := []byte("POST /upload HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive\r\n" +
		"Content-Length: 5\r\nX-Request-Id: 42\r\n\r\nhello" +
		"GET /next HTTP/1.1\r\nHost: example.com\r\n\r\n")
	var req h1.Request
	n, err := h1.ParseRequest(buf, &req, h1.Limits{})
	if err != nil {
		fmt.Println(err) // an *h1.Error: answer e.Status, then close
		return
	}
	fmt.Printf("%s %s host=%s framing=%v length=%d close=%v\n",
		req.Method, req.Path, req.Host, req.Framing, req.ContentLength, req.Close)

	out, _ := h1.AppendRequestLine(nil, req.Method, req.Path)
	out, _ = h1.AppendField(out, "Host", req.Host)
	for _, h := range req.Headers {
		if h.Hop || h.Kind == h1.KindHost || h.Kind == h1.KindContentLength {
			continue
		}
		out, _ = h1.AppendField(out, h.Name, h.Value)
	}
	out, _ = h1.AppendField(out, "X-Forwarded-For", "192.0.2.1")
	out = h1.AppendContentLength(out, req.ContentLength)
	out = h1.AppendEnd(out)
	fmt.Printf("%q\n", out)

	body := buf[n : n+int(req.ContentLength)]
	fmt.Printf("body %q, next request starts with %q\n", body, buf[n+len(body):][:9])
	// Output:
	// POST /upload host=example.com framing=length length=5 close=false
	// "POST /upload HTTP/1.1\r\nHost: example.com\r\nX-Request-Id: 42\r\nX-Forwarded-For: 192.0.2.1\r\nContent-Length: 5\r\n\r\n"
	// body "hello", next request starts with "GET /next"
}

// A smuggling attempt: both Content-Length and Transfer-Encoding.
func ExampleParseRequest_refused() {
	buf := []byte("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
	var req h1.Request
	_, err := h1.ParseRequest(buf, &req, h1.Limits{})
	if e, ok := err.(*h1.Error); ok {
		fmt.Println(e.Status, e.Reason)
	}
	// Output: 400 both Content-Length and Transfer-Encoding
}

// A head that arrives in pieces.
func ExampleErrIncomplete() {
	wire := "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
	var req h1.Request
	var buf []byte
	for i := 0; i < len(wire); i += 10 {
		buf = append(buf, wire[i:min(i+10, len(wire))]...)
		n, err := h1.ParseRequest(buf, &req, h1.Limits{})
		if err == h1.ErrIncomplete {
			fmt.Println(len(buf), "bytes: need more")
			continue
		}
		fmt.Println(len(buf), "bytes: head of", n, err)
	}
	// Output:
	// 10 bytes: need more
	// 20 bytes: need more
	// 27 bytes: head of 27 <nil>
}

// A target's response, framed by the request's method.
func ExampleParseResponse() {
	buf := []byte("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
	var resp h1.Response
	for _, method := range []string{"GET", "HEAD"} {
		if _, err := h1.ParseResponse(buf, &resp, []byte(method), h1.Limits{}); err != nil {
			fmt.Println(err) // status 502: answer it, close the target connection
			return
		}
		fmt.Println(method, resp.Status, resp.Framing, resp.ContentLength)
	}
	// Output:
	// GET 200 length 1234
	// HEAD 200 none 1234
}

// A chunked body validated as it streams: Scan says how many bytes can be
// forwarded as they are; an incomplete line stays in the buffer until more
// arrives.
func ExampleChunked() {
	reads := []string{"5;ext=1\r\nhel", "lo\r\n0\r", "\n\r\nGET / HTTP/1.1\r\n"}
	var c h1.Chunked
	var buf []byte
	for _, r := range reads {
		buf = append(buf, r...)
		n, done, err := c.Scan(buf)
		if err != nil {
			fmt.Println(err) // close both connections
			return
		}
		fmt.Printf("forward %q\n", buf[:n])
		buf = buf[n:]
		if done {
			fmt.Printf("body done (%d bytes of data); next message: %q\n", c.Size(), buf)
		}
	}
	// Output:
	// forward "5;ext=1\r\nhel"
	// forward "lo\r\n"
	// forward "0\r\n\r\n"
	// body done (5 bytes of data); next message: "GET / HTTP/1.1\r\n"
}
