package config_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/lbkit/lbkit/config"
	"github.com/lbkit/lbkit/lb"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// start builds and starts a load balancer from a configuration.
func start(t *testing.T, src string) *lb.LoadBalancer {
	t.Helper()
	f, err := config.Parse([]byte(src))
	require.NoError(t, err)
	opts, err := f.Options(quiet)
	require.NoError(t, err)
	l, err := lb.New(append(opts, lb.WithLogger(quiet))...)
	require.NoError(t, err)
	require.NoError(t, l.Start())
	t.Cleanup(func() { l.Close() })
	return l
}

func named(name string) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, name) }))
}

func get(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	resp, err := c.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return fmt.Sprintf("%d %s", resp.StatusCode, b)
}

// TestOptionsServe runs a load balancer made from a file: the listener
// binds, the rule and the default action route, weights are honoured (an
// absent weight is 1, weight 0 drains) and health checking is off as asked.
func TestOptionsServe(t *testing.T) {
	a, b, c := named("a"), named("b"), named("c")
	defer a.Close()
	defer b.Close()
	defer c.Close()
	l := start(t, fmt.Sprintf(`
listeners:
  - name: web
    protocol: http
    address: 127.0.0.1:0
    forward_to: app
    rules:
      - {name: hello, path: /hello, fixed: {status: 202, body: hi}}
target_groups:
  - name: app
    protocol: http
    health_check: {enabled: false}
    targets:
      - {address: %q, id: a}
      - {address: %q, id: b, weight: 2}
      - {address: %q, id: c, weight: 0}
`, a.Listener.Addr(), b.Listener.Addr(), c.Listener.Addr()))
	addr, ok := l.Addr("web")
	require.True(t, ok)
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	var got []string
	for range 6 {
		got = append(got, get(t, client, "http://"+addr.String()+"/"))
	}
	assert.ElementsMatch(t, []string{"200 a", "200 a", "200 b", "200 b", "200 b", "200 b"}, got)
	assert.Equal(t, "202 hi", get(t, client, "http://"+addr.String()+"/hello"))

	weights := map[string]int{}
	for _, ts := range l.Stats().Groups[0].Targets {
		weights[ts.ID] = ts.Weight
	}
	assert.Equal(t, map[string]int{"a": 1, "b": 2, "c": 0}, weights)
}

// TestHealthCheckDefaults checks that fields left out take lb's defaults
// and fields given are used, as the diagnosis describes them.
func TestHealthCheckDefaults(t *testing.T) {
	l := start(t, `
listeners:
  - {name: t, protocol: tcp, address: 127.0.0.1:0, forward_to: d}
  - {name: u, protocol: http, address: 127.0.0.1:0, forward_to: s}
target_groups:
  - {name: d, protocol: tcp, targets: [{address: 127.0.0.1:1}]}
  - name: s
    protocol: http
    targets: [{address: 127.0.0.1:1}]
    health_check: {path: /healthz, status: 200-299, interval: 7s, timeout: 2s, healthy_threshold: 2}
`)
	checks := map[string]string{}
	for _, g := range l.Diagnose(lb.Query{}).Groups {
		checks[g.Name] = g.HealthCheck
	}
	assert.Equal(t, "tcp on the traffic port, every 5s, timeout 3s, healthy after 3, unhealthy after 3", checks["d"])
	assert.Equal(t, "http GET /healthz, status 200-299 on the traffic port, every 7s, timeout 2s, healthy after 2, unhealthy after 3", checks["s"])
}

// TestEjectionSection checks that a passive_ejection section with every
// field left out is accepted: its defaults fill it (lb would refuse a zero
// period).
func TestEjectionSection(t *testing.T) {
	_, err := config.Parse([]byte("target_groups: [{name: a, protocol: tcp, passive_ejection: {}}]\n"))
	require.NoError(t, err)
}

