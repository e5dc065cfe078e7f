package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// testCert returns a self-signed certificate for 127.0.0.1 and ::1, and a
// pool that trusts it.
func testCert(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "lbkit test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// TestTCPTLS: TLS terminated on the listener, with plain TCP or TLS to the
// targets; a client that fails the handshake is counted and never reaches a
// target.
func TestTCPTLS(t *testing.T) {
	checkFDs(t)
	cert, pool := testCert(t)
	serverCfg := &tls.Config{Certificates: []tls.Certificate{cert}}

	plain := startTCPTarget(t, "tcp4", "plain", idEchoHandler("p"))
	secure := startTCPTarget(t, "tcp4", "secure", func(c net.Conn) {
		tc := tls.Server(c, serverCfg)
		defer tc.Close()
		idEchoHandler("s")(tc)
	})

	for _, tc := range []struct {
		name   string
		target *tcpTarget
		tls    *tls.Config
		id     string
	}{
		{"tls to tcp", plain, nil, "p"},
		{"tls to tls", secure, &tls.Config{RootCAs: pool}, "s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := newTestUpstream(t, tc.target)
			u.TLS = tc.tls
			p := &TCP{Flows: newTestFlows(t)}
			p.SetUpstream(u)
			p.SetTLSConfig(serverCfg)
			addr := startTCPProxy(t, p, "tcp4")
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp4", addr, &tls.Config{RootCAs: pool})
			require.NoError(t, err)
			defer c.Close()
			require.Equal(t, tc.id+"hello", exchangeMsg(t, c, "hello", 1))
			require.NoError(t, c.CloseWrite())
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err = c.Read(make([]byte, 1))
			require.Error(t, err, "the end travels back")

			before := tc.target.accepted.Load()
			pc := dial(t, "tcp4", addr)
			_, _ = pc.Write([]byte("not TLS\r\n\r\n"))
			require.Error(t, readErr(pc))
			waitFor(t, "handshake error counted", func() bool { return p.Stats().TLSHandshakeErrors == 1 })
			require.Equal(t, before, tc.target.accepted.Load())
		})
	}
}
