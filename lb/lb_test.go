package lb

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/cookiejar"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTCPListener(t *testing.T) {
	a, b := newEchoTarget(t, "a"), newEchoTarget(t, "b")
	l := startLB(t,
		WithListener("tcp", TCP, "127.0.0.1:0", WithForwardTo("app")),
		WithTargetGroup("app", TCP, WithTarget(a.addr, WithTargetID("a")), WithTarget(b.addr, WithTargetID("b")), WithHealthCheck(fastHealth)),
	)
	waitServing(t, l, "app", 2)
	got := map[string]int{}
	for range 10 {
		got[dialAsk(t, addr(t, l, "tcp"))]++
	}
	assert.Equal(t, map[string]int{"a": 5, "b": 5}, got)

	st := l.Stats()
	require.Len(t, st.Listeners, 1)
	require.Eventually(t, func() bool { return l.Stats().Flows.TCP.ActiveFlowCount == 0 }, 10*time.Second, 5*time.Millisecond)
	st = l.Stats()
	assert.Equal(t, uint64(10), st.Flows.TCP.NewFlowCount)
	assert.Equal(t, uint64(10), st.Listeners[0].TCP.Forwarded)
	assert.Equal(t, uint64(5), st.Groups[0].Targets[0].Counters.Connections)
}

func TestHTTPListener(t *testing.T) {
	a, b := newHTTPTarget(t, "a"), newHTTPTarget(t, "b")
	l := startLB(t,
		WithListener("web", HTTP, "127.0.0.1:0", WithForwardTo("app")),
		WithTargetGroup("app", HTTP, WithTarget(a.addr, WithTargetID("a")), WithTarget(b.addr, WithTargetID("b")), WithHealthCheck(fastHealth)),
	)
	waitServing(t, l, "app", 2)
	got := map[string]int{}
	for range 10 {
		name, code := httpGet(t, http.DefaultClient, "http://"+addr(t, l, "web")+"/")
		require.Equal(t, 200, code)
		got[name]++
	}
	assert.Equal(t, map[string]int{"a": 5, "b": 5}, got)
	http.DefaultClient.CloseIdleConnections()
}

