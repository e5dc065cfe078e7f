package proxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// dialRaw opens a connection to addr with a deadline.
func dialRaw(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	return c, bufio.NewReader(c)
}

// readResp reads one response and its body.
func readResp(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

// TestEnginePipelining: requests sent back to back on one connection
// before any answer are answered in order, bodies included, and the
// connection stays usable.
func TestEnginePipelining(t *testing.T) {
	tg := newTarget(t, "a", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, r.URL.Path+":"+string(b))
	})
	addr := serve(t, configured(t, &HTTP{}, forwardTo(t, upstreamOf(t, "web", tg))))
	c, br := dialRaw(t, addr)
	var reqs strings.Builder
	var want []string
	for i := range 20 {
		switch i % 3 {
		case 0:
			fmt.Fprintf(&reqs, "GET /%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
			want = append(want, fmt.Sprintf("/%d:", i))
		case 1:
			fmt.Fprintf(&reqs, "POST /%d HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", i)
			want = append(want, fmt.Sprintf("/%d:abc", i))
		case 2:
			fmt.Fprintf(&reqs, "POST /%d HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n", i)
			want = append(want, fmt.Sprintf("/%d:hi", i))
		}
	}
	_, err := io.WriteString(c, reqs.String())
	require.NoError(t, err)
	for _, w := range want {
		resp, body := readResp(t, br, "GET")
		require.Equal(t, 200, resp.StatusCode)
		assert.Equal(t, w, body)
	}
	// And again, one at a time.
	_, err = io.WriteString(c, "GET /last HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	_, body := readResp(t, br, "GET")
	assert.Equal(t, "/last:", body)
}

// TestEngineMalformedBodies: a body that turns out malformed is never
// answered 200: 400 when nothing was sent yet, the connection closed, the
// target connection it reached discarded. A malformed chunk that arrived
// with the head reaches no target at all.
func TestEngineMalformedBodies(t *testing.T) {
	var got atomic.Int64
	tg := newTarget(t, "a", func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		if _, err := io.ReadAll(r.Body); err != nil {
			return
		}
		io.WriteString(w, "whole")
	})
	up := upstreamOf(t, "web", tg)
	var logs logBuffer
	h := configured(t, &HTTP{AccessLog: logs.logger()}, forwardTo(t, up))
	addr := serve(t, h)
	for _, tc := range []struct {
		name      string
		head, rst string // rst is sent after the head arrived, separately
		halfClose bool
		reached   bool // the target saw the head (the body streamed)
	}{
		{name: "bad chunk size", head: "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"},
		{name: "chunk data longer than its size", head: "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n"},
		{name: "hex prefix", head: "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n"},
		{name: "signed size", head: "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n"},
		{name: "size overflow", head: "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\nhello\r\n0\r\n\r\n"},
		// A body longer than what the proxy reads before it contacts a
		// target streams: a bad chunk after that reaches the target's
		// connection as a cut request, which is closed.
		{name: "bad chunk later", head: "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + fmt.Sprintf("%x\r\n%s\r\n", maxPreread+1, strings.Repeat("d", maxPreread+1)), rst: "zz\r\nmore\r\n0\r\n\r\n", reached: true},
		{name: "truncated chunked", head: "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", halfClose: true},
		{name: "truncated length", head: "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhel", halfClose: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := got.Load()
			c, br := dialRaw(t, addr)
			_, err := io.WriteString(c, tc.head)
			require.NoError(t, err)
			if tc.rst != "" {
				waitFor(t, "the head at the target", func() bool { return got.Load() > before })
				_, err = io.WriteString(c, tc.rst)
				require.NoError(t, err)
			}
			if tc.halfClose {
				require.NoError(t, c.(*net.TCPConn).CloseWrite())
			}
			resp, body := readResp(t, br, "POST")
			assert.Equal(t, 400, resp.StatusCode, body)
			assert.True(t, resp.Close)
			if !tc.reached {
				assert.Equal(t, before, got.Load(), "the target received nothing")
			}
			m := lastLog(t, h, &logs)
			assert.EqualValues(t, 400, m["status"], "the status sent is logged")
			assert.Contains(t, m["error"], "request body")
		})
	}
	assert.Zero(t, idleOf(h, up, tg.addr()), "no target connection a broken body reached is kept")
	assert.Equal(t, uint64(8), h.Stats().MalformedBodies)
	code, body := get(t, client(t), "http://"+addr+"/")
	assert.Equal(t, 200, code)
	assert.Equal(t, "whole", body)
}