// TestAliasesAndMerge checks that YAML anchors, aliases and merge keys
// work, and that a mapping's own keys override merged ones.
func TestAliasesAndMerge(t *testing.T) {
	_, err := config.Parse([]byte(`
x-check: &check {interval: 2s, timeout: 1s, path: /ok}
target_groups:
  - name: a
    protocol: http
    health_check: *check
  - name: b
    protocol: http
    health_check:
      <<: *check
      path: /other
`))
	require.Error(t, err, "x-check is not a field")
	assert.Contains(t, err.Error(), "x-check: unknown field")

	f, err := config.Parse([]byte(`
target_groups:
  - name: a
    protocol: http
    health_check: &check {interval: 2s, timeout: 1s, path: /ok}
  - name: b
    protocol: http
    health_check:
      <<: *check
      path: /other
`))
	require.NoError(t, err)
	assert.Equal(t, config.Duration(2*time.Second), f.TargetGroups[1].HealthCheck.Interval)
	assert.Equal(t, "/other", f.TargetGroups[1].HealthCheck.Path)
	assert.Equal(t, "/ok", f.TargetGroups[0].HealthCheck.Path)
}

// TestAliasBomb checks that a document whose aliases multiply (a "billion
// laughs") is refused quickly instead of expanded.
func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("a0: &a0 [{group: x, weight: 1}, {group: x, weight: 1}]\n")
	for i := 1; i < 30; i++ {
		fmt.Fprintf(&b, "a%d: &a%d [*a%d, *a%d, *a%d, *a%d]\n", i, i, i-1, i-1, i-1, i-1)
	}
	b.WriteString("listeners: [{rules: [{split: *a29}]}]\n")
	done := make(chan error, 1)
	go func() { _, err := config.Parse([]byte(b.String())); done <- err }()
	select {
	case err := <-done:
		require.Error(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("an alias bomb took more than 30 s")
	}
}

// TestMarshalRoundTrip checks that a File written with yaml.Marshal reads
// back the same, so programs can generate configuration files.
func TestMarshalRoundTrip(t *testing.T) {
	src := `
listeners:
  - name: web
    protocol: http
    address: 127.0.0.1:8080
    forward_to: app
    idle_timeout: 90s
    rules: [{name: r, priority: 2, host: "*.example.com", path: /a/*, split: [{group: app, weight: 9}, {group: app2, weight: 1}]}]
    allow: [127.0.0.0/8]
target_groups:
  - name: app
    protocol: http
    algorithm: least_connections
    targets: [{address: 127.0.0.1:9001, weight: 0}, {address: 127.0.0.1:9002, id: two}]
    deregistration_delay: 0s
    stickiness: {kind: lb_cookie, duration: 1h}
    passive_ejection: {failures: 0}
  - name: app2
    protocol: http
    health_check: {enabled: false}
flows: {max: 1000}
`
	f, err := config.Parse([]byte(src))
	require.NoError(t, err)
	out, err := yaml.Marshal(f)
	require.NoError(t, err)
	g, err := config.Parse(out)
	require.NoError(t, err, "%s", out)
	assert.Equal(t, f, g, "%s", out)
	assert.Contains(t, string(out), "idle_timeout: 1m30s")
	assert.Contains(t, string(out), "weight: 0", "weight 0 is kept: it means drain")
	assert.Contains(t, string(out), "deregistration_delay: 0s")
}

// TestReadFileGuards checks that files named by a configuration are read
// only when they are regular and not too large.
func TestReadFileGuards(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.pem")
	require.NoError(t, os.WriteFile(big, make([]byte, config.MaxFileSize+1), 0o600))
	got := problems(t, fmt.Sprintf("listeners: [{name: s, protocol: https, address: 127.0.0.1:0, forward_to: app, certificates: [{cert_file: /dev/zero, key_file: %s}]}]\n", big)+validGroups)
	assert.Equal(t, []string{
		"listeners[s].certificates[0].cert_file: /dev/zero is not a regular file",
		"listeners[s].certificates[0].key_file: " + big + " is over the limit of 4194304 bytes",
	}, got)

	_, err := config.Load(filepath.Join(dir, "missing.yaml"))
	require.ErrorIs(t, err, config.ErrInvalid)
	assert.Contains(t, err.Error(), "no such file or directory")
}

