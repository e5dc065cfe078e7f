package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lbkit/lbkit/balancer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// rawTarget is a loopback TCP server that answers each request read on a
// connection with serve, which may close the connection; it counts
// connections.
type rawTarget struct {
	ln    net.Listener
	conns atomic.Int64
	wg    sync.WaitGroup
	mu    sync.Mutex // guards open
	open  []net.Conn
}

func newRawTarget(t *testing.T, serve func(n int, req *http.Request, c net.Conn) bool) *rawTarget {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	rt := &rawTarget{ln: ln}
	rt.wg.Add(1)
	go func() {
		defer rt.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			rt.conns.Add(1)
			rt.mu.Lock()
			rt.open = append(rt.open, c)
			rt.mu.Unlock()
			rt.wg.Add(1)
			go func() {
				defer rt.wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				for n := 0; ; n++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					if !serve(n, req, c) {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		rt.mu.Lock()
		for _, c := range rt.open {
			c.Close()
		}
		rt.mu.Unlock()
		rt.wg.Wait()
	})
	return rt
}

func (rt *rawTarget) addr() string { return rt.ln.Addr().String() }

// rawUpstream is an Upstream of one raw target.
func rawUpstream(t *testing.T, rt *rawTarget) *Upstream {
	b, err := balancer.New(balancer.WithTargets(balancer.Target{ID: "raw", Addr: rt.addr(), Weight: 1}))
	require.NoError(t, err)
	return &Upstream{Name: "web", Balancer: b}
}

// dialsOf returns how many connections the proxy made to up's targets:
// its engine's pool's and its event loops'.
func dialsOf(h *HTTP, up *Upstream) int64 {
	var n int64
	if v, ok := h.pools.Load(up); ok {
		n += v.(*pool).dials.Load()
	}
	if ls := h.runningLoops(); ls != nil {
		n += ls.dials.Load()
	}
	return n
}

// idleOf returns how many idle connections to addr the proxy keeps: its
// engine's pool's for up and its event loops'.
func idleOf(h *HTTP, up *Upstream, addr string) int {
	n := 0
	if v, ok := h.pools.Load(up); ok {
		n += len(idleConns(v.(*pool), addr))
	}
	if ls := h.runningLoops(); ls != nil {
		n += int(ls.idleConns())
	}
	return n
}

// waitIdleUnusable waits until the proxy's one idle connection to addr
// is seen closed or sent to: by the engine's peek, or by an event loop,
// which closes it then.
func waitIdleUnusable(t *testing.T, h *HTTP, up *Upstream, addr, what string) {
	t.Helper()
	if v, ok := h.pools.Load(up); ok {
		if conns := idleConns(v.(*pool), addr); len(conns) == 1 {
			waitFor(t, what, func() bool { return !conns[0].usable() })
			return
		}
	}
	ls := h.runningLoops()
	require.NotNil(t, ls, "an idle connection to wait on")
	waitFor(t, what, func() bool { return ls.idleConns() == 0 })
}

// idleConns returns the idle connections of p to addr.
func idleConns(p *pool, addr string) []*tconn {
	v, ok := p.hosts.Load(addr)
	if !ok {
		return nil
	}
	h := v.(*poolHost)
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*tconn(nil), h.idle...)
}

func TestHTTPClientReusesConnections(t *testing.T) {
	var news atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "a") }))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			news.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	tg := &target{Server: srv, name: "a"}
	up := upstreamOf(t, "web", tg)
	var logs logBuffer
	h := configured(t, &HTTP{AccessLog: logs.logger()}, forwardTo(t, up))
	addr := serve(t, h)
	c := client(t)
	for range 5 {
		code, body := get(t, c, "http://"+addr+"/")
		require.Equal(t, 200, code)
		require.Equal(t, "a", body)
	}
	assert.Equal(t, int64(1), news.Load(), "one connection to the target for five requests")
	assert.Equal(t, int64(1), dialsOf(h, up))
	assert.Equal(t, 1, idleOf(h, up, tg.addr()))
	assert.Equal(t, "0.000", lastLog(t, h, &logs)["upstream_connect_time"], "a reused connection took no time to connect")
}

func TestHTTPClientPoolBound(t *testing.T) {
	const n = 5
	arrived := make(chan struct{}, n)
	release := make(chan struct{})
	tg := newTarget(t, "a", func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		io.WriteString(w, "a")
	})
	up := upstreamOf(t, "web", tg)
	h := configured(t, &HTTP{MaxIdleConnsPerTarget: 2}, forwardTo(t, up))
	addr := serve(t, h)
	c := client(t)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, _ := get(t, c, "http://"+addr+"/")
			assert.Equal(t, 200, code)
		}()
	}
	for range n {
		<-arrived // every request holds its own connection
	}
	close(release)
	wg.Wait()
	assert.Equal(t, int64(n), dialsOf(h, up))
	assert.Equal(t, 2, idleOf(h, up, tg.addr()), "the pool keeps MaxIdleConnsPerTarget")
}