// TestEngineHeaderLimitExact: MaxHeaderBytes bounds the head exactly: a
// head of that many bytes passes, one byte more is 431.
func TestEngineHeaderLimitExact(t *testing.T) {
	tg := newTarget(t, "a", nil)
	const limit = 1000
	h := configured(t, &HTTP{MaxHeaderBytes: limit}, forwardTo(t, upstreamOf(t, "web", tg)))
	addr := serve(t, h)
	head := func(n int) string {
		base := "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: \r\n\r\n"
		return strings.Replace(base, "X-Pad: ", "X-Pad: "+strings.Repeat("p", n-len(base)), 1)
	}
	require.Len(t, head(limit), limit)
	resp := raw(t, addr, head(limit))
	assert.Equal(t, 200, resp.StatusCode)
	resp = raw(t, addr, head(limit+1))
	assert.Equal(t, 431, resp.StatusCode)
}

// TestEngineLargeBodies: long bodies both ways (spliced between the
// sockets) arrive whole, with Content-Length and chunked, and the
// connections are reused afterwards.
func TestEngineLargeBodies(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<17) // 2 MiB
	sum := sha256.Sum256(big)
	tg := newTarget(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			b, _ := io.ReadAll(r.Body)
			s := sha256.Sum256(b)
			fmt.Fprintf(w, "%x %d", s, len(b))
			return
		}
		if r.URL.Query().Get("chunked") == "" {
			w.Header().Set("Content-Length", strconv.Itoa(len(big)))
		}
		w.Write(big)
	})
	up := upstreamOf(t, "web", tg)
	h := configured(t, &HTTP{}, forwardTo(t, up))
	addr := serve(t, h)
	c, br := dialRaw(t, addr)
	for _, q := range []string{"", "?chunked=1"} {
		_, err := io.WriteString(c, "GET /"+q+" HTTP/1.1\r\nHost: x\r\n\r\n")
		require.NoError(t, err)
		resp, body := readResp(t, br, "GET")
		require.Equal(t, 200, resp.StatusCode)
		assert.Equal(t, sum, sha256.Sum256([]byte(body)), "download %q", q)
	}
	_, err := fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", len(big))
	require.NoError(t, err)
	_, err = c.Write(big)
	require.NoError(t, err)
	_, body := readResp(t, br, "POST")
	assert.Equal(t, fmt.Sprintf("%x %d", sum, len(big)), body, "upload")
	// Chunked upload, in pieces.
	_, err = io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
	require.NoError(t, err)
	for off := 0; off < len(big); off += 100000 {
		p := big[off:min(off+100000, len(big))]
		_, err = fmt.Fprintf(c, "%x\r\n%s\r\n", len(p), p)
		require.NoError(t, err)
	}
	_, err = io.WriteString(c, "0\r\n\r\n")
	require.NoError(t, err)
	_, body = readResp(t, br, "POST")
	assert.Equal(t, fmt.Sprintf("%x %d", sum, len(big)), body, "chunked upload")
	want := 1
	if testEventLoop {
		want = 2 // the loop's, for the GETs; the engine's goroutine's, for the uploads it was handed
	}
	assert.Equal(t, want, idleOf(h, up, tg.addr()), "one target connection per front end, reused for all (dials %d)", dialsOf(h, up))
}

// TestEngineExpectContinue: a client that waits for 100 Continue gets it
// when the proxy reads the body, and its request goes through.
func TestEngineExpectContinue(t *testing.T) {
	tg := newTarget(t, "a", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Expect", r.Header.Get("Expect"))
		w.Write(b)
	})
	addr := serve(t, configured(t, &HTTP{}, forwardTo(t, upstreamOf(t, "web", tg))))
	c, br := dialRaw(t, addr)
	_, err := io.WriteString(c, "PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
	require.NoError(t, err)
	resp, _ := readResp(t, br, "PUT")
	require.Equal(t, 100, resp.StatusCode, "100 Continue before the body is sent")
	_, err = io.WriteString(c, "hello")
	require.NoError(t, err)
	resp, body := readResp(t, br, "PUT")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "hello", body)
	assert.Empty(t, resp.Header.Get("X-Expect"), "the proxy answered the expectation itself")
}

