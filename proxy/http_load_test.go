//go:build unix

package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHTTPSlowClients: 1 000 connections trickling a request one byte at
// a time do not stop 100 normal clients, and each slow one ends with 408
// when its request timeout passes.
func TestHTTPSlowClients(t *testing.T) {
	const slow, normal = 1000, 100
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < 4*slow {
		t.Skipf("needs %d file descriptors, have %d", 4*slow, lim.Cur)
	}
	tg := newTarget(t, "a", nil)
	h := configured(t, &HTTP{}, forwardTo(t, upstreamOf(t, "web", tg)), Timeouts{Request: 2 * time.Second})
	addr := serve(t, h)

	conns := make([]net.Conn, 0, slow)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// Each slow connection has a reader waiting for its answer from the
	// start, as a real client would.
	var got408 atomic.Int64
	var rg sync.WaitGroup
	for range slow {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		conns = append(conns, c)
		rg.Add(1)
		go func() {
			defer rg.Done()
			c.SetReadDeadline(time.Now().Add(15 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err == nil && resp.StatusCode == http.StatusRequestTimeout {
				got408.Add(1)
			}
		}()
	}
	// One goroutine trickles a byte to every slow connection every 200ms.
	stop := make(chan struct{})
	trickled := make(chan struct{})
	go func() {
		defer close(trickled)
		msg := "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("a", 100)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < len(msg); i++ {
			for _, c := range conns {
				c.SetWriteDeadline(time.Now().Add(time.Second))
				c.Write([]byte{msg[i]}) // fails once the proxy has answered 408 and closed
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()

	var wg sync.WaitGroup
	var ok atomic.Int64
	for range normal {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
			for range 5 {
				resp, err := c.Get("http://" + addr + "/")
				if err != nil {
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					ok.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, int64(normal*5), ok.Load(), "every normal request succeeds")

	// The slow ones get 408 when their 2 s pass.
	rg.Wait()
	close(stop)
	<-trickled
	assert.Equal(t, int64(slow), got408.Load())
	assert.Equal(t, uint64(slow), h.Stats().RequestTimeouts)
}

func TestHTTPShutdown(t *testing.T) {
	reached := make(chan struct{})
	release := make(chan struct{})
	tg := newTarget(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(reached)
			<-release
		}
		io.WriteString(w, "done")
	})
	wsTarget := newTarget(t, "ws", wsEcho)
	rt, err := NewRouter(Action{Forward: upstreamOf(t, "web", tg)},
		Rule{Path: "/chat", Action: Action{Forward: upstreamOf(t, "ws", wsTarget)}})
	require.NoError(t, err)
	h := configured(t, &HTTP{}, rt)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- h.Serve(ln) }()
	addr := ln.Addr().String()

	ws, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer ws.Close()
	wsRoundTrip(t, ws)

	type result struct {
		code int
		body string
		err  error
	}
	c := client(t)
	code, _ := get(t, c, "http://"+addr+"/") // leaves a kept-alive connection
	require.Equal(t, 200, code)
	res := make(chan result, 1)
	go func() {
		resp, err := client(t).Get("http://" + addr + "/slow")
		if err != nil {
			res <- result{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		res <- result{code: resp.StatusCode, body: string(b)}
	}()
	<-reached
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- h.Shutdown(ctx) }()
	require.ErrorIs(t, <-served, http.ErrServerClosed, "the listener closes at once")
	_, err = net.Dial("tcp", addr)
	require.Error(t, err, "no new connections")
	_, err = c.Get("http://" + addr + "/")
	require.Error(t, err, "the idle kept-alive connection was closed and nothing accepts a new one")
	close(release)
	r := <-res
	require.NoError(t, r.err)
	assert.Equal(t, "done", r.body, "the request in flight finishes")
	// The WebSocket is not a keep-alive connection: it is cut when ctx ends.
	assert.ErrorIs(t, <-shut, context.DeadlineExceeded)
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = ws.Read(make([]byte, 1))
	assert.True(t, errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET), "got %v", err)
	assert.ErrorIs(t, h.Serve(ln), http.ErrServerClosed, "no serving after shutdown")
}

func TestHTTPSetRouterLive(t *testing.T) {
	a, b := newTarget(t, "a", nil), newTarget(t, "b", nil)
	h := configured(t, &HTTP{}, forwardTo(t, upstreamOf(t, "ga", a)))
	addr := serve(t, h)
	c := client(t)
	_, body := get(t, c, "http://"+addr+"/")
	assert.Equal(t, "a", body)
	h.SetRouter(forwardTo(t, upstreamOf(t, "gb", b)))
	_, body = get(t, c, "http://"+addr+"/")
	assert.Equal(t, "b", body, "the next request, on the same connection, takes the new router")
	h.SetTimeouts(Timeouts{Connect: time.Nanosecond})
	// A group the proxy has no connection to yet: the next request must
	// connect, within the new timeout.
	h.SetRouter(forwardTo(t, upstreamOf(t, "gc", newTarget(t, "c", nil))))
	code, _ := get(t, c, "http://"+addr+"/")
	assert.Equal(t, 504, code, "new timeouts apply to the next request")
}

func TestHTTPDrainCutsUpgrades(t *testing.T) {
	tg := newTarget(t, "ws", wsEcho)
	up := upstreamOf(t, "ws", tg)
	addr := serve(t, configured(t, &HTTP{}, forwardTo(t, up)))
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	wsRoundTrip(t, c)
	up.Drain("ws", 0)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Read(make([]byte, 1))
	assert.True(t, errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET), "the drained target's WebSocket is closed, got %v", err)
}

// TestHTTPShutdownClosesIdleConnections: Shutdown does not wait for an idle
// keep-alive connection to time out, as http.Server.Shutdown.
func TestHTTPShutdownClosesIdleConnections(t *testing.T) {
	h := configured(t, &HTTP{}, forwardTo(t, upstreamOf(t, "web", newTarget(t, "a", nil))), Timeouts{Idle: time.Hour})
	conn, served := serveDial(t, h)
	_, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	_, err = io.Copy(io.Discard, resp.Body)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, int64(1), h.Stats().ActiveConnections)

	// Were Shutdown to wait for the idle timeout (an hour), ctx would end
	// first and Shutdown would return its error.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, h.Shutdown(ctx))
	assert.Zero(t, h.Stats().ActiveConnections)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = br.ReadByte()
	assert.True(t, errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET), "the idle connection is closed, got %v", err)
	assert.ErrorIs(t, <-served, http.ErrServerClosed)
}

