package acme

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/lbkit/lbkit/lb"
	"github.com/lbkit/lbkit/proxy"
)

// LetsEncrypt is the directory of Let's Encrypt's production CA, the
// default CA.
const LetsEncrypt = certmagic.LetsEncryptProductionCA

// LetsEncryptStaging is the directory of Let's Encrypt's staging CA, for
// trying a setup without hitting the production rate limits.
const LetsEncryptStaging = certmagic.LetsEncryptStagingCA

// Config is what a Manager obtains certificates for, and from where: lbd's
// `acme` certificate section.
type Config struct {
	// Domains are the DNS names to obtain certificates for at Start, one
	// certificate each (a name may be a wildcard only with a DNS
	// challenge, which this package does not do). Required unless OnDemand
	// is set.
	Domains []string
	// Email is the ACME account's contact; the CA writes to it about
	// expiring certificates and problems. Recommended.
	Email string
	// CA is the ACME directory URL. Default: LetsEncrypt.
	CA string
	// Storage is the directory certificates, keys and the account are kept
	// in; several nodes sharing it (a network file system) share one
	// account and one certificate per name, and lock each other out of
	// obtaining the same certificate twice. Default: certmagic's data
	// directory ($XDG_DATA_HOME/certmagic, else ~/.local/share/certmagic).
	Storage string
	// OnDemand, if set, allows obtaining a certificate during the
	// handshake for a server name that is not in Domains but matches one
	// of these patterns: "shop.example.com" exactly, "*.example.com" one
	// label below example.com. Without it no handshake ever makes the
	// balancer ask the CA for a certificate: an open on-demand mode would
	// let anyone do so, for any name, up to the CA's rate limits.
	OnDemand []string
	// TrustedRoots verifies the CA's ACME endpoint (a private CA, Pebble);
	// nil: the system's roots.
	TrustedRoots *x509.CertPool
	// RenewalWindowRatio is the share of a certificate's lifetime left
	// when it is renewed. Default: 1/3 (a 90-day certificate is renewed
	// 30 days before it expires).
	RenewalWindowRatio float64
	// Logger receives what happens: certificates obtained and renewed, and
	// failures. Nil: slog.Default().
	Logger *slog.Logger
}

// Validate reports every problem with c at once.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Domains) == 0 && len(c.OnDemand) == 0 {
		errs = append(errs, errors.New("acme: domains is empty (and no on_demand names are allowed)"))
	}
	for i, d := range c.Domains {
		if err := checkName(d, false); err != nil {
			errs = append(errs, fmt.Errorf("acme: domains[%d]: %w", i, err))
		}
	}
	for i, d := range c.OnDemand {
		if err := checkName(d, true); err != nil {
			errs = append(errs, fmt.Errorf("acme: on_demand[%d]: %w", i, err))
		}
	}
	if c.CA != "" && !strings.HasPrefix(c.CA, "https://") {
		errs = append(errs, fmt.Errorf("acme: ca %q is not an https:// URL", c.CA))
	}
	if r := c.RenewalWindowRatio; r < 0 || r >= 1 {
		errs = append(errs, fmt.Errorf("acme: renewal window ratio %g is not in [0, 1)", r))
	}
	return errors.Join(errs...)
}

// checkName checks a DNS name (or, with wild, an allow-list pattern).
func checkName(n string, wild bool) error {
	rest := n
	if wild {
		rest = strings.TrimPrefix(n, "*.")
	}
	if rest == "" || strings.ContainsAny(rest, "*/:@ ") || strings.HasPrefix(rest, ".") || strings.HasSuffix(rest, ".") {
		return fmt.Errorf("%q is not a DNS name", n)
	}
	if net.ParseIP(rest) != nil {
		return fmt.Errorf("%q is an IP address; ACME certificates here are for DNS names", n)
	}
	return nil
}

