package config_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lbkit/lbkit/config"
)

// problems parses src and returns its problems as "path: message" (no
// line), failing the test if it parses.
func problems(t *testing.T, src string) []string {
	t.Helper()
	_, err := config.Parse([]byte(src))
	require.Error(t, err, "want the configuration refused")
	require.ErrorIs(t, err, config.ErrInvalid)
	var ce *config.Error
	require.ErrorAs(t, err, &ce)
	var out []string
	for _, p := range ce.Problems {
		out = append(out, p.Path+": "+p.Message)
	}
	return out
}

const validGroups = `
target_groups:
  - name: app
    protocol: http
    targets: [{address: 127.0.0.1:9001}]
  - name: echo
    protocol: tcp
    targets: [{address: 127.0.0.1:9002}]
`

// TestProblemsByPath checks that each kind of mistake is reported at the
// path of its field, with the value named, and nothing else reported.
func TestProblemsByPath(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string
		want []string // "path: message prefix", in order
	}{
		{"syntax", "listeners: [", []string{": "}},
		{"two documents", "listeners: []\n---\nlisteners: []\n", []string{": more than one YAML document"}},
		{"unknown field", "listeners:\n  - name: web\n    protocl: http\n    protocol: http\n    address: 127.0.0.1:0\n    forward_to: app\n" + validGroups,
			[]string{`listeners[web].protocl: unknown field; did you mean "protocol"?`}},
		{"unknown top-level field", "listener: []\n", []string{`listener: unknown field; did you mean "listeners"?`}},
		{"unknown field far from any", "flows: {maximum_flows: 3}\n", []string{`flows.maximum_flows: unknown field (known: max, max_per_source, descriptor_budget, unreplied_timeout)`}},
		{"not an integer", "flows: {max: lots}\n", []string{`flows.max: "lots" is not an integer`}},
		{"not a bool", "target_groups: [{name: a, protocol: tcp, health_check: {enabled: perhaps}}]\n", []string{`target_groups[a].health_check.enabled: "perhaps" is not true or false`}},
		{"an unreadable value hides nothing else", "target_groups: [{name: a, protocol: http, health_check: {enabled: perhaps, path: healthz}}]\n",
			[]string{`target_groups[a].health_check.enabled: "perhaps" is not true or false`, `target_groups[a].health_check.path: "healthz" is not an absolute path`}},
		{"an unreadable object is not checked further", "target_groups: [[1, 2]]\n", []string{`target_groups[0]: is a list, want a mapping of name, protocol`}},
		{"mapping for a list", "listeners: {name: web}\n", []string{`listeners: is a mapping, want a list`}},
		{"list for a mapping", "flows: [1]\n", []string{`flows: is a list, want a mapping of max, max_per_source, descriptor_budget, unreplied_timeout`}},
		{"list for a string", "target_groups: [{name: [a], protocol: tcp}]\n", []string{`target_groups[0].name: is a list, want a string`}},
		{"bad duration", "target_groups: [{name: a, protocol: tcp, deregistration_delay: 5 minutes}]\n", []string{`target_groups[a].deregistration_delay: "5 minutes" is not a duration`}},
		{"duration without unit", "target_groups: [{name: a, protocol: tcp, health_check: {interval: 5}}]\n", []string{`target_groups[a].health_check.interval: "5" is not a duration`}},
		{"negative duration", "target_groups: [{name: a, protocol: tcp, deregistration_delay: -1s}]\n", []string{`target_groups[a].deregistration_delay: -1s is negative`}},
		{"key set twice", "flows:\n  max: 1\n  max: 2\n", []string{`flows.max: is set twice (first on line 2)`}},
		{"port out of range", "listeners: [{name: web, protocol: tcp, address: '127.0.0.1:70000', forward_to: echo}]\n" + validGroups,
			[]string{`listeners[web].address: "127.0.0.1:70000": port 70000 is out of range 0..65535`}},
		{"address without port", "listeners: [{name: web, protocol: tcp, address: localhost, forward_to: echo}]\n" + validGroups,
			[]string{`listeners[web].address: "localhost" is not host:port`}},
		{"weight out of range", "target_groups: [{name: a, protocol: tcp, targets: [{address: 127.0.0.1:1}, {address: 127.0.0.1:2}, {address: 127.0.0.1:3, weight: 150}]}]\n",
			[]string{`target_groups[a].targets[127.0.0.1:3].weight: 150 is out of range 0..100`}},
		{"target port 0", "target_groups: [{name: a, protocol: tcp, targets: [{address: 127.0.0.1:0}]}]\n",
			[]string{`target_groups[a].targets[127.0.0.1:0].address: "127.0.0.1:0": port 0 is out of range 1..65535`}},
		{"duplicate target", "target_groups: [{name: a, protocol: tcp, targets: [{address: 127.0.0.1:1}, {address: 127.0.0.1:1}]}]\n",
			[]string{`target_groups[a].targets[1].address: "127.0.0.1:1" is also the id of targets[0]`}},
		{"missing name and protocol", "target_groups: [{targets: [{address: 127.0.0.1:1}]}]\n",
			[]string{`target_groups[0].name: is required`, `target_groups[0].protocol: is required`}},
		{"duplicate names", "target_groups: [{name: a, protocol: tcp}, {name: a, protocol: tcp}]\n",
			[]string{`target_groups[1].name: "a" is also the name of target_groups[0]`}},
		{"unknown protocol", "listeners: [{name: web, protocol: htp, address: 127.0.0.1:0, forward_to: app}]\n" + validGroups,
			[]string{`listeners[web].protocol: "htp" is not one of tcp, udp, tls, http, https`}},
		{"unknown algorithm", "target_groups: [{name: a, protocol: tcp, algorithm: fastest}]\n",
			[]string{`target_groups[a].algorithm: "fastest" is not one of`}},
		{"missing group", "listeners: [{name: web, protocol: http, address: 127.0.0.1:0, forward_to: nope}]\n" + validGroups,
			[]string{`listeners[web].forward_to: forwards to target group "nope", which does not exist`}},
		{"protocol pairing", "listeners: [{name: web, protocol: tcp, address: 127.0.0.1:0, forward_to: app}]\n" + validGroups,
			[]string{`listeners[web].forward_to: a tcp listener cannot forward to http target group "app"`}},
		{"no default action", "listeners: [{name: web, protocol: http, address: 127.0.0.1:0}]\n" + validGroups,
			[]string{`listeners[web]: no default action (forward_to, redirect or fixed)`}},
		{"http field on a tcp listener", "listeners: [{name: t, protocol: tcp, address: 127.0.0.1:0, forward_to: echo, access_log: true, request_timeout: 5s}]\n" + validGroups,
			[]string{`listeners[t].request_timeout: is for http and https listeners, not tcp`, `listeners[t].access_log: is for http and https listeners, not tcp`}},
		{"l4 field on an http listener", "listeners: [{name: web, protocol: http, address: 127.0.0.1:0, forward_to: app, flow_log: true}, {name: t, protocol: tcp, address: 127.0.0.1:0, forward_to: echo, request_id: true, event_loop: true}]\n" + validGroups,
			[]string{`listeners[web].flow_log: is for tcp, tls and udp listeners, not http`, `listeners[t].request_id: is for http and https listeners, not tcp`, `listeners[t].event_loop: is for http listeners, not tcp`}},
		{"rule in a missing group", "listeners: [{name: web, protocol: http, address: 127.0.0.1:0, forward_to: app, rules: [{path: /a, forward: app}, {path: /b, split: [{group: app, weight: 1}, {group: gone, weight: 1}]}]}]\n" + validGroups,
			[]string{`listeners[web].rules[1].split[1].group: forwards to target group "gone", which does not exist`}},
		{"rule problems", `
listeners:
  - name: web
    protocol: http
    address: 127.0.0.1:0
    forward_to: app
    rules:
      - {name: a, path: /a, forward: app}
      - {name: b, path: /a, forward: app}
      - {name: c, path: "a/*", forward: app}
      - {name: d, path: /d, forward: app, fixed: {status: 200}}
      - {name: e, path: /e, redirect: {code: 200, scheme: ftp}}
      - {name: f, path: /f, split: [{group: app, weight: 1001}]}
      - {name: g, path: /g, fixed: {status: 700}}
` + validGroups, []string{
			`listeners[web].rules[b]: has the same host and path as rules[0]`,
			`listeners[web].rules[c].path: path "a/*" does not start with /`,
			`listeners[web].rules[d]: set exactly one action of forward, split, redirect and fixed (2 set)`,
			`listeners[web].rules[e].redirect.scheme: "ftp" is not http or https`,
			`listeners[web].rules[e].redirect.code: 200 is not 301, 302, 303, 307 or 308`,
			`listeners[web].rules[f].split[0].weight: 1001 is out of range 0..1000`,
			`listeners[web].rules[g].fixed.status: 700 is out of range 200..599`,
		}},
		{"acl", "listeners: [{name: t, protocol: tcp, address: 127.0.0.1:0, forward_to: echo, allow: [10.0.0.0/8, 10.0.0.1/8, nonsense], trusted_proxies: [bad]}]\n" + validGroups,
			[]string{`listeners[t].allow[1]: 10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?`, `listeners[t].allow[2]: "nonsense"`, `listeners[t].trusted_proxies[0]: "bad"`}},
		{"tls settings", "listeners: [{name: t, protocol: tcp, address: 127.0.0.1:0, forward_to: echo, tls: {min_version: '1.3'}, certificates: [{cert_file: a, key_file: b}]}]\n" + validGroups,
			[]string{`listeners[t].certificates: is for tls and https listeners, not tcp`, `listeners[t].tls: is for tls and https listeners, not tcp`}},
		{"old tls version", "listeners: [{name: s, protocol: https, address: 127.0.0.1:0, forward_to: app, tls: {min_version: '1.0'}}]\n" + validGroups,
			[]string{`listeners[s].tls.min_version: "1.0" is not one of 1.2, 1.3 (TLS 1.0 and 1.1 are not accepted)`, `listeners[s].certificates: a https listener needs at least one certificate (certificates)`}},
		{"https without certificates", "listeners: [{name: s, protocol: https, address: 127.0.0.1:0, forward_to: app}]\n" + validGroups,
			[]string{`listeners[s].certificates: a https listener needs at least one certificate (certificates)`}},
		{"certificate files missing", "listeners: [{name: s, protocol: https, address: 127.0.0.1:0, forward_to: app, certificates: [{cert_file: /nonexistent/c.pem, key_file: /nonexistent/k.pem}, {cert_file: /dev/null}], tls: {min_version: '1.4', client_auth: required}}]\n" + validGroups,
			[]string{`listeners[s].certificates[0].cert_file: open /nonexistent/c.pem: no such file or directory`, `listeners[s].certificates[0].key_file: open /nonexistent/k.pem`,
				`listeners[s].certificates[1].key_file: is required`, `listeners[s].tls.min_version: "1.4" is not one of 1.2, 1.3 (TLS 1.0 and 1.1 are not accepted)`,
				`listeners[s].tls.client_ca_file: is required with client_auth "required"`}},
		{"stickiness", `
target_groups:
  - {name: a, protocol: tcp, stickiness: {kind: lb_cookie}}
  - {name: b, protocol: http, stickiness: {kind: app_cookie}}
  - {name: c, protocol: http, stickiness: {kind: cookie}}
  - {name: d, protocol: http, stickiness: {kind: lb_cookie, keys: [c2hvcnQ=]}}
  - {name: e, protocol: tcp, algorithm: source_ip_hash, stickiness: {kind: source_ip, prefix_v4: 33}}
`, []string{
			`target_groups[a].stickiness.kind: lb_cookie stickiness needs an http or https target group, not tcp`,
			`target_groups[b].stickiness.cookie_name: app_cookie stickiness needs the application's cookie name (cookie_name)`,
			`target_groups[c].stickiness.kind: "cookie" is not one of none, source_ip, lb_cookie, app_cookie`,
			`target_groups[d].stickiness.keys[0]: is 5 bytes once decoded, want at least 32`,
			`target_groups[e].stickiness.prefix_v4: 33 is out of range 0..32`,
		}},
		{"cookie names", "target_groups:\n  - {name: a, protocol: http, stickiness: {kind: lb_cookie, cookie_name: \"bad name\"}}\n  - {name: b, protocol: http, stickiness: {kind: app_cookie, cookie_name: \"x;y\"}}\n",
			[]string{`target_groups[a].stickiness.cookie_name: cookie name "bad name" is not an HTTP token`, `target_groups[b].stickiness.cookie_name: cookie name "x;y" is not an HTTP token`}},
		{"mutual TLS on a tls listener", "listeners: [{name: s, protocol: tls, address: 127.0.0.1:0, forward_to: echo, certificates: [{cert_file: /nonexistent/c, key_file: /nonexistent/k}], tls: {client_auth: optional, wildcard: deep}}]\n" + validGroups,
			[]string{`listeners[s].certificates[0].cert_file: open /nonexistent/c`, `listeners[s].certificates[0].key_file: open /nonexistent/k`, `listeners[s].tls.wildcard: "deep" is not one_label or suffix`, `listeners[s].tls.client_auth: is for https listeners, not tls`}},
		{"health check", "target_groups: [{name: a, protocol: http, health_check: {protocol: tls, port: 70000, path: healthz, interval: 1s, timeout: 1s, healthy_threshold: 11, status: '99'}}]\n",
			[]string{
				`target_groups[a].health_check.protocol: "tls" is not one of tcp, http, https, udp`,
				`target_groups[a].health_check.port: 70000 is out of range 0..65535`,
				`target_groups[a].health_check.path: "healthz" is not an absolute path`,
				`target_groups[a].health_check.healthy_threshold: 11 is out of range 1..10`,
				`target_groups[a].health_check.timeout: timeout 1s must be below the interval 1s`,
				`target_groups[a].health_check.status: status codes "99"`,
			}},
		{"discovery", `
target_groups:
  - {name: a, protocol: tcp, discovery: {dns: a.example, srv: _x._tcp.example}}
  - {name: b, protocol: tcp, discovery: {dns: a.example}}
  - {name: c, protocol: tcp, discovery: {srv: _x._tcp.example, port: 80}}
  - {name: d, protocol: tcp, discovery: {interval: 5s}}
`, []string{
			`target_groups[a].discovery: set dns or srv, not both`,
			`target_groups[b].discovery.port: 0 is out of range 1..65535`,
			`target_groups[c].discovery.port: is for dns discovery`,
			`target_groups[d].discovery: set dns (with port) or srv`,
		}},
		{"circuit breaker", "target_groups: [{name: a, protocol: http, circuit_breaker: {max_connections_per_target: -1, max_pending_requests: -2}}]\n",
			[]string{`target_groups[a].circuit_breaker.max_pending_requests: -2 is negative`}},
		{"passive ejection", "target_groups: [{name: a, protocol: tcp, passive_ejection: {failures: -1, period: 0s, max_percent: 101}}]\n",
			[]string{`target_groups[a].passive_ejection.failures: -1 is negative`, `target_groups[a].passive_ejection.period: must be above 0`, `target_groups[a].passive_ejection.max_percent: 101 is out of range 0..100`}},
		{"proxy protocol", "target_groups: [{name: a, protocol: http, proxy_protocol: 3}]\n",
			[]string{`target_groups[a].proxy_protocol: proxy protocol version 3 is not 1 or 2`}},
		{"flows", "flows: {max: -1, max_per_source: -2, descriptor_budget: -3, unreplied_timeout: -1s}\n", []string{`flows.unreplied_timeout: -1s is negative`,
			`flows.max: -1 is negative`, `flows.max_per_source: -2 is negative`, `flows.descriptor_budget: -3 is negative`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := problems(t, tc.src)
			require.Len(t, got, len(tc.want), "problems: %q", got)
			for i, w := range tc.want {
				assert.True(t, strings.HasPrefix(got[i], w), "problem %d:\n got %q\nwant %q...", i, got[i], w)
			}
		})
	}
}

