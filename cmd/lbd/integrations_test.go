package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lbkit/lbkit/lb"
)

const integrationsFile = `
listeners:
  - name: web
    protocol: https
    address: 127.0.0.1:0
    forward_to: app
    certificates:
      - acme: {domains: [shop.example.com], email: ops@example.com, ca: "https://127.0.0.1:1/dir", storage: acme}
target_groups:
  - name: app
    protocol: http
    targets: [{address: 127.0.0.1:1}]
    health_check: {enabled: false}
tracing: {otlp_endpoint: "127.0.0.1:1", protocol: http, sample_ratio: 0.25, service_name: edge, trusted_clients: [10.0.0.0/8]}
`

// TestValidateIntegrations checks that lbd validate accepts the acme and
// tracing sections, and reports their problems at their paths.
func TestValidateIntegrations(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "lbd.yaml")
	require.NoError(t, os.WriteFile(path, []byte(integrationsFile), 0o600))
	var out, errOut strings.Builder
	require.Equal(t, 0, lbd(context.Background(), []string{"validate", "-config", path}, &out, &errOut), errOut.String())

	bad := strings.NewReplacer("ca: \"https://127.0.0.1:1/dir\"", "ca: http://ca, domainz: [x]", "protocol: http,", "protocol: udp,").Replace(integrationsFile)
	require.NoError(t, os.WriteFile(path, []byte(bad), 0o600))
	out.Reset()
	errOut.Reset()
	require.Equal(t, 1, lbd(context.Background(), []string{"validate", "-config", path}, &out, &errOut))
	assert.Contains(t, errOut.String(), "listeners[web].certificates[0].acme")
	assert.Contains(t, errOut.String(), "domainz")
	assert.Contains(t, errOut.String(), `protocol "udp" is neither grpc nor http`)
}

// TestIntegrationsLifecycle runs the file's integrations as serve does:
// the same section read twice gives the same manager and tracer, commit
// starts the manager on its listener's address, and a read that no longer
// names them closes them.
func TestIntegrationsLifecycle(t *testing.T) {
	// Not t.TempDir: certmagic's job, canceled when the manager closes,
	// may still write a lock into the storage for a moment (the Manager
	// cannot wait for it), and t.TempDir's removal fails on that. The
	// directory goes once nothing writes to it any more, within 10 s.
	dir, err := os.MkdirTemp("", "lbd-integrations-")
	require.NoError(t, err)
	t.Cleanup(func() {
		for deadline := time.Now().Add(10 * time.Second); os.RemoveAll(dir) != nil && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond) // a retry of the removal, not synchronisation
		}
	})
	path := filepath.Join(dir, "lbd.yaml")
	require.NoError(t, os.WriteFile(path, []byte(integrationsFile), 0o600))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	in := newIntegrations(log, path, false)
	defer in.close()

	read := func() []lb.Option {
		t.Helper()
		in.begin()
		opts, err := loadWith(in, path, nil)
		require.NoError(t, err)
		return opts
	}
	opts := read()
	l, err := lb.New(append(opts, lb.WithLogger(log))...)
	require.NoError(t, err)
	require.NoError(t, l.Start())
	defer l.Close()
	in.commit(l)
	require.Len(t, in.managers, 1)
	require.Len(t, in.tracers, 1)
	var m0 *managerEntry
	for _, e := range in.managers {
		m0 = e
	}
	require.True(t, m0.started, "the manager starts once its listener serves")
	require.Equal(t, filepath.Join(dir, "acme"), in.path("acme"), "storage is relative to the file")

	// The same file again: the same manager, still started.
	require.NoError(t, l.Reconfigure(append(read(), lb.WithLogger(log))...))
	in.commit(l)
	require.Len(t, in.managers, 1)
	for _, e := range in.managers {
		require.Same(t, m0, e)
	}

	// Without the sections: closed and forgotten.
	plain := strings.NewReplacer(
		"    certificates:\n      - acme: {domains: [shop.example.com], email: ops@example.com, ca: \"https://127.0.0.1:1/dir\", storage: acme}\n", "",
		"protocol: https", "protocol: http",
	).Replace(integrationsFile)
	plain = plain[:strings.Index(plain, "tracing:")]
	require.NoError(t, os.WriteFile(path, []byte(plain), 0o600))
	require.NoError(t, l.Reconfigure(append(read(), lb.WithLogger(log))...))
	in.commit(l)
	require.Empty(t, in.managers)
	require.Empty(t, in.tracers)
}
