package sticky

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The end-to-end tests put a policy in a minimal proxy, the way lbkit's
// proxies use it, with real sockets on loopback: backends that answer with
// their name, a round-robin picker that skips Unusable targets, and clients
// that come and go.

// picker is the tests' balancer: round-robin over the targets the state
// function calls Usable.
type picker struct {
	ids   []string
	state *states
	next  atomic.Uint64
}

func (p *picker) pick() string {
	for range len(p.ids) {
		id := p.ids[(p.next.Add(1)-1)%uint64(len(p.ids))]
		if p.state.get(id) == Usable {
			return id
		}
	}
	return ""
}

// httpBackends starts one HTTP server per id on 127.0.0.1; each answers
// with its id and, when setSession, starts an application session for
// requests that have none.
func httpBackends(t *testing.T, setSession bool, ids ...string) map[string]*url.URL {
	t.Helper()
	urls := map[string]*url.URL{}
	for _, id := range ids {
		var n atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, err := r.Cookie("JSESSIONID"); err != nil && setSession {
				http.SetCookie(w, &http.Cookie{Name: "JSESSIONID", Value: fmt.Sprintf("%s-%d", id, n.Add(1)), Path: "/"})
			}
			io.WriteString(w, id)
		}))
		t.Cleanup(srv.Close)
		u, err := url.Parse(srv.URL)
		require.NoError(t, err)
		urls[id] = u
	}
	return urls
}

// httpProxy starts a reverse proxy on addr that consults p.
func httpProxy(t *testing.T, addr string, p Policy, pk *picker, backends map[string]*url.URL) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		peer, err := netip.ParseAddrPort(req.RemoteAddr)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		r := HTTPRequest(peer.Addr(), req)
		id, ok := p.Lookup(r)
		if !ok {
			id = pk.pick()
		}
		rp := &httputil.ReverseProxy{
			Transport: tr,
			Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(backends[id]) },
			ModifyResponse: func(resp *http.Response) error {
				p.Remember(r, id, Header(resp.Header))
				return nil
			},
		}
		rp.ServeHTTP(w, req)
	})}
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(ln) })
	t.Cleanup(func() { srv.Close(); wg.Wait() })
	return "http://" + ln.Addr().String() + "/"
}

// client is a browser: it keeps cookies.
func client(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Jar: jar, Transport: tr}
}

// get returns the name of the backend that answered.
func get(t *testing.T, c *http.Client, u string) string {
	t.Helper()
	resp, err := c.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// visits returns the backends n requests of c reached, in order.
func visits(t *testing.T, c *http.Client, u string, n int) []string {
	t.Helper()
	var got []string
	for range n {
		got = append(got, get(t, c, u))
	}
	return got
}

func same(id string, n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = id
	}
	return s
}

// testCookieKinds runs the browser scenario for a cookie kind: each client
// sticks to its first backend; a client without cookies is balanced; when a
// client's backend goes down it moves and sticks to the new one, and stays
// there when the old one comes back.
func testCookieKinds(t *testing.T, mk func(st *states) Policy, appSessions bool) {
	st := newStates()
	pk := &picker{ids: []string{"a", "b"}, state: st}
	p := mk(st)
	u := httpProxy(t, "127.0.0.1:0", p, pk, httpBackends(t, appSessions, "a", "b"))

	alice, bob := client(t), client(t)
	first := get(t, alice, u)
	assert.Equal(t, same(first, 5), visits(t, alice, u, 5))
	second := get(t, bob, u)
	assert.NotEqual(t, first, second, "round-robin gives the second client the other backend")
	assert.Equal(t, same(second, 5), visits(t, bob, u, 5))

	plain := &http.Client{Transport: alice.Transport} // no cookie jar: no session
	assert.ElementsMatch(t, []string{"a", "b"}, visits(t, plain, u, 2))

	st.set(first, Unusable)
	moved := get(t, alice, u)
	assert.Equal(t, second, moved)
	st.set(first, Usable)
	assert.Equal(t, same(moved, 5), visits(t, alice, u, 5), "re-stuck to the new backend")
	assert.Equal(t, same(second, 3), visits(t, bob, u, 3))
	assert.Equal(t, uint64(1), statsOf(p).Repicks)
}

func statsOf(p Policy) Stats { return p.(interface{ Stats() Stats }).Stats() }

func TestEndToEndCookie(t *testing.T) {
	testCookieKinds(t, func(st *states) Policy {
		p, err := NewCookie(WithTargetState(st.get))
		require.NoError(t, err)
		return p
	}, false)
}

func TestEndToEndAppCookie(t *testing.T) {
	testCookieKinds(t, func(st *states) Policy {
		p, err := NewAppCookie("JSESSIONID", WithTargetState(st.get))
		require.NoError(t, err)
		return p
	}, true)
}