// Manager obtains and renews certificates from an ACME CA with certmagic
// (Caddy's ACME library: its storage, locking, renewal window, retries with
// back-off) and serves them to a TLS or HTTPS listener: it is the listener's
// lb.CertificateSource (lb.WithCertificatesFrom). The challenge is TLS-ALPN-01,
// answered by the listener itself, so the CA must reach the listener on
// port 443 (the CA's validation port) at the names' addresses.
//
// Certificates are served from an immutable lbkit certificate store
// (proxy.Certificates), replaced whole when one is obtained or renewed:
// new handshakes get the new certificate at once, established connections
// keep theirs, nothing is interrupted. A renewal that fails leaves the
// current certificate in place, retried with back-off, and
// CertificateStatus (hence lb's Diagnose) says when the certificate
// expires and why renewing it fails.
//
// A Manager is made by New, started by Start once the listener serves,
// and stopped by Close. It is safe for concurrent use.
type Manager struct {
	cfg Config
	log *slog.Logger

	certs proxy.Certificates // obtained certificates, chosen by SNI

	mu       sync.Mutex // guards the fields below
	magic    *certmagic.Config
	cache    *certmagic.Cache
	cancel   context.CancelFunc
	held     map[string]*tls.Certificate // by name, what certs holds
	failures map[string]failure          // by name, the last failure since the last success
	changed  chan struct{}               // closed and replaced when held or failures change
	closed   bool
}

// failure is a failed attempt to obtain or renew a certificate.
type failure struct {
	at      time.Time
	err     string
	renewal bool
}

// New checks cfg and returns a Manager that has not started.
func New(cfg Config) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Domains = slices.Clone(cfg.Domains)
	for i, d := range cfg.Domains {
		cfg.Domains[i] = strings.ToLower(d)
	}
	if cfg.CA == "" {
		cfg.CA = LetsEncrypt
	}
	if cfg.RenewalWindowRatio == 0 {
		cfg.RenewalWindowRatio = certmagic.DefaultRenewalWindowRatio
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Manager{cfg: cfg, log: log.With("ca", cfg.CA), held: map[string]*tls.Certificate{},
		failures: map[string]failure{}, changed: make(chan struct{})}, nil
}

// Start starts managing the certificates: those in storage are loaded
// (another node sharing the storage may have put them there), the missing
// ones obtained in the background, and all renewed when their renewal
// window opens. listenAddr is the address of the listener that serves the
// certificates (lb's Addr of it): the CA's TLS-ALPN-01 validation reaches
// it there, and certmagic then starts no challenge server of its own.
// Start returns at once; Wait waits for the certificates. ctx's values go
// with the background work, but its end does not stop it: Close does.
func (m *Manager) Start(ctx context.Context, listenAddr string) error {
	host, port, err := net.SplitHostPort(listenAddr)
	if err != nil {
		return fmt.Errorf("acme: listen address: %w", err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return fmt.Errorf("acme: listen address %q: port: %w", listenAddr, err)
	}
	m.mu.Lock()
	magic, ctx, err := m.setup(ctx, host, p)
	m.mu.Unlock()
	if err != nil || len(m.cfg.Domains) == 0 {
		return err
	}
	// Without m.mu: loading what storage holds emits events, whose handler
	// takes it.
	if err := magic.ManageAsync(ctx, m.cfg.Domains); err != nil {
		return fmt.Errorf("acme: %w", err)
	}
	return nil
}

// setup builds certmagic's cache and configuration; m.mu is held.
func (m *Manager) setup(ctx context.Context, host string, p int) (*certmagic.Config, context.Context, error) {
	if m.closed {
		return nil, nil, errors.New("acme: the manager is closed")
	}
	if m.magic != nil {
		return nil, nil, errors.New("acme: the manager was started already")
	}
	ctx, m.cancel = context.WithCancel(context.WithoutCancel(ctx))
	var magic *certmagic.Config
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return magic, nil },
		Logger:           zap.NewNop(),
	})
	var storage certmagic.Storage = certmagic.Default.Storage
	if m.cfg.Storage != "" {
		storage = &certmagic.FileStorage{Path: m.cfg.Storage}
	}
	tmpl := certmagic.Config{
		RenewalWindowRatio: m.cfg.RenewalWindowRatio,
		Storage:            storage,
		Logger:             zap.NewNop(),
		OnEvent:            m.onEvent,
	}
	if len(m.cfg.OnDemand) > 0 {
		tmpl.OnDemand = &certmagic.OnDemandConfig{DecisionFunc: func(_ context.Context, name string) error {
			if !m.allowedOnDemand(name) {
				return fmt.Errorf("%q is not in the on-demand allow-list", name)
			}
			return nil
		}}
	}
	magic = certmagic.New(m.cache, tmpl)
	magic.Issuers = []certmagic.Issuer{certmagic.NewACMEIssuer(magic, certmagic.ACMEIssuer{
		CA:                   m.cfg.CA,
		TestCA:               m.cfg.CA, // no fallback to another CA
		Email:                m.cfg.Email,
		Agreed:               true,
		DisableHTTPChallenge: true, // the listener answers TLS-ALPN-01
		ListenHost:           host,
		AltTLSALPNPort:       p,
		TrustedRoots:         m.cfg.TrustedRoots,
		Logger:               zap.NewNop(),
	})}
	m.magic = magic
	return magic, ctx, nil
}

