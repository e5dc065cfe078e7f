package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testCA is a certificate authority generated for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
	n    atomic.Int64
}

func newCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "lbkit test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue makes a leaf for names (DNS names or IP addresses); client makes
// it a client certificate.
func (ca *testCA) issue(t testing.TB, client bool, names ...string) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.n.Add(1) + 1),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func TestCertificatesLookup(t *testing.T) {
	ca := newCA(t)
	def := ca.issue(t, false, "default.test")
	exact := ca.issue(t, false, "www.example.com")
	wild := ca.issue(t, false, "*.example.com")
	deep := ca.issue(t, false, "*.b.example.com")
	multi := ca.issue(t, false, "api.other.org", "API2.other.org.")
	name := func(c *tls.Certificate) string {
		if c == nil {
			return "<nil>"
		}
		return c.Leaf.Subject.CommonName
	}
	for _, mode := range []WildcardMode{WildcardOneLabel, WildcardSuffix} {
		var s Certificates
		require.NoError(t, s.Set(mode, def, exact, wild, deep, multi))
		assert.Equal(t, 5-1, s.Len())
		for _, c := range []struct{ sni, one, suffix string }{
			{"www.example.com", "www.example.com", "www.example.com"},
			{"WWW.Example.com.", "www.example.com", "www.example.com"},
			{"abc.example.com", "*.example.com", "*.example.com"},
			{"a.b.example.com", "*.b.example.com", "*.b.example.com"},
			{"x.a.b.example.com", "default.test", "*.b.example.com"}, // longest suffix wins
			{"x.y.example.com", "default.test", "*.example.com"},
			{"example.com", "default.test", "default.test"},
			{"api2.other.org", "api.other.org", "api.other.org"},
			{"", "default.test", "default.test"},
			{"unknown.test", "default.test", "default.test"},
		} {
			got, _ := s.Lookup(c.sni)
			want := c.one
			if mode == WildcardSuffix {
				want = c.suffix
			}
			assert.Equal(t, want, name(got), "mode %d sni %q", mode, c.sni)
		}
	}
	var empty Certificates
	_, err := empty.GetCertificate(&tls.ClientHelloInfo{ServerName: "x"})
	assert.ErrorIs(t, err, ErrNoCertificate)
	err = empty.Set(WildcardOneLabel, nil, &tls.Certificate{}, &tls.Certificate{Certificate: exact.Certificate})
	assert.ErrorContains(t, err, "[0]: empty certificate")
	assert.ErrorContains(t, err, "[1]: no private key")
}

