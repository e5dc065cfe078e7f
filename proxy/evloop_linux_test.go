//go:build linux

package proxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lbkit/lbkit/balancer"
)

// TestEventLoopNoGoroutinePerConnection: connections served by the event
// loops, kept alive between requests, cost no goroutine each (the
// engine's goroutines would be one per connection).
func TestEventLoopNoGoroutinePerConnection(t *testing.T) {
	tg := newTarget(t, "a", nil)
	h := configured(t, &HTTP{EventLoop: true}, forwardTo(t, upstreamOf(t, "web", tg)))
	addr := serve(t, h)
	// One connection first: the loops start, the target connection and
	// its server's goroutine exist.
	c0, br0 := dialRaw(t, addr)
	_, err := io.WriteString(c0, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	readResp(t, br0, "GET")
	before := runtime.NumGoroutine()
	const n = 50
	for range n {
		c, br := dialRaw(t, addr)
		_, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		require.NoError(t, err)
		resp, body := readResp(t, br, "GET")
		require.Equal(t, 200, resp.StatusCode)
		require.Equal(t, "a", body)
	}
	waitFor(t, "the connections counted", func() bool { return h.Stats().ActiveConnections == n+1 })
	assert.Less(t, runtime.NumGoroutine()-before, n/5, "%d kept-alive connections, goroutines %d → %d", n, before, runtime.NumGoroutine())
}

// TestEventLoopIdleTimeoutNeverEarly: a kept-alive connection waiting for
// its next request is closed after the idle timeout, never before it.
func TestEventLoopIdleTimeoutNeverEarly(t *testing.T) {
	const idle = 300 * time.Millisecond
	tg := newTarget(t, "a", nil)
	h := configured(t, &HTTP{EventLoop: true}, forwardTo(t, upstreamOf(t, "web", tg)), Timeouts{Idle: idle})
	c, br := dialRaw(t, serve(t, h))
	_, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	readResp(t, br, "GET")
	answered := time.Now()
	_, err = br.ReadByte()
	waited := time.Since(answered)
	assert.ErrorIs(t, err, io.EOF, "closed by the proxy")
	assert.GreaterOrEqual(t, waited, idle, "not before the idle timeout")
}

// TestEventLoopHeadInPieces: a request head that arrives in pieces is
// served (by the engine's goroutine, which the loop hands it to), and so
// is the next request on the connection.
func TestEventLoopHeadInPieces(t *testing.T) {
	tg := newTarget(t, "a", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) })
	h := configured(t, &HTTP{EventLoop: true}, forwardTo(t, upstreamOf(t, "web", tg)))
	c, br := dialRaw(t, serve(t, h))
	_, err := io.WriteString(c, "GET /first HTTP/1.1\r\nHo")
	require.NoError(t, err)
	// Not synchronisation: whichever way the pieces arrive (one read or
	// two), the answers must be the same.
	time.Sleep(20 * time.Millisecond)
	_, err = io.WriteString(c, "st: x\r\n\r\n")
	require.NoError(t, err)
	_, body := readResp(t, br, "GET")
	assert.Equal(t, "/first", body)
	_, err = io.WriteString(c, "GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	_, body = readResp(t, br, "GET")
	assert.Equal(t, "/second", body)
}

// TestEventLoopTargetByName: a target given by host name (not an IP
// address) is dialed by a goroutine for the loop, and its connection kept.
func TestEventLoopTargetByName(t *testing.T) {
	tg := newTarget(t, "a", nil)
	_, port, err := net.SplitHostPort(tg.addr())
	require.NoError(t, err)
	if _, err := net.LookupHost("localhost"); err != nil {
		t.Skip("localhost does not resolve here")
	}
	b, err := balancer.New(balancer.WithTargets(balancer.Target{ID: "a", Addr: "localhost:" + port, Weight: 1}))
	require.NoError(t, err)
	up := &Upstream{Name: "web", Balancer: b}
	h := configured(t, &HTTP{EventLoop: true}, forwardTo(t, up))
	c, br := dialRaw(t, serve(t, h))
	for range 3 {
		_, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		require.NoError(t, err)
		resp, body := readResp(t, br, "GET")
		if resp.StatusCode == http.StatusBadGateway {
			t.Skip("localhost resolves to an address the target does not listen on: " + body)
		}
		assert.Equal(t, 200, resp.StatusCode)
		assert.Equal(t, "a", body)
	}
	assert.Equal(t, int64(1), dialsOf(h, up), "one connection, kept")
}

