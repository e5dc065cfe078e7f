package main

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lbkit/lbkit/internal/chromium"
)

// TestStatusPageOfRunningLBD runs lbd with one target down and one drained
// over the runtime API, opens its status page in headless Chromium at
// 1280×800 and checks what a person sees before scrolling: the degraded
// summary in amber with the group's count, the failing target in red with
// the reason, the drained one in amber, the runtime change listed, and the
// link to /metrics.
func TestStatusPageOfRunningLBD(t *testing.T) {
	if err := chromium.Available(); err != nil {
		t.Skipf("headless Chromium is needed (Debian package chromium): %v", err)
	}
	bin := lbdBinary(t)
	dir := t.TempDir()
	ts := newTargets(t)
	// web-2's address refuses connections: bind a port, note it, free it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ts.http["web-2"] = ln.Addr().String()
	ln.Close()
	cfg := ts.config(t, dir)
	// A third web target, up, to drain.
	b, err := os.ReadFile(cfg)
	require.NoError(t, err)
	y := strings.Replace(string(b), "      - {id: web-2,", fmt.Sprintf("      - {id: web-3, address: %q}\n      - {id: web-2,", ts.http["web-1"]), 1)
	require.NoError(t, os.WriteFile(cfg, []byte(y), 0o600))

	p := startLBD(t, bin, nil, "run", "-config", cfg, "-admin", "127.0.0.1:0")
	waitServing(t, p.admin, "web", 2)
	require.Equal(t, 200, adminCall(t, p.admin, "PATCH", "/groups/web/targets/web-3", map[string]any{"drained": true}, nil))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const width, height = 1280, 800
	br, err := chromium.Start(ctx, t.TempDir(), width, height)
	require.NoError(t, err)
	defer br.Close()
	require.NoError(t, br.Navigate(ctx, p.admin+"/?refresh=0"))
	top, err := br.VisibleText(ctx, "#headline, #summary li, #runtime li, h2, tr, a", height)
	require.NoError(t, err)
	var seen []string
	rows := map[string]chromium.Element{}
	for _, e := range top {
		seen = append(seen, e.Text)
		if f := strings.Fields(e.Text); len(f) > 0 && e.Class != "" {
			rows[f[0]] = e
		}
	}
	all := strings.Join(seen, "\n")
	require.NotEmpty(t, top)
	assert.Equal(t, "Degraded: 1 group has failing targets; traffic still flows", top[0].Text, "the headline first:\n%s", all)
	assert.Equal(t, "rgb(138, 90, 0)", top[0].Color, "amber")
	assert.Contains(t, all, "Group web: 1 of 3 targets serving, 1 draining or at weight 0, 1 failing")
	assert.Contains(t, all, "web/web-3: drained", "the runtime change is listed without scrolling")
	require.Contains(t, rows, "web-2", "the failing target's row is visible:\n%s", all)
	assert.Equal(t, "row-bad", rows["web-2"].Class)
	assert.Contains(t, rows["web-2"].Text, "connection refused")
	require.Contains(t, rows, "web-3")
	assert.Equal(t, "row-warn", rows["web-3"].Class, "drained by an operator: amber")
	assert.Contains(t, rows["web-3"].Text, "drained by an operator")
	assert.Contains(t, all, "/metrics")
	require.NoError(t, br.Screenshot(ctx, filepath.Join(cmp.Or(os.Getenv("LBKIT_SCREENSHOTS"), t.TempDir()), "lbd-status.png")))
}