// TestEndToEndBadCookie sends every bad cookie shape through the proxy: each
// request gets an answer from a backend and a new, good cookie; never an
// error.
func TestEndToEndBadCookie(t *testing.T) {
	st := newStates()
	p, err := NewCookie(WithTargetState(st.get))
	require.NoError(t, err)
	u := httpProxy(t, "127.0.0.1:0", p, &picker{ids: []string{"a", "b"}, state: st}, httpBackends(t, false, "a", "b"))
	c := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(c.CloseIdleConnections)
	for _, v := range []string{"garbage", "AQ", "", "ARdiWooAAAAAcN1Z1QEvCizBkhRTwohdzJhmzm-Ti5R2s7ti_RBGnty0b5ekKsbCBQooA6W7AtjAq5NNgkU", strings.Repeat("A", 8<<10)} {
		req, err := http.NewRequest(http.MethodGet, u, nil)
		require.NoError(t, err)
		req.Header.Set("Cookie", DefaultCookieName+"="+v)
		resp, err := c.Do(req)
		require.NoError(t, err)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Len(t, resp.Cookies(), 1, "a new cookie replaces the bad one")
	}
	assert.Equal(t, BadCookies{Truncated: 2, Oversized: 1, WrongKey: 1, Garbage: 1}, p.Stats().BadCookies)
}

// TestEndToEndSourceIPHTTP: clients on 127.0.0.1 and [::1] each stick to
// their backend at L7.
func TestEndToEndSourceIPHTTP(t *testing.T) {
	st := newStates()
	pk := &picker{ids: []string{"a", "b"}, state: st}
	p, err := NewSourceIP(WithTargetState(st.get))
	require.NoError(t, err)
	backends := httpBackends(t, false, "a", "b")
	u4 := httpProxy(t, "127.0.0.1:0", p, pk, backends)
	u6 := httpProxy(t, "[::1]:0", p, pk, backends)
	c := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(c.CloseIdleConnections)
	c.Transport.(*http.Transport).DisableKeepAlives = true // every request a new connection
	first := get(t, c, u4)
	second := get(t, c, u6)
	assert.NotEqual(t, first, second)
	for range 3 {
		assert.Equal(t, first, get(t, c, u4))
		assert.Equal(t, second, get(t, c, u6))
	}
	assert.Equal(t, 2, p.Stats().Entries)
}

// TestEndToEndSourceIPTCP is the L4 case: a TCP proxy that looks up each new
// connection's client address.
func TestEndToEndSourceIPTCP(t *testing.T) {
	st := newStates()
	pk := &picker{ids: []string{"a", "b", "c"}, state: st}
	p, err := NewSourceIP(WithTargetState(st.get))
	require.NoError(t, err)
	backends := map[string]string{}
	for _, id := range pk.ids {
		backends[id] = tcpServer(t, func(c net.Conn) { io.WriteString(c, id) })
	}
	proxy := func(c net.Conn) {
		peer := c.RemoteAddr().(*net.TCPAddr).AddrPort()
		r := Request{Source: peer.Addr()}
		id, ok := p.Lookup(r)
		if !ok {
			id = pk.pick()
		}
		up, err := net.Dial("tcp", backends[id])
		if err != nil {
			return
		}
		defer up.Close()
		p.Remember(r, id, nil)
		io.Copy(c, up)
	}
	v4 := tcpServer(t, proxy)
	v6, ok := tcpServerOn(t, "[::1]:0", proxy)
	if !ok {
		t.Log("no IPv6 loopback: testing IPv4 only")
	}
	dial := func(addr string) string {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer c.Close()
		b, err := io.ReadAll(bufio.NewReader(c))
		require.NoError(t, err)
		return string(b)
	}
	first := dial(v4)
	var second string
	if ok {
		second = dial(v6)
		assert.NotEqual(t, first, second)
	}
	st.set("c", Unusable) // a third target the picker would otherwise reach
	for range 5 {
		assert.Equal(t, first, dial(v4))
		if ok {
			assert.Equal(t, second, dial(v6))
		}
	}
	want := uint64(5)
	if ok {
		want = 10
	}
	assert.Equal(t, want, p.Stats().Hits)
}

// tcpServer serves each connection on 127.0.0.1 with h and closes it.
func tcpServer(t *testing.T, h func(net.Conn)) string {
	t.Helper()
	addr, ok := tcpServerOn(t, "127.0.0.1:0", h)
	require.True(t, ok)
	return addr
}

func tcpServerOn(t *testing.T, addr string, h func(net.Conn)) (string, bool) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", false
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				h(c)
			})
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String(), true
}
