package proxy

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/lbkit/lbkit/balancer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func namedUpstream(t testing.TB, name string) *Upstream {
	t.Helper()
	return &Upstream{Name: name, Balancer: &balancer.Balancer{}}
}

func TestRouterMatch(t *testing.T) {
	api, img, www, def := namedUpstream(t, "api"), namedUpstream(t, "img"), namedUpstream(t, "www"), namedUpstream(t, "def")
	rt, err := NewRouter(Action{Forward: def},
		Rule{Name: "img", Priority: 5, Host: "*.example.com", Path: "/img/*", Action: Action{Forward: img}},
		Rule{Name: "api", Priority: 10, Host: "api.example.com", Action: Action{Forward: api}},
		Rule{Name: "www", Priority: 20, Host: "*.example.com", Action: Action{Forward: www}},
		Rule{Name: "exact", Priority: 1, Path: "/healthz", Action: Action{Fixed: &FixedResponse{Body: "ok"}}},
		Rule{Name: "re", Priority: 30, Path: `~^/v[12]/`, Action: Action{Redirect: &Redirect{Path: "/v3/"}}},
	)
	require.NoError(t, err)
	for _, c := range []struct{ host, path, want string }{
		{"api.example.com", "/x", "api"},
		{"API.Example.COM.:8080", "/x", "api"},       // case, trailing dot and port ignored
		{"api.example.com", "/img/a.png", "img"},     // lower priority number first
		{"a.b.example.com", "/", "www"},              // any depth
		{"example.com", "/", "default"},              // not the apex
		{"other.org", "/healthz", "exact"},           // any host
		{"other.org", "/healthz/", "default"},        // exact is exact
		{"other.org", "/public/../healthz", "exact"}, // cleaned before matching
		{"other.org", "//healthz", "exact"},          // repeated slashes merged
		{"other.org", "/v2/users", "re"},             // regular expression
		{"other.org", "/img/x", "default"},           // host does not match
		{"[2001:db8::1]:80", "/", "default"},         // IPv6 literal
		{"www.example.com", "/img", "www"},           // /img/* is the prefix /img/
	} {
		name, _ := rt.Match(c.host, c.path)
		assert.Equal(t, c.want, name, "%s %s", c.host, c.path)
	}
	_, a := rt.Match("api.example.com", "/")
	assert.Same(t, api, a.Forward)
}

func TestRouterErrors(t *testing.T) {
	up := namedUpstream(t, "u")
	_, err := NewRouter(Action{Forward: up},
		Rule{Name: "one", Host: "Example.com", Path: "/a/*", Action: Action{Forward: up}},
		Rule{Name: "two", Host: "example.com.", Path: "/a/*", Action: Action{Forward: up}},
		Rule{Name: "bad-host", Host: "ex ample.com", Action: Action{Forward: up}},
		Rule{Name: "mid-wild", Host: "a.*.com", Action: Action{Forward: up}},
		Rule{Name: "bad-path", Path: "a/b", Action: Action{Forward: up}},
		Rule{Name: "star", Path: "/a*/b", Action: Action{Forward: up}},
		Rule{Name: "regexp", Path: "~(", Action: Action{Forward: up}},
		Rule{Name: "two-actions", Path: "/x", Action: Action{Forward: up, Fixed: &FixedResponse{}}},
		Rule{Name: "no-action", Path: "/y"},
		Rule{Name: "redirect", Path: "/z", Action: Action{Redirect: &Redirect{Scheme: "ftp", Code: 200, Port: 70000}}},
		Rule{Name: "split", Path: "/s", Action: Action{Split: []Split{{Upstream: up, Weight: 0}, {Upstream: nil, Weight: -1}}}},
		Rule{Path: "/fixed", Action: Action{Fixed: &FixedResponse{Status: 99}}},
	)
	require.Error(t, err)
	assert.True(t, errors.Is(err, ErrInvalidRule))
	msg := err.Error()
	for _, want := range []string{
		`rules "one" and "two" are identical`,
		`"bad-host": host "ex ample.com"`,
		`"mid-wild": host "a.*.com"`,
		`"bad-path": path "a/b" does not start with /`,
		`"star": path "/a*/b": * may only end a prefix`,
		`"regexp": path "~("`,
		`"two-actions": 2 kinds of action set`,
		`"no-action": 0 kinds of action set`,
		`redirect: scheme "ftp"`, `redirect: port 70000`, `redirect: code 200`,
		`split[1]: nil upstream`, `split[1]: weight -1`,
		`"rule[11]": fixed response: status 99`,
	} {
		assert.Contains(t, msg, want)
	}
	_, err = NewRouter(Action{})
	assert.ErrorContains(t, err, "default action: 0 kinds of action set")
	_, err = Forward(&Upstream{Name: "x"})
	assert.ErrorContains(t, err, `upstream "x" has no balancer`)
}

