package proxy_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/lbkit/lbkit/balancer"
	"github.com/lbkit/lbkit/proxy"
)

// An HTTP listener with a target group, a fixed response for health
// probes and an HTTP→HTTPS redirect for one host.
func ExampleHTTP() {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "app saw %s from %s", r.URL.Path, r.Header.Get("X-Forwarded-For"))
	}))
	defer app.Close()

	b, _ := balancer.New(balancer.WithTargets(balancer.Target{ID: "app-1", Addr: app.Listener.Addr().String(), Weight: 1}))
	web := &proxy.Upstream{Name: "web", Balancer: b}
	router, err := proxy.NewRouter(proxy.Action{Forward: web},
		proxy.Rule{Name: "health", Path: "/healthz", Action: proxy.Action{Fixed: &proxy.FixedResponse{Body: "ok"}}},
		proxy.Rule{Name: "secure", Host: "shop.example.com", Action: proxy.Action{Redirect: &proxy.Redirect{Scheme: "https", Code: 308}}},
	)
	if err != nil {
		panic(err)
	}
	h := &proxy.HTTP{MaxBodyBytes: 1 << 20} // start-up configuration: fields
	if err := h.Validate(); err != nil {
		panic(err)
	}
	// Live settings, which may change while serving: Set methods.
	if err := h.SetRouter(router); err != nil {
		panic(err)
	}
	if err := h.SetTimeouts(proxy.Timeouts{Response: 10 * time.Second}); err != nil {
		panic(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go h.Serve(ln)
	defer h.Close()

	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer c.CloseIdleConnections()
	for _, host := range []string{"", "shop.example.com"} {
		for _, path := range []string{"/cart", "/healthz"} {
			req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+path, nil)
			if host != "" {
				req.Host = host
			}
			resp, err := c.Do(req)
			if err != nil {
				panic(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			fmt.Printf("%d %s\n", resp.StatusCode, strings.TrimSpace(resp.Header.Get("Location")+" "+string(body)))
		}
	}
	fmt.Println("requests:", h.Stats().Requests)
	// Output:
	// 200 app saw /cart from 127.0.0.1
	// 200 ok
	// 308 https://shop.example.com/cart
	// 200 ok
	// requests: 4
}

// An HTTP listener served by event loops (Linux; elsewhere the field
// changes nothing): the same proxy, at a lower cost per request.
func ExampleHTTP_eventLoop() {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "app saw %s %s", r.Method, r.URL.Path)
	}))
	defer app.Close()

	b, _ := balancer.New(balancer.WithTargets(balancer.Target{ID: "app-1", Addr: app.Listener.Addr().String(), Weight: 1}))
	router, _ := proxy.Forward(&proxy.Upstream{Name: "web", Balancer: b})
	h := &proxy.HTTP{EventLoop: true}
	if err := h.SetRouter(router); err != nil {
		panic(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go h.Serve(ln)
	defer h.Close()

	c := &http.Client{}
	defer c.CloseIdleConnections()
	for _, req := range []struct{ method, body string }{{"GET", ""}, {"POST", "form=1"}} {
		// The GET is the loops' own; the POST, with a body, is handed to
		// the engine's goroutine with its connection. The answers do not
		// tell them apart.
		r, _ := http.NewRequest(req.method, "http://"+ln.Addr().String()+"/orders", strings.NewReader(req.body))
		resp, err := c.Do(r)
		if err != nil {
			panic(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(resp.StatusCode, string(body))
	}
	// Output:
	// 200 app saw GET /orders
	// 200 app saw POST /orders
}

// Certificates chosen by SNI, replaced at run time.
func ExampleCertificates() {
	var certs proxy.Certificates
	// certs.Set(proxy.WildcardOneLabel, defaultCert, wwwCert, wildcardCert)
	// ... later, a renewed certificate, without dropping a connection:
	// certs.Set(proxy.WildcardOneLabel, defaultCert, renewedWWW, wildcardCert)
	h := &proxy.HTTP{TLS: &proxy.TLS{Certificates: &certs}}
	_ = h
	fmt.Println(certs.Len())
	// Output: 0
}