// Wait waits until every name of Config.Domains has a certificate, or ctx
// ends. It returns ctx's error then, with the last failure of each name
// still without one.
func (m *Manager) Wait(ctx context.Context) error {
	for {
		m.mu.Lock()
		var missing []string
		for _, d := range m.cfg.Domains {
			if m.held[d] == nil {
				if f, ok := m.failures[d]; ok {
					missing = append(missing, d+": "+f.err)
				} else {
					missing = append(missing, d+": not obtained yet")
				}
			}
		}
		ch := m.changed
		m.mu.Unlock()
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("acme: %w; %s", ctx.Err(), strings.Join(missing, "; "))
		}
	}
}

// Renew renews the certificate for name now, whether or not it is due,
// and serves the new one from the next handshake on. When it fails the
// current certificate stays, and the failure shows in CertificateStatus.
func (m *Manager) Renew(ctx context.Context, name string) error {
	m.mu.Lock()
	magic := m.magic
	m.mu.Unlock()
	if magic == nil {
		return errors.New("acme: the manager has not started")
	}
	name = strings.ToLower(name)
	if err := magic.RenewCertSync(ctx, name, true); err != nil {
		m.fail(name, err, true)
		return fmt.Errorf("acme: %w", err)
	}
	return nil
}

// Close stops renewing and the background work of Start. The certificates
// obtained are still served (and stay in storage).
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	if m.cancel != nil {
		m.cancel()
	}
	if m.cache != nil {
		m.cache.Stop()
	}
	return nil
}

// GetCertificate implements proxy.CertificateSource: the certificate for
// the client's server name if the Manager has one, obtained during the
// handshake if the name is allowed on demand, the TLS-ALPN-01 challenge
// certificate for the CA's validation; nil otherwise.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if slices.Contains(hello.SupportedProtos, proxy.ACMETLS1Protocol) {
		if magic := m.started(); magic != nil {
			return magic.GetCertificate(hello)
		}
		return nil, nil
	}
	if c, ok := m.certs.Lookup(hello.ServerName); ok {
		return c, nil
	}
	if len(m.cfg.OnDemand) > 0 && m.allowedOnDemand(hello.ServerName) {
		if magic := m.started(); magic != nil {
			return magic.GetCertificate(hello)
		}
	}
	return nil, nil
}

// started returns the certmagic configuration, nil before Start.
func (m *Manager) started() *certmagic.Config {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.magic
}

// allowedOnDemand reports whether name matches the on-demand allow-list.
func (m *Manager) allowedOnDemand(name string) bool {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if name == "" {
		return false
	}
	for _, p := range m.cfg.OnDemand {
		p = strings.ToLower(p)
		if rest, ok := strings.CutPrefix(p, "*."); ok {
			if i := strings.IndexByte(name, '.'); i > 0 && name[i+1:] == rest {
				return true
			}
			continue
		}
		if p == name {
			return true
		}
	}
	return false
}

// onEvent follows certmagic's events: a certificate obtained or renewed
// (or loaded from storage, where another node may have put it) replaces the
// one served; a failure is kept for CertificateStatus.
func (m *Manager) onEvent(ctx context.Context, event string, data map[string]any) error {
	switch event {
	case "cert_obtained":
		name, _ := data["identifier"].(string)
		certPath, _ := data["certificate_path"].(string)
		keyPath, _ := data["private_key_path"].(string)
		renewal, _ := data["renewal"].(bool)
		if err := m.loadStored(ctx, name, certPath, keyPath); err != nil {
			m.fail(name, fmt.Errorf("loading the new certificate: %w", err), renewal)
			return nil
		}
		verb := "obtained"
		if renewal {
			verb = "renewed"
		}
		m.log.Info("acme: certificate "+verb, "name", name)
	case "cached_managed_cert":
		sans, _ := data["sans"].([]string)
		m.loadCached(sans)
	case "cert_failed":
		name, _ := data["identifier"].(string)
		renewal, _ := data["renewal"].(bool)
		err, _ := data["error"].(error)
		if err == nil {
			err = errors.New("unknown error")
		}
		m.fail(name, err, renewal)
	}
	return nil
}