// handshake dials the proxy with a server name and returns the certificate
// it was shown, unverified: the tests check the choice, not the name rules
// of clients (which accept only one-label wildcards).
func handshake(t testing.TB, addr, sni string) (*x509.Certificate, error) {
	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

func TestHTTPSNIAndRotation(t *testing.T) {
	ca := newCA(t)
	var certs Certificates
	require.NoError(t, certs.Set(WildcardSuffix, ca.issue(t, false, "default.test"), ca.issue(t, false, "*.example.com")))
	tg := newTarget(t, "a", nil)
	h := configured(t, &HTTP{TLS: &TLS{Certificates: &certs}}, forwardTo(t, upstreamOf(t, "web", tg)))
	addr := serve(t, h)

	leaf, err := handshake(t, addr, "a.b.example.com")
	require.NoError(t, err)
	assert.Equal(t, "*.example.com", leaf.Subject.CommonName, "suffix mode")
	leaf, err = handshake(t, addr, "other.test")
	require.NoError(t, err)
	assert.Equal(t, "default.test", leaf.Subject.CommonName)

	// HTTP/2 from clients, over TLS, with the right headers to the target.
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool, ServerName: "www.example.com"}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := c.Get("https://" + addr + "/")
	require.NoError(t, err)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	assert.Equal(t, "HTTP/2.0", resp.Proto)
	assert.Equal(t, "https", tg.lastRequest().Header.Get("X-Forwarded-Proto"))

	// Rotation under load: clients keep making requests, on kept-alive and
	// new connections, while the certificate is replaced over and over.
	// No request fails; established connections keep their certificate.
	held, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "www.example.com", RootCAs: ca.pool, NextProtos: []string{"http/1.1"}})
	require.NoError(t, err)
	defer held.Close()
	heldSerial := held.ConnectionState().PeerCertificates[0].SerialNumber

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool, ServerName: "www.example.com"}, ForceAttemptHTTP2: i%2 == 0}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			for n := 0; n < 2000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				if n%10 == 0 {
					tr.CloseIdleConnections() // new handshakes too
				}
				resp, err := c.Get("https://" + addr + "/")
				if err != nil || resp.StatusCode != 200 {
					failed.Add(1)
					if err == nil {
						resp.Body.Close()
					}
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				ok.Add(1)
			}
		}()
	}
	var lastSerial string
	for range 20 {
		next := ca.issue(t, false, "*.example.com")
		require.NoError(t, certs.Set(WildcardSuffix, nil, next))
		lastSerial = next.Leaf.SerialNumber.String()
		time.Sleep(10 * time.Millisecond) // pacing the rotations, not synchronisation
	}
	close(stop)
	wg.Wait()
	assert.Zero(t, failed.Load(), "requests failed during rotation")
	assert.Greater(t, ok.Load(), int64(0))
	leaf, err = handshake(t, addr, "www.example.com")
	require.NoError(t, err)
	assert.Equal(t, lastSerial, leaf.SerialNumber.String(), "new connections get the newest certificate")
	assert.Equal(t, heldSerial, held.ConnectionState().PeerCertificates[0].SerialNumber, "established ones keep theirs")
	_, err = io.WriteString(held, "GET / HTTP/1.1\r\nHost: www.example.com\r\nConnection: close\r\n\r\n")
	require.NoError(t, err)
	b, err := io.ReadAll(held)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(b), "HTTP/1.1 200"), "the old connection still works")
}

func TestHTTPMutualTLS(t *testing.T) {
	ca := newCA(t)
	clientCA := newCA(t)
	var certs Certificates
	require.NoError(t, certs.Set(WildcardOneLabel, nil, ca.issue(t, false, "secure.example.com", "public.example.com")))
	tg := newTarget(t, "a", nil)
	clientCert := clientCA.issue(t, true, "client-1")
	stranger := newCA(t).issue(t, true, "stranger")

	dial := func(addr, sni string, cert *tls.Certificate) (*http.Client, func()) {
		cfg := &tls.Config{ServerName: sni, RootCAs: ca.pool}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
		return &http.Client{Transport: tr, Timeout: 10 * time.Second}, tr.CloseIdleConnections
	}
	try := func(c *http.Client, addr, host string) (int, error) {
		req, _ := http.NewRequest("GET", "https://"+addr+"/", nil)
		req.Host = host
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}

	t.Run("required", func(t *testing.T) {
		h := configured(t, &HTTP{TLS: &TLS{Certificates: &certs,
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCA.pool}}, forwardTo(t, upstreamOf(t, "web", tg)))
		addr := serve(t, h)
		c, done := dial(addr, "secure.example.com", clientCert)
		defer done()
		code, err := try(c, addr, "secure.example.com")
		require.NoError(t, err)
		assert.Equal(t, 200, code)
		for _, cert := range []*tls.Certificate{nil, stranger} {
			c, done := dial(addr, "secure.example.com", cert)
			_, err = try(c, addr, "secure.example.com")
			assert.Error(t, err, "refused in the handshake")
			done()
		}
		waitFor(t, "handshake errors counted", func() bool { return h.Stats().TLSHandshakeErrors == 2 })
	})
	t.Run("optional, per host, 421", func(t *testing.T) {
		h := configured(t, &HTTP{TLS: &TLS{Certificates: &certs,
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCA.pool, ClientAuthHosts: []string{"secure.example.com"}}}, forwardTo(t, upstreamOf(t, "web", tg)))
		addr := serve(t, h)
		anon, done := dial(addr, "public.example.com", nil)
		defer done()
		code, err := try(anon, addr, "public.example.com")
		require.NoError(t, err)
		assert.Equal(t, 200, code, "public needs no client certificate")
		code, err = try(anon, addr, "secure.example.com")
		require.NoError(t, err)
		assert.Equal(t, 421, code, "SNI public, Host secure: would bypass mutual TLS")
		assert.Equal(t, uint64(1), h.Stats().Misdirected)
		authed, done2 := dial(addr, "secure.example.com", clientCert)
		defer done2()
		code, err = try(authed, addr, "public.example.com")
		require.NoError(t, err)
		assert.Equal(t, 200, code, "the other way round bypasses nothing")
		_, err = try(dialNoCert(addr, ca), addr, "secure.example.com")
		assert.Error(t, err)
	})
	t.Run("verify if given", func(t *testing.T) {
		h := configured(t, &HTTP{TLS: &TLS{Certificates: &certs,
			ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: clientCA.pool}}, forwardTo(t, upstreamOf(t, "web", tg)))
		addr := serve(t, h)
		anon, done := dial(addr, "secure.example.com", nil)
		defer done()
		code, err := try(anon, addr, "secure.example.com")
		require.NoError(t, err)
		assert.Equal(t, 200, code)
		bad, done2 := dial(addr, "secure.example.com", stranger)
		defer done2()
		_, err = try(bad, addr, "secure.example.com")
		assert.Error(t, err, "a certificate given is verified")
	})
	_, err := (&TLS{Certificates: &certs, ClientAuth: tls.RequireAndVerifyClientCert}).compile()
	assert.ErrorContains(t, err, "needs ClientCAs")
}

