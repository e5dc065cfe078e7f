package lb

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lbkit/lbkit/balancer"
	"github.com/lbkit/lbkit/proxy"
)

func TestValidation(t *testing.T) {
	web := WithTargetGroup("web", HTTP, WithTarget("127.0.0.1:8080"))
	tcp := WithTargetGroup("tcp", TCP, WithTarget("127.0.0.1:9000"))
	cert := tls.Certificate{Certificate: [][]byte{{1}}}
	cases := []struct {
		name string
		opts []Option
		want []string
	}{
		{"protocol pairs", []Option{web, tcp,
			WithListener("a", TCP, "127.0.0.1:1", WithForwardTo("web")),
			WithListener("b", HTTP, "127.0.0.1:2", WithForwardTo("tcp")),
			WithListener("c", UDP, "127.0.0.1:3", WithForwardTo("tcp")),
		}, []string{
			`listener "a": a tcp listener cannot forward to http target group "web"`,
			`listener "b": a http listener cannot forward to tcp target group "tcp"`,
			`listener "c": a udp listener cannot forward to tcp target group "tcp"`,
		}},
		{"ports and addresses", []Option{tcp,
			WithListener("a", TCP, "127.0.0.1:70000", WithForwardTo("tcp")),
			WithListener("b", TCP, "no-port", WithForwardTo("tcp")),
			WithTargetGroup("g", TCP, WithTarget("127.0.0.1:0"), WithTarget("nohost")),
		}, []string{
			`listener "a": addr "127.0.0.1:70000": port "70000" is out of range 0..65535`,
			`listener "b": addr "no-port" is not host:port`,
			`target group "g": target[0] "127.0.0.1:0": invalid target: addr "127.0.0.1:0" has port "0", want 1..65535`,
			`target group "g": target[1] "nohost": invalid target: addr "nohost" is not host:port`,
		}},
		{"duplicate names and addresses", []Option{tcp, tcp,
			WithListener("a", TCP, "127.0.0.1:1", WithForwardTo("tcp")),
			WithListener("a", TCP, "127.0.0.1:1", WithForwardTo("tcp")),
			WithTargetGroup("d", TCP, WithTarget("127.0.0.1:1"), WithTarget("127.0.0.1:1")),
		}, []string{
			`target group "tcp": name is used by another target group`,
			`listener "a": name is used by another listener`,
			`listener "a": addr "127.0.0.1:1" is used by listener "a"`,
			`target group "d": target[1] "127.0.0.1:1": id also used by target[0]`,
		}},
		{"missing and empty things", []Option{
			WithListener("", TCP, "127.0.0.1:1", WithForwardTo("nope")),
			WithListener("x", TCP, "127.0.0.1:2"),
			WithTargetGroup("", TCP),
		}, []string{
			`target group #1: name is empty`,
			`listener #1: name is empty`,
			`listener #1: forwards to target group "nope", which does not exist`,
			`listener "x": no target group to forward to`,
		}},
		{"stickiness that does not fit", []Option{
			WithTargetGroup("t", TCP, WithTarget("127.0.0.1:1"), WithStickiness(Stickiness{Kind: Cookie})),
			WithTargetGroup("h", HTTP, WithTarget("127.0.0.1:1"), WithStickiness(Stickiness{Kind: SourceIP}), WithAlgorithm(balancer.SourceIPHash)),
			WithTargetGroup("app", HTTP, WithTarget("127.0.0.1:1"), WithStickiness(Stickiness{Kind: AppCookie})),
			WithTargetGroup("keys", HTTP, WithTarget("127.0.0.1:1"), WithStickiness(Stickiness{Kind: Cookie, CookieName: "bad name;", Keys: [][]byte{[]byte("short")}})),
			WithListener("l", TCP, "127.0.0.1:1", WithForwardTo("t")),
		}, []string{
			`target group "t": lb_cookie stickiness needs an http or https target group, not tcp`,
			`target group "h": source_ip stickiness with algorithm source_ip_hash: the algorithm already keeps each client on its target; choose one`,
			`target group "app": app_cookie stickiness needs the application's cookie name`,
			`target group "keys": stickiness: `,
			`listener "l": target group "t" uses lb_cookie stickiness, which needs an http or https listener`,
		}},
		{"health checks", []Option{
			WithTargetGroup("g", HTTP, WithTarget("127.0.0.1:1"), WithHealthCheck(HealthCheck{
				Protocol: TLS, Port: 70000, Interval: time.Second, Timeout: 2 * time.Second,
				HealthyThreshold: 11, Status: "200-x", Path: "health",
			})),
		}, []string{
			`health check: protocol tls cannot be checked (tcp, http, https or udp)`,
			`health check: port 70000 is out of range 0..65535`,
			`health check: timeout 2s must be below the interval 1s`,
			`health check: healthy threshold 11 must be within 1..10`,
			`health check: path "health" is not absolute`,
			`health check: `,
		}},
		{"tls and data-plane settings", []Option{tcp, web,
			WithListener("s", HTTPS, "127.0.0.1:1", WithForwardTo("web")),
			WithListener("p", HTTP, "127.0.0.1:2", WithForwardTo("web"), WithCertificates(cert)),
			WithListener("old", HTTPS, "127.0.0.1:3", WithForwardTo("web"), WithCertificates(cert), WithMinTLSVersion(tls.VersionTLS10)),
			WithListener("h2", HTTPS, "127.0.0.1:4", WithForwardTo("web"), WithCertificates(cert), WithCipherSuites(tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384)),
			WithListener("h1", HTTPS, "127.0.0.1:5", WithForwardTo("web"), WithCertificates(cert), WithCipherSuites(tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384), WithoutHTTP2()),
			WithTargetGroup("pp", HTTP, WithTarget("127.0.0.1:1"), WithProxyProtocol(3), WithTargetTLS(&tls.Config{})),
		}, []string{
			`listener "s": a https listener needs at least one certificate`,
			`listener "p": certificates are set but a http listener does not use TLS`,
			`listener "old": minimum TLS version TLS 1.0 is below TLS 1.2, which lbkit does not accept`,
			`listener "h2": cipher suites need TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 or TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 for HTTP/2; add one or disable HTTP/2`,
			`target group "pp": proxy protocol version 3 is not 1 or 2`,
			`target group "pp": proxy protocol is for tcp and tls target groups, not http`,
			`target group "pp": target TLS is set but a http target group does not use TLS`,
		}},
		{"access control and rules", []Option{web,
			WithListener("w", HTTP, "127.0.0.1:1", WithForwardTo("web"), WithAllow("10.0.0.1/8", "bogus"), WithTrustedProxies("x"),
				WithRules(Rule{Host: "a", Forward: "web", Redirect: &proxy.Redirect{Scheme: "https"}}, Rule{Path: "~(", Forward: "web"}, Rule{Host: "b", Forward: "missing"})),
			WithListener("t", TCP, "127.0.0.1:2", WithForwardTo("tcp"), WithRules(Rule{Forward: "tcp"}), WithRequestTimeout(time.Second)),
			WithListener("n", HTTP, "127.0.0.1:3"),
			tcp,
		}, []string{
			`listener "w": acl: allow[0]: 10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?`,
			`listener "w": acl: allow[1]: "bogus" is not an address or CIDR prefix`,
			`listener "w": trusted proxies: acl: allow[0]: "x" is not an address or CIDR prefix`,
			`listener "w": rule[2]: forwards to target group "missing", which does not exist`,
			`listener "w": rule[0]: 2 kinds of action set`,
			`listener "w": rule[1]: path "~(": error parsing regexp`,
			`listener "t": rules are for http and https listeners`,
			`listener "t": request timeout, response timeout and header, body and URI limits are for http and https listeners`,
			`listener "n": no default action`,
		}},
		{"http settings the proxy checks only when it starts", []Option{web, tcp,
			WithListener("h", HTTPS, "127.0.0.1:1", WithForwardTo("web"), WithCertificates(cert),
				WithRequestTimeout(-1), WithResponseTimeout(-2), WithMaxHeaderBytes(-3), WithMaxBodyBytes(-4), WithMaxURILength(-5),
				WithRetries(proxy.Retry{Attempts: -1, Timeout: -1, MinPerSecond: -1, Ratio: 11}), WithConnectAttempts(2),
				WithClientAuth(tls.RequireAndVerifyClientCert, nil, "*.bad*host"), WithMinTLSVersion(0x0309)),
			WithListener("m", HTTP, "127.0.0.1:2", WithForwardTo("web"), WithClientAuth(tls.RequestClientCert, nil)),
			WithListener("l4", TCP, "127.0.0.1:3", WithForwardTo("tcp"), WithRetries(proxy.Retry{Attempts: 2}), WithForwardedHeader(), WithEventLoop()),
			WithTargetGroup("k", HTTP, WithTarget("127.0.0.1:1"), WithAlgorithm(balancer.KeyHash)),
		}, []string{
			`listener "h": request timeout -1 is negative`,
			`listener "h": response timeout -2 is negative`,
			`listener "h": max header bytes -3 is negative`,
			`listener "h": max body bytes -4 is negative`,
			`listener "h": max URI length -5 is negative`,
			`listener "h": retry attempts -1 is negative`,
			`listener "h": retry ratio 11 is outside 0..10`,
			`listener "h": connect attempts are for tcp and tls listeners`,
			`listener "h": client authentication RequireAndVerifyClientCert needs a CA pool`,
			`listener "h": client authentication hosts[0] "*.bad*host" is not a host pattern`,
			`listener "h": minimum TLS version 0x309 is unknown`,
			`listener "m": client authentication RequestClientCert is not VerifyClientCertIfGiven or RequireAndVerifyClientCert`,
			`listener "l4": retries, the Forwarded header, request IDs and access logs are for http and https listeners`,
			`listener "l4": event loops are for http listeners`,
			`target group "k": algorithm key_hash needs a key per request`,
		}},
		{"flows", []Option{WithMaxFlows(-1), WithMaxFlowsPerSource(-2)}, []string{
			`max flows -1 is negative`, `max flows per source -2 is negative`,
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := New(c.opts...)
			require.Error(t, err)
			for _, w := range c.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestValidationDuplicateRules(t *testing.T) {
	_, err := New(WithTargetGroup("web", HTTP, WithTarget("127.0.0.1:8080")),
		WithListener("w", HTTP, "127.0.0.1:1", WithForwardTo("web"),
			WithRules(Rule{Name: "first", Host: "a.test", Path: "/x", Forward: "web"}, Rule{Name: "second", Host: "a.test", Path: "/x", Forward: "web"})))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"first"`)
	assert.Contains(t, err.Error(), `"second"`)
}

// TestValidationErrorsAreData checks that each problem is a *FieldError
// naming its object and field, wrapping ErrInvalid, and that every problem
// comes at once.
func TestValidationErrorsAreData(t *testing.T) {
	_, err := New(
		WithMaxFlows(-1),
		WithTargetGroup("g", HTTP, WithTarget("127.0.0.1:1"), WithTarget("127.0.0.1:2", WithTargetID("b"), WithWeight(101)),
			WithStickiness(Stickiness{Kind: AppCookie}), WithHealthCheck(HealthCheck{Port: 70000})),
		WithListener("web", HTTP, "127.0.0.1:0", WithForwardTo("nope"),
			WithRules(Rule{Name: "r", Path: "/a", Forward: "g"}, Rule{Path: "/b", Split: []GroupWeight{{Group: "g", Weight: 1}, {Group: "gone", Weight: 1}}})),
	)
	require.ErrorIs(t, err, ErrInvalid)
	assert.NotErrorIs(t, err, ErrNotFound)
	type key struct {
		kind        Kind
		name        string
		index       int
		parent, fld string
	}
	var got []key
	for _, e := range unwrapAll(err) {
		var fe *FieldError
		require.ErrorAs(t, e, &fe)
		require.ErrorIs(t, fe, ErrInvalid)
		got = append(got, key{fe.Kind, fe.Name, fe.Index, fe.Parent.Name, fe.Field})
	}
	assert.Equal(t, []key{
		{KindLoadBalancer, "", 0, "", "MaxFlows"},
		{KindTarget, "b", 1, "g", "Weight"},
		{KindTargetGroup, "g", 0, "", "Stickiness.CookieName"},
		{KindTargetGroup, "g", 0, "", "HealthCheck.Port"},
		{KindListener, "web", 0, "", "ForwardTo"},
		{KindRule, "", 1, "web", "Split[1].Group"},
	}, got)
}

// TestNotFoundIsData checks the errors of calls that name what does not
// exist.
func TestNotFoundIsData(t *testing.T) {
	l, err := New(WithTargetGroup("g", TCP, WithTarget("127.0.0.1:1"), WithoutHealthCheck()))
	require.NoError(t, err)
	for _, err := range []error{l.RemoveTarget("g", "nope"), l.SetWeight("g", "nope", 1), l.RemoveTarget("nope", "x"), l.RemoveListener("nope")} {
		require.ErrorIs(t, err, ErrNotFound)
		assert.NotErrorIs(t, err, ErrInvalid)
		var fe *FieldError
		require.ErrorAs(t, err, &fe)
		assert.Equal(t, -1, fe.Index)
	}
	err = l.RemoveTarget("g", "nope")
	assert.EqualError(t, err, `target group "g": target "nope": does not exist`)
	var fe *FieldError
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, Object{Kind: KindTarget, Name: "nope", Index: -1}, fe.Object)
	assert.Equal(t, Object{Kind: KindTargetGroup, Name: "g", Index: -1}, fe.Parent)
}

func TestValidConfigurations(t *testing.T) {
	cert := tls.Certificate{Certificate: [][]byte{{1}}}
	for name, opts := range map[string][]Option{
		"minimal": {WithListener("l", TCP, "127.0.0.1:0", WithForwardTo("g")), WithTargetGroup("g", TCP, WithTarget("127.0.0.1:9"))},
		"l7": {
			WithListener("l", HTTPS, "127.0.0.1:0", WithForwardTo("g"), WithCertificates(cert), WithRules(Rule{Path: "/api/*", Forward: "api"}, Rule{Host: "old.test", Redirect: &proxy.Redirect{Host: "new.test"}})),
			WithListener("r", HTTP, "127.0.0.1:0", WithDefaultRedirect(proxy.Redirect{Scheme: "https"})),
			WithTargetGroup("g", HTTPS, WithTarget("127.0.0.1:9"), WithStickiness(Stickiness{Kind: Cookie})),
			WithTargetGroup("api", HTTP, WithTarget("127.0.0.1:10"), WithStickiness(Stickiness{Kind: AppCookie, CookieName: "JSESSIONID"})),
		},
		"udp over tcp checks": {WithListener("u", UDP, "127.0.0.1:0", WithForwardTo("g")), WithTargetGroup("g", UDP, WithTarget("127.0.0.1:53"), WithHealthCheck(HealthCheck{Protocol: TCP, Port: 8053}))},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := New(opts...)
			assert.NoError(t, err)
		})
	}
	assert.True(t, strings.HasPrefix(TCP.String(), "tcp"))
}