// TestEventLoopBreakerWaits: a loop's request that needs a new connection
// to a target at its MaxConnsPerTarget waits for one to free up, as the
// engine's goroutines do, as one of at most MaxPendingRequests; one more
// is refused at once (503).
func TestEventLoopBreakerWaits(t *testing.T) {
	hold := make(chan struct{})
	arrived := make(chan struct{}, 2)
	tg := newTarget(t, "a", func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-hold
		io.WriteString(w, "a")
	})
	up := upstreamOf(t, "web", tg)
	up.SetLimits(Limits{MaxConnsPerTarget: 1, MaxPendingRequests: 1})
	h := configured(t, &HTTP{EventLoop: true, Retry: Retry{Attempts: 1}}, forwardTo(t, up), Timeouts{Connect: time.Minute})
	addr := serve(t, h)
	codes := make(chan int, 2)
	ask := func() {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			codes <- 0
			return
		}
		defer c.Close()
		fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			codes <- 0
			return
		}
		resp.Body.Close()
		codes <- resp.StatusCode
	}
	go ask()
	<-arrived // the first holds the only connection
	go ask()
	waitFor(t, "the second waiting for a connection", func() bool { return up.pending.Load() == 1 })
	c, br := dialRaw(t, addr)
	_, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	resp, body := readResp(t, br, "GET")
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "a third is over MaxPendingRequests")
	assert.True(t, strings.HasPrefix(body, "503"), body)
	close(hold)
	assert.Equal(t, 200, <-codes)
	assert.Equal(t, 200, <-codes, "the waiting request got the connection")
	assert.Zero(t, up.pending.Load())
}

// TestEventLoopBreakerWaitEnds: a request waiting for a connection slot
// longer than the connect timeout is refused (503).
func TestEventLoopBreakerWaitEnds(t *testing.T) {
	hold := make(chan struct{})
	defer close(hold)
	arrived := make(chan struct{}, 2)
	tg := newTarget(t, "a", func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-hold
	})
	up := upstreamOf(t, "web", tg)
	up.SetLimits(Limits{MaxConnsPerTarget: 1})
	h := configured(t, &HTTP{EventLoop: true, Retry: Retry{Attempts: 1}}, forwardTo(t, up), Timeouts{Connect: 200 * time.Millisecond, Response: time.Minute})
	addr := serve(t, h)
	c1, _ := dialRaw(t, addr)
	_, err := io.WriteString(c1, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	<-arrived
	c, br := dialRaw(t, addr)
	asked := time.Now()
	_, err = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	resp, _ := readResp(t, br, "GET")
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.GreaterOrEqual(t, time.Since(asked), 200*time.Millisecond, "it waited the connect timeout")
	assert.Zero(t, up.pending.Load())
}

// TestEventLoopSlowReader: long bodies (a Content-Length one, spliced;
// a chunked one, its long chunks spliced) to a client that takes them a
// little at a time through a small receive buffer: the relay waits for
// the client and resumes, and every byte arrives in order.
func TestEventLoopSlowReader(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	sum := sha256.Sum256(big)
	tg := newTarget(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("chunked") == "" {
			w.Header().Set("Content-Length", strconv.Itoa(len(big)))
		}
		for off := 0; off < len(big); off += 256 << 10 {
			w.Write(big[off : off+256<<10])
		}
	})
	h := configured(t, &HTTP{EventLoop: true}, forwardTo(t, upstreamOf(t, "web", tg)))
	addr := serve(t, h)
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		if err != nil {
			return err
		}
		return serr
	}}
	c, err := d.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(30*time.Second)))
	br := bufio.NewReaderSize(c, 512)
	for _, q := range []string{"", "?chunked=1", ""} {
		_, err := io.WriteString(c, "GET /"+q+" HTTP/1.1\r\nHost: x\r\n\r\n")
		require.NoError(t, err)
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		hash := sha256.New()
		buf := make([]byte, 1024)
		for {
			n, err := resp.Body.Read(buf)
			hash.Write(buf[:n])
			if err == io.EOF {
				break
			}
			require.NoError(t, err)
		}
		assert.Equal(t, sum[:], hash.Sum(nil), "body %q", q)
	}
}