func dialNoCert(_ string, ca *testCA) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{ServerName: "secure.example.com", RootCAs: ca.pool}}}
}

func TestHTTPSToTargets(t *testing.T) {
	ca := newCA(t)
	tg := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "tls target, sni="+r.TLS.ServerName)
	}))
	tg.TLS = &tls.Config{Certificates: []tls.Certificate{*ca.issue(t, false, "127.0.0.1", "backend.internal")}}
	tg.StartTLS()
	defer tg.Close()
	target := &target{Server: tg, name: "t"}

	run := func(cfg *tls.Config) (int, string) {
		up := upstreamOf(t, "web", target)
		up.TLS = cfg
		h := configured(t, &HTTP{}, forwardTo(t, up))
		addr := serve(t, h)
		return get(t, client(t), "http://"+addr+"/")
	}
	code, body := run(&tls.Config{RootCAs: ca.pool})
	assert.Equal(t, 200, code)
	assert.Equal(t, "tls target, sni=", body, "verified against the target's IP; no SNI for an IP")
	code, body = run(&tls.Config{RootCAs: ca.pool, ServerName: "backend.internal"})
	assert.Equal(t, 200, code)
	assert.Equal(t, "tls target, sni=backend.internal", body)
	code, _ = run(&tls.Config{RootCAs: newCA(t).pool})
	assert.Equal(t, 502, code, "an unknown CA fails verification")
	code, _ = run(&tls.Config{InsecureSkipVerify: true})
	assert.Equal(t, 200, code, "the explicit opt-out")
}

func TestHTTPSWebSocket(t *testing.T) {
	ca := newCA(t)
	var certs Certificates
	require.NoError(t, certs.Set(WildcardOneLabel, ca.issue(t, false, "ws.example.com")))
	tg := newTarget(t, "ws", wsEcho)
	addr := serve(t, configured(t, &HTTP{TLS: &TLS{Certificates: &certs}}, forwardTo(t, upstreamOf(t, "web", tg))))
	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "ws.example.com", RootCAs: ca.pool, NextProtos: []string{"http/1.1"}})
	require.NoError(t, err)
	defer c.Close()
	wsRoundTrip(t, c)
	assert.Equal(t, "https", tg.lastRequest().Header.Get("X-Forwarded-Proto"))
}

func TestHTTPSRequestTimeout408(t *testing.T) {
	ca := newCA(t)
	var certs Certificates
	require.NoError(t, certs.Set(WildcardOneLabel, ca.issue(t, false, "x.example.com")))
	h := configured(t, &HTTP{TLS: &TLS{Certificates: &certs}}, forwardTo(t, upstreamOf(t, "web", newTarget(t, "a", nil))), Timeouts{Request: 300 * time.Millisecond})
	addr := serve(t, h)
	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "x.example.com", RootCAs: ca.pool, NextProtos: []string{"http/1.1"}})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x")
	require.NoError(t, err)
	b, _ := io.ReadAll(c)
	assert.True(t, strings.HasPrefix(string(b), "HTTP/1.1 408 "), "got %q", b)
}