// loadStored loads a certificate certmagic has just stored.
func (m *Manager) loadStored(ctx context.Context, name, certPath, keyPath string) error {
	m.mu.Lock()
	magic := m.magic
	m.mu.Unlock()
	if magic == nil || certPath == "" || keyPath == "" {
		return errors.New("no storage paths in the event")
	}
	certPEM, err := magic.Storage.Load(ctx, certPath)
	if err != nil {
		return err
	}
	keyPEM, err := magic.Storage.Load(ctx, keyPath)
	if err != nil {
		return err
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return err
	}
	m.hold(&c, name)
	return nil
}

// loadCached takes the certificate certmagic's cache holds for names.
func (m *Manager) loadCached(names []string) {
	m.mu.Lock()
	cache := m.cache
	m.mu.Unlock()
	if cache == nil || len(names) == 0 {
		return
	}
	var best *certmagic.Certificate
	for _, c := range cache.AllMatchingCertificates(names[0]) {
		if best == nil || c.Leaf != nil && best.Leaf != nil && c.Leaf.NotAfter.After(best.Leaf.NotAfter) {
			best = &c
		}
	}
	if best == nil {
		return
	}
	c := best.Certificate
	m.hold(&c, names...)
}

// hold serves c for the names of its leaf (and names), rebuilding the
// store whole, and clears their failures.
func (m *Manager) hold(c *tls.Certificate, names ...string) {
	if c.Leaf == nil && len(c.Certificate) > 0 {
		c.Leaf, _ = x509.ParseCertificate(c.Certificate[0])
	}
	if c.Leaf == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range append(slices.Clone(c.Leaf.DNSNames), names...) {
		if n = strings.ToLower(n); n != "" {
			m.held[n] = c
			delete(m.failures, n)
		}
	}
	var all []*tls.Certificate
	for _, n := range slices.Sorted(maps.Keys(m.held)) {
		if h := m.held[n]; !slices.Contains(all, h) {
			all = append(all, h)
		}
	}
	// Each certificate is checked when parsed; Set fails only on a
	// certificate without a key or a name, which certmagic never stores.
	if err := m.certs.Set(proxy.WildcardOneLabel, nil, all...); err != nil {
		m.log.Error("acme: serving the certificates", "err", err)
	}
	m.notify()
}

// fail records a failure to obtain or renew name's certificate.
func (m *Manager) fail(name string, err error, renewal bool) {
	if name == "" {
		return
	}
	name = strings.ToLower(name)
	m.mu.Lock()
	m.failures[name] = failure{at: time.Now(), err: err.Error(), renewal: renewal}
	m.notify()
	m.mu.Unlock()
	verb := "obtaining"
	if renewal {
		verb = "renewing"
	}
	m.log.Warn("acme: "+verb+" a certificate failed", "name", name, "err", err)
}

// notify wakes Wait; m.mu is held.
func (m *Manager) notify() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// CertificateStatus implements lb.CertificateSource: for each name of
// Config.Domains and each obtained on demand, when its certificate expires,
// when it is due for renewal, and why the last attempt to obtain or renew
// it failed, if it did.
func (m *Manager) CertificateStatus() []lb.CertificateStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	names := slices.Clone(m.cfg.Domains)
	for n := range m.held {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	var st []lb.CertificateStatus
	for _, n := range names {
		s := lb.CertificateStatus{Names: []string{n}, Source: "acme " + m.cfg.CA}
		if c := m.held[n]; c != nil && c.Leaf != nil {
			l := c.Leaf
			s.Issuer, s.NotAfter = l.Issuer.CommonName, l.NotAfter
			life := l.NotAfter.Sub(l.NotBefore)
			s.RenewAfter = l.NotAfter.Add(-time.Duration(float64(life) * m.cfg.RenewalWindowRatio))
		}
		if f, ok := m.failures[n]; ok {
			s.Error, s.LastFailure = f.err, f.at
		}
		st = append(st, s)
	}
	return st
}

var (
	_ lb.CertificateSource    = (*Manager)(nil)
	_ proxy.CertificateSource = (*Manager)(nil)
)
