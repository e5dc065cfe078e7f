package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lbkit/lbkit/sticky/redisstore/redistest"
)

// TestValidateCluster: lbd knows the kubernetes and xds discovery
// kinds and the redis store; validate checks their sections, says where a
// bad one is, and connects to nothing (the addresses they name are
// listeners that count connections).
func TestValidateCluster(t *testing.T) {
	var dials atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			dials.Add(1)
			c.Close()
		}
	}()
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	require.NoError(t, os.WriteFile(kubeconfig, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://%s"}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
users: [{name: u, user: {token: x}}]
current-context: c
`, ln.Addr())), 0o600))
	write := func(name, groups string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte("listeners:\n  - {name: web, protocol: http, address: 127.0.0.1:0, forward_to: k8s}\ntarget_groups:\n"+groups), 0o600))
		return p
	}
	good := write("good.yaml", fmt.Sprintf(`  - name: k8s
    protocol: http
    discovery:
      kubernetes: {namespace: shop, service: web, port: http, kubeconfig: %q}
  - name: mesh
    protocol: tcp
    discovery:
      xds: {server: %q, node_id: edge-1, cluster: web}
    stickiness:
      kind: source_ip
      store:
        redis: {address: %q, prefix: "lbkit:test:"}
`, kubeconfig, ln.Addr().String(), ln.Addr().String()))
	var out, errOut strings.Builder
	assert.Equal(t, 0, lbd(context.Background(), []string{"validate", "-config", good}, &out, &errOut), errOut.String())
	assert.Zero(t, dials.Load(), "validate connected to the API server, the control plane or Redis")

	bad := write("bad.yaml", `  - name: k8s
    protocol: http
    discovery:
      kubernetes: {namespace: shop, svc: web}
  - name: mesh
    protocol: tcp
    discovery:
      xds: {server: 127.0.0.1:1, node_id: edge-1}
    stickiness:
      kind: source_ip
      store:
        redis: {addr: 127.0.0.1:1}
`)
	out.Reset()
	errOut.Reset()
	assert.Equal(t, 1, lbd(context.Background(), []string{"validate", "-config", bad}, &out, &errOut))
	for _, want := range []string{
		"target_groups[k8s].discovery.kubernetes: line 7: svc: unknown field (known: namespace, service, port, kubeconfig)",
		"target_groups[mesh].discovery.xds: cluster: required",
		"target_groups[mesh].stickiness.store.redis: line 15: addr: unknown field (known: address, prefix, username, password_file, db)",
	} {
		assert.Contains(t, errOut.String(), want)
	}
}

// TestSharedStickySessionsThroughRedis runs two lbd processes sharing one
// real redis-server for app_cookie stickiness: sessions the first learns
// go to the same targets through the second.
func TestSharedStickySessionsThroughRedis(t *testing.T) {
	bin := lbdBinary(t)
	r := redistest.Start(t)
	// Targets that start a session (SID cookie) and answer their name.
	var addrs []string
	for _, name := range []string{"web-1", "web-2"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if _, err := req.Cookie("SID"); err != nil {
				b := make([]byte, 8)
				_, _ = rand.Read(b)
				http.SetCookie(w, &http.Cookie{Name: "SID", Value: hex.EncodeToString(b)})
			}
			fmt.Fprint(w, name)
		}))
		t.Cleanup(srv.Close)
		addrs = append(addrs, srv.Listener.Addr().String())
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "lbd.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`listeners:
  - {name: web, protocol: http, address: 127.0.0.1:0, forward_to: web}
target_groups:
  - name: web
    protocol: http
    targets: [{id: web-1, address: %q}, {id: web-2, address: %q}]
    health_check: {interval: 200ms, timeout: 150ms, healthy_threshold: 1}
    stickiness:
      kind: app_cookie
      cookie_name: SID
      store:
        redis: {address: %q, prefix: "lbkit:lbdtest:"}
        timeout: 500ms
`, addrs[0], addrs[1], r.Addr)), 0o600))
	nodes := make([]string, 2)
	for i := range nodes {
		p := startLBD(t, bin, nil, "run", "-config", cfg, "-admin", "127.0.0.1:0")
		waitServing(t, p.admin, "web", 2)
		nodes[i] = "http://" + listenerAddrs(t, p.admin)["web"] + "/"
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(url, sid string) (target, newSID string) {
		t.Helper()
		req, err := http.NewRequest("GET", url, nil)
		require.NoError(t, err)
		if sid != "" {
			req.AddCookie(&http.Cookie{Name: "SID", Value: sid})
		}
		resp, err := c.Do(req)
		require.NoError(t, err)
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, 200, resp.StatusCode, "%s", b)
		for _, ck := range resp.Cookies() {
			if ck.Name == "SID" {
				newSID = ck.Value
			}
		}
		return string(b), newSID
	}
	// Sessions start on the first node, balanced over both targets.
	sessions := map[string]string{} // SID → target
	seen := map[string]bool{}
	for range 20 {
		target, sid := get(nodes[0], "")
		require.NotEmpty(t, sid, "the target started a session")
		sessions[sid] = target
		seen[target] = true
	}
	require.Len(t, seen, 2, "both targets got sessions")
	for sid, target := range sessions {
		got, _ := get(nodes[1], sid)
		assert.Equal(t, target, got, "session %s on the other node", sid)
	}
}