// TestEveryProblemAtOnce checks that problems of every stage (decoding,
// the package's own checks, lb's) come together, in the order of the file,
// each with its line.
func TestEveryProblemAtOnce(t *testing.T) {
	src := `listeners:
  - name: web
    protocol: http
    address: 127.0.0.1:8080
    forward_to: nope
  - name: tcp
    protocol: tcp
    address: 127.0.0.1:70000
    forward_to: echo
    idle_timout: 5s
target_groups:
  - name: echo
    protocol: tcp
    targets:
      - address: 127.0.0.1:9001
      - address: 127.0.0.1:9002
      - address: 127.0.0.1:9003
        weight: 150
`
	_, err := config.Parse([]byte(src))
	var ce *config.Error
	require.ErrorAs(t, err, &ce)
	require.Len(t, ce.Problems, 4, "%v", err)
	assert.Equal(t, config.Problem{Path: "listeners[web].forward_to", Line: 5, Message: `forwards to target group "nope", which does not exist`}, ce.Problems[0])
	assert.Equal(t, config.Problem{Path: "listeners[tcp].address", Line: 8, Message: `"127.0.0.1:70000": port 70000 is out of range 0..65535`}, ce.Problems[1])
	assert.Equal(t, config.Problem{Path: "listeners[tcp].idle_timout", Line: 10, Message: `unknown field; did you mean "idle_timeout"?`}, ce.Problems[2])
	assert.Equal(t, config.Problem{Path: "target_groups[echo].targets[127.0.0.1:9003].weight", Line: 18, Message: `150 is out of range 0..100`}, ce.Problems[3])
	assert.Equal(t, `4 problems:
	listeners[web].forward_to: forwards to target group "nope", which does not exist (line 5)
	listeners[tcp].address: "127.0.0.1:70000": port 70000 is out of range 0..65535 (line 8)
	listeners[tcp].idle_timout: unknown field; did you mean "idle_timeout"? (line 10)
	target_groups[echo].targets[127.0.0.1:9003].weight: 150 is out of range 0..100 (line 18)`, err.Error())
	assert.Len(t, ce.Unwrap(), 4)
	assert.True(t, errors.Is(err, config.ErrInvalid))
}

