package proxy

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/lbkit/lbkit/balancer"
	"github.com/lbkit/lbkit/internal/benchcpu"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// BenchmarkHTTP measures one GET of a 100-byte response through the proxy
// on loopback, client and target in the same process, beside the baseline:
// a plain httputil.ReverseProxy (impl=httputil, with the same keep-alive
// pool size so that the comparison is of the proxies, not of Go's default
// of 2 idle connections). impl=lbkit-handler is the proxy mounted as an
// http.Handler in net/http's server instead of its own engine. cpu-ns/op is the process's CPU time per request,
// client and target included.
func BenchmarkHTTP(b *testing.B) {
	body := strings.Repeat("x", 100)
	tg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) }))
	defer tg.Close()
	tu, _ := url.Parse(tg.URL)

	run := func(b *testing.B, h http.Handler) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		srv := &http.Server{Handler: h}
		if p, ok := h.(*HTTP); ok {
			go p.Serve(ln)
			defer p.Close()
		} else {
			go srv.Serve(ln)
			defer srv.Close()
		}
		tr := &http.Transport{MaxIdleConnsPerHost: 512}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr}
		u := "http://" + ln.Addr().String() + "/"
		b.ReportAllocs()
		b.ResetTimer()
		defer benchcpu.Measure(b)()
		b.RunParallel(func(pb *testing.PB) {
			buf := make([]byte, 512)
			for pb.Next() {
				resp, err := c.Get(u)
				if err != nil {
					b.Error(err)
					return
				}
				n, _ := io.ReadFull(resp.Body, buf[:100])
				resp.Body.Close()
				if resp.StatusCode != 200 || n != 100 {
					b.Errorf("status %d, %d bytes", resp.StatusCode, n)
					return
				}
			}
		})
	}
	b.Run("impl=lbkit", func(b *testing.B) {
		run(b, configured(b, &HTTP{}, forwardTo(b, upstreamOf(b, "web", &target{Server: tg, name: "t"}))))
	})
	b.Run("impl=lbkit-handler", func(b *testing.B) {
		// The same proxy as an http.Handler under net/http's server (its
		// HTTP/2 front end, and what embedders get).
		h := configured(b, &HTTP{}, forwardTo(b, upstreamOf(b, "web", &target{Server: tg, name: "t"})))
		defer h.Close()
		run(b, http.HandlerFunc(h.ServeHTTP))
	})
	b.Run("impl=httputil", func(b *testing.B) {
		rp := httputil.NewSingleHostReverseProxy(tu)
		tr := &http.Transport{MaxIdleConnsPerHost: 512}
		defer tr.CloseIdleConnections()
		rp.Transport = tr
		run(b, rp)
	})
}

// BenchmarkRoute measures routing one request among 20 host and path rules,
// beside the baseline: http.ServeMux with the same patterns.
func BenchmarkRoute(b *testing.B) {
	up := &Upstream{Name: "u", Balancer: nil}
	var rules []Rule
	mux := http.NewServeMux()
	nop := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	for i := range 10 {
		host := "svc" + string(rune('a'+i)) + ".example.com"
		rules = append(rules, Rule{Host: host, Path: "/api/*", Action: Action{Fixed: &FixedResponse{}}})
		rules = append(rules, Rule{Host: host, Path: "/static/*", Action: Action{Fixed: &FixedResponse{}}})
		mux.Handle(host+"/api/", nop)
		mux.Handle(host+"/static/", nop)
	}
	_ = up
	rt, err := NewRouter(Action{Fixed: &FixedResponse{}}, rules...)
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest("GET", "http://svcj.example.com/static/app.js", nil)
	b.Run("impl=router", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			rt.Match(req.Host, req.URL.Path)
		}
	})
	b.Run("impl=servemux", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			mux.Handler(req)
		}
	})
}