// TestEngineHTTP10: an HTTP/1.0 client that asks for keep-alive keeps
// its connection (Content-Length answers), and gets a chunked answer
// decoded, ended by the close.
func TestEngineHTTP10(t *testing.T) {
	tg := newTarget(t, "a", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "part;")
		if r.URL.Path == "/chunked" {
			w.(http.Flusher).Flush()
			io.WriteString(w, "rest")
		}
	})
	addr := serve(t, configured(t, &HTTP{}, forwardTo(t, upstreamOf(t, "web", tg))))
	c, br := dialRaw(t, addr)
	_, err := io.WriteString(c, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	require.NoError(t, err)
	resp, body := readResp(t, br, "GET")
	assert.Equal(t, "part;", body)
	assert.Equal(t, "keep-alive", resp.Header.Get("Connection"))
	_, err = io.WriteString(c, "GET /chunked HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	require.NoError(t, err)
	resp, body = readResp(t, br, "GET")
	assert.Equal(t, "part;rest", body)
	assert.Empty(t, resp.TransferEncoding, "no chunked framing to HTTP/1.0")
	assert.True(t, resp.Close)
}

// TestEngineIdleHoldsNoBuffer: a keep-alive connection waiting for its
// next request holds no read buffer.
func TestEngineIdleHoldsNoBuffer(t *testing.T) {
	if testEventLoop {
		t.Skip("the engine's goroutines' connections; TestEventLoopIdleHoldsNoBuffer is the event loops'")
	}
	tg := newTarget(t, "a", nil)
	h := configured(t, &HTTP{}, forwardTo(t, upstreamOf(t, "web", tg)))
	addr := serve(t, h)
	c, br := dialRaw(t, addr)
	_, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	readResp(t, br, "GET")
	idle := func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		for c := range h.conns {
			if c.state.Load() != connIdle {
				return false
			}
		}
		return len(h.conns) == 1
	}
	waitFor(t, "the connection idle", idle)
	waitFor(t, "the buffer let go", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		for c := range h.conns {
			return c.waiting.Load()
		}
		return false
	})
	_, err = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	resp, _ := readResp(t, br, "GET")
	assert.Equal(t, 200, resp.StatusCode)
}

// TestHTTPSRefusalsLogged: an HTTPS listener logs what it refuses before
// routing, as a plain one does: plain HTTP sent to it, and a malformed
// request inside TLS.
func TestHTTPSRefusalsLogged(t *testing.T) {
	ca := newCA(t)
	var certs Certificates
	require.NoError(t, certs.Set(WildcardOneLabel, ca.issue(t, false, "x.example.com")))
	var logs logBuffer
	h := configured(t, &HTTP{TLS: &TLS{Certificates: &certs}, AccessLog: logs.logger()}, forwardTo(t, upstreamOf(t, "web", newTarget(t, "a", nil))))
	addr := serve(t, h)

	resp := raw(t, addr, "GET / HTTP/1.1\r\nHost: x.example.com\r\n\r\n")
	assert.Equal(t, 400, resp.StatusCode)
	m := lastLog(t, h, &logs)
	assert.EqualValues(t, 400, m["status"])
	assert.Contains(t, m["error"], "plain HTTP")

	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "x.example.com", RootCAs: ca.pool, NextProtos: []string{"http/1.1"}})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x.example.com\r\nBad Header: 1\r\n\r\n")
	require.NoError(t, err)
	resp, _ = readResp(t, bufio.NewReader(c), "GET")
	assert.Equal(t, 400, resp.StatusCode)
	waitFor(t, "the second record", func() bool { return strings.Count(logs.String(), "\n") == 2 })
	m = lastLog(t, h, &logs)
	assert.EqualValues(t, 400, m["status"])
	assert.Equal(t, "x.example.com", m["sni"])
	assert.Equal(t, "TLS 1.3", m["tls_version"])
	assert.Equal(t, uint64(2), h.Stats().Malformed)
}

// TestEngineLongChunks: a chunked response of long chunks reaches the
// client whole and in order, its chunks' data moved straight between the
// sockets: as chunks to an HTTP/1.1 client, decoded to an HTTP/1.0 one.
func TestEngineLongChunks(t *testing.T) {
	parts := [][]byte{bytes.Repeat([]byte("a"), 100<<10), bytes.Repeat([]byte("b"), 20<<10), []byte("c"), bytes.Repeat([]byte("d"), 300<<10)}
	want := bytes.Join(parts, nil)
	tg := newTarget(t, "a", func(w http.ResponseWriter, r *http.Request) {
		for _, p := range parts {
			_, _ = w.Write(p)
			w.(http.Flusher).Flush() // one chunk each
		}
	})
	var logs logBuffer
	h := configured(t, &HTTP{AccessLog: logs.logger()}, forwardTo(t, upstreamOf(t, "web", tg)))
	addr := serve(t, h)
	for _, proto := range []string{"HTTP/1.1", "HTTP/1.0"} {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
		_, err = io.WriteString(c, "GET / "+proto+"\r\nHost: x\r\n\r\n")
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err, proto)
		got, err := io.ReadAll(resp.Body)
		require.NoError(t, err, proto)
		resp.Body.Close()
		c.Close()
		assert.Equal(t, len(want), len(got), proto)
		assert.True(t, bytes.Equal(want, got), "%s: the body differs", proto)
		if proto == "HTTP/1.1" {
			assert.Equal(t, []string{"chunked"}, resp.TransferEncoding)
		}
		m := lastLog(t, h, &logs)
		assert.EqualValues(t, len(want), m["bytes_out"], proto)
	}
}
