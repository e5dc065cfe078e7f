package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lbkit/lbkit/admin"
	"github.com/lbkit/lbkit/lb"
)

var quiet = slog.New(slog.DiscardHandler)

// fixture is a running load balancer with one target up ("up", weight 3)
// and one down ("down", weight 1: its port refuses connections).
type fixture struct {
	lb   *lb.LoadBalancer
	web  string // the HTTP listener's address
	up   *httptest.Server
	down string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "up") }))
	t.Cleanup(up.Close)
	// A port nobody listens on: bind one, note it, close it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	down := ln.Addr().String()
	ln.Close()

	l, err := lb.New(
		lb.WithLogger(quiet),
		lb.WithListener("web", lb.HTTP, "127.0.0.1:0", lb.WithForwardTo("app")),
		lb.WithTargetGroup("app", lb.HTTP,
			lb.WithTarget(up.Listener.Addr().String(), lb.WithTargetID("up"), lb.WithWeight(3)),
			lb.WithTarget(down, lb.WithTargetID("down"), lb.WithWeight(1)),
			// "down" is unhealthy from the start (a new target waits for its
			// first passing check); "up" would need 5 failed checks in a row
			// to flap, so a loaded machine does not change what is shown.
			lb.WithHealthCheck(lb.HealthCheck{Interval: 100 * time.Millisecond, Timeout: 90 * time.Millisecond, HealthyThreshold: 1, UnhealthyThreshold: 5}),
		),
	)
	require.NoError(t, err)
	require.NoError(t, l.Start())
	t.Cleanup(func() { l.Close() })
	addr, _ := l.Addr("web")
	f := &fixture{lb: l, web: addr.String(), up: up, down: down}
	// Wait (bounded) until both targets have been checked: "up" serving,
	// "down" refused.
	require.Eventually(t, func() bool {
		got := map[string]string{}
		for _, tg := range l.Diagnose(lb.Query{}).Groups[0].Targets {
			got[tg.ID] = fmt.Sprint(tg.OK, " ", tg.Health.Reason)
		}
		return strings.HasPrefix(got["up"], "true") && got["down"] == "false connection refused"
	}, 10*time.Second, 10*time.Millisecond)
	return f
}

func do(t *testing.T, h http.Handler, method, target string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, adminRequest(method, target, "127.0.0.1:9900"))
	return rec
}

// adminRequest is a request to an admin endpoint served on local (the
// address it arrived on, and its Host).
func adminRequest(method, target, local string) *http.Request {
	r := httptest.NewRequest(method, "http://"+local+target, nil)
	la := net.TCPAddrFromAddrPort(netip.MustParseAddrPort(local))
	return r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, la))
}

func TestProtection(t *testing.T) {
	f := newFixture(t)
	reloads := 0
	reload := admin.WithReload(func(context.Context) error { reloads++; return nil })
	send := func(h http.Handler, method, target, local string, hdr ...string) int {
		t.Helper()
		r := adminRequest(method, target, local)
		for i := 0; i+1 < len(hdr); i += 2 {
			if hdr[i] == "Host" {
				r.Host = hdr[i+1]
				continue
			}
			r.Header.Set(hdr[i], hdr[i+1])
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec.Code
	}
	h := admin.New(f.lb, admin.WithLogger(quiet), reload, admin.WithHosts("lb.internal"))
	const lo = "127.0.0.1:9900"

	// DNS rebinding: a hostile name pointed at the admin address.
	assert.Equal(t, 403, send(h, "GET", "/stats", lo, "Host", "evil.example"))
	assert.Equal(t, 403, send(h, "GET", "/", lo, "Host", "evil.example:9900"))
	for _, host := range []string{"localhost:9900", "127.0.0.1:9900", "[::1]:9900", "lb.internal", "LB.Internal.:9900", "10.1.2.3"} {
		assert.Equal(t, 200, send(h, "GET", "/stats", lo, "Host", host), host)
	}

	// Cross-site form posts are refused; a tool's POST is not.
	assert.Equal(t, 403, send(h, "POST", "/reload", lo, "Origin", "http://evil.example"))
	assert.Equal(t, 403, send(h, "POST", "/reload", lo, "Sec-Fetch-Site", "cross-site"))
	assert.Equal(t, 0, reloads)
	assert.Equal(t, 200, send(h, "POST", "/reload", lo, "Origin", "http://127.0.0.1:9900"))
	assert.Equal(t, 200, send(h, "POST", "/reload", lo))
	assert.Equal(t, 2, reloads)

	// Without a token, changes only over loopback.
	assert.Equal(t, 403, send(h, "POST", "/reload", "192.0.2.1:9900"))
	assert.Equal(t, 200, send(h, "GET", "/stats", "192.0.2.1:9900"), "reading stays open")
	assert.Equal(t, 2, reloads)

	// With a token, changes need it, wherever they arrive.
	ht := admin.New(f.lb, admin.WithLogger(quiet), reload, admin.WithToken("s3cret"))
	for _, local := range []string{lo, "192.0.2.1:9900"} {
		assert.Equal(t, 401, send(ht, "POST", "/reload", local))
		assert.Equal(t, 401, send(ht, "POST", "/reload", local, "Authorization", "Bearer wrong"))
		assert.Equal(t, 401, send(ht, "POST", "/reload", local, "Authorization", "s3cret"))
		assert.Equal(t, 200, send(ht, "POST", "/reload", local, "Authorization", "Bearer s3cret"))
	}
	assert.Equal(t, 4, reloads)
	assert.Equal(t, 403, send(ht, "POST", "/reload", lo, "Authorization", "Bearer s3cret", "Sec-Fetch-Site", "cross-site"),
		"a token does not make a cross-site request acceptable")
}

func TestStats(t *testing.T) {
	f := newFixture(t)
	rec := do(t, admin.New(f.lb), "GET", "/stats")
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	var st lb.Stats
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &st))
	require.Len(t, st.Groups, 1)
	assert.Equal(t, lb.HTTP, st.Groups[0].Protocol)
	assert.Equal(t, 1, st.Groups[0].Healthy)
	assert.Equal(t, 1, st.Groups[0].Unhealthy)
	require.Len(t, st.Listeners, 1)
	assert.Equal(t, f.web, st.Listeners[0].Addr)
}

