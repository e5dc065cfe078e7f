package h1

import (
	"bytes"
	"testing"
)

func TestWriter(t *testing.T) {
	var r Request
	in := []byte("POST /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\nX-Id: 7\r\nContent-Length: 2\r\n\r\nhi")
	if _, err := ParseRequest(in, &r, Limits{}); err != nil {
		t.Fatal(err)
	}
	buf, err := AppendRequestLine(nil, r.Method, r.Path)
	if err != nil {
		t.Fatal(err)
	}
	buf, _ = AppendField(buf, "Host", r.Host)
	for _, h := range r.Headers {
		if h.Hop || h.Kind == KindHost || h.Kind == KindContentLength {
			continue
		}
		if buf, err = AppendField(buf, h.Name, h.Value); err != nil {
			t.Fatal(err)
		}
	}
	buf, _ = AppendField(buf, "X-Forwarded-For", " 10.0.0.1\t")
	buf = AppendContentLength(buf, r.ContentLength)
	buf = AppendEnd(buf)
	want := "POST /x HTTP/1.1\r\nHost: a\r\nX-Id: 7\r\nX-Forwarded-For: 10.0.0.1\r\nContent-Length: 2\r\n\r\n"
	if string(buf) != want {
		t.Errorf("wrote %q, want %q", buf, want)
	}
	// What the writer writes, the parser reads back.
	var back Request
	if n, err := ParseRequest(buf, &back, Limits{}); err != nil || n != len(buf) {
		t.Errorf("read back: %d, %v", n, err)
	}

	st, err := AppendStatusLine([]byte("x"), 404, "Not Found")
	if err != nil || string(st) != "xHTTP/1.1 404 Not Found\r\n" {
		t.Errorf("status line %q, %v", st, err)
	}
}

func TestWriterRefuses(t *testing.T) {
	dst := []byte("kept")
	check := func(what string, got []byte, err, want error) {
		t.Helper()
		if err != want || !bytes.Equal(got, dst) {
			t.Errorf("%s: %q, %v; want dst unchanged and %v", what, got, err, want)
		}
	}
	got, err := AppendRequestLine(dst, "GET /", "/")
	check("method with space", got, err, ErrInvalidMethod)
	got, err = AppendRequestLine(dst, "GET", "/a b")
	check("target with space", got, err, ErrInvalidTarget)
	got, err = AppendRequestLine(dst, "GET", "/a\r\nX: y")
	check("target with CRLF", got, err, ErrInvalidTarget)
	got, err = AppendRequestLine(dst, "GET", "")
	check("empty target", got, err, ErrInvalidTarget)
	got, err = AppendField(dst, "X: y\r\nZ", "v")
	check("name with CRLF", got, err, ErrInvalidName)
	got, err = AppendField(dst, "", "v")
	check("empty name", got, err, ErrInvalidName)
	got, err = AppendField(dst, "X", "a\r\nTransfer-Encoding: chunked")
	check("value with CRLF", got, err, ErrInvalidValue)
	got, err = AppendField(dst, "X", "a\x00b")
	check("value with NUL", got, err, ErrInvalidValue)
	got, err = AppendField(dst, "X", "a\nb")
	check("value with LF", got, err, ErrInvalidValue)
	got, err = AppendStatusLine(dst, 1000, "")
	check("status 1000", got, err, ErrInvalidStatus)
	got, err = AppendStatusLine(dst, 200, "O\rK")
	check("reason with CR", got, err, ErrInvalidValue)
}

func TestWriterAllocs(t *testing.T) {
	buf := make([]byte, 0, 256)
	name, value := []byte("X-Forwarded-For"), []byte("10.0.0.1")
	a := testing.AllocsPerRun(100, func() {
		b, _ := AppendRequestLine(buf[:0], "GET", value)
		b, _ = AppendField(b, name, value)
		b, _ = AppendField(b, "Via", "1.1 lbkit")
		b = AppendContentLength(b, 12345)
		_ = AppendEnd(b)
	})
	if a != 0 {
		t.Errorf("%v allocations", a)
	}
}
