package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
)

// ErrNoCertificate is wrapped by the handshake error when a client's server
// name matches no certificate and there is no default certificate.
var ErrNoCertificate = errors.New("no certificate for the server name")

// WildcardMode is how a wildcard certificate (*.example.com) matches server
// names.
type WildcardMode uint8

const (
	// WildcardOneLabel matches exactly one label, as RFC 6125 and browsers
	// do: *.example.com matches abc.example.com, not a.b.example.com nor
	// example.com.
	WildcardOneLabel WildcardMode = iota
	// WildcardSuffix matches any depth: *.example.com also matches
	// a.b.example.com. When several wildcards match, the longest suffix
	// wins (*.b.example.com before *.example.com).
	WildcardSuffix
)

// Certificates is an HTTPS listener's certificate store: several
// certificates chosen by the client's server name (SNI), wildcards in either
// mode, and a default certificate for clients that send no name or one that
// matches nothing.
//
// Set replaces the certificates at run time: the set is an immutable
// snapshot behind an atomic pointer, so new handshakes get the new
// certificates at once while established connections keep the one they
// negotiated, and no connection is dropped. The zero value holds no
// certificate; all methods are safe for concurrent use.
type Certificates struct {
	snap atomic.Pointer[certSnap]
	src  atomic.Pointer[sourceBox] // SetSource's; nil: none
}

// certSnap is one immutable set of certificates.
type certSnap struct {
	mode  WildcardMode
	exact map[string]*tls.Certificate // lower-case DNS name → certificate
	wild  map[string]*tls.Certificate // "example.com" for *.example.com
	def   *tls.Certificate
	n     int
}

// Set replaces the certificates: def (may be nil) serves clients whose
// server name matches no other, and each certificate of certs serves the DNS
// names of its leaf (its subject alternative names, or its common name when
// it has none). When two certificates claim one name, the first wins.
// Certificates must have their private key; Leaf is parsed when nil. The
// error names every certificate that cannot be used, and then nothing
// changes.
func (s *Certificates) Set(mode WildcardMode, def *tls.Certificate, certs ...*tls.Certificate) error {
	snap := &certSnap{mode: mode, exact: map[string]*tls.Certificate{}, wild: map[string]*tls.Certificate{}, def: def}
	var errs []error
	if mode > WildcardSuffix {
		errs = append(errs, fmt.Errorf("certificates: wildcard mode %d is unknown", mode))
	}
	if def != nil {
		if _, err := leaf(def); err != nil {
			errs = append(errs, fmt.Errorf("certificates: default: %w", err))
		}
	}
	for i, c := range certs {
		l, err := leaf(c)
		if err != nil {
			errs = append(errs, fmt.Errorf("certificates: [%d]: %w", i, err))
			continue
		}
		names := l.DNSNames
		if len(names) == 0 && l.Subject.CommonName != "" {
			names = []string{l.Subject.CommonName}
		}
		if len(names) == 0 {
			errs = append(errs, fmt.Errorf("certificates: [%d] (%s): no DNS name", i, l.Subject))
		}
		for _, n := range names {
			n = strings.TrimSuffix(strings.ToLower(n), ".")
			m, key := snap.exact, n
			if rest, ok := strings.CutPrefix(n, "*."); ok {
				m, key = snap.wild, rest
			}
			if _, taken := m[key]; !taken {
				m[key] = c
			}
		}
		snap.n++
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	s.snap.Store(snap)
	return nil
}

// leaf returns c's parsed leaf, parsing it if needed.
func leaf(c *tls.Certificate) (*x509.Certificate, error) {
	if c == nil || len(c.Certificate) == 0 {
		return nil, errors.New("empty certificate")
	}
	if c.PrivateKey == nil {
		return nil, errors.New("no private key")
	}
	if c.Leaf != nil {
		return c.Leaf, nil
	}
	return x509.ParseCertificate(c.Certificate[0])
}

// Len returns the number of certificates held besides the default one.
func (s *Certificates) Len() int {
	if p := s.snap.Load(); p != nil {
		return p.n
	}
	return 0
}

// Lookup returns the certificate for a server name: an exact name first,
// then a wildcard by the store's mode, then the default. ok is false when
// only the default (or nothing) is left.
func (s *Certificates) Lookup(serverName string) (c *tls.Certificate, ok bool) {
	p := s.snap.Load()
	if p == nil {
		return nil, false
	}
	name := normalizeHost(serverName)
	if name == "" {
		return p.def, false
	}
	if c, ok := p.exact[name]; ok {
		return c, true
	}
	for i := strings.IndexByte(name, '.'); i >= 0; {
		if c, ok := p.wild[name[i+1:]]; ok {
			return c, true
		}
		if p.mode != WildcardSuffix {
			break
		}
		j := strings.IndexByte(name[i+1:], '.')
		if j < 0 {
			break
		}
		i += j + 1
	}
	return p.def, false
}

// GetCertificate is for tls.Config.GetCertificate: the certificate for the
// client's server name, or an error wrapping ErrNoCertificate.
//
// The store's own certificates for the name come first, then its source
// (see SetSource), then its default certificate.
func (s *Certificates) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	c, ok := s.Lookup(hello.ServerName)
	if ok {
		return c, nil
	}
	if s.src.Load() != nil {
		if sc, err := s.fromSource(hello); sc != nil || err != nil && c == nil {
			return sc, err
		}
	}
	if c != nil {
		return c, nil
	}
	return nil, fmt.Errorf("proxy: %w %q", ErrNoCertificate, hello.ServerName)
}

