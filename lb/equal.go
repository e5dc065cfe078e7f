package lb

import (
	"crypto/tls"
	"crypto/x509"
	"reflect"
	"slices"
)

// Changes are detected by content, not identity: a configuration file
// reloaded makes new values each time (a new *tls.Config, a new CertPool, a
// new discovery source), and treating each as a change would restart what
// did not change (a group's Upstream and its counters, its health monitor,
// its discovery loop).

// tlsEqual reports whether two TLS configurations are the same for what
// lbkit uses of them. Configurations with callbacks, or with fields that
// cannot be compared, are equal only if they are the same value.
func tlsEqual(a, b *tls.Config) bool {
	if a == b {
		return true
	}
	if a == nil || b == nil {
		return false
	}
	for _, c := range []*tls.Config{a, b} {
		if c.GetCertificate != nil || c.GetClientCertificate != nil || c.GetConfigForClient != nil ||
			c.VerifyPeerCertificate != nil || c.VerifyConnection != nil || c.KeyLogWriter != nil ||
			c.Rand != nil || c.Time != nil || c.UnwrapSession != nil || c.WrapSession != nil {
			return false
		}
	}
	return a.ServerName == b.ServerName &&
		a.InsecureSkipVerify == b.InsecureSkipVerify &&
		a.MinVersion == b.MinVersion && a.MaxVersion == b.MaxVersion &&
		a.ClientAuth == b.ClientAuth &&
		slices.Equal(a.CipherSuites, b.CipherSuites) &&
		slices.Equal(a.CurvePreferences, b.CurvePreferences) &&
		slices.Equal(a.NextProtos, b.NextProtos) &&
		poolEqual(a.RootCAs, b.RootCAs) && poolEqual(a.ClientCAs, b.ClientCAs) &&
		certsEqual(a.Certificates, b.Certificates)
}

func poolEqual(a, b *x509.CertPool) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(b)
}

func certsEqual(a, b []tls.Certificate) bool {
	return slices.EqualFunc(a, b, func(x, y tls.Certificate) bool {
		return slices.EqualFunc(x.Certificate, y.Certificate, slices.Equal) &&
			reflect.DeepEqual(x.PrivateKey, y.PrivateKey)
	})
}

// healthEqual reports whether two health checks are the same.
func healthEqual(a, b HealthCheck) bool {
	ta, tb := a.TLS, b.TLS
	a.TLS, b.TLS = nil, nil
	return a == b && tlsEqual(ta, tb)
}

// sourceEqual reports whether two discovery sources are the same: the
// same value, two of lbkit's DNS sources with equal fields, or two sources
// of which the first says so through an Equal(Source) bool method (a
// source built anew from the same configuration on every reload, whose
// Equal reads only settings fixed at construction). Other sources are
// compared by identity only: reading a user's source while its discovery
// loop uses it would race.
func sourceEqual(a, b Source) bool {
	if e, ok := a.(interface{ Equal(Source) bool }); ok && b != nil {
		return e.Equal(b)
	}
	switch x := a.(type) {
	case *DNS:
		y, ok := b.(*DNS)
		return ok && (x == y || x != nil && y != nil && *x == *y)
	case *DNSSRV:
		y, ok := b.(*DNSSRV)
		return ok && (x == y || x != nil && y != nil && *x == *y)
	}
	if a == nil || b == nil {
		return a == b
	}
	ta, tb := reflect.TypeOf(a), reflect.TypeOf(b)
	return ta == tb && ta.Comparable() && a == b
}
