package lb

import (
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lbkit/lbkit/proxy"
)

// CertificateSource supplies a TLS or HTTPS listener with certificates it
// obtains and renews itself: the hook of the ACME module
// (github.com/lbkit/lbkit/acme), so that lb depends on no ACME library.
// GetCertificate answers for server names that none of the listener's own
// certificates (Certificates) matches, before its default certificate
// (see proxy.Certificates.SetSource); it also answers ACME TLS-ALPN-01
// challenges. CertificateStatus describes its certificates for Diagnose.
// Both are called concurrently and must not block for long.
type CertificateSource interface {
	proxy.CertificateSource
	CertificateStatus() []CertificateStatus
}

// CertificateStatus describes one certificate a listener serves, for
// Diagnose.
type CertificateStatus struct {
	// Names are the DNS names it is for (or, for a source's name with no
	// certificate yet, the name it should obtain one for).
	Names []string `json:"names"`
	// Source says where it comes from: "static" (Certificates) or the
	// source's own word ("acme https://acme-v02.api.letsencrypt.org/directory").
	Source string `json:"source"`
	// Issuer is the issuer's common name; NotAfter when it expires (zero
	// while there is none).
	Issuer   string    `json:"issuer,omitempty"`
	NotAfter time.Time `json:"not_after,omitzero"`
	// RenewAfter is when a source plans to renew it, zero if unknown.
	RenewAfter time.Time `json:"renew_after,omitzero"`
	// Error says why the last attempt to obtain or renew it failed, in
	// words ("renewing a.example.com: ... connection refused"); empty when
	// it did not; LastFailure is when.
	Error       string    `json:"error,omitempty"`
	LastFailure time.Time `json:"last_failure,omitzero"`
}

// WithCertificatesFrom makes a TLS or HTTPS listener also serve the
// certificates src obtains (an ACME client): for server names none of its
// own certificates matches. With a source the listener may have no
// certificate of its own. Nil (the default): none. Changing the source
// applies to new handshakes; nothing established is interrupted.
func WithCertificatesFrom(src CertificateSource) ListenerOption {
	return func(l *listenerConfig) { l.certSource = src }
}

// WithObserver makes every HTTP and HTTPS listener report each routed
// request and each of its attempts to a target to o (see proxy.Observer):
// the hook of the tracing module (github.com/lbkit/lbkit/tracing). Nil
// (the default): nothing is observed, at the cost of a nil check per
// request. Changing it gives the HTTP listeners new proxies on the same
// sockets; established connections finish on the old ones.
func WithObserver(o proxy.Observer) Option {
	return func(c *config) { c.observer = o }
}

// spreadObserver gives every listener the load balancer's observer.
func (c *config) spreadObserver() {
	for _, li := range c.listeners {
		li.observer = c.observer
	}
}

// certificateStatus describes the certificates li serves: its own, then
// its source's, and the reasons worth a note (expired, expiring, renewal
// failing).
func certificateStatus(cfg *listenerConfig, now time.Time) (st []CertificateStatus, reasons []string) {
	for i := range cfg.certs {
		c := &cfg.certs[i]
		l := c.Leaf
		if l == nil && len(c.Certificate) > 0 {
			l, _ = x509.ParseCertificate(c.Certificate[0])
		}
		if l == nil {
			continue
		}
		names := l.DNSNames
		if len(names) == 0 && l.Subject.CommonName != "" {
			names = []string{l.Subject.CommonName}
		}
		st = append(st, CertificateStatus{Names: slices.Clone(names), Source: "static", Issuer: l.Issuer.CommonName, NotAfter: l.NotAfter})
	}
	if cfg.certSource != nil {
		st = append(st, cfg.certSource.CertificateStatus()...)
	}
	for _, s := range st {
		names := strings.Join(s.Names, ", ")
		switch {
		case s.NotAfter.IsZero() && s.Error != "":
			reasons = append(reasons, fmt.Sprintf("no certificate yet for %s (%s): %s", names, s.Source, s.Error))
		case !s.NotAfter.IsZero() && !now.Before(s.NotAfter):
			reasons = append(reasons, fmt.Sprintf("the certificate for %s expired at %s", names, s.NotAfter.UTC().Format(time.RFC3339)))
		case s.Error != "":
			reasons = append(reasons, fmt.Sprintf("warning: renewing the certificate for %s fails (%s, last at %s): %s; the current one expires at %s (in %s)",
				names, s.Source, s.LastFailure.UTC().Format(time.RFC3339), s.Error, s.NotAfter.UTC().Format(time.RFC3339), s.NotAfter.Sub(now).Round(time.Minute)))
		}
	}
	return st, reasons
}

// sourceOf returns the source of a listener's certificates, for the
// proxy's store: nil stays a nil interface.
func sourceOf(cfg *listenerConfig) proxy.CertificateSource {
	if cfg.certSource == nil {
		return nil
	}
	return cfg.certSource
}