func TestHTTPClientConnectionClose(t *testing.T) {
	tg := newTarget(t, "a", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, "a")
	})
	up := upstreamOf(t, "web", tg)
	h := configured(t, &HTTP{}, forwardTo(t, up))
	addr := serve(t, h)
	c := client(t)
	for range 2 {
		code, body := get(t, c, "http://"+addr+"/")
		require.Equal(t, 200, code)
		require.Equal(t, "a", body)
	}
	assert.Equal(t, int64(2), dialsOf(h, up), "Connection: close is not reused")
	assert.Zero(t, idleOf(h, up, tg.addr()))
}

// TestHTTPClientStaleConnection: a target closes a kept-alive connection
// while it is idle: the peek sees it and the request goes on a new
// connection, whatever its method.
func TestHTTPClientStaleConnection(t *testing.T) {
	rt := newRawTarget(t, func(n int, req *http.Request, c net.Conn) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return false // close without saying so
	})
	up := rawUpstream(t, rt)
	h := configured(t, &HTTP{}, forwardTo(t, up))
	addr := serve(t, h)
	c := client(t)
	code, _ := get(t, c, "http://"+addr+"/")
	require.Equal(t, 200, code)
	waitStale := func() {
		if h.runningLoops() == nil {
			require.Equal(t, 1, idleOf(h, up, rt.addr()))
		} // an event loop may see the close come with the answer, and not keep it
		waitIdleUnusable(t, h, up, rt.addr(), "the target's close to arrive")
	}
	waitStale()
	code, body := get(t, c, "http://"+addr+"/")
	assert.Equal(t, 200, code)
	assert.Equal(t, "ok", body)
	assert.Equal(t, int64(2), dialsOf(h, up))
	waitStale()
	resp, err := c.Post("http://"+addr+"/", "text/plain", strings.NewReader("body"))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, int64(3), dialsOf(h, up))
	assert.Equal(t, int64(3), rt.conns.Load(), "nothing was written to a closed connection")
	assert.Zero(t, h.Stats().Retries, "no retry on another target")
}

