package healthcheck

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// quietLog discards a test server's log of the failures a test provokes.
func quietLog() *log.Logger { return log.New(io.Discard, "", 0) }

// seen is what a test server saw of one request.
type seen struct {
	method, host, uri, ua, check string
}

// testMux serves the paths the HTTP tests probe.
func testMux(requests chan<- seen, release <-chan struct{}) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/missing", http.NotFound)
	mux.HandleFunc("/auth", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusUnauthorized) })
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ok", http.StatusMovedPermanently) })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select { // answers only after the checker gave up
		case <-release:
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/vhost", func(w http.ResponseWriter, r *http.Request) {
		if r.Host != "api.example.com" {
			w.WriteHeader(http.StatusMisdirectedRequest)
		}
	})
	mux.HandleFunc("/body", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(`{"status": "ok"}`)) })
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(make([]byte, 100<<10)) })
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		requests <- seen{r.Method, r.Host, r.RequestURI, r.UserAgent(), r.Header.Get("X-Check")}
	})
	return mux
}

func newHTTPServer(t *testing.T) (*httptest.Server, chan seen) {
	requests := make(chan seen, 10)
	release := make(chan struct{})
	srv := httptest.NewServer(testMux(requests, release))
	t.Cleanup(func() { close(release); srv.Close() })
	return srv, requests
}

func mustHTTP(t *testing.T, cfg HTTPConfig) *HTTP {
	t.Helper()
	h, err := NewHTTP(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { h.Close() })
	return h
}

func TestHTTPStatusesHostAndBody(t *testing.T) {
	srv, _ := newHTTPServer(t)
	target := Target{ID: "a", Addr: srv.Listener.Addr().String()}
	for _, tc := range []struct {
		name string
		cfg  HTTPConfig
		want string // reason; "" means healthy
	}{
		{"200", HTTPConfig{Path: "/ok"}, ""},
		{"404", HTTPConfig{Path: "/missing"}, "status 404, want 200"},
		{"401", HTTPConfig{Path: "/auth"}, "status 401, want 200"},
		{"401 listed", HTTPConfig{Path: "/auth", Status: "200,202,401"}, ""},
		{"404 outside range", HTTPConfig{Path: "/missing", Status: "200-399"}, "status 404, want 200-399"},
		{"redirect not followed", HTTPConfig{Path: "/moved"}, "status 301, want 200"},
		{"redirect in range", HTTPConfig{Path: "/moved", Status: "200-399"}, ""},
		{"wrong Host", HTTPConfig{Path: "/vhost"}, "status 421, want 200"},
		{"right Host", HTTPConfig{Path: "/vhost", Host: "api.example.com"}, ""},
		{"body matches", HTTPConfig{Path: "/body", Body: `"status":\s*"ok"`}, ""},
		{"body does not match", HTTPConfig{Path: "/body", Body: "fine"}, `body does not match "fine"`},
		{"status before body", HTTPConfig{Path: "/missing", Body: "ok"}, "status 404, want 200"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := mustHTTP(t, tc.cfg).Check(timeoutCtx(t, wait), target)
			assert.Equal(t, tc.want, Reason(err))
			if tc.want != "" {
				var ce *CheckError
				require.ErrorAs(t, err, &ce)
			}
		})
	}
}

func TestHTTPSentinels(t *testing.T) {
	srv, _ := newHTTPServer(t)
	target := Target{ID: "a", Addr: srv.Listener.Addr().String()}
	assert.ErrorIs(t, mustHTTP(t, HTTPConfig{Path: "/missing"}).Check(timeoutCtx(t, wait), target), ErrUnexpectedStatus)
	assert.ErrorIs(t, mustHTTP(t, HTTPConfig{Path: "/body", Body: "x"}).Check(timeoutCtx(t, wait), target), ErrBodyMismatch)
}

func TestHTTPSlowResponsePastTimeout(t *testing.T) {
	srv, _ := newHTTPServer(t)
	target := Target{ID: "a", Addr: srv.Listener.Addr().String()}
	// With ContextWithTimeout, as under a Monitor, the reason quotes the
	// timeout exactly.
	ctx, cancel := ContextWithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	err := mustHTTP(t, HTTPConfig{Path: "/slow"}).Check(ctx, target)
	assert.Equal(t, "timeout after 150ms", Reason(err))
	assert.ErrorIs(t, err, context.DeadlineExceeded)

	// With a plain context, the time that was left when the check started.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	err = mustHTTP(t, HTTPConfig{Path: "/slow"}).Check(ctx2, target)
	assert.Regexp(t, `^timeout after [0-9]+(\.[0-9]+)?ms$`, Reason(err))
}

