// Package acme gives lbkit's TLS and HTTPS listeners certificates that
// obtain and renew themselves from an ACME CA (Let's Encrypt, ZeroSSL, a
// private CA such as step-ca or Pebble), as Caddy does by default.
//
// A Manager, built on certmagic (the ACME library of Caddy), is the
// listener's lb.CertificateSource: it answers the CA's TLS-ALPN-01
// challenge on the listener itself, keeps certificates, keys and the ACME
// account in a directory that several nodes may share (with locks, so
// that a fleet asks the CA once per name), renews each certificate when a
// third of its lifetime is left, and serves what it holds through lbkit's
// own SNI selection and live rotation, so that a renewal interrupts no
// connection. Certificates for names not configured are obtained during
// the handshake only for names in an explicit allow-list (Config.OnDemand).
// When renewal fails (the CA unreachable), the current certificate stays,
// renewal is retried with back-off, and lb's Diagnose says when the
// certificate expires and why renewing it fails.
//
// It is its own Go module, so that programs that do not use ACME never
// download certmagic:
//
//	m, err := acme.New(acme.Config{Domains: []string{"shop.example.com"}, Email: "ops@example.com", Storage: "/var/lib/lbkit/acme"})
//	...
//	l, err := lb.New(lb.WithListener("web", lb.HTTPS, ":443", lb.WithForwardTo("app"), lb.WithCertificatesFrom(m)), ...)
//	...
//	l.Start()
//	addr, _ := l.Addr("web")
//	m.Start(ctx, addr.String()) // obtains what storage does not hold
//	defer m.Close()
package acme
