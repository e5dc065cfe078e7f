package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lbkit/lbkit/admin"
	"github.com/lbkit/lbkit/lb"
)

// call sends a request with a JSON body (nil for none) to h on loopback and
// returns the status and the decoded answer.
func call(t *testing.T, h http.Handler, method, target string, body any, hdr ...string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(b)
	}
	r := adminRequest(method, target, "127.0.0.1:9900")
	r.Body = io.NopCloser(rd)
	if rd == nil {
		r.Body = http.NoBody
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	var out map[string]any
	if strings.HasPrefix(rec.Body.String(), "{") {
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &out), rec.Body.String())
	}
	return rec.Code, out
}

// path returns the value at a dotted path of a decoded JSON object.
func path(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func TestRuntimeAPIReads(t *testing.T) {
	f := newFixture(t)
	h := admin.New(f.lb, admin.WithLogger(quiet))

	rec := do(t, h, "GET", "/listeners")
	require.Equal(t, 200, rec.Code)
	var ls []map[string]any
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &ls))
	require.Len(t, ls, 1)
	assert.Equal(t, "web", ls[0]["name"])
	assert.Equal(t, "http", ls[0]["protocol"], "protocols are words")
	assert.Equal(t, f.web, ls[0]["address"])

	code, v := call(t, h, "GET", "/listeners/web", nil)
	require.Equal(t, 200, code)
	assert.Equal(t, true, path(v, "diagnosis", "ok"))
	assert.Equal(t, "web", path(v, "stats", "name"))
	code, v = call(t, h, "GET", "/listeners/nope", nil)
	assert.Equal(t, 404, code)
	assert.Equal(t, `listener "nope" does not exist`, v["error"])

	code, v = call(t, h, "GET", "/groups/app", nil)
	require.Equal(t, 200, code)
	assert.Equal(t, 1.0, path(v, "stats", "healthy"))
	assert.Equal(t, "round_robin", path(v, "stats", "algorithm"))
	assert.Equal(t, []any{}, v["changes"])

	code, v = call(t, h, "GET", "/groups/app/targets/down", nil)
	require.Equal(t, 200, code)
	assert.Equal(t, false, path(v, "stats", "serving"))
	assert.Equal(t, "unhealthy", path(v, "diagnosis", "health", "state"), "health states are words")
	assert.Equal(t, "connection refused", path(v, "diagnosis", "health", "reason"))
	code, _ = call(t, h, "GET", "/groups/app/targets/nope", nil)
	assert.Equal(t, 404, code)
	code, _ = call(t, h, "GET", "/groups/nope", nil)
	assert.Equal(t, 404, code)

	// Without WithRuntime nothing can be changed.
	code, v = call(t, h, "PATCH", "/groups/app/targets/up", map[string]any{"weight": 1})
	assert.Equal(t, 501, code)
	assert.Contains(t, v["error"], "WithRuntime")
	code, _ = call(t, h, "POST", "/upgrade", nil)
	assert.Equal(t, 501, code)
}

// TestStatsJSONIsSnakeCase checks the JSON names of /stats and /diagnose:
// snake_case everywhere, status classes labelled.
func TestStatsJSONIsSnakeCase(t *testing.T) {
	f := newFixture(t)
	h := admin.New(f.lb, admin.WithLogger(quiet))
	for _, p := range []string{"/stats", "/diagnose", "/health", "/groups", "/listeners", "/groups/app/targets/up"} {
		rec := do(t, h, "GET", p)
		require.Equal(t, 200, rec.Code, p)
		var v any
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &v))
		var walk func(at string, v any)
		walk = func(at string, v any) {
			switch v := v.(type) {
			case map[string]any:
				for k, x := range v {
					assert.Regexp(t, `^([a-z][a-z0-9_]*|[1-5]xx)$`, k, "%s: key %s%s", p, at, k)
					walk(at+k+".", x)
				}
			case []any:
				for _, x := range v {
					walk(at, x)
				}
			}
		}
		walk("", v)
	}
}

