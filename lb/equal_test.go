package lb

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTLSEqual(t *testing.T) {
	cert := testCert(t, "a.test")
	pool := func() *x509.CertPool { p := x509.NewCertPool(); p.AddCert(cert.Leaf); return p }
	mk := func() *tls.Config {
		return &tls.Config{ServerName: "a.test", RootCAs: pool(), MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}}
	}
	assert.True(t, tlsEqual(nil, nil))
	assert.False(t, tlsEqual(mk(), nil))
	assert.True(t, tlsEqual(mk(), mk()), "same content, new values (a reload)")
	other := mk()
	other.ServerName = "b.test"
	assert.False(t, tlsEqual(mk(), other))
	other = mk()
	other.RootCAs = x509.NewCertPool()
	assert.False(t, tlsEqual(mk(), other))
	other = mk()
	other.Certificates = []tls.Certificate{testCert(t, "a.test")}
	assert.False(t, tlsEqual(mk(), other), "another key")
	withHook := mk()
	withHook.VerifyConnection = func(tls.ConnectionState) error { return nil }
	assert.False(t, tlsEqual(withHook, mk()))
	assert.True(t, tlsEqual(withHook, withHook), "the same value is equal to itself")
}

func TestHealthAndSourceEqual(t *testing.T) {
	h := HealthCheck{Path: "/healthz", Interval: time.Second, TLS: &tls.Config{ServerName: "x"}}
	h2 := h
	h2.TLS = &tls.Config{ServerName: "x"}
	assert.True(t, healthEqual(h, h2))
	h2.Path = "/"
	assert.False(t, healthEqual(h, h2))

	assert.True(t, sourceEqual(nil, nil))
	assert.False(t, sourceEqual(&DNS{Name: "a", Port: 1}, nil))
	assert.True(t, sourceEqual(&DNS{Name: "a", Port: 1}, &DNS{Name: "a", Port: 1}))
	assert.False(t, sourceEqual(&DNS{Name: "a", Port: 1}, &DNS{Name: "a", Port: 2}))
	assert.False(t, sourceEqual(&DNS{Name: "a", Port: 1}, &DNSSRV{Name: "a"}))
	assert.True(t, sourceEqual(&DNSSRV{Service: "http", Proto: "tcp", Name: "a"}, &DNSSRV{Service: "http", Proto: "tcp", Name: "a"}))
	f := &fakeSource{}
	assert.True(t, sourceEqual(f, f), "a user's source: the same value")
	assert.False(t, sourceEqual(f, &fakeSource{}), "a user's source is never read to compare it")
}

// TestReapplyingEqualConfigChangesNothing: a reload that builds equal but
// new values (TLS configuration, discovery source) keeps the group's
// Upstream (and its counters), its monitor and its discovery loop.
func TestReapplyingEqualConfigChangesNothing(t *testing.T) {
	a := newTCPTarget(t)
	// A resolver that fails at once, on loopback: the test asks no real DNS.
	dead := &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("no DNS in this test")
	}}
	src := func() Source { return &DNS{Name: "app.test", Port: 80, Resolver: dead} }
	opts := func() []GroupOption {
		return []GroupOption{WithTarget(a.addr, WithTargetID("a")), WithHealthCheck(HealthCheck{Interval: time.Hour, Timeout: time.Second, TLS: &tls.Config{ServerName: "x"}}),
			WithTargetTLS(&tls.Config{ServerName: "a.test"}), WithDiscovery(src(), time.Hour)}
	}
	var c config
	WithTargetGroup("web", TLS, opts()...)(&c)
	require.NoError(t, c.validate())
	g, err := newGroup(c.groups[0], quietLog, Hooks{})
	require.NoError(t, err)
	t.Cleanup(g.close)
	up, mon := g.up(), g.mon()
	g.mu.Lock()
	disco := g.disco
	g.mu.Unlock()

	c = config{}
	WithTargetGroup("web", TLS, opts()...)(&c)
	require.NoError(t, g.apply(c.groups[0]))
	assert.Same(t, up, g.up(), "the Upstream (and its counters) stays")
	assert.Same(t, mon, g.mon(), "the monitor stays")
	g.mu.Lock()
	assert.Same(t, disco, g.disco, "the discovery loop stays")
	g.mu.Unlock()
}

// equalSource says it equals any equalSource of the same name.
type equalSource struct{ name string }

func (e *equalSource) Targets(context.Context) ([]Discovered, error) { return nil, nil }
func (e *equalSource) String() string                                { return e.name }
func (e *equalSource) Equal(o Source) bool {
	x, ok := o.(*equalSource)
	return ok && x.name == e.name
}

func TestSourceEqualAsksTheSource(t *testing.T) {
	assert.True(t, sourceEqual(&equalSource{"a"}, &equalSource{"a"}), "rebuilt from the same settings: no restart")
	assert.False(t, sourceEqual(&equalSource{"a"}, &equalSource{"b"}))
	assert.False(t, sourceEqual(&equalSource{"a"}, nil))
}
