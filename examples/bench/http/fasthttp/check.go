package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// smuggleCases are classic request-smuggling and framing cases, each with
// the answer RFC 9112 requires of a proxy (lbkit's engine gives these; see
// proxy/internal/h1's corpus for the full list).
var smuggleCases = []struct{ name, req, want string }{
	{"CL.TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG", "400"},
	{"TE.CL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n", "400"},
	{"TE with tab", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", "400"},
	{"TE xchunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", "400"},
	{"TE chunked, identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", "400"},
	{"two TE", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n", "400"},
	{"space before colon", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello", "400"},
	{"CL differing", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", "400"},
	{"CL plus sign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", "400"},
	{"chunk size 0x", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", "400"},
	{"chunk data longer than size", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n", "400"},
	{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n b\r\n\r\n", "400"},
	{"bare LF", "GET / HTTP/1.1\nHost: a\n\n", "400"},
	{"NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n", "400"},
	{"TE on HTTP/1.0", "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", "400"},
}

// smuggle runs the cases through a fasthttp proxy and prints, for each,
// the status the client got and whether the target received anything.
func smuggle(w io.Writer) error {
	tln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer tln.Close()
	var mu sync.Mutex
	var got bytes.Buffer
	go func() {
		for {
			c, err := tln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
					n, err := c.Read(buf)
					mu.Lock()
					got.Write(buf[:n])
					mu.Unlock()
					if n > 0 {
						io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	pln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hc := &fasthttp.HostClient{Addr: tln.Addr().String()}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if err := hc.Do(&ctx.Request, &ctx.Response); err != nil {
			ctx.Error("bad gateway", fasthttp.StatusBadGateway)
		}
	}, Logger: quiet{}}
	go srv.Serve(pln)
	defer srv.Shutdown()
	fmt.Fprintf(w, "| case | required | fasthttp answered | the target received |\n|---|---|---|---|\n")
	for _, tc := range smuggleCases {
		mu.Lock()
		got.Reset()
		mu.Unlock()
		c, err := net.Dial("tcp", pln.Addr().String())
		if err != nil {
			return err
		}
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		io.WriteString(c, tc.req)
		resp := make([]byte, 512)
		n, _ := io.ReadAtLeast(c, resp, 12)
		c.Close()
		status := "no answer"
		if n >= 12 && strings.HasPrefix(string(resp[:n]), "HTTP/1.") {
			status = string(resp[9:12])
		}
		time.Sleep(300 * time.Millisecond) // the target's reads end by their deadline
		mu.Lock()
		received := "nothing"
		if got.Len() > 0 {
			received = fmt.Sprintf("%q", strings.ReplaceAll(got.String(), "\r\n", "⏎"))
		}
		mu.Unlock()
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", tc.name, tc.want, status, received)
	}
	return nil
}

// quiet drops fasthttp's log lines (its refusals, printed as they come).
type quiet struct{}

func (quiet) Printf(string, ...any) {}
