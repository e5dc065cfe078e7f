package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lbkit/lbkit/balancer"
	"github.com/stretchr/testify/require"
)

// target is a real HTTP server on 127.0.0.1 that answers with its name, and
// records the last request's headers.
type target struct {
	*httptest.Server
	name string
	mu   sync.Mutex // guards last
	last *http.Request
}

func newTarget(t testing.TB, name string, h http.HandlerFunc) *target {
	t.Helper()
	tg := &target{name: name}
	tg.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tg.mu.Lock()
		tg.last = r.Clone(context.Background())
		tg.mu.Unlock()
		if h != nil {
			h(w, r)
			return
		}
		io.WriteString(w, name)
	}))
	t.Cleanup(tg.Close)
	return tg
}

func (tg *target) lastRequest() *http.Request {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return tg.last
}

func (tg *target) addr() string { return tg.Listener.Addr().String() }

// upstreamOf makes an Upstream whose targets have the given names as IDs.
func upstreamOf(t testing.TB, name string, ts ...*target) *Upstream {
	t.Helper()
	var bts []balancer.Target
	for _, tg := range ts {
		bts = append(bts, balancer.Target{ID: tg.name, Addr: tg.addr(), Weight: 1})
	}
	b, err := balancer.New(balancer.WithTargets(bts...))
	require.NoError(t, err)
	return &Upstream{Name: name, Balancer: b}
}

// closedAddr returns a loopback address where nothing listens.
func closedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// serve runs h on a fresh 127.0.0.1 listener until the test ends, and
// returns the listener's address.
func serve(t testing.TB, h *HTTP) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- h.Serve(ln) }()
	t.Cleanup(func() {
		require.NoError(t, h.Close())
		require.ErrorIs(t, <-done, http.ErrServerClosed)
	})
	return ln.Addr().String()
}

// fronts are the proxy's two front ends, which tests run alike: lbkit's
// HTTP/1.1 engine (Serve) and net/http's server calling ServeHTTP (as it
// does for HTTP/2 connections and for programs that mount the proxy).
var fronts = []string{"engine", "handler"}

// serveVia serves h through the named front end until the test ends, and
// returns the address.
func serveVia(t testing.TB, h *HTTP, via string) string {
	t.Helper()
	if via == "engine" {
		return serve(t, h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		require.NoError(t, h.Close())
	})
	return srv.Listener.Addr().String()
}

// client returns an HTTP client that closes its idle connections when the
// test ends.
func client(t testing.TB) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 100}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// get returns the status and body of a GET.
func get(t testing.TB, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// raw sends bytes on a fresh connection and returns the response, read
// until the proxy closes the connection or the response is complete.
func raw(t testing.TB, addr, req string) *http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = io.WriteString(c, req)
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp
}

// logBuffer collects access log records as JSON lines.
type logBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
}

func hdr(kv ...string) string {
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", kv[i], kv[i+1])
	}
	return b.String()
}

// configured sets h's live settings for a test: its router (unless nil)
// and, if given, its timeouts. It fails the test on an error and returns
// h.
func configured(t testing.TB, h *HTTP, r *Router, tmo ...Timeouts) *HTTP {
	t.Helper()
	if r != nil {
		if err := h.SetRouter(r); err != nil {
			t.Fatal(err)
		}
	}
	for _, tm := range tmo {
		if err := h.SetTimeouts(tm); err != nil {
			t.Fatal(err)
		}
	}
	return h
}