// TestProblemCap checks that a file with a flood of problems is reported
// with a bounded list and a count of the rest.
func TestProblemCap(t *testing.T) {
	var b strings.Builder
	b.WriteString("target_groups:\n")
	for range 500 {
		b.WriteString("  - {name: '', protocol: x}\n")
	}
	_, err := config.Parse([]byte(b.String()))
	var ce *config.Error
	require.ErrorAs(t, err, &ce)
	assert.Len(t, ce.Problems, 201)
	assert.Regexp(t, `^and \d+ more problems$`, ce.Problems[200].Message)
}

// TestSyntaxErrorLines checks that a YAML syntax error is reported on the
// line where it is, not where its enclosing block began (as the YAML
// library says).
func TestSyntaxErrorLines(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		line      int
		msg       string
	}{
		{"tab in the indentation", "listeners:\n  - name: a\n    protocol: tcp\n\taddress: x\n", 4, "a tab character in the indentation; YAML indents with spaces only"},
		{"key indented too far", "listeners:\n  - name: a\n    protocol: tcp\n      address: x\n", 4, "mapping values are not allowed in this context"},
		{"key indented too little", "listeners:\n  - name: a\n    protocol: tcp\n    address: x\n  target_groups:\n    - name: b\n", 5, "did not find expected '-' indicator"},
		{"deep", "flows:\n  max: 5\n" + strings.Repeat("# a comment\n", 30) + "target_groups:\n  - name: b\n    protocol: tcp\n   targets: []\n", 36, "did not find expected '-' indicator"},
		{"open quote", "listeners:\n  - name: a\n    protocol: \"tcp\n    address: x\n", 3, "found unexpected end of stream"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse([]byte(tc.src))
			var ce *config.Error
			require.ErrorAs(t, err, &ce)
			require.Len(t, ce.Problems, 1, "%v", err)
			assert.Equal(t, config.Problem{Line: tc.line, Message: tc.msg}, ce.Problems[0])
		})
	}
}