func TestRuntimeAPIChanges(t *testing.T) {
	f := newFixture(t)
	rt := admin.NewRuntime(f.lb)
	var saved [][]admin.Change
	rt.OnChange = func(cs []admin.Change) { saved = append(saved, cs) }
	reloads := 0
	h := admin.New(f.lb, admin.WithLogger(quiet), admin.WithRuntime(rt),
		admin.WithReload(func(context.Context) error { reloads++; return nil }))

	// Weight.
	code, v := call(t, h, "PATCH", "/groups/app/targets/up", map[string]any{"weight": 7})
	require.Equal(t, 200, code, v)
	assert.Equal(t, 7.0, path(v, "stats", "weight"))
	assert.Equal(t, 7.0, path(v, "change", "weight"))

	// Drain, and back.
	code, v = call(t, h, "PATCH", "/groups/app/targets/up", map[string]any{"drained": true})
	require.Equal(t, 200, code, v)
	assert.Equal(t, true, path(v, "stats", "drained"))
	assert.Equal(t, false, path(v, "stats", "serving"))
	assert.Contains(t, path(v, "diagnosis", "reasons"), "drained by an operator: no new traffic; connections open when it was drained are closed at "+
		f.lb.Stats().Groups[0].Targets[1].DrainUntil.Format(time.TimeOnly))
	resp, err := http.Get("http://" + f.web + "/")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "the only healthy target drained: 503")
	code, v = call(t, h, "PATCH", "/groups/app/targets/up", map[string]any{"drained": false})
	require.Equal(t, 200, code, v)
	assert.Equal(t, true, path(v, "stats", "serving"))

	// Health checks off: the failing target is treated as healthy.
	code, v = call(t, h, "PATCH", "/groups/app/targets/down", map[string]any{"health_check": false})
	require.Equal(t, 200, code, v)
	assert.Equal(t, true, path(v, "stats", "health_check_off"))
	assert.Equal(t, true, path(v, "stats", "healthy"))

	// Add and remove.
	add := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "new") }))
	defer add.Close()
	code, v = call(t, h, "POST", "/groups/app/targets", map[string]any{"id": "new", "address": add.Listener.Addr().String(), "weight": 2})
	require.Equal(t, 201, code, v)
	assert.Equal(t, "new", path(v, "stats", "id"))
	assert.Equal(t, add.Listener.Addr().String(), path(v, "change", "added", "address"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, f.lb.WaitServing(ctx, "app", "new"), "an added target serves once its first check passes")
	code, v = call(t, h, "DELETE", "/groups/app/targets/new", nil)
	require.Equal(t, 200, code, v)
	assert.Contains(t, v["message"], "deregistered")

	code, v = call(t, h, "GET", "/runtime", nil)
	require.Equal(t, 200, code)
	assert.Equal(t, admin.OnReloadText, v["on_reload"])
	var got []string
	for _, c := range rt.Changes() {
		got = append(got, c.String())
	}
	assert.Equal(t, []string{"app/up: weight 7", "app/down: health checks off"}, got,
		"drained and undrained leaves nothing; added and removed leaves nothing")
	require.NotEmpty(t, saved)
	assert.Equal(t, rt.Changes(), saved[len(saved)-1], "OnChange saw every change")

	// Refusals: 404 for what does not exist, 422 for what lb refuses, 400
	// for a bad body.
	for _, tc := range []struct {
		method, target string
		body           any
		code           int
	}{
		{"PATCH", "/groups/app/targets/nope", map[string]any{"weight": 1}, 404},
		{"PATCH", "/groups/nope/targets/up", map[string]any{"drained": true}, 404},
		{"DELETE", "/groups/app/targets/nope", nil, 404},
		{"PATCH", "/groups/app/targets/up", map[string]any{"weight": 101}, 422},
		{"POST", "/groups/app/targets", map[string]any{"address": "not an address"}, 422},
		{"PATCH", "/groups/app/targets/up", map[string]any{"wieght": 1}, 400},
		{"PATCH", "/groups/app/targets/up", map[string]any{}, 400},
		{"POST", "/groups/app/targets", map[string]any{"id": "x"}, 400},
	} {
		code, v := call(t, h, tc.method, tc.target, tc.body)
		assert.Equal(t, tc.code, code, "%s %s %v: %v", tc.method, tc.target, tc.body, v)
		assert.NotEmpty(t, v["error"])
	}
	assert.Equal(t, []string{"app/up: weight 7", "app/down: health checks off"}, changeStrings(rt), "refused calls change nothing")

	// DELETE /runtime forgets them and reloads.
	code, _ = call(t, h, "DELETE", "/runtime", nil)
	require.Equal(t, 200, code)
	assert.Empty(t, rt.Changes())
	assert.Equal(t, 1, reloads)
}

func changeStrings(rt *admin.Runtime) []string {
	var out []string
	for _, c := range rt.Changes() {
		out = append(out, c.String())
	}
	return out
}

