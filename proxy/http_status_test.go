package proxy

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lbkit/lbkit/balancer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every status the proxy answers itself, provoked against real loopback
// targets, each checked on the wire, in Stats and in the access log.

func forwardTo(t testing.TB, up *Upstream) *Router {
	t.Helper()
	rt, err := Forward(up)
	require.NoError(t, err)
	return rt
}

// lastLog returns the last access log record, once h has no request in
// flight (a record is written after the response).
func lastLog(t testing.TB, h *HTTP, l *logBuffer) map[string]any {
	t.Helper()
	waitFor(t, "the access log record", func() bool { return h.Stats().ActiveRequests == 0 && l.String() != "" })
	lines := strings.Split(strings.TrimSpace(l.String()), "\n")
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &m), l.String())
	return m
}

func TestHTTPStatus400Malformed(t *testing.T) {
	var logs logBuffer
	h := configured(t, &HTTP{AccessLog: logs.logger()}, forwardTo(t, upstreamOf(t, "web", newTarget(t, "a", nil))))
	addr := serve(t, h)
	resp := raw(t, addr, "GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
	assert.Equal(t, 400, resp.StatusCode)
	resp = raw(t, addr, "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
	assert.Equal(t, 400, resp.StatusCode)
	waitFor(t, "malformed counted", func() bool { return h.Stats().Malformed == 2 })
	assert.Equal(t, uint64(2), h.Stats().Status[3])
	m := lastLog(t, h, &logs)
	assert.EqualValues(t, 400, m["status"])
	assert.Equal(t, "-", m["upstream_status"])
}

func TestHTTPStatus403ACL(t *testing.T) {
	acl, err := ParseACL(nil, []string{"127.0.0.0/8"})
	require.NoError(t, err)
	var refused atomic.Int64
	h := configured(t, &HTTP{OnRefuse: func(r Refusal) {
		assert.Equal(t, RefusedACL, r.Reason)
		assert.ErrorIs(t, r.Err, ErrDenied)
		assert.Equal(t, netip.MustParseAddr("127.0.0.1"), r.Client.Addr())
		refused.Add(1)
	}}, forwardTo(t, upstreamOf(t, "web", newTarget(t, "a", nil))))
	addr := serve(t, h)
	c := client(t)
	code, _ := get(t, c, "http://"+addr+"/") // a keep-alive connection, accepted
	assert.Equal(t, 200, code)
	h.SetACL(acl)
	code, _ = get(t, c, "http://"+addr+"/") // same connection: refused per request
	assert.Equal(t, 403, code)
	assert.Equal(t, uint64(1), h.Stats().RefusedRequests)

	// A new connection is refused at accept: closed without a byte.
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(5*time.Second)))
	n, err := conn.Read(make([]byte, 1))
	assert.Zero(t, n)
	assert.ErrorIs(t, err, io.EOF)
	assert.Equal(t, uint64(1), h.Stats().RefusedConnections)
	assert.Equal(t, int64(2), refused.Load())
}

