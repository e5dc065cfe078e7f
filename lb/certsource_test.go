package lb

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lbkit/lbkit/proxy"
)

// certSourceStub serves one certificate for its names, and a challenge
// certificate for ACME TLS-ALPN-01 handshakes.
type certSourceStub struct {
	cert, challenge *tls.Certificate
	status          []CertificateStatus
}

func (s *certSourceStub) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == proxy.ACMETLS1Protocol {
		return s.challenge, nil
	}
	for _, n := range s.cert.Leaf.DNSNames {
		if n == hello.ServerName {
			return s.cert, nil
		}
	}
	return nil, nil
}

func (s *certSourceStub) CertificateStatus() []CertificateStatus { return s.status }

// peerName handshakes with addr for sn (offering protos) and returns the
// first DNS name of the certificate it got and the protocol negotiated.
func peerName(t *testing.T, addr, sn string, protos ...string) (string, string, error) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{ServerName: sn, InsecureSkipVerify: true, NextProtos: protos})
	if err != nil {
		return "", "", err
	}
	defer c.Close()
	cs := c.ConnectionState()
	return cs.PeerCertificates[0].DNSNames[0], cs.NegotiatedProtocol, nil
}

// TestCertificatesFrom checks a listener's certificate source on HTTPS and
// TLS listeners: asked for names the listener's own certificates do not
// match (they win for theirs), the only certificates of a listener without
// any, answering TLS-ALPN-01 challenges, and described by Diagnose with
// its failures.
func TestCertificatesFrom(t *testing.T) {
	own := testCert(t, "own.example")
	obtained := testCert(t, "obtained.example", "own.example")
	obtained.Leaf, _ = x509.ParseCertificate(obtained.Certificate[0])
	challenge := testCert(t, "challenge.invalid")
	notAfter := time.Now().Add(48 * time.Hour).Truncate(time.Second)
	src := &certSourceStub{cert: &obtained, challenge: &challenge, status: []CertificateStatus{{
		Names: []string{"obtained.example"}, Source: "acme test", NotAfter: notAfter,
		Error: "connection refused", LastFailure: time.Now(),
	}}}
	tg := newHTTPTarget(t, "a")
	l := startLB(t,
		WithListener("web", HTTPS, "127.0.0.1:0", WithForwardTo("app"), WithCertificates(own), WithCertificatesFrom(src)),
		WithListener("bare", HTTPS, "127.0.0.1:0", WithForwardTo("app"), WithCertificatesFrom(src)),
		WithListener("l4", TLS, "127.0.0.1:0", WithForwardTo("tcp"), WithCertificatesFrom(src)),
		WithTargetGroup("app", HTTP, WithTarget(tg.addr), WithoutHealthCheck()),
		WithTargetGroup("tcp", TCP, WithTarget(tg.addr), WithoutHealthCheck()),
	)
	for _, c := range []struct{ listener, sn, want string }{
		{"web", "own.example", "own.example"},           // the listener's own wins
		{"web", "obtained.example", "obtained.example"}, // the source's
		{"web", "unknown.example", "own.example"},       // the default
		{"bare", "obtained.example", "obtained.example"},
		{"l4", "obtained.example", "obtained.example"},
	} {
		got, _, err := peerName(t, addr(t, l, c.listener), c.sn, "http/1.1")
		require.NoError(t, err, "%+v", c)
		require.Equal(t, c.want, got, "%+v", c)
	}
	_, _, err := peerName(t, addr(t, l, "bare"), "unknown.example", "http/1.1")
	require.Error(t, err, "no certificate at all for the name")

	for _, name := range []string{"web", "l4"} {
		got, proto, err := peerName(t, addr(t, l, name), "obtained.example", proxy.ACMETLS1Protocol)
		require.NoError(t, err, name)
		require.Equal(t, "challenge.invalid", got, name)
		require.Equal(t, proxy.ACMETLS1Protocol, proto, name)
	}

	d := l.Diagnose(Query{})
	var web ListenerDiagnosis
	for _, ld := range d.Listeners {
		if ld.Name == "web" {
			web = ld
		}
	}
	require.Len(t, web.Certificates, 2)
	require.Equal(t, "static", web.Certificates[0].Source)
	require.Equal(t, []string{"own.example"}, web.Certificates[0].Names)
	require.Equal(t, notAfter, web.Certificates[1].NotAfter)
	found := false
	for _, r := range web.Reasons {
		found = found || strings.Contains(r, "renewing the certificate for obtained.example fails (acme test") && strings.Contains(r, "connection refused")
	}
	require.True(t, found, "reasons: %q", web.Reasons)
	require.Contains(t, d.String(), "  certificate obtained.example (acme test): expires "+notAfter.UTC().Format(time.RFC3339))

	// Without a source or a certificate, a TLS listener is refused.
	_, err = New(WithListener("x", HTTPS, "127.0.0.1:0", WithForwardTo("app")), WithTargetGroup("app", HTTP, WithTarget(tg.addr)))
	require.ErrorContains(t, err, "needs at least one certificate")
	_, err = New(WithListener("x", HTTP, "127.0.0.1:0", WithForwardTo("app"), WithCertificatesFrom(src)), WithTargetGroup("app", HTTP, WithTarget(tg.addr)))
	require.ErrorContains(t, err, "does not use TLS")
}