func TestHTTPRequest(t *testing.T) {
	srv, requests := newHTTPServer(t)
	target := Target{ID: "a", Addr: closedAddr(t, "tcp", "127.0.0.1:0")}
	h := mustHTTP(t, HTTPConfig{
		Port:   portOf(t, srv.Listener.Addr().String()), // health port, not the traffic port
		Method: http.MethodHead,
		Path:   "/echo?full=1",
		Host:   "api.example.com:8080",
		Header: http.Header{"x-check": {"yes"}},
	})
	require.NoError(t, h.Check(timeoutCtx(t, wait), target))
	assert.Equal(t, seen{"HEAD", "api.example.com:8080", "/echo?full=1", "lbkit-healthcheck", "yes"}, <-requests)

	h = mustHTTP(t, HTTPConfig{Path: "/echo", Header: http.Header{"User-Agent": {"probe/2"}}})
	require.NoError(t, h.Check(timeoutCtx(t, wait), Target{ID: "a", Addr: srv.Listener.Addr().String()}))
	got := <-requests
	assert.Equal(t, "probe/2", got.ua)
	assert.Equal(t, "GET", got.method)
	assert.Equal(t, srv.Listener.Addr().String(), got.host, "Host defaults to the target's address")

	err := mustHTTP(t, HTTPConfig{}).Check(timeoutCtx(t, wait), target)
	assert.Equal(t, "connection refused", Reason(err))
}

// connCounter counts a test server's new and closed connections.
type connCounter struct {
	mu     sync.Mutex // guards opened
	opened int
	closed chan struct{}
}

func (c *connCounter) track(_ net.Conn, s http.ConnState) {
	switch s {
	case http.StateNew:
		c.mu.Lock()
		c.opened++
		c.mu.Unlock()
	case http.StateClosed, http.StateHijacked:
		c.closed <- struct{}{}
	}
}

func (c *connCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.opened
}

func TestHTTPConnectionsNotReusedUnlessAsked(t *testing.T) {
	cc := &connCounter{closed: make(chan struct{}, 100)}
	srv := httptest.NewUnstartedServer(testMux(nil, nil))
	srv.Config.ConnState = cc.track
	srv.Start()
	defer srv.Close()
	target := Target{ID: "a", Addr: srv.Listener.Addr().String()}

	h := mustHTTP(t, HTTPConfig{Path: "/big"})
	for range 3 {
		require.NoError(t, h.Check(timeoutCtx(t, wait), target))
	}
	assert.Equal(t, 3, cc.count(), "a new connection per check")
	for range 3 { // each one closed after its check
		select {
		case <-cc.closed:
		case <-time.After(wait):
			t.Fatal("a check's connection was not closed")
		}
	}

	// With KeepAlive one connection serves every check: the 100 KiB body
	// was drained, or the transport could not have reused it.
	h = mustHTTP(t, HTTPConfig{Path: "/big", KeepAlive: true})
	for range 3 {
		require.NoError(t, h.Check(timeoutCtx(t, wait), target))
	}
	assert.Equal(t, 4, cc.count())
	require.NoError(t, h.Close())
}

// testPKI is a CA and a certificate it signed for api.example.com,
// 127.0.0.1 and ::1.
type testPKI struct {
	pool *x509.CertPool
	leaf tls.Certificate
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "lbkit test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "api.example.com"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		DNSNames:    []string{"api.example.com"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return testPKI{pool: pool, leaf: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}}
}