func TestDiagnose(t *testing.T) {
	f := newFixture(t)
	h := admin.New(f.lb)
	_, port, _ := net.SplitHostPort(f.web)

	rec := do(t, h, "GET", "/diagnose?client=127.0.0.1&port="+port)
	require.Equal(t, http.StatusOK, rec.Code)
	var d lb.Diagnosis
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &d))
	require.Len(t, d.Listeners, 1)
	assert.Equal(t, "web", d.Listeners[0].Name)
	assert.True(t, d.Listeners[0].ClientAllowed)

	rec = do(t, h, "GET", "/diagnose?port=1")
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &d))
	assert.Contains(t, d.Problems[0], "no listener on port 1")

	rec = do(t, h, "GET", "/diagnose?format=text")
	assert.Contains(t, rec.Body.String(), "target down ("+f.down+", weight 1): NOT receiving traffic")
	assert.Contains(t, rec.Body.String(), "unhealthy: connection refused")

	rec = do(t, h, "GET", "/diagnose?client=nobody&port=99999")
	assert.Equal(t, http.StatusBadRequest, rec.Code)
	assert.JSONEq(t, `{"error": "client \"nobody\" is not an IP address\nport \"99999\" is not a port number 1..65535"}`, rec.Body.String())
}

func TestHealth(t *testing.T) {
	f := newFixture(t)
	rec := do(t, admin.New(f.lb), "GET", "/health")
	require.Equal(t, http.StatusOK, rec.Code)
	var rep admin.HealthReport
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &rep))
	require.Len(t, rep.Targets, 2)
	byID := map[string]admin.TargetHealth{}
	for _, th := range rep.Targets {
		byID[th.Target] = th
	}
	assert.True(t, rep.OK, "one target serves: the listener can forward")
	down := byID["down"]
	assert.Equal(t, "app", down.Group)
	assert.False(t, down.Healthy)
	assert.False(t, down.Serving)
	assert.Equal(t, "connection refused", down.Reason)
	assert.Equal(t, 1, down.Weight)
	up := byID["up"]
	assert.True(t, up.Healthy)
	assert.True(t, up.Serving)
	assert.Equal(t, 3, up.Weight)
	assert.Empty(t, up.Problems)
}

func TestReload(t *testing.T) {
	f := newFixture(t)
	var fail error
	calls := 0
	h := admin.New(f.lb, admin.WithLogger(quiet), admin.WithReload(func(ctx context.Context) error {
		calls++
		_, hasDeadline := ctx.Deadline()
		require.True(t, hasDeadline)
		return fail
	}))

	rec := do(t, h, "POST", "/reload")
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.JSONEq(t, `{"ok": true, "message": "configuration reloaded"}`, rec.Body.String())

	fail = fmt.Errorf("lbd.yaml: %w", errors.Join(errors.New("listeners[1].address: port 70000 is out of range"), errors.New("target_groups[0].targets[2].weight: 150 is out of range 0..100")))
	rec = do(t, h, "POST", "/reload")
	assert.Equal(t, http.StatusUnprocessableEntity, rec.Code)
	var body struct {
		OK       bool
		Error    string
		Problems []string
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
	assert.False(t, body.OK)
	assert.Equal(t, []string{"lbd.yaml: listeners[1].address: port 70000 is out of range", "target_groups[0].targets[2].weight: 150 is out of range 0..100"}, body.Problems)
	assert.Equal(t, 2, calls)

	assert.Equal(t, http.StatusMethodNotAllowed, do(t, h, "GET", "/reload").Code, "reloading takes a POST")
	assert.Equal(t, http.StatusNotImplemented, do(t, admin.New(f.lb), "POST", "/reload").Code)
}

func TestMetricsMount(t *testing.T) {
	f := newFixture(t)
	assert.Equal(t, http.StatusNotFound, do(t, admin.New(f.lb), "GET", "/metrics").Code)
	h := admin.New(f.lb, admin.WithMetrics(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "lbkit_up 1\n") })))
	rec := do(t, h, "GET", "/metrics")
	assert.Equal(t, "lbkit_up 1\n", rec.Body.String())
	assert.Equal(t, http.StatusNotFound, do(t, h, "GET", "/nothing").Code)
}

// TestStatusPageHTML checks the page's HTML as served (the Chromium test
// checks what a person sees).
func TestStatusPageHTML(t *testing.T) {
	f := newFixture(t)
	rec := do(t, admin.New(f.lb, admin.WithTitle("edge-1")), "GET", "/?refresh=5")
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, "text/html; charset=utf-8", rec.Header().Get("Content-Type"))
	body := rec.Body.String()
	assert.Contains(t, body, "<title>edge-1 status</title>")
	assert.Contains(t, body, `<meta http-equiv="refresh" content="5">`)
	assert.Contains(t, body, "<td>connection refused</td>")
	assert.NotContains(t, body, "<script")
}
