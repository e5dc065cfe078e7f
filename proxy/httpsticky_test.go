package proxy

import (
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"testing"

	"github.com/lbkit/lbkit/balancer"
	"github.com/lbkit/lbkit/sticky"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// stateOf is the sticky state function the lb package gives its policies:
// the balancer's view of a target.
func stateOf(b *balancer.Balancer) func(string) sticky.TargetState {
	return func(id string) sticky.TargetState {
		t, ok := b.Target(id)
		switch {
		case !ok || t.Health != balancer.Healthy:
			return sticky.Unusable
		case t.Weight == 0:
			return sticky.Draining
		}
		return sticky.Usable
	}
}

// TestHTTPStickyCookieScenario is the reference test: two targets serving
// different pages; repeated requests with the same cookie jar always reach
// the same target; that target turning unhealthy moves the session to the
// other and re-sets the cookie.
func TestHTTPStickyCookieScenario(t *testing.T) {
	a := newTarget(t, "page-a", nil)
	b := newTarget(t, "page-b", nil)
	up := upstreamOf(t, "web", a, b)
	pol, err := sticky.NewCookie(sticky.WithTargetState(stateOf(up.Balancer)))
	require.NoError(t, err)
	up.SetSticky(pol)
	addr := serve(t, configured(t, &HTTP{}, forwardTo(t, up)))

	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	c := client(t)
	c.Jar = jar
	u := "http://" + addr + "/"
	_, first := get(t, c, u)
	for range 20 {
		_, page := get(t, c, u)
		require.Equal(t, first, page, "the session stays on its target")
	}
	pu, _ := url.Parse(u)
	before := jar.Cookies(pu)
	require.Len(t, before, 1)
	assert.Equal(t, sticky.DefaultCookieName, before[0].Name)

	// Without the jar, round-robin alternates: stickiness is what held it.
	seen := map[string]bool{}
	plain := client(t)
	for range 4 {
		_, page := get(t, plain, u)
		seen[page] = true
	}
	assert.Len(t, seen, 2)

	require.NoError(t, up.Balancer.SetHealth(first, balancer.Unhealthy))
	_, moved := get(t, c, u)
	assert.NotEqual(t, first, moved, "the session moves off the unhealthy target")
	after := jar.Cookies(pu)
	require.Len(t, after, 1)
	assert.NotEqual(t, before[0].Value, after[0].Value, "and the cookie is re-set")
	for range 10 {
		_, page := get(t, c, u)
		require.Equal(t, moved, page)
	}
	assert.GreaterOrEqual(t, pol.Stats().Repicks, uint64(1))
}

func TestHTTPStickyAppCookie(t *testing.T) {
	var ids []*target
	for _, name := range []string{"a", "b"} {
		ids = append(ids, newTarget(t, name, func(w http.ResponseWriter, r *http.Request) {
			if _, err := r.Cookie("JSESSIONID"); err != nil {
				http.SetCookie(w, &http.Cookie{Name: "JSESSIONID", Value: "session-from-" + name, Path: "/"})
			}
			w.Write([]byte(name))
		}))
	}
	up := upstreamOf(t, "web", ids...)
	pol, err := sticky.NewAppCookie("JSESSIONID", sticky.WithTargetState(stateOf(up.Balancer)))
	require.NoError(t, err)
	up.SetSticky(pol)
	addr := serve(t, configured(t, &HTTP{}, forwardTo(t, up)))
	jar, _ := cookiejar.New(nil)
	c := client(t)
	c.Jar = jar
	_, first := get(t, c, "http://"+addr+"/")
	for range 10 {
		_, page := get(t, c, "http://"+addr+"/")
		require.Equal(t, first, page)
	}
}

func TestHTTPStickySourceIP(t *testing.T) {
	up := upstreamOf(t, "web", newTarget(t, "a", nil), newTarget(t, "b", nil))
	pol, err := sticky.NewSourceIP(sticky.WithTargetState(stateOf(up.Balancer)))
	require.NoError(t, err)
	up.SetSticky(pol)
	addr := serve(t, configured(t, &HTTP{}, forwardTo(t, up)))
	c := client(t)
	_, first := get(t, c, "http://"+addr+"/")
	for range 10 {
		c.Transport.(*http.Transport).CloseIdleConnections() // new connections, same IP
		_, page := get(t, c, "http://"+addr+"/")
		require.Equal(t, first, page)
	}
}