func TestHTTPSWithTestCA(t *testing.T) {
	pki := newTestPKI(t)
	sni := make(chan string, 100)
	srv := httptest.NewUnstartedServer(testMux(nil, nil))
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{pki.leaf}, // without SNI (IP targets)
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) { // with SNI
			sni <- hello.ServerName
			return &pki.leaf, nil
		},
	}
	srv.Config.ErrorLog = quietLog() // handshake failures are what these tests provoke
	srv.StartTLS()
	defer srv.Close()
	plain, _ := newHTTPServer(t)
	target := Target{ID: "a", Addr: srv.Listener.Addr().String()}

	for _, tc := range []struct {
		name    string
		cfg     HTTPConfig
		target  Target
		want    string
		wantSNI string
	}{
		{"system roots", HTTPConfig{Path: "/ok", TLS: &tls.Config{}}, target, "TLS: certificate signed by unknown authority", ""},
		{"test CA, IP SAN", HTTPConfig{Path: "/ok", TLS: &tls.Config{RootCAs: pki.pool}}, target, "", ""},
		{"test CA, Host as SNI", HTTPConfig{Path: "/vhost", Host: "api.example.com", TLS: &tls.Config{RootCAs: pki.pool}}, target, "", "api.example.com"},
		{"wrong server name", HTTPConfig{Path: "/ok", TLS: &tls.Config{RootCAs: pki.pool, ServerName: "other.example.com"}}, target,
			"TLS: certificate is valid for api.example.com, not other.example.com", "other.example.com"},
		{"skip verify, explicitly", HTTPConfig{Path: "/ok", TLS: &tls.Config{InsecureSkipVerify: true}}, target, "", ""},
		{"status over TLS", HTTPConfig{Path: "/missing", TLS: &tls.Config{RootCAs: pki.pool}}, target, "status 404, want 200", ""},
		{"HTTP to the HTTPS port", HTTPConfig{Path: "/ok"}, target, "status 400, want 200", ""},
		{"HTTPS to an HTTP port", HTTPConfig{Path: "/ok", TLS: &tls.Config{RootCAs: pki.pool}},
			Target{ID: "p", Addr: plain.Listener.Addr().String()}, "TLS: target answered with plain HTTP", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for len(sni) > 0 {
				<-sni
			}
			err := mustHTTP(t, tc.cfg).Check(timeoutCtx(t, wait), tc.target)
			assert.Equal(t, tc.want, Reason(err))
			if tc.wantSNI != "" {
				assert.Equal(t, tc.wantSNI, <-sni)
			}
		})
	}
}

func TestHTTPSOverIPv6(t *testing.T) {
	pki := newTestPKI(t)
	ln, err := net.Listen("tcp", "[::1]:0")
	require.NoError(t, err)
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: testMux(nil, nil)},
		TLS: &tls.Config{Certificates: []tls.Certificate{pki.leaf}}}
	srv.Config.ErrorLog = quietLog() // handshake failures are what these tests provoke
	srv.StartTLS()
	defer srv.Close()
	h := mustHTTP(t, HTTPConfig{Path: "/ok", TLS: &tls.Config{RootCAs: pki.pool}})
	require.NoError(t, h.Check(timeoutCtx(t, wait), Target{ID: "a", Addr: ln.Addr().String()}))
}

func TestNewHTTPValidatesEveryField(t *testing.T) {
	_, err := NewHTTP(HTTPConfig{
		Port:   -1,
		Method: "GE T",
		Path:   "healthz",
		Host:   "a b/c",
		Header: http.Header{"Bad Name": {"x"}, "host": {"h"}, "X-Ok": {"a\nb"}},
		Status: "200,abc",
		Body:   "(",
	})
	require.ErrorIs(t, err, ErrInvalidOption)
	for _, want := range []string{
		"Port -1 is out of range 0..65535",
		`Method "GE T" is not a valid HTTP method`,
		`Path "healthz" is not an absolute path`,
		`Host "a b/c" is not a valid host`,
		`Header name "Bad Name" is not valid`,
		`Header "host": set the Host field instead`,
		`Header "X-Ok" value "a\nb" is not valid`,
		`Status: healthcheck: invalid option: status codes "200,abc": item 2 "abc"`,
		`Body "(" is not a valid regular expression`,
	} {
		assert.Contains(t, err.Error(), want)
	}
	for _, p := range []string{"http://x/y", "/a b", "/a\x00", "*"} {
		_, err := NewHTTP(HTTPConfig{Path: p})
		assert.ErrorIs(t, err, ErrInvalidOption, p)
	}
	h, err := NewHTTP(HTTPConfig{})
	require.NoError(t, err)
	assert.Equal(t, "GET", h.method)
	assert.Equal(t, "/", h.path)
	assert.Equal(t, "200", h.codes.String())
	assert.True(t, strings.HasPrefix(h.header.Get("User-Agent"), "lbkit"))
}

// TestHTTPConcurrentChecks runs many checks at once on one checker, as a
// Monitor does: under -race this proves the shared request header, TLS
// configuration and transport are only read.
func TestHTTPConcurrentChecks(t *testing.T) {
	pki := newTestPKI(t)
	srv := httptest.NewUnstartedServer(testMux(nil, nil))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pki.leaf}}
	srv.Config.ErrorLog = quietLog() // handshake failures are what these tests provoke
	srv.StartTLS()
	defer srv.Close()
	for _, cfg := range []HTTPConfig{
		{Path: "/ok", TLS: &tls.Config{RootCAs: pki.pool}, Header: http.Header{"X-Check": {"1"}}},
		{Path: "/ok", TLS: &tls.Config{RootCAs: pki.pool}, Host: "api.example.com", KeepAlive: true},
	} {
		h := mustHTTP(t, cfg)
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				if err := h.Check(timeoutCtx(t, wait), Target{ID: "a", Addr: srv.Listener.Addr().String()}); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
}