// rawHTTPTarget is a minimal HTTP/1.1 target for benchmarks: it answers
// every request on a connection with the same 100-byte response, reading
// requests with a fixed buffer, so that it allocates nothing per request.
func rawHTTPTarget(b testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n" + strings.Repeat("x", 100))
	var wg sync.WaitGroup
	b.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, 8<<10)
				n := 0
				for {
					m, err := c.Read(buf[n:])
					if err != nil {
						return
					}
					n += m
					// Every complete head is one request (the benchmark
					// sends no bodies).
					for {
						i := bytes.Index(buf[:n], []byte("\r\n\r\n"))
						if i < 0 {
							break
						}
						if _, err := c.Write(resp); err != nil {
							return
						}
						n = copy(buf, buf[i+4:n])
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// BenchmarkHTTPEngine measures one keep-alive GET of a 100-byte response
// through a proxy, with a client and a target that allocate nothing (raw
// sockets, fixed buffers), so that B/op and allocs/op are the proxy's own:
// lbkit's engine (impl=lbkit), with its event loops (impl=lbkit-loop), the
// same proxy as an http.Handler under
// net/http's server (impl=lbkit-handler), and a plain
// httputil.ReverseProxy with a keep-alive pool of the same size
// (impl=httputil). cpu-ns/op is the process's CPU per request, client and
// target included.
func BenchmarkHTTPEngine(b *testing.B) {
	tgAddr := rawHTTPTarget(b)
	up := func() *Upstream {
		bal, err := balancer.New(balancer.WithTargets(balancer.Target{ID: "t", Addr: tgAddr, Weight: 1}))
		if err != nil {
			b.Fatal(err)
		}
		return &Upstream{Name: "web", Balancer: bal}
	}
	run := func(b *testing.B, serve func(net.Listener), stop func()) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		go serve(ln)
		defer stop()
		addr := ln.Addr().String()
		req := []byte("GET /bench HTTP/1.1\r\nHost: bench.example\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
		b.ReportAllocs()
		b.ResetTimer()
		defer benchcpu.Measure(b)()
		b.RunParallel(func(pb *testing.PB) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Error(err)
				return
			}
			defer c.Close()
			buf := make([]byte, 4<<10)
			for pb.Next() {
				if _, err := c.Write(req); err != nil {
					b.Error(err)
					return
				}
				// Read one response: a head with Content-Length: 100.
				n := 0
				for {
					m, err := c.Read(buf[n:])
					if err != nil {
						b.Error(err)
						return
					}
					n += m
					if i := bytes.Index(buf[:n], []byte("\r\n\r\n")); i >= 0 && n >= i+4+100 {
						break
					}
				}
			}
		})
	}
	b.Run("impl=lbkit", func(b *testing.B) {
		h := configured(b, &HTTP{}, forwardTo(b, up()))
		run(b, func(ln net.Listener) { h.Serve(ln) }, func() { h.Close() })
	})
	b.Run("impl=lbkit-loop", func(b *testing.B) {
		// HTTP.EventLoop: the engine's event loops (Linux).
		h := configured(b, &HTTP{EventLoop: true}, forwardTo(b, up()))
		run(b, func(ln net.Listener) { h.Serve(ln) }, func() { h.Close() })
	})
	b.Run("impl=lbkit-observed", func(b *testing.B) {
		// The Observer hook on, with an observer that does nothing: the
		// hook's own cost (the tracing module's is its spans').
		h := configured(b, &HTTP{Observer: nopObserver{}}, forwardTo(b, up()))
		run(b, func(ln net.Listener) { h.Serve(ln) }, func() { h.Close() })
	})
	b.Run("impl=lbkit-handler", func(b *testing.B) {
		h := configured(b, &HTTP{}, forwardTo(b, up()))
		srv := &http.Server{Handler: h}
		run(b, func(ln net.Listener) { srv.Serve(ln) }, func() { srv.Close(); h.Close() })
	})
	b.Run("impl=httputil", func(b *testing.B) {
		rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: tgAddr})
		tr := &http.Transport{MaxIdleConnsPerHost: 512}
		rp.Transport = tr
		srv := &http.Server{Handler: rp}
		run(b, func(ln net.Listener) { srv.Serve(ln) }, func() { srv.Close(); tr.CloseIdleConnections() })
	})
}

// TestHTTPEngineZeroAllocs: a request proxied by the engine over kept-alive
// connections on both sides (access log off) allocates nothing, client and
// target included: what BenchmarkHTTPEngine's allocs/op says, as a test.
func TestHTTPEngineZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts mean nothing under the race detector (sync.Pool drops items at random)")
	}
	t.Run("goroutines", func(t *testing.T) { testHTTPEngineZeroAllocs(t, &HTTP{}) })
	t.Run("event loop", func(t *testing.T) { testHTTPEngineZeroAllocs(t, &HTTP{EventLoop: true}) })
}

func testHTTPEngineZeroAllocs(t *testing.T, h *HTTP) {
	bal, err := balancer.New(balancer.WithTargets(balancer.Target{ID: "t", Addr: rawHTTPTarget(t), Weight: 1}))
	require.NoError(t, err)
	h = configured(t, h, forwardTo(t, &Upstream{Name: "web", Balancer: bal}))
	c, err := net.Dial("tcp", serve(t, h))
	require.NoError(t, err)
	defer c.Close()
	req := []byte("GET /bench HTTP/1.1\r\nHost: bench.example\r\nUser-Agent: bench\r\n\r\n")
	buf := make([]byte, 4<<10)
	one := func() {
		_, err := c.Write(req)
		require.NoError(t, err)
		n := 0
		for {
			m, err := c.Read(buf[n:])
			require.NoError(t, err)
			n += m
			if i := bytes.Index(buf[:n], []byte("\r\n\r\n")); i >= 0 && n >= i+4+100 {
				return
			}
		}
	}
	for range 100 { // pools, buffers and the target connection warm
		one()
	}
	assert.Zero(t, testing.AllocsPerRun(1000, one))
}

// nopObserver observes every request and does nothing.
type nopObserver struct{}

func (nopObserver) StartRequest(*ObservedRequest) RequestObserver { return nopRequest{} }

type nopRequest struct{}

func (nopRequest) StartAttempt(*ObservedAttempt) {}
func (nopRequest) EndAttempt(*ObservedAttempt)   {}
func (nopRequest) EndRequest(*ObservedRequest)   {}