// TestHTTPClientUnsolicitedBytes: bytes a target sends after its answer
// (here a body to a HEAD, written late) are never read as the next
// request's answer: the connection is closed when taken.
func TestHTTPClientUnsolicitedBytes(t *testing.T) {
	late := make(chan struct{})
	rt := newRawTarget(t, func(n int, req *http.Request, c net.Conn) bool {
		if req.Method == http.MethodHead {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 47\r\n\r\n")
			<-late
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil")
			return true
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood")
		return true
	})
	up := rawUpstream(t, rt)
	h := configured(t, &HTTP{}, forwardTo(t, up))
	addr := serve(t, h)
	c := client(t)
	resp, err := c.Head("http://" + addr + "/")
	require.NoError(t, err)
	resp.Body.Close()
	close(late)
	require.Equal(t, 1, idleOf(h, up, rt.addr()))
	waitIdleUnusable(t, h, up, rt.addr(), "the late bytes to arrive")
	code, body := get(t, c, "http://"+addr+"/")
	assert.Equal(t, 200, code)
	assert.Equal(t, "good", body)
}

// TestHTTPClientIdle408: some servers answer an idle keep-alive
// connection's timeout with an unsolicited 408 before closing it; that
// answer is not the next request's.
func TestHTTPClientIdle408(t *testing.T) {
	idle := make(chan struct{})
	rt := newRawTarget(t, func(n int, req *http.Request, c net.Conn) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		if n == 0 && req.URL.Path == "/first" {
			<-idle
			io.WriteString(c, "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
			return false
		}
		return true
	})
	up := rawUpstream(t, rt)
	h := configured(t, &HTTP{}, forwardTo(t, up))
	addr := serve(t, h)
	c := client(t)
	code, _ := get(t, c, "http://"+addr+"/first")
	require.Equal(t, 200, code)
	close(idle)
	require.Equal(t, 1, idleOf(h, up, rt.addr()))
	waitIdleUnusable(t, h, up, rt.addr(), "the 408 to arrive")
	code, body := get(t, c, "http://"+addr+"/second")
	assert.Equal(t, 200, code)
	assert.Equal(t, "ok", body)
	assert.Equal(t, int64(2), rt.conns.Load())
}

// TestHTTPClientResend: a target that closes a reused connection after
// reading a request, without answering, gets a bodiless GET again on a
// new connection (the target cannot have acted on a request it never
// answered, for an idempotent method); a POST is not sent again.
func TestHTTPClientResend(t *testing.T) {
	rt := newRawTarget(t, func(n int, req *http.Request, c net.Conn) bool {
		if n > 0 {
			return false // read the second request, close unanswered
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
	up := rawUpstream(t, rt)
	h := configured(t, &HTTP{}, forwardTo(t, up))
	addr := serve(t, h)
	c := client(t)
	for range 2 {
		code, body := get(t, c, "http://"+addr+"/")
		assert.Equal(t, 200, code)
		assert.Equal(t, "ok", body)
	}
	assert.Equal(t, int64(2), dialsOf(h, up), "the second GET went again on a new connection")
	assert.Zero(t, h.Stats().Retries, "not a retry on another target")
	if h.runningLoops() != nil {
		// The POST goes to the engine's goroutine, whose pool has no
		// connection that served a request before.
		return
	}
	resp, err := c.Post("http://"+addr+"/", "text/plain", strings.NewReader("body"))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 502, resp.StatusCode, "a POST the target may have acted on is not sent again")
}

// TestHTTPClientBadResponses: answers the direct client refuses with 502,
// never reusing the connection they came on.
func TestHTTPClientBadResponses(t *testing.T) {
	for _, tc := range []struct {
		name, answer string
	}{
		{"header over the limit", "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", maxResponseHeaderBytes) + "\r\nContent-Length: 0\r\n\r\n"},
		{"too many 1xx", strings.Repeat("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", max1xx+1) + "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
		{"101 unasked", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n"},
		{"malformed", "HTTP/1.1 abc\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := newRawTarget(t, func(n int, req *http.Request, c net.Conn) bool {
				io.WriteString(c, tc.answer)
				return true
			})
			up := rawUpstream(t, rt)
			h := configured(t, &HTTP{Retry: Retry{Attempts: 1}}, forwardTo(t, up))
			addr := serve(t, h)
			code, _ := get(t, client(t), "http://"+addr+"/")
			assert.Equal(t, 502, code)
			assert.Zero(t, idleOf(h, up, rt.addr()))
		})
	}
}

// TestHTTPClientExtraBytes: a target that sends more than its
// Content-Length has desynchronised the connection; it is closed, and the
// next request gets its own answer on a new one.
func TestHTTPClientExtraBytes(t *testing.T) {
	rt := newRawTarget(t, func(n int, req *http.Request, c net.Conn) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled")
		return true
	})
	up := rawUpstream(t, rt)
	h := configured(t, &HTTP{}, forwardTo(t, up))
	addr := serve(t, h)
	c := client(t)
	for range 2 {
		code, body := get(t, c, "http://"+addr+"/")
		assert.Equal(t, 200, code)
		assert.Equal(t, "ok", body)
	}
	assert.Equal(t, int64(2), rt.conns.Load())
}

// TestHTTPClientAborted: when the client goes away, waiting for the
// target's answer or in the middle of a streamed one, the connection to the
// target is closed (the target sees it), not pooled, the handler returns and
// the request is logged as 499. On plain HTTP/1 the client's connection
// notices; over TLS and behind another server a context.AfterFunc does.
func TestHTTPClientAborted(t *testing.T) {
	ca := newCA(t)
	var certs Certificates
	require.NoError(t, certs.Set(WildcardOneLabel, ca.issue(t, false, "x.example.com")))
	for _, mode := range []string{"plain", "tls", "handler"} {
		for _, phase := range []string{"header", "body"} {
			t.Run(mode+"/"+phase, func(t *testing.T) {
				gone := make(chan struct{})
				reached := make(chan struct{})
				tg := newTarget(t, "a", func(w http.ResponseWriter, r *http.Request) {
					if phase == "body" {
						io.WriteString(w, "first;")
						w.(http.Flusher).Flush()
					}
					close(reached)
					<-r.Context().Done() // the proxy closed the connection
					close(gone)
				})
				up := upstreamOf(t, "web", tg)
				h := configured(t, &HTTP{}, forwardTo(t, up))
				var c net.Conn
				switch mode {
				case "plain":
					var err error
					c, err = net.Dial("tcp", serve(t, h))
					require.NoError(t, err)
				case "tls":
					h.TLS = &TLS{Certificates: &certs}
					var err error
					c, err = tls.Dial("tcp", serve(t, h), &tls.Config{ServerName: "x.example.com", RootCAs: ca.pool, NextProtos: []string{"http/1.1"}})
					require.NoError(t, err)
				case "handler":
					srv := httptest.NewServer(h)
					defer srv.Close()
					defer h.Close()
					var err error
					c, err = net.Dial("tcp", srv.Listener.Addr().String())
					require.NoError(t, err)
				}
				defer c.Close()
				require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
				_, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x.example.com\r\n\r\n")
				require.NoError(t, err)
				<-reached
				if phase == "body" {
					resp, err := http.ReadResponse(bufio.NewReader(c), nil)
					require.NoError(t, err)
					buf := make([]byte, 6)
					_, err = io.ReadFull(resp.Body, buf)
					require.NoError(t, err)
					assert.Equal(t, "first;", string(buf))
				}
				c.Close()
				<-gone
				waitFor(t, "the request to end as 499", func() bool {
					st := h.Stats()
					return st.ClientClosed == 1 && st.ActiveRequests == 0
				})
				assert.Zero(t, idleOf(h, up, tg.addr()))
			})
		}
	}
}

