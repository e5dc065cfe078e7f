package acme_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lbkit/lbkit/acme"
	"github.com/lbkit/lbkit/acme/internal/pebbletest"
)

// TestOnDemand checks that a certificate is obtained during the handshake
// for a name in the on-demand allow-list, and never for another name: the
// handshake fails and the CA is not asked.
func TestOnDemand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs pebble")
	}
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	defer target.Close()
	p := pebbletest.New(t)
	m, err := acme.New(acme.Config{OnDemand: []string{"*.shop.lbkit.test"}, Storage: t.TempDir(), Logger: quiet,
		CA: p.Directory, TrustedRoots: p.Roots})
	require.NoError(t, err)
	defer m.Close()
	l, addr := startFront(t, m, target.Listener.Addr().String())
	defer l.Close()
	p.Start(t, addr.(*net.TCPAddr).Port)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, m.Start(ctx, addr.String()))
	roots := p.IssuerRoots(t)

	// Not allowed: no certificate, no order.
	_, err = handshake(addr.String(), "evil.lbkit.test", roots)
	require.Error(t, err)
	_, err = handshake(addr.String(), "a.b.shop.lbkit.test", roots) // two labels below
	require.Error(t, err)
	require.Empty(t, m.CertificateStatus())

	// Allowed: obtained during the first handshake, which verifies.
	leaf, err := handshake(addr.String(), "eu.shop.lbkit.test", roots)
	require.NoError(t, err)
	require.Equal(t, []string{"eu.shop.lbkit.test"}, leaf.DNSNames)
	require.NoError(t, m.Wait(ctx))
	st := m.CertificateStatus()
	require.Len(t, st, 1)
	require.Equal(t, []string{"eu.shop.lbkit.test"}, st[0].Names)
	require.Equal(t, leaf.NotAfter.UTC(), st[0].NotAfter.UTC())
}
