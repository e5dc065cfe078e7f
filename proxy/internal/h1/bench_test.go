package h1

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httputil"
	"strings"
	"testing"
)

// The benchmarks parse the same bytes with this package and, as the
// baseline in the same run, with net/http (a bytes.Reader and a
// bufio.Reader reused across iterations, so that the baseline pays for
// parsing, not for its setup). Run them with -cpu 1,2: each parses in
// parallel on GOMAXPROCS goroutines.

// browserRequest is what a browser sends for a script: 13 fields, ~620
// bytes.
const browserRequest = "GET /static/js/app.4f3c2a.js?v=20240115 HTTP/1.1\r\n" +
	"Host: www.example.com\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36\r\n" +
	"Accept: */*\r\n" +
	"Accept-Language: en-US,en;q=0.9,fr;q=0.8\r\n" +
	"Accept-Encoding: gzip, deflate, br\r\n" +
	"Referer: https://www.example.com/products/list?page=2\r\n" +
	"Connection: keep-alive\r\n" +
	"Cookie: session=4b1d2c3e5f6a7b8c9d0e1f2a3b4c5d6e; theme=dark; _ga=GA1.2.123456789.1700000000\r\n" +
	"Sec-Fetch-Dest: script\r\n" +
	"Sec-Fetch-Mode: no-cors\r\n" +
	"Sec-Fetch-Site: same-origin\r\n" +
	"If-None-Match: \"5f3c2a-1b2c\"\r\n" +
	"\r\n"

// wrkRequest is what wrk sends by default.
const wrkRequest = "GET / HTTP/1.1\r\nHost: localhost:8080\r\n\r\n"

// typicalResponse is a static file's response head: 10 fields.
const typicalResponse = "HTTP/1.1 200 OK\r\n" +
	"Date: Mon, 15 Jan 2024 10:00:00 GMT\r\n" +
	"Server: nginx\r\n" +
	"Content-Type: application/javascript; charset=utf-8\r\n" +
	"Content-Length: 1234\r\n" +
	"Connection: keep-alive\r\n" +
	"Cache-Control: public, max-age=31536000\r\n" +
	"ETag: \"5f3c2a-1b2c\"\r\n" +
	"Last-Modified: Mon, 15 Jan 2024 09:00:00 GMT\r\n" +
	"Vary: Accept-Encoding\r\n" +
	"Accept-Ranges: bytes\r\n" +
	"\r\n"

func BenchmarkParseRequest(b *testing.B) {
	for _, c := range []struct{ name, in string }{{"browser", browserRequest}, {"wrk", wrkRequest}} {
		in := []byte(c.in)
		b.Run(c.name+"/h1", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(in)))
			b.RunParallel(func(pb *testing.PB) {
				var r Request
				for pb.Next() {
					if _, err := ParseRequest(in, &r, Limits{}); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
		b.Run(c.name+"/net-http", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(in)))
			b.RunParallel(func(pb *testing.PB) {
				rd := bytes.NewReader(in)
				br := bufio.NewReaderSize(rd, 4<<10)
				for pb.Next() {
					rd.Reset(in)
					br.Reset(rd)
					if _, err := http.ReadRequest(br); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

func BenchmarkParseResponse(b *testing.B) {
	in := []byte(typicalResponse)
	b.Run("h1", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(in)))
		b.RunParallel(func(pb *testing.PB) {
			var r Response
			get := []byte("GET")
			for pb.Next() {
				if _, err := ParseResponse(in, &r, get, Limits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("net-http", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(in)))
		b.RunParallel(func(pb *testing.PB) {
			rd := bytes.NewReader(in)
			br := bufio.NewReaderSize(rd, 4<<10)
			req := &http.Request{Method: "GET"}
			for pb.Next() {
				rd.Reset(in)
				br.Reset(rd)
				if _, err := http.ReadResponse(br, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// BenchmarkChunked validates a 64 KiB body in 4 KiB chunks; the baseline
// decodes it with net/http's chunked reader into a buffer.
func BenchmarkChunked(b *testing.B) {
	var body strings.Builder
	chunk := strings.Repeat("x", 4<<10)
	for range 16 {
		body.WriteString("1000\r\n" + chunk + "\r\n")
	}
	body.WriteString("0\r\n\r\n")
	in := []byte(body.String())
	b.Run("h1-scan", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(in)))
		b.RunParallel(func(pb *testing.PB) {
			var c Chunked
			for pb.Next() {
				c.Reset()
				if n, done, err := c.Scan(in); err != nil || !done || n != len(in) {
					b.Fatal(n, done, err)
				}
			}
		})
	})
	b.Run("net-http", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(in)))
		b.RunParallel(func(pb *testing.PB) {
			rd := bytes.NewReader(in)
			br := bufio.NewReaderSize(rd, 4<<10)
			buf := make([]byte, 32<<10)
			for pb.Next() {
				rd.Reset(in)
				br.Reset(rd)
				cr := httputil.NewChunkedReader(br)
				for {
					_, err := cr.Read(buf)
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	})
}