func TestHTTPStatus408(t *testing.T) {
	var logs logBuffer
	h := configured(t, &HTTP{AccessLog: logs.logger()}, forwardTo(t, upstreamOf(t, "web", newTarget(t, "a", nil))), Timeouts{Request: 300 * time.Millisecond})
	addr := serve(t, h)

	t.Run("headers", func(t *testing.T) {
		// Half a request line, then silence: the header timeout answers 408.
		resp := raw(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n")
		assert.Equal(t, 408, resp.StatusCode)
		assert.True(t, resp.Close)
	})
	t.Run("body", func(t *testing.T) {
		// Headers in time, half the body, then silence.
		resp := raw(t, addr, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
		assert.Equal(t, 408, resp.StatusCode)
		assert.True(t, resp.Close)
	})
	t.Run("idle is not a request", func(t *testing.T) {
		// A connection that sends nothing is closed without an answer.
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer c.Close()
		require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
		n, err := c.Read(make([]byte, 1))
		assert.Zero(t, n)
		assert.ErrorIs(t, err, io.EOF)
	})
	assert.Equal(t, uint64(2), h.Stats().RequestTimeouts)
	assert.Contains(t, logs.String(), `"status":408`)
}

func TestHTTPStatus413(t *testing.T) {
	tg := newTarget(t, "a", func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) })
	h := configured(t, &HTTP{MaxBodyBytes: 100}, forwardTo(t, upstreamOf(t, "web", tg)))
	addr := serve(t, h)
	resp := raw(t, addr, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n")
	assert.Equal(t, 413, resp.StatusCode)
	// Chunked: the limit is found while streaming, before the target answers.
	body := strings.Repeat("x", 60)
	resp = raw(t, addr, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3c\r\n"+body+"\r\n3c\r\n"+body+"\r\n0\r\n\r\n")
	assert.Equal(t, 413, resp.StatusCode)
	resp = raw(t, addr, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"+strings.Repeat("y", 100))
	assert.Equal(t, 200, resp.StatusCode)
}

func TestHTTPStatus414And431(t *testing.T) {
	h := configured(t, &HTTP{MaxURILength: 100}, forwardTo(t, upstreamOf(t, "web", newTarget(t, "a", nil))))
	addr := serve(t, h)
	resp := raw(t, addr, "GET /"+strings.Repeat("a", 100)+" HTTP/1.1\r\nHost: x\r\n\r\n")
	assert.Equal(t, 414, resp.StatusCode)
	resp = raw(t, addr, "GET /"+strings.Repeat("a", 99)+" HTTP/1.1\r\nHost: x\r\n\r\n")
	assert.Equal(t, 200, resp.StatusCode)
	resp = raw(t, addr, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("b", 65<<10)+"\r\n\r\n")
	assert.Equal(t, 431, resp.StatusCode)
	// Just under the default 64 KiB passes.
	resp = raw(t, addr, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("b", 63<<10)+"\r\n\r\n")
	assert.Equal(t, 200, resp.StatusCode)
}

func TestHTTPStatus501(t *testing.T) {
	h := configured(t, &HTTP{}, forwardTo(t, upstreamOf(t, "web", newTarget(t, "a", nil))))
	addr := serve(t, h)
	// A coding the proxy does not know before a final chunked: 501 (RFC
	// 9110 §6.1); without a final chunked the body cannot be framed at
	// all: 400 (RFC 9112 §6.3).
	resp := raw(t, addr, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
	assert.Equal(t, 501, resp.StatusCode)
	resp = raw(t, addr, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n")
	assert.Equal(t, 400, resp.StatusCode)
	waitFor(t, "both counted", func() bool { return h.Stats().Malformed == 2 })
}

func TestHTTPStatus502(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		b, err := balancer.New(balancer.WithTargets(balancer.Target{ID: "dead", Addr: closedAddr(t), Weight: 1}))
		require.NoError(t, err)
		var logs logBuffer
		h := configured(t, &HTTP{AccessLog: logs.logger()}, forwardTo(t, &Upstream{Name: "web", Balancer: b}))
		addr := serve(t, h)
		code, _ := get(t, client(t), "http://"+addr+"/")
		assert.Equal(t, 502, code)
		m := lastLog(t, h, &logs)
		assert.EqualValues(t, 502, m["status"])
		assert.Equal(t, "-", m["upstream_status"])
		assert.Equal(t, "-", m["upstream_header_time"])
		assert.Equal(t, "-", m["upstream_connect_time"], "no target was reached")
		assert.Contains(t, m["error"], "connection refused")

		// The same through ReverseProxy (a streamed body).
		resp, err := client(t).Post("http://"+addr+"/", "text/plain", io.MultiReader(strings.NewReader("body")))
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, 502, resp.StatusCode)
		m = lastLog(t, h, &logs)
		assert.Equal(t, "POST", m["method"])
		assert.Equal(t, "-", m["upstream_connect_time"], "no target was reached")
	})
	t.Run("reset", func(t *testing.T) {
		tg := newTarget(t, "a", func(w http.ResponseWriter, r *http.Request) {
			c, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				c.(*net.TCPConn).SetLinger(0)
				c.Close()
			}
		})
		h := configured(t, &HTTP{}, forwardTo(t, upstreamOf(t, "web", tg)))
		addr := serve(t, h)
		code, _ := get(t, client(t), "http://"+addr+"/")
		assert.Equal(t, 502, code)
	})
	t.Run("malformed response", func(t *testing.T) {
		tg := newTarget(t, "a", func(w http.ResponseWriter, r *http.Request) {
			c, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				io.WriteString(c, "HTTP/1.1 abc nonsense\r\n\r\n")
				c.Close()
			}
		})
		h := configured(t, &HTTP{}, forwardTo(t, upstreamOf(t, "web", tg)))
		addr := serve(t, h)
		code, _ := get(t, client(t), "http://"+addr+"/")
		assert.Equal(t, 502, code)
		assert.Equal(t, StatusClasses{0, 0, 0, 0, 1}, h.Stats().Status)
		assert.Equal(t, StatusClasses{}, h.Stats().UpstreamStatus, "the target gave no status")
	})
}