// TestPathsNameObjects checks how paths name objects: by a name (an id,
// else an address, for targets) unique among its siblings, else by
// position.
func TestPathsNameObjects(t *testing.T) {
	src := `listeners:
  - {name: web, protocol: http, address: 127.0.0.1:0, forward_to: app, idle_timeout: -1s}
  - {name: web, protocol: http, address: 127.0.0.1:0, forward_to: app, idle_timeout: -2s}
  - {name: "7", protocol: http, address: 127.0.0.1:0, forward_to: app, idle_timeout: -3s}
  - {name: "a b", protocol: http, address: 127.0.0.1:0, forward_to: app, idle_timeout: -4s}
  - name: rules
    protocol: http
    address: 127.0.0.1:0
    forward_to: app
    rules:
      - {name: api, path: nope, forward: app}
      - {path: nope2, forward: app}
target_groups:
  - name: app
    protocol: http
    targets:
      - {id: one, address: 127.0.0.1:9001, weight: 101}
      - {address: 127.0.0.1:9002, weight: 102}
      - {address: "[::1]:9003", weight: 103}
`
	got := problems(t, src)
	for _, w := range []string{
		`listeners[0].idle_timeout: -1s is negative`,
		`listeners[1].name: "web" is also the name of listeners[0]`,
		`listeners[1].idle_timeout: -2s is negative`,
		`listeners[2].idle_timeout: -3s is negative`,
		`listeners[3].idle_timeout: -4s is negative`,
		`listeners[rules].rules[api].path: path "nope" does not start with /`,
		`listeners[rules].rules[1].path: path "nope2" does not start with /`,
		`target_groups[app].targets[one].weight: 101 is out of range 0..100`,
		`target_groups[app].targets[127.0.0.1:9002].weight: 102 is out of range 0..100`,
		`target_groups[app].targets[2].weight: 103 is out of range 0..100`,
	} {
		assert.True(t, slices.ContainsFunc(got, func(g string) bool { return strings.HasPrefix(g, w) }), "no problem %q in\n%s", w, strings.Join(got, "\n"))
	}
}
