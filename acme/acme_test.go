package acme_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lbkit/lbkit/acme"
	"github.com/lbkit/lbkit/acme/internal/pebbletest"
	"github.com/lbkit/lbkit/lb"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

const name = "shop.lbkit.test"

// handshake connects to addr for server name sn, verifying the
// certificate against roots, and returns the leaf it got.
func handshake(addr, sn string, roots *x509.CertPool) (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: sn, RootCAs: roots, NextProtos: []string{"http/1.1"}})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

// TestPebble runs the whole life of an automatic certificate against
// Pebble: issuance at start through the listener's TLS-ALPN-01 answer, a
// client handshake that verifies against Pebble's root, a forced renewal
// under a stream of handshakes with none failing, and the CA going away:
// the listener keeps its certificate and Diagnose says when it expires and
// why renewing it fails.
// startFront starts a load balancer with an HTTPS listener on a port of
// its own, serving m's certificates in front of target, and returns it
// with the listener's address; the caller closes it.
func startFront(t *testing.T, m *acme.Manager, target string) (*lb.LoadBalancer, net.Addr) {
	t.Helper()
	l, err := lb.New(
		lb.WithLogger(quiet),
		lb.WithListener("web", lb.HTTPS, "127.0.0.1:0", lb.WithForwardTo("app"), lb.WithCertificatesFrom(m)),
		lb.WithTargetGroup("app", lb.HTTP, lb.WithTarget(target), lb.WithoutHealthCheck()),
	)
	require.NoError(t, err)
	if err := l.Start(); err != nil {
		l.Close()
		t.Fatal(err)
	}
	addr, _ := l.Addr("web")
	return l, addr
}

func TestPebble(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs pebble")
	}
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "shop") }))
	defer target.Close()

	// Pebble's address is chosen first, for the manager; the listener is
	// bound (port 0), then pebble runs, told the listener's port.
	p := pebbletest.New(t)
	storage := t.TempDir()
	m, err := acme.New(acme.Config{Domains: []string{name}, Email: "ops@lbkit.test", Storage: storage, Logger: quiet,
		CA: p.Directory, TrustedRoots: p.Roots})
	require.NoError(t, err)
	defer m.Close()
	l, addr := startFront(t, m, target.Listener.Addr().String())
	defer l.Close()
	front := addr.String()
	p.Start(t, addr.(*net.TCPAddr).Port)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.NoError(t, m.Start(ctx, front))
	require.NoError(t, m.Wait(ctx), "issuance on start")

	// A client verifies the certificate against Pebble's root.
	roots := p.IssuerRoots(t)
	leaf, err := handshake(front, name, roots)
	require.NoError(t, err)
	require.Equal(t, []string{name}, leaf.DNSNames)
	first := leaf.SerialNumber.String()

	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", front)
	}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + name + "/")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, "shop", string(body))

	// Forced renewal under traffic: handshakes run all along; none fails.
	var ok, failed atomic.Int64
	var firstErr atomic.Pointer[error]
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := handshake(front, name, roots); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, &err)
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	renewErr := m.Renew(ctx, name)
	// Traffic goes on after the renewal until the new certificate was
	// seen in a handshake.
	var renewed *x509.Certificate
	if renewErr == nil {
		renewed, err = handshake(front, name, roots)
	}
	close(stop)
	wg.Wait()
	require.NoError(t, renewErr)
	require.NoError(t, err)
	require.NotEqual(t, first, renewed.SerialNumber.String(), "the renewed certificate is served")
	if e := firstErr.Load(); e != nil {
		t.Errorf("first failed handshake: %v", *e)
	}
	require.Zero(t, failed.Load(), "failed handshakes during the renewal")
	require.Positive(t, ok.Load())
	t.Logf("renewal under traffic: %d handshakes, %d failed", ok.Load(), failed.Load())

	// The CA goes away: renewal fails, the certificate stays, Diagnose
	// says when it expires and why renewal fails.
	p.Stop()
	err = m.Renew(ctx, name)
	require.Error(t, err)
	still, err := handshake(front, name, roots)
	require.NoError(t, err)
	require.Equal(t, renewed.SerialNumber, still.SerialNumber)

	d := l.Diagnose(lb.Query{})
	require.Len(t, d.Listeners, 1)
	ld := d.Listeners[0]
	require.Len(t, ld.Certificates, 1)
	cs := ld.Certificates[0]
	require.Equal(t, []string{name}, cs.Names)
	require.Equal(t, renewed.NotAfter.UTC(), cs.NotAfter.UTC())
	require.Contains(t, cs.Error, "connection refused")
	require.False(t, cs.LastFailure.IsZero())
	require.True(t, cs.RenewAfter.Before(cs.NotAfter))
	var note string
	for _, r := range ld.Reasons {
		if strings.Contains(r, "renewing the certificate for "+name+" fails") {
			note = r
		}
	}
	require.NotEmpty(t, note, "reasons: %q", ld.Reasons)
	require.Contains(t, note, "expires at "+renewed.NotAfter.UTC().Format(time.RFC3339))
	require.Contains(t, note, "connection refused")
	t.Logf("diagnosis: %s", note)

	// Another node sharing the storage directory serves the certificate
	// at once, without the CA (which is down).
	m2, err := acme.New(acme.Config{Domains: []string{name}, Storage: storage, Logger: quiet, CA: p.Directory, TrustedRoots: p.Roots})
	require.NoError(t, err)
	defer m2.Close()
	l2, addr2 := startFront(t, m2, target.Listener.Addr().String())
	defer l2.Close()
	require.NoError(t, m2.Start(ctx, addr2.String()))
	require.NoError(t, m2.Wait(ctx), "loaded from the shared storage")
	other, err := handshake(addr2.String(), name, roots)
	require.NoError(t, err)
	require.Equal(t, renewed.SerialNumber, other.SerialNumber)
}