// TestHTTPClientIdleSweep: connections idle for idleConnTimeout are closed
// by the pool's one timer, which stops when the pool is empty.
func TestHTTPClientIdleSweep(t *testing.T) {
	rt := newRawTarget(t, func(int, *http.Request, net.Conn) bool { return true })
	up := rawUpstream(t, rt)
	p := newPool(up, 10)
	defer p.closeIdle()
	st := up.state("raw")
	dial := func() *tconn {
		c, _, err := p.get(context.Background(), context.Background(), st, rt.addr(), time.Second, false)
		require.NoError(t, err)
		return c
	}
	var conns []*tconn
	for range 3 {
		conns = append(conns, dial())
	}
	inUse := dial()
	assert.Equal(t, int64(4), st.openConns.Load(), "each connection holds a slot")
	for _, c := range conns {
		p.put(c)
	}
	p.mu.Lock()
	assert.True(t, p.armed.Load())
	p.mu.Unlock()
	// The two oldest have been idle too long.
	conns[0].idleAt = conns[0].idleAt.Add(-idleConnTimeout)
	conns[1].idleAt = conns[1].idleAt.Add(-idleConnTimeout)
	p.sweepIdle()
	assert.Equal(t, []*tconn{conns[2]}, idleConns(p, rt.addr()))
	for _, c := range conns[:2] {
		_, err := c.nc.Read(make([]byte, 1))
		assert.ErrorIs(t, err, net.ErrClosed)
	}
	assert.Equal(t, int64(2), st.openConns.Load(), "closed connections give their slots back")
	p.mu.Lock()
	assert.True(t, p.armed.Load(), "rearmed for the one left")
	p.mu.Unlock()
	// A connection in use while its list is let go comes back to a new
	// one.
	conns[2].idleAt = conns[2].idleAt.Add(-idleConnTimeout)
	p.sweepIdle()
	assert.Empty(t, idleConns(p, rt.addr()))
	p.mu.Lock()
	assert.False(t, p.armed.Load(), "nothing idle: the timer is not rearmed")
	p.mu.Unlock()
	_, ok := p.hosts.Load(rt.addr())
	assert.False(t, ok, "the empty list is let go")
	p.put(inUse)
	assert.Equal(t, []*tconn{inUse}, idleConns(p, rt.addr()))
	c, _, err := p.get(context.Background(), context.Background(), st, rt.addr(), time.Second, false)
	require.NoError(t, err)
	assert.Same(t, inUse, c, "taken again from the new list")
	c.close()
	// A closed pool closes what is returned to it.
	c = dial()
	p.closeIdle()
	p.put(c)
	assert.Empty(t, idleConns(p, rt.addr()))
	_, err = c.nc.Read(make([]byte, 1))
	assert.ErrorIs(t, err, net.ErrClosed)
	assert.Zero(t, st.openConns.Load())
}

// TestHTTPFastPathStreams: a streamed answer (no length, or server-sent
// events) reaches the client as it comes, its header first, through both
// paths.
func TestHTTPFastPathStreams(t *testing.T) {
	for _, ct := range []string{"", "text/event-stream"} {
		for _, via := range fronts {
			step := make(chan struct{})
			tg := newTarget(t, "a", func(w http.ResponseWriter, r *http.Request) {
				if ct != "" {
					w.Header().Set("Content-Type", ct)
					w.Header().Set("Content-Length", "11")
				}
				w.WriteHeader(200)
				w.(http.Flusher).Flush()
				<-step
				io.WriteString(w, "event one;")
				w.(http.Flusher).Flush()
				<-step
				io.WriteString(w, "!")
			})
			h := configured(t, &HTTP{}, forwardTo(t, upstreamOf(t, "web", tg)))
			addr := serveVia(t, h, via)
			c, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
			_, err = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			require.NoError(t, err)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			require.NoError(t, err, "the header arrives before any body")
			step <- struct{}{}
			buf := make([]byte, 10)
			_, err = io.ReadFull(resp.Body, buf)
			require.NoError(t, err)
			assert.Equal(t, "event one;", string(buf), "the first event arrives before the rest is written")
			step <- struct{}{}
			rest, _ := io.ReadAll(resp.Body)
			assert.Equal(t, "!", string(rest))
			c.Close()
		}
	}
}