// TestHTTPSetTimeoutsNewConnections: a changed idle timeout applies to new
// connections; an established one keeps its own.
func TestHTTPSetTimeoutsNewConnections(t *testing.T) {
	h := configured(t, &HTTP{}, forwardTo(t, upstreamOf(t, "web", newTarget(t, "a", nil))), Timeouts{Idle: time.Hour})
	addr := serve(t, h)
	request := func(c net.Conn, br *bufio.Reader) {
		t.Helper()
		_, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		require.NoError(t, err)
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode)
	}
	old, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer old.Close()
	require.NoError(t, old.SetDeadline(time.Now().Add(10*time.Second)))
	oldR := bufio.NewReader(old)
	request(old, oldR)

	h.SetTimeouts(Timeouts{Idle: 100 * time.Millisecond})
	fresh, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer fresh.Close()
	require.NoError(t, fresh.SetDeadline(time.Now().Add(10*time.Second)))
	freshR := bufio.NewReader(fresh)
	request(fresh, freshR)
	_, err = freshR.ReadByte()
	require.ErrorIs(t, err, io.EOF, "the new connection idles out after 100ms")

	request(old, oldR) // idle longer than 100ms, and still open
	assert.Equal(t, int64(1), h.Stats().ActiveConnections)
}

// TestHTTPShutdownServesNewConnections: a connection accepted before
// Shutdown but still without a request is not idle: its client connected
// to send one (in a binary upgrade, just before the old process let go of
// the socket), so the request is served and the connection then closes.
func TestHTTPShutdownServesNewConnections(t *testing.T) {
	h := configured(t, &HTTP{}, forwardTo(t, upstreamOf(t, "web", newTarget(t, "a", nil))), Timeouts{Idle: time.Hour})
	conn, served := serveDial(t, h)
	require.Eventually(t, func() bool { return h.Stats().ActiveConnections == 1 }, 5*time.Second, time.Millisecond)

	shut := shutdownBegun(t, h)

	_, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err, "the new connection's first request is answered")
	_, err = io.Copy(io.Discard, resp.Body)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	_, err = br.ReadByte()
	assert.True(t, errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET), "then it closes, got %v", err)
	require.NoError(t, <-shut)
	assert.ErrorIs(t, <-served, http.ErrServerClosed)
}

// TestHTTPShutdownServesConnectionNotYetTracked: a connection accepted
// before Shutdown whose goroutine had not registered it yet is served as
// well (it was closed at once when it was the proxy's first connection).
func TestHTTPShutdownServesConnectionNotYetTracked(t *testing.T) {
	if testEventLoop {
		t.Skip("plain connections go to the event loops, not to a goroutine of their own")
	}
	h := configured(t, &HTTP{}, forwardTo(t, upstreamOf(t, "web", newTarget(t, "a", nil))), Timeouts{Idle: time.Hour})
	reached, resume := make(chan struct{}), make(chan struct{})
	testHookEngineTrack = func() {
		close(reached)
		<-resume
	}
	t.Cleanup(func() { testHookEngineTrack = nil })
	conn, served := serveDial(t, h)
	<-reached

	shut := shutdownBegun(t, h)
	close(resume)

	_, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err, "the connection's request is answered")
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	require.NoError(t, <-shut)
	assert.ErrorIs(t, <-served, http.ErrServerClosed)
}

// serveDial serves h on a new loopback listener and dials it; served
// receives what Serve returns.
func serveDial(t *testing.T, h *HTTP) (net.Conn, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- h.Serve(ln) }()
	conn, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn, served
}

// shutdownBegun starts h.Shutdown (10 s deadline) and returns once it has
// begun; the channel receives what Shutdown returns.
func shutdownBegun(t *testing.T, h *HTTP) <-chan error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	shut := make(chan error, 1)
	go func() { shut <- h.Shutdown(ctx) }()
	require.Eventually(t, h.shuttingDown, 5*time.Second, time.Millisecond)
	return shut
}