func TestHTTPStatus503NoTarget(t *testing.T) {
	up := upstreamOf(t, "web", newTarget(t, "a", nil))
	require.NoError(t, up.Balancer.SetHealth("a", balancer.Unhealthy))
	h := configured(t, &HTTP{}, forwardTo(t, up))
	addr := serve(t, h)
	code, _ := get(t, client(t), "http://"+addr+"/")
	assert.Equal(t, 503, code)
	assert.Equal(t, uint64(1), h.Stats().NoTarget)
}

func TestHTTPStatus504(t *testing.T) {
	t.Run("connect timeout", func(t *testing.T) {
		tg := newTarget(t, "a", nil)
		var logs logBuffer
		// A connect timeout of 1ns expires before any connection completes.
		h := configured(t, &HTTP{AccessLog: logs.logger()}, forwardTo(t, upstreamOf(t, "web", tg)), Timeouts{Connect: time.Nanosecond})
		addr := serve(t, h)
		code, _ := get(t, client(t), "http://"+addr+"/")
		assert.Equal(t, 504, code)
		assert.Contains(t, lastLog(t, h, &logs)["error"], "connect")
	})
	t.Run("response timeout", func(t *testing.T) {
		release := make(chan struct{})
		tg := newTarget(t, "a", func(w http.ResponseWriter, r *http.Request) { <-release })
		defer close(release)
		up := upstreamOf(t, "web", tg)
		h := configured(t, &HTTP{}, forwardTo(t, up), Timeouts{Response: 100 * time.Millisecond})
		addr := serve(t, h)
		code, _ := get(t, client(t), "http://"+addr+"/")
		assert.Equal(t, 504, code)
		st := up.Stats().Targets[0]
		assert.Equal(t, uint64(1), st.Requests)
		assert.Zero(t, st.ActiveRequests)
	})
}

func TestHTTPStatus499ClientGone(t *testing.T) {
	reached := make(chan struct{})
	release := make(chan struct{})
	tg := newTarget(t, "a", func(w http.ResponseWriter, r *http.Request) {
		close(reached)
		<-release
	})
	defer close(release)
	var logs logBuffer
	h := configured(t, &HTTP{AccessLog: logs.logger()}, forwardTo(t, upstreamOf(t, "web", tg)))
	addr := serve(t, h)
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	_, err = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	<-reached
	c.Close()
	waitFor(t, "499", func() bool { return h.Stats().ClientClosed == 1 })
	m := lastLog(t, h, &logs)
	assert.EqualValues(t, 499, m["status"])
	assert.Equal(t, StatusClasses{}, h.Stats().Status, "499 is never sent")
}