func TestRuntimeAPIProtection(t *testing.T) {
	f := newFixture(t)
	rt := admin.NewRuntime(f.lb)
	h := admin.New(f.lb, admin.WithLogger(quiet), admin.WithRuntime(rt), admin.WithToken("s3cret"))
	patch := map[string]any{"weight": 5}
	code, _ := call(t, h, "PATCH", "/groups/app/targets/up", patch)
	assert.Equal(t, 401, code, "no token")
	code, _ = call(t, h, "PATCH", "/groups/app/targets/up", patch, "Authorization", "Bearer wrong")
	assert.Equal(t, 401, code, "a wrong token")
	code, _ = call(t, h, "PATCH", "/groups/app/targets/up", patch, "Authorization", "Bearer s3cret", "Sec-Fetch-Site", "cross-site")
	assert.Equal(t, 403, code, "cross-site, even with the token")
	code, _ = call(t, h, "DELETE", "/groups/app/targets/up", nil, "Authorization", "Bearer s3cret", "Origin", "http://evil.example")
	assert.Equal(t, 403, code, "cross-site by Origin")
	assert.Empty(t, rt.Changes(), "nothing refused changed anything")
	code, _ = call(t, h, "PATCH", "/groups/app/targets/up", patch, "Authorization", "Bearer s3cret")
	assert.Equal(t, 200, code, "the token")
	assert.Equal(t, []string{"app/up: weight 5"}, changeStrings(rt))
}

// TestRuntimeOutlivesReloadAndRestart checks what a daemon does with a
// Runtime: changes made again after a reconfiguration from the file,
// those the new file makes impossible dropped; saved and restored into a
// new load balancer.
func TestRuntimeOutlivesReloadAndRestart(t *testing.T) {
	f := newFixture(t)
	rt := admin.NewRuntime(f.lb)
	require.NoError(t, rt.SetWeight("app", "up", 9))
	require.NoError(t, rt.SetDrained("app", "down", true))
	extra := httptest.NewServer(http.NotFoundHandler())
	defer extra.Close()
	require.NoError(t, rt.AddTarget("app", "extra", extra.Listener.Addr().String(), 0))

	// The file, reloaded: "down" is gone from it.
	file := func(addr string, targets ...lb.GroupOption) []lb.Option {
		return []lb.Option{
			lb.WithLogger(quiet),
			lb.WithListener("web", lb.HTTP, addr, lb.WithForwardTo("app")),
			lb.WithTargetGroup("app", lb.HTTP, targets...),
		}
	}
	require.NoError(t, f.lb.Reconfigure(file("127.0.0.1:0", lb.WithTarget(f.up.Listener.Addr().String(), lb.WithTargetID("up"), lb.WithWeight(3)), lb.WithoutHealthCheck())...))
	assert.Equal(t, 3, targetWeight(t, f.lb, "up"), "the reload applied the file")
	dropped := rt.Reapply()
	require.Len(t, dropped, 1)
	assert.Equal(t, "down", dropped[0].Change.Target)
	assert.Contains(t, dropped[0].Reason, "does not exist")
	assert.Equal(t, 9, targetWeight(t, f.lb, "up"), "the runtime weight is made again")
	assert.Equal(t, []string{"app/up: weight 9", "app/extra: added at " + extra.Listener.Addr().String() + ", default weight"}, changeStrings(rt))

	// Saved, and restored in a new process's load balancer.
	var buf bytes.Buffer
	require.NoError(t, rt.Save(&buf))
	l2, err := lb.New(file("127.0.0.1:0", lb.WithTarget(f.up.Listener.Addr().String(), lb.WithTargetID("up"), lb.WithWeight(3)), lb.WithoutHealthCheck())...)
	require.NoError(t, err)
	rt2 := admin.NewRuntime(l2)
	dropped, err = rt2.Restore(&buf)
	require.NoError(t, err)
	assert.Empty(t, dropped)
	assert.Equal(t, changeStrings(rt), changeStrings(rt2))
	require.NoError(t, l2.Start())
	defer l2.Close()
	assert.Equal(t, 9, targetWeight(t, l2, "up"))

	for _, bad := range []string{``, `{"version":2,"changes":[]}`, `{"version":1,"changes":[{"group":"app"}]}`, `{"version":1,"surprise":true}`} {
		_, err := admin.NewRuntime(l2).Restore(strings.NewReader(bad))
		assert.Error(t, err, bad)
	}
}

func targetWeight(t *testing.T, l *lb.LoadBalancer, id string) int {
	t.Helper()
	for _, tg := range l.Stats().Groups[0].Targets {
		if tg.ID == id {
			return tg.Weight
		}
	}
	t.Fatalf("no target %s", id)
	return 0
}