// TestHTTPCookieStickiness is the reference test: two targets serving
// different pages; repeated requests with one cookie jar always reach the
// same target; when it turns unhealthy the session moves and the cookie is
// set anew.
func TestHTTPCookieStickiness(t *testing.T) {
	a, b := newHTTPTarget(t, "a"), newHTTPTarget(t, "b")
	ev := newEvents()
	l := startLB(t,
		WithHooks(ev.hooks()),
		WithListener("web", HTTP, "127.0.0.1:0", WithForwardTo("app")),
		WithTargetGroup("app", HTTP, WithTarget(a.addr, WithTargetID("a")), WithTarget(b.addr, WithTargetID("b")), WithHealthCheck(fastHealth), WithStickiness(Stickiness{Kind: Cookie})),
	)
	waitServing(t, l, "app", 2)
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	client := &http.Client{Jar: jar, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	url := "http://" + addr(t, l, "web") + "/"
	first, _ := httpGet(t, client, url)
	for range 10 {
		name, _ := httpGet(t, client, url)
		require.Equal(t, first, name)
	}
	map[string]*httpTarget{"a": a, "b": b}[first].stop()
	ev.waitServing(t, first, false)
	moved, code := httpGet(t, client, url)
	require.Equal(t, 200, code)
	require.NotEqual(t, first, moved)
	for range 5 {
		name, _ := httpGet(t, client, url)
		require.Equal(t, moved, name, "the session stays on its new target")
	}
	st := l.Stats().Groups[0].Sticky
	assert.GreaterOrEqual(t, st.Hits, uint64(15), "sticky counters reach lb's Stats: %+v", st)
	assert.Equal(t, uint64(1), st.Repicks, "one re-pick when the target went down")
}

// TestUDPFailoverOnTCPHealth is the reference scenario: two UDP targets
// whose health is checked over TCP on another port; when one target's TCP
// health port stops, its clients' next datagrams go to the other target.
// The two targets are two hosts: 127.0.0.1 and ::1, each with a TCP health
// endpoint on the same port number.
func TestUDPFailoverOnTCPHealth(t *testing.T) {
	a, b := newUDPEchoOn(t, "a", "127.0.0.1"), newUDPEchoOn(t, "b", "[::1]")
	healthA, healthB, port := sameTCPPort(t)
	check := fastHealth
	check.Protocol, check.Port = TCP, port
	ev := newEvents()
	l := startLB(t,
		WithHooks(ev.hooks()),
		WithListener("dns", UDP, "127.0.0.1:0", WithForwardTo("udp")),
		WithTargetGroup("udp", UDP, WithTarget(a.addr, WithTargetID("a")), WithTarget(b.addr, WithTargetID("b")), WithHealthCheck(check)),
	)
	waitServing(t, l, "udp", 2)
	clients := make([]net.Conn, 6)
	on := map[string]int{}
	for i := range clients {
		c, err := net.Dial("udp", addr(t, l, "dns"))
		require.NoError(t, err)
		defer c.Close()
		clients[i] = c
		on[udpAsk(t, c, "q")]++
	}
	require.Equal(t, 3, on["a"], "round-robin over two targets")
	healthA.Close()
	ev.waitServing(t, "a", false)
	for _, c := range clients {
		assert.Equal(t, "b", udpAsk(t, c, "after"), "every flow now goes to the healthy target")
	}
	_ = healthB
}

func TestTLSListener(t *testing.T) {
	a := newEchoTarget(t, "a")
	cert := testCert(t, "lb.test")
	l := startLB(t,
		WithListener("tls", TLS, "127.0.0.1:0", WithForwardTo("app"), WithCertificates(cert)),
		WithTargetGroup("app", TCP, WithTarget(a.addr, WithTargetID("a")), WithoutHealthCheck()),
	)
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	c, err := tls.Dial("tcp", addr(t, l, "tls"), &tls.Config{RootCAs: pool, ServerName: "lb.test"})
	require.NoError(t, err)
	defer c.Close()
	assert.Equal(t, "a", ask(t, c, "over tls"))
}

func TestShutdownIsGraceful(t *testing.T) {
	a := newEchoTarget(t, "a")
	l, err := New(WithLogger(quietLog),
		WithListener("tcp", TCP, "127.0.0.1:0", WithForwardTo("app")),
		WithTargetGroup("app", TCP, WithTarget(a.addr), WithoutHealthCheck()),
	)
	require.NoError(t, err)
	require.NoError(t, l.Start())
	front := addr(t, l, "tcp")
	c, err := net.Dial("tcp", front)
	require.NoError(t, err)
	ask(t, c, "before")
	done := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() { done <- l.Shutdown(ctx) }()
	// New connections are refused once the listener stops accepting...
	require.Eventually(t, func() bool {
		nc, err := net.DialTimeout("tcp", front, time.Second)
		if err != nil {
			return true
		}
		nc.Close()
		return false
	}, 10*time.Second, 5*time.Millisecond)
	// ...while the established one keeps working until it ends, and the
	// load balancer still answers questions.
	assert.Equal(t, "a", ask(t, c, "during shutdown"))
	assert.Len(t, l.Stats().Listeners, 1)
	c.Close()
	require.NoError(t, <-done)
	assert.ErrorIs(t, l.AddTarget("app", a.addr), ErrClosed)
}

// TestShutdownClosesIdleKeepAlive: an idle HTTP keep-alive connection does
// not hold a shutdown until the listener's idle timeout; it is closed, as
// http.Server.Shutdown closes it.
func TestShutdownClosesIdleKeepAlive(t *testing.T) {
	a := newHTTPTarget(t, "a")
	l, err := New(WithLogger(quietLog),
		WithListener("web", HTTP, "127.0.0.1:0", WithForwardTo("app"), WithIdleTimeout(time.Hour)),
		WithTargetGroup("app", HTTP, WithTarget(a.addr), WithoutHealthCheck()),
	)
	require.NoError(t, err)
	require.NoError(t, l.Start())
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	name, code := httpGet(t, &http.Client{Transport: tr}, "http://"+addr(t, l, "web")+"/")
	require.Equal(t, 200, code)
	require.Equal(t, "a", name)
	require.Equal(t, int64(1), l.Stats().Listeners[0].HTTP.ActiveConnections, "the client keeps its connection")

	// Waiting for the hour-long idle timeout would end ctx first.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, l.Shutdown(ctx))
}

func TestTwoLoadBalancersShareNothing(t *testing.T) {
	a, b := newEchoTarget(t, "a"), newEchoTarget(t, "b")
	mk := func(target *echoTarget) *LoadBalancer {
		return startLB(t,
			WithListener("tcp", TCP, "127.0.0.1:0", WithForwardTo("app")),
			WithTargetGroup("app", TCP, WithTarget(target.addr, WithTargetID("t")), WithoutHealthCheck()),
		)
	}
	l1, l2 := mk(a), mk(b)
	assert.Equal(t, "a", dialAsk(t, addr(t, l1, "tcp")))
	assert.Equal(t, "b", dialAsk(t, addr(t, l2, "tcp")))
	require.NoError(t, l1.SetWeight("app", "t", 0))
	assert.Equal(t, "b", dialAsk(t, addr(t, l2, "tcp")), "a change to one never touches the other")
	assert.Equal(t, uint64(1), l1.Stats().Flows.TCP.NewFlowCount)
	assert.Equal(t, uint64(2), l2.Stats().Flows.TCP.NewFlowCount)
}

func TestResponseHook(t *testing.T) {
	a := newHTTPTarget(t, "a")
	var mu sync.Mutex
	var got []ResponseEvent
	l := startLB(t,
		WithHooks(Hooks{Response: func(e ResponseEvent) { mu.Lock(); got = append(got, e); mu.Unlock() }}),
		WithListener("web", HTTP, "127.0.0.1:0", WithForwardTo("app")),
		WithTargetGroup("app", HTTP, WithTarget(a.addr, WithTargetID("a")), WithoutHealthCheck()),
	)
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	for range 3 {
		_, code := httpGet(t, client, "http://"+addr(t, l, "web")+"/")
		require.Equal(t, 200, code)
	}
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, got, 3, "one event per response")
	for _, e := range got {
		assert.Equal(t, "app", e.Group)
		assert.Equal(t, "a", e.Target)
		assert.Equal(t, 200, e.Status)
		assert.Positive(t, e.HeaderTime)
	}
}