func TestRouterActions(t *testing.T) {
	rt, err := NewRouter(Action{Fixed: &FixedResponse{Status: 404, Body: "nothing here"}},
		Rule{Name: "https", Host: "secure.example.com", Action: Action{Redirect: &Redirect{Scheme: "https", Code: 308}}},
		Rule{Name: "moved", Path: "/old/*", Action: Action{Redirect: &Redirect{Host: "new.example.com", Port: 8443, Path: "/new", Code: 302}}},
	)
	require.NoError(t, err)
	h := configured(t, &HTTP{}, rt)
	for _, c := range []struct {
		target, host string
		code         int
		loc, body    string
	}{
		{"/a/b?q=1&r=2", "secure.example.com:80", 308, "https://secure.example.com/a/b?q=1&r=2", ""},
		{"/old/x?k=v", "h", 302, "http://new.example.com:8443/new?k=v", ""}, // the request's scheme kept
		{"/else", "h", 404, "", "nothing here"},
	} {
		r := httptest.NewRequest("GET", c.target, nil)
		r.Host = c.host
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		assert.Equal(t, c.code, w.Code, c.target)
		assert.Equal(t, c.loc, w.Header().Get("Location"))
		assert.Equal(t, c.body, w.Body.String())
	}
	assert.Equal(t, StatusClasses{0, 0, 2, 1, 0}, h.Stats().Status)
}

func TestRouterSplit(t *testing.T) {
	blue, green := namedUpstream(t, "blue"), namedUpstream(t, "green")
	rt, err := NewRouter(Action{Split: []Split{{Upstream: blue, Weight: 9}, {Upstream: green, Weight: 1}}})
	require.NoError(t, err)
	n := map[string]int{}
	for range 10000 {
		n[rt.def.upstream().Name]++
	}
	assert.InDelta(t, 9000, n["blue"], 300)
	assert.InDelta(t, 1000, n["green"], 300)
}

func TestRouterMatchAllocs(t *testing.T) {
	up := namedUpstream(t, "u")
	rt, err := NewRouter(Action{Forward: up}, Rule{Host: "*.example.com", Path: "/api/*", Action: Action{Forward: up}})
	require.NoError(t, err)
	assert.Zero(t, testing.AllocsPerRun(100, func() { rt.Match("www.example.com:443", "/api/v1/users") }))
}

// refMatch is the rule semantics written plainly, for the fuzz target.
func refMatch(hostPat, pathPat, host, path string) bool {
	h := strings.ToLower(host)
	if i := strings.LastIndex(h, ":"); i >= 0 && !strings.Contains(h[i:], "]") {
		h = h[:i]
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	h = strings.TrimSuffix(h, ".")
	hp := strings.TrimSuffix(strings.ToLower(hostPat), ".")
	hostOK := false
	switch {
	case hp == "" || hp == "*":
		hostOK = true
	case strings.HasPrefix(hp, "*."):
		hostOK = strings.HasSuffix(h, hp[1:]) && len(h) > len(hp)-1
	default:
		hostOK = h == hp
	}
	p := cleanPath(path)
	switch {
	case pathPat == "":
		return hostOK
	case strings.HasPrefix(pathPat, "~"):
		return hostOK && regexp.MustCompile(pathPat[1:]).MatchString(p)
	case strings.HasSuffix(pathPat, "*"):
		return hostOK && strings.HasPrefix(p, strings.TrimSuffix(pathPat, "*"))
	}
	return hostOK && p == pathPat
}

// FuzzRule parses a rule from fuzzed patterns and matches a fuzzed request
// against it and against refMatch: parsing never panics, and whatever
// parses matches as the plain semantics say.
func FuzzRule(f *testing.F) {
	f.Add("*.example.com", "/api/*", "a.b.example.com:8080", "/api/v1")
	f.Add("example.com", "/x", "EXAMPLE.com.", "/y/../x")
	f.Add("", "~^/v[0-9]+/", "h", "/v12/a")
	f.Add("*", "", "[::1]:80", "//")
	f.Add("a..b", "/a*b", "a", "")
	f.Fuzz(func(t *testing.T, hostPat, pathPat, host, path string) {
		up := &Upstream{Balancer: &balancer.Balancer{}}
		rt, err := NewRouter(Action{Fixed: &FixedResponse{}}, Rule{Name: "r", Host: hostPat, Path: pathPat, Action: Action{Forward: up}})
		if err != nil {
			if !errors.Is(err, ErrInvalidRule) {
				t.Fatalf("error %v does not wrap ErrInvalidRule", err)
			}
			return
		}
		name, _ := rt.Match(host, path)
		if got, want := name == "r", refMatch(hostPat, pathPat, host, path); got != want {
			t.Fatalf("host %q path %q vs rule host %q path %q: matched %v, want %v", host, path, hostPat, pathPat, got, want)
		}
	})
}

var _ http.Handler = (*HTTP)(nil)
