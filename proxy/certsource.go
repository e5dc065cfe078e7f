package proxy

import (
	"crypto/tls"
	"slices"
)

// CertificateSource supplies certificates that a Certificates store does
// not hold itself: an ACME client (the module
// github.com/lbkit/lbkit/acme) that obtains and renews them, so that the
// proxy depends on no ACME library. GetCertificate returns the
// certificate for a handshake, or nil and no error when it has none for the
// client's server name; it is called on the handshake's goroutine and must
// be safe for concurrent use. A source that answers with a renewed
// certificate from the next handshake on rotates it without interrupting
// anything: established connections keep the certificate they negotiated.
type CertificateSource interface {
	GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error)
}

// ACMETLS1Protocol is the ALPN protocol of the ACME TLS-ALPN-01 challenge
// (RFC 8737): a handshake that offers it is answered by the store's
// source alone (see ChallengeConfig).
const ACMETLS1Protocol = "acme-tls/1"

// sourceBox holds a CertificateSource behind an atomic pointer.
type sourceBox struct{ src CertificateSource }

// SetSource sets the source asked for the certificate of a server name
// that matches none of the store's own certificates (exact or wildcard),
// before the default certificate is used; nil removes it. Certificates set
// with Set keep precedence, so an operator's certificate for a name always
// wins over an obtained one. It is safe at run time: new handshakes see
// the change at once.
func (s *Certificates) SetSource(src CertificateSource) {
	if src == nil {
		s.src.Store(nil)
		return
	}
	s.src.Store(&sourceBox{src})
}

// Source returns the store's source, nil if none.
func (s *Certificates) Source() CertificateSource {
	if b := s.src.Load(); b != nil {
		return b.src
	}
	return nil
}

// ChallengeConfig is for tls.Config.GetConfigForClient: for a handshake
// that offers only the ACME TLS-ALPN-01 protocol, while the store has a
// source, a configuration that negotiates that protocol with the source's
// certificate (the challenge certificate); nil otherwise, which keeps the
// listener's configuration. HTTPS listeners use it already; a TLS
// listener's configuration made outside the proxy chains it.
func (s *Certificates) ChallengeConfig(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	if len(hello.SupportedProtos) != 1 || hello.SupportedProtos[0] != ACMETLS1Protocol {
		return nil, nil
	}
	b := s.src.Load()
	if b == nil {
		return nil, nil
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{ACMETLS1Protocol},
		GetCertificate: b.src.GetCertificate,
	}, nil
}

// fromSource asks the store's source for hello's certificate.
func (s *Certificates) fromSource(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	b := s.src.Load()
	if b == nil {
		return nil, nil
	}
	return b.src.GetCertificate(hello)
}

// chainChallenge makes get, a GetConfigForClient (nil: none), answer ACME
// TLS-ALPN-01 handshakes with s's ChallengeConfig first.
func chainChallenge(s *Certificates, get func(*tls.ClientHelloInfo) (*tls.Config, error)) func(*tls.ClientHelloInfo) (*tls.Config, error) {
	return func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if slices.Contains(hello.SupportedProtos, ACMETLS1Protocol) {
			if cfg, err := s.ChallengeConfig(hello); cfg != nil || err != nil {
				return cfg, err
			}
		}
		if get == nil {
			return nil, nil
		}
		return get(hello)
	}
}