// TLS is an HTTPS listener's TLS settings.
type TLS struct {
	// Certificates chooses the certificate by SNI; required. Replace its
	// certificates at run time with Certificates.Set.
	Certificates *Certificates

	// MinVersion is the lowest TLS version accepted. Default: TLS 1.2.
	MinVersion uint16

	// CipherSuites lists the TLS 1.0–1.2 cipher suites accepted (TLS 1.3's
	// are not configurable). With HTTP/2 on and MinVersion below TLS 1.3
	// it must hold TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 or
	// TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, as HTTP/2 requires.
	// Default: crypto/tls's secure list.
	CipherSuites []uint16

	// ClientAuth turns on mutual TLS: tls.VerifyClientCertIfGiven makes a
	// client certificate optional (verified when given),
	// tls.RequireAndVerifyClientCert makes it required. Default:
	// tls.NoClientCert. Other values are refused.
	ClientAuth tls.ClientAuthType

	// ClientCAs verifies client certificates; required with ClientAuth.
	ClientCAs *x509.CertPool

	// ClientAuthHosts, if set, limits ClientAuth to handshakes whose server
	// name matches one of these host patterns (as Rule.Host); others get no
	// client authentication. A request whose Host needs client
	// authentication arriving on a connection whose server name did not
	// gets 421 Misdirected Request, so a client cannot skip mutual TLS by
	// sending one name in SNI and another in Host. Default: every server
	// name.
	ClientAuthHosts []string

	// DisableHTTP2 turns HTTP/2 off (it is offered by ALPN otherwise).
	DisableHTTP2 bool
}

// h2CipherProblem reports a cipher-suite list HTTP/2 cannot use: below
// TLS 1.3 it needs TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 or
// TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 (RFC 9113 §9.2.2), and net/http
// refuses to serve without one.
func h2CipherProblem(suites []uint16, minVersion uint16, noHTTP2 bool) error {
	if noHTTP2 || len(suites) == 0 || minVersion >= tls.VersionTLS13 {
		return nil
	}
	for _, id := range suites {
		if id == tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 || id == tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 {
			return nil
		}
	}
	return errors.New("tls: CipherSuites has neither TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 nor TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, which HTTP/2 requires; add one or set DisableHTTP2")
}

// tlsSetup is a compiled TLS.
type tlsSetup struct {
	t         *TLS
	authHosts []hostPattern
	cfg       *tls.Config
}

// compile checks t and builds the listener's tls.Config.
func (t *TLS) compile() (*tlsSetup, error) {
	var errs []error
	if t.Certificates == nil {
		errs = append(errs, errors.New("tls: Certificates is nil"))
	}
	switch t.ClientAuth {
	case tls.NoClientCert:
	case tls.VerifyClientCertIfGiven, tls.RequireAndVerifyClientCert:
		if t.ClientCAs == nil {
			errs = append(errs, fmt.Errorf("tls: ClientAuth %s needs ClientCAs", t.ClientAuth))
		}
	default:
		errs = append(errs, fmt.Errorf("tls: ClientAuth %s is not NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert", t.ClientAuth))
	}
	if t.MinVersion != 0 && (t.MinVersion < tls.VersionTLS10 || t.MinVersion > tls.VersionTLS13) {
		errs = append(errs, fmt.Errorf("tls: MinVersion %#x is unknown", t.MinVersion))
	}
	if err := h2CipherProblem(t.CipherSuites, t.MinVersion, t.DisableHTTP2); err != nil {
		errs = append(errs, err)
	}
	ts := &tlsSetup{t: t}
	for i, h := range t.ClientAuthHosts {
		p, err := parseHostPattern(h)
		if err != nil {
			errs = append(errs, fmt.Errorf("tls: ClientAuthHosts[%d]: %w", i, err))
		}
		ts.authHosts = append(ts.authHosts, p)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	minV := t.MinVersion
	if minV == 0 {
		minV = tls.VersionTLS12
	}
	protos := []string{"h2", "http/1.1"}
	if t.DisableHTTP2 {
		protos = protos[1:]
	}
	base := &tls.Config{
		GetCertificate: t.Certificates.GetCertificate,
		MinVersion:     minV,
		CipherSuites:   t.CipherSuites,
		NextProtos:     protos,
	}
	withAuth := base.Clone()
	withAuth.ClientAuth = t.ClientAuth
	withAuth.ClientCAs = t.ClientCAs
	switch {
	case t.ClientAuth == tls.NoClientCert:
		ts.cfg = base
	case len(ts.authHosts) == 0:
		ts.cfg = withAuth
	default:
		ts.cfg = base.Clone()
		ts.cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			if ts.needsAuth(hello.ServerName) {
				return withAuth, nil
			}
			return base, nil
		}
	}
	// ACME TLS-ALPN-01 challenges reach the store's source, when it has
	// one (see SetSource).
	ts.cfg = ts.cfg.Clone()
	ts.cfg.GetConfigForClient = chainChallenge(t.Certificates, ts.cfg.GetConfigForClient)
	return ts, nil
}

// needsAuth reports whether host (a server name or a Host header) falls
// under ClientAuth.
func (ts *tlsSetup) needsAuth(host string) bool {
	if ts.t.ClientAuth == tls.NoClientCert {
		return false
	}
	if len(ts.authHosts) == 0 {
		return true
	}
	h := normalizeHost(host)
	for i := range ts.authHosts {
		if ts.authHosts[i].match(h) {
			return true
		}
	}
	return false
}

// misdirected reports whether a request for host on a connection with state
// cs would bypass mutual TLS: the host needs client authentication that the
// connection's server name did not.
func (ts *tlsSetup) misdirected(host string, cs *tls.ConnectionState) bool {
	if ts == nil || cs == nil || len(ts.authHosts) == 0 {
		return false
	}
	return ts.needsAuth(host) && !ts.needsAuth(cs.ServerName)
}