var _ = context.Background

// TestHTTPTLSPolicy: the minimum version and the cipher suites a listener
// is given are what its handshakes accept, and refused handshakes are
// counted.
func TestHTTPTLSPolicy(t *testing.T) {
	ca := newCA(t)
	var certs Certificates
	require.NoError(t, certs.Set(WildcardOneLabel, ca.issue(t, false, "www.example.com")))
	dial := func(addr string, cfg *tls.Config) error {
		cfg.ServerName, cfg.RootCAs, cfg.NextProtos = "www.example.com", ca.pool, []string{"http/1.1"}
		c, err := tls.Dial("tcp", addr, cfg)
		if err == nil {
			c.Close()
		}
		return err
	}

	t.Run("min version", func(t *testing.T) {
		h := configured(t, &HTTP{TLS: &TLS{Certificates: &certs, MinVersion: tls.VersionTLS13}}, forwardTo(t, upstreamOf(t, "web", newTarget(t, "a", nil))))
		addr := serve(t, h)
		require.NoError(t, dial(addr, &tls.Config{}))
		require.Error(t, dial(addr, &tls.Config{MaxVersion: tls.VersionTLS12}), "a TLS 1.2 client is refused")
		waitFor(t, "the refused handshake counted", func() bool { return h.Stats().TLSHandshakeErrors == 1 })
	})
	t.Run("cipher suites", func(t *testing.T) {
		h := configured(t, &HTTP{TLS: &TLS{Certificates: &certs, CipherSuites: []uint16{
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}}, forwardTo(t, upstreamOf(t, "web", newTarget(t, "a", nil))))
		addr := serve(t, h)
		require.NoError(t, dial(addr, &tls.Config{MaxVersion: tls.VersionTLS12}))
		require.Error(t, dial(addr, &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}}),
			"a client offering only suites outside the policy is refused")
		waitFor(t, "the refused handshake counted", func() bool { return h.Stats().TLSHandshakeErrors == 1 })
	})
	t.Run("cipher suites without HTTP/2's", func(t *testing.T) {
		// net/http will not serve HTTP/2 without one of two suites: the
		// proxy says so when it starts, instead of failing on the first
		// connection.
		h := configured(t, &HTTP{TLS: &TLS{Certificates: &certs, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}}}, forwardTo(t, upstreamOf(t, "web", newTarget(t, "a", nil))))
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		require.ErrorContains(t, h.Serve(ln), "which HTTP/2 requires; add one or set DisableHTTP2")
		require.NoError(t, h.Close())
		h = configured(t, &HTTP{TLS: &TLS{Certificates: &certs, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}, DisableHTTP2: true}}, forwardTo(t, upstreamOf(t, "web", newTarget(t, "a", nil))))
		addr := serve(t, h)
		require.NoError(t, dial(addr, &tls.Config{MaxVersion: tls.VersionTLS12}))
	})
}

// TestHTTPServerFailureEndsServe: should net/http refuse a generation's
// settings when it starts serving, Serve returns why instead of handing
// connections to a server that is gone.
func TestHTTPServerFailureEndsServe(t *testing.T) {
	ca := newCA(t)
	var certs Certificates
	require.NoError(t, certs.Set(WildcardOneLabel, ca.issue(t, false, "www.example.com")))
	h := configured(t, &HTTP{TLS: &TLS{Certificates: &certs}}, forwardTo(t, upstreamOf(t, "web", newTarget(t, "a", nil))))
	require.NoError(t, h.setup())
	// Past the proxy's own checks: a suite list net/http's HTTP/2 refuses.
	h.tls.cfg.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- h.Serve(ln) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	select {
	case err := <-served:
		require.ErrorContains(t, err, "proxy: HTTP server stopped")
	case <-time.After(20 * time.Second):
		t.Fatal("Serve did not return")
	}
	require.NoError(t, h.Close())
}