// TestHTTPS loads a file whose certificates and cookie keys are in files
// named relative to it, serves HTTPS with them, and checks the served
// certificate and the cookie.
func TestHTTPS(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t, "lb.test")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "lb.crt"), certPEM, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "lb.key"), keyPEM, 0o600))
	key := base64.StdEncoding.EncodeToString(make([]byte, 32))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "keys"), []byte("# cookie keys\n"+key+"\n"), 0o600))
	app := named("app")
	defer app.Close()
	cfgPath := filepath.Join(dir, "lbd.yaml")
	require.NoError(t, os.WriteFile(cfgPath, fmt.Appendf(nil, `
listeners:
  - name: secure
    protocol: https
    address: 127.0.0.1:0
    forward_to: app
    certificates: [{cert_file: lb.crt, key_file: lb.key}]
    tls: {min_version: "1.3"}
target_groups:
  - name: app
    protocol: http
    health_check: {enabled: false}
    stickiness: {kind: lb_cookie, cookie_name: S, keys_file: keys}
    targets: [{address: %q}]
`, app.Listener.Addr()), 0o600))

	t.Chdir(t.TempDir()) // relative names are the file's, not the working directory's
	f, err := config.Load(cfgPath)
	require.NoError(t, err)
	opts, err := f.Options(quiet)
	require.NoError(t, err)
	l, err := lb.New(append(opts, lb.WithLogger(quiet))...)
	require.NoError(t, err)
	require.NoError(t, l.Start())
	defer l.Close()
	addr, _ := l.Addr("secure")

	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(certPEM))
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "lb.test"}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + addr.String() + "/")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	assert.Equal(t, "app", string(body))
	assert.Equal(t, uint16(tls.VersionTLS13), resp.TLS.Version)
	require.NotEmpty(t, resp.Cookies())
	assert.Equal(t, "S", resp.Cookies()[0].Name)
}

// TestReloadPicksUpChanges applies a changed file with Reconfigure and
// checks the change is live.
func TestReloadPicksUpChanges(t *testing.T) {
	a, b := named("a"), named("b")
	defer a.Close()
	defer b.Close()
	src := `
listeners: [{name: web, protocol: http, address: 127.0.0.1:0, forward_to: app}]
target_groups:
  - name: app
    protocol: http
    health_check: {enabled: false}
    targets: [{address: %q, id: a, weight: %d}, {address: %q, id: b}]
`
	l := start(t, fmt.Sprintf(src, a.Listener.Addr(), 1, b.Listener.Addr()))
	f, err := config.Parse(fmt.Appendf(nil, src, a.Listener.Addr(), 0, b.Listener.Addr()))
	require.NoError(t, err)
	opts, err := f.Options(quiet)
	require.NoError(t, err)
	require.NoError(t, l.Reconfigure(append(opts, lb.WithLogger(quiet))...))
	addr, _ := l.Addr("web")
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	for range 4 {
		assert.Equal(t, "200 b", get(t, client, "http://"+addr.String()+"/"))
	}
	client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, l.Shutdown(ctx))
}

// selfSigned returns a certificate for name and its key, PEM.
func selfSigned(t *testing.T, name string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// TestFlowsSection: the flows section's keys reach the load balancer; an
// absent key takes lb's default, and 0 turns the per-source cap, the
// descriptor budget and the unreplied timeout off.
func TestFlowsSection(t *testing.T) {
	l := start(t, "flows: {max: 1000, descriptor_budget: 500, unreplied_timeout: 5s}\n")
	st := l.Stats()
	assert.Equal(t, 1000, st.Flows.MaxFlows)
	assert.Equal(t, lb.DefaultMaxFlowsPerSource(1000), st.Flows.MaxFlowsPerSource)
	assert.Equal(t, 500, st.Descriptors.Limit)

	l = start(t, "flows: {max_per_source: 0, descriptor_budget: 0, unreplied_timeout: 0s}\n")
	st = l.Stats()
	assert.Zero(t, st.Flows.MaxFlowsPerSource)
	assert.Zero(t, st.Descriptors.Limit)
	assert.Equal(t, lb.DefaultMaxFlows, st.Flows.MaxFlows, "no budget: the largest default capacity")
}
