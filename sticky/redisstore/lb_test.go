package redisstore

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lbkit/lbkit/sticky/redisstore/redistest"

	"github.com/lbkit/lbkit/lb"
	"github.com/lbkit/lbkit/sticky"
)

// startTargets starts n HTTP targets on loopback that answer with their
// names and, with a cookie name, set that application cookie on the
// first request of a session.
func startTargets(t *testing.T, n int, cookie string) []lb.GroupOption {
	t.Helper()
	var opts []lb.GroupOption
	for i := range n {
		name := fmt.Sprintf("t%d", i)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if cookie != "" {
				if _, err := r.Cookie(cookie); err != nil {
					http.SetCookie(w, &http.Cookie{Name: cookie, Value: fmt.Sprintf("session-%s-%d", name, time.Now().UnixNano())})
				}
			}
			io.WriteString(w, name)
		})}
		var wg sync.WaitGroup
		wg.Go(func() { _ = srv.Serve(ln) })
		t.Cleanup(func() { srv.Close(); wg.Wait() })
		opts = append(opts, lb.WithTarget(ln.Addr().String(), lb.WithTargetID(name)))
	}
	return opts
}

// startNode starts a load balancer with one HTTP listener in front of the
// targets, sticky as s.
func startNode(t *testing.T, targets []lb.GroupOption, s lb.Stickiness) (*lb.LoadBalancer, string) {
	t.Helper()
	l, err := lb.New(
		lb.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		lb.WithListener("front", lb.HTTP, "127.0.0.1:0", lb.WithForwardTo("web")),
		lb.WithTargetGroup("web", lb.HTTP, append([]lb.GroupOption{lb.WithoutHealthCheck(), lb.WithStickiness(s)}, targets...)...),
	)
	require.NoError(t, err)
	require.NoError(t, l.Start())
	t.Cleanup(func() { l.Close() })
	a, ok := l.Addr("front")
	require.True(t, ok)
	return l, "http://" + a.String() + "/"
}

// clientFrom returns an HTTP client whose connections leave from the
// loopback address ip, so that one test has many source addresses.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

// get sends one request and returns the answering target, and how long
// the request took.
func get(t *testing.T, c *http.Client, url string, cookies ...*http.Cookie) (string, []*http.Cookie, time.Duration) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	for _, k := range cookies {
		req.AddCookie(k)
	}
	start := time.Now()
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	took := time.Since(start)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	return string(body), resp.Cookies(), took
}

func stickyStats(l *lb.LoadBalancer) sticky.Stats { return l.Stats().Groups[0].Sticky }

// TestSourceIPAcrossNodes: two load balancers sharing one Redis send each
// client to one target whichever it reaches; with Redis stopped, each
// keeps serving its known clients from its own table, new clients are
// balanced, and the errors are counted.
func TestSourceIPAcrossNodes(t *testing.T) {
	r := redistest.Start(t)
	store := Dial(r.Addr)
	defer store.Close()
	targets := startTargets(t, 3, "")
	s := lb.Stickiness{Kind: lb.SourceIP, Store: store}
	n1, url1 := startNode(t, targets, s)
	n2, url2 := startNode(t, targets, s)

	clients := []string{"127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14", "127.0.0.15", "127.0.0.16"}
	first := map[string]string{}
	for i, ip := range clients {
		url := url1
		if i%2 == 1 {
			url = url2 // half the clients meet the other node first
		}
		first[ip], _, _ = get(t, clientFrom(ip), url)
	}
	for _, ip := range clients {
		for _, url := range []string{url1, url2, url1, url2} {
			got, _, _ := get(t, clientFrom(ip), url)
			assert.Equal(t, first[ip], got, "client %s through %s", ip, url)
		}
	}
	assert.Equal(t, uint64(3), stickyStats(n1).StoreHits, "node 1 learned 3 clients from node 2")
	assert.Equal(t, uint64(3), stickyStats(n2).StoreHits, "node 2 learned 3 clients from node 1")
	assert.Zero(t, stickyStats(n1).StoreErrors)

	// Redis goes away.
	r.Kill()
	for _, ip := range clients {
		for _, url := range []string{url1, url2} {
			got, _, took := get(t, clientFrom(ip), url)
			assert.Equal(t, first[ip], got, "client %s through %s, Redis stopped: the local table serves", ip, url)
			assert.Less(t, took, 2*time.Second, "no request waits on Redis for long")
		}
	}
	for _, url := range []string{url1, url2} {
		_, _, took := get(t, clientFrom("127.0.0.99"), url) // a new client: balanced
		assert.Less(t, took, 2*time.Second)
	}
	errs := stickyStats(n1).StoreErrors + stickyStats(n2).StoreErrors
	assert.Positive(t, errs, "the failures are counted")
	t.Logf("with Redis stopped: node 1 %+v, node 2 %+v", stickyStats(n1), stickyStats(n2))
}

// TestAppCookieAcrossNodes: a session the application started through one
// node routes to its target through the other.
func TestAppCookieAcrossNodes(t *testing.T) {
	r := redistest.Start(t)
	store := Dial(r.Addr)
	defer store.Close()
	targets := startTargets(t, 3, "JSESSIONID")
	s := lb.Stickiness{Kind: lb.AppCookie, CookieName: "JSESSIONID", Store: store}
	_, url1 := startNode(t, targets, s)
	n2, url2 := startNode(t, targets, s)
	c := clientFrom("127.0.0.1")
	for range 3 { // three sessions, started on node 1
		target, cookies, _ := get(t, c, url1)
		require.Len(t, cookies, 1)
		for range 4 {
			got, _, _ := get(t, c, url2, cookies[0])
			assert.Equal(t, target, got, "node 2 follows the session node 1 learned")
		}
	}
	assert.Equal(t, uint64(3), stickyStats(n2).StoreHits)
}

// TestRedisHangs: a Redis that stops answering (paused, its connections
// still accepted) costs a request the store timeout at most; the nodes
// serve from their tables and count the errors.
func TestRedisHangs(t *testing.T) {
	r := redistest.Start(t)
	store := Dial(r.Addr)
	defer store.Close()
	targets := startTargets(t, 3, "")
	s := lb.Stickiness{Kind: lb.SourceIP, Store: store, StoreTimeout: 50 * time.Millisecond}
	n1, url1 := startNode(t, targets, s)
	known, _, _ := get(t, clientFrom("127.0.0.21"), url1)
	r.Pause(t)
	var slowest time.Duration
	for range 5 {
		got, _, took := get(t, clientFrom("127.0.0.21"), url1)
		assert.Equal(t, known, got)
		slowest = max(slowest, took)
		_, _, took = get(t, clientFrom("127.0.0.22"), url1) // unknown: asks the store once, then skips it
		slowest = max(slowest, took)
	}
	st := stickyStats(n1)
	assert.Positive(t, st.StoreErrors)
	assert.Positive(t, st.StoreSkipped, "a failed store is left alone for a second")
	assert.Less(t, slowest, 2*time.Second, "bounded by the store timeout, not Redis")
	t.Logf("slowest request with Redis paused: %v; stats %+v", slowest, st)
}
