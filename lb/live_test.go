package lb

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lbkit/lbkit/balancer"
	"github.com/lbkit/lbkit/healthcheck"
)

// load sends traffic in the background until stopped, counting successes
// and failures, and what answered.
type load struct {
	stopc   chan struct{}
	wg      sync.WaitGroup
	ok      atomic.Int64
	mu      sync.Mutex // guards fails, seen
	fails   []error
	seenMu  sync.Mutex
	lastBy  map[string]int64 // target name → successes
	started chan struct{}
}

func newLoad() *load {
	return &load{stopc: make(chan struct{}), lastBy: map[string]int64{}, started: make(chan struct{})}
}

func (ld *load) record(name string, err error) {
	if err != nil {
		ld.mu.Lock()
		ld.fails = append(ld.fails, err)
		ld.mu.Unlock()
		return
	}
	ld.ok.Add(1)
	ld.seenMu.Lock()
	ld.lastBy[name]++
	ld.seenMu.Unlock()
}

func (ld *load) stopped() bool {
	select {
	case <-ld.stopc:
		return true
	default:
		return false
	}
}

// stop ends the traffic and checks that nothing failed and something got
// through.
func (ld *load) stop(t *testing.T) {
	t.Helper()
	close(ld.stopc)
	ld.wg.Wait()
	ld.mu.Lock()
	defer ld.mu.Unlock()
	require.Empty(t, ld.fails, "failed requests under live changes")
	require.Positive(t, ld.ok.Load())
}

// httpLoad runs workers that GET url over keep-alive connections.
func httpLoad(url string, workers int) *load {
	ld := newLoad()
	for range workers {
		ld.wg.Go(func() {
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			for !ld.stopped() {
				resp, err := c.Get(url)
				if err != nil {
					ld.record("", err)
					continue
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != 200 {
					err = fmt.Errorf("status %d: %s", resp.StatusCode, b)
				}
				name, _, _ := strings.Cut(string(b), " ")
				ld.record(name, err)
			}
		})
	}
	return ld
}

// tcpLoad runs workers that open a connection through addr, ask once and
// close it, again and again.
func tcpLoad(addr string, workers int) *load {
	ld := newLoad()
	for range workers {
		ld.wg.Go(func() {
			for !ld.stopped() {
				name, err := tryAsk(addr)
				ld.record(name, err)
			}
		})
	}
	return ld
}

func tryAsk(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "ping\n"); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	name, rest, _ := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
	if rest != "ping" {
		return "", fmt.Errorf("bad answer %q", line)
	}
	return name, nil
}

// next asks until a connection lands on want, or fails after a bound:
// a change must show on the very next connections.
func nextFrom(t *testing.T, addr string, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		got[dialAsk(t, addr)]++
	}
	return got
}

func TestLiveAddAndReweightTargets(t *testing.T) {
	a, b, c := newEchoTarget(t, "a"), newEchoTarget(t, "b"), newEchoTarget(t, "c")
	ev := newEvents()
	l := startLB(t, WithHooks(ev.hooks()),
		WithListener("tcp", TCP, "127.0.0.1:0", WithForwardTo("app")),
		WithTargetGroup("app", TCP, WithTarget(a.addr, WithTargetID("a")), WithTarget(b.addr, WithTargetID("b")), WithHealthCheck(fastHealth)),
	)
	waitServing(t, l, "app", 2)
	front := addr(t, l, "tcp")
	ld := tcpLoad(front, 4)

	// The background load takes its own turns of the round-robin, so the
	// test's own connections see shares, not exact sequences.
	require.NoError(t, l.AddTarget("app", c.addr, WithTargetID("c")))
	ev.waitServing(t, "c", true)
	got := nextFrom(t, front, 30)
	assert.Len(t, got, 3, "a new target takes traffic once healthy: %v", got)

	require.NoError(t, l.SetWeight("app", "a", 0))
	got = nextFrom(t, front, 20)
	assert.NotContains(t, got, "a", "weight 0: no new connections, from the next one on")
	require.NoError(t, l.SetWeight("app", "b", 3))
	ld.stop(t)
	assert.Equal(t, map[string]int{"b": 6, "c": 2}, nextFrom(t, front, 8), "weights 3:1, exact once alone")
}

func TestLiveRemoveTargetDrains(t *testing.T) {
	a, b := newEchoTarget(t, "a"), newEchoTarget(t, "b")
	l := startLB(t,
		WithListener("tcp", TCP, "127.0.0.1:0", WithForwardTo("app")),
		WithTargetGroup("app", TCP, WithTarget(a.addr, WithTargetID("a")), WithTarget(b.addr, WithTargetID("b")), WithoutHealthCheck(), WithDeregistrationDelay(time.Hour)),
	)
	front := addr(t, l, "tcp")
	// An established connection to a.
	var onA net.Conn
	for onA == nil {
		c, err := net.Dial("tcp", front)
		require.NoError(t, err)
		if ask(t, c, "who") == "a" {
			onA = c
		} else {
			c.Close()
		}
	}
	defer onA.Close()
	ld := tcpLoad(front, 4)
	require.NoError(t, l.RemoveTarget("app", "a"))
	assert.Equal(t, map[string]int{"b": 10}, nextFrom(t, front, 10), "a deregistered target gets no new connections")
	assert.Equal(t, "a", ask(t, onA, "still there"), "its established connection continues")
	d := l.Diagnose(Query{})
	require.Len(t, d.Groups, 1)
	require.Len(t, d.Groups[0].Targets, 2)
	assert.Contains(t, d.Groups[0].Targets[0].Reasons[0], "deregistered, draining until")
	ld.stop(t)

	// A short delay closes the established connection when it passes.
	require.NoError(t, l.modifyGroup("app", func(g *groupConfig) error { g.deregDelay = 50 * time.Millisecond; return nil }))
	require.NoError(t, l.AddTarget("app", a.addr, WithTargetID("a")))
	var onA2 net.Conn
	for onA2 == nil {
		c, err := net.Dial("tcp", front)
		require.NoError(t, err)
		if ask(t, c, "who") == "a" {
			onA2 = c
		} else {
			c.Close()
		}
	}
	defer onA2.Close()
	require.NoError(t, l.RemoveTarget("app", "a"))
	onA2.SetDeadline(time.Now().Add(10 * time.Second))
	_, err := io.ReadAll(onA2)
	assert.True(t, err == nil || errors.Is(err, syscall.ECONNRESET), "closed when the delay passed: %v", err)
}

func TestLiveAlgorithmAndStickiness(t *testing.T) {
	a, b := newHTTPTarget(t, "a"), newHTTPTarget(t, "b")
	l := startLB(t,
		WithListener("web", HTTP, "127.0.0.1:0", WithForwardTo("app")),
		WithTargetGroup("app", HTTP, WithTarget(a.addr, WithTargetID("a")), WithTarget(b.addr, WithTargetID("b")), WithoutHealthCheck()),
	)
	url := "http://" + addr(t, l, "web") + "/"
	ld := httpLoad(url, 4)
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()

	require.NoError(t, l.SetAlgorithm("app", balancer.SourceIPHash))
	first, _ := httpGet(t, client, url)
	for range 10 {
		name, _ := httpGet(t, client, url)
		require.Equal(t, first, name, "source IP hash: one client, one target, from the next request on")
	}

	require.NoError(t, l.SetAlgorithm("app", balancer.RoundRobin))
	require.NoError(t, l.SetStickiness("app", Stickiness{Kind: Cookie, CookieName: "lbk"}))
	jar, _ := cookiejar.New(nil)
	sticky := &http.Client{Jar: jar, Transport: &http.Transport{}}
	defer sticky.CloseIdleConnections()
	first, _ = httpGet(t, sticky, url)
	for range 10 {
		name, _ := httpGet(t, sticky, url)
		require.Equal(t, first, name, "cookie stickiness from the next request on")
	}
	ld.stop(t)
}

func TestLiveListeners(t *testing.T) {
	a := newEchoTarget(t, "a")
	h := newHTTPTarget(t, "h")
	l := startLB(t,
		WithListener("tcp", TCP, "127.0.0.1:0", WithForwardTo("app")),
		WithTargetGroup("app", TCP, WithTarget(a.addr, WithTargetID("a")), WithoutHealthCheck()),
		WithTargetGroup("web", HTTP, WithTarget(h.addr, WithTargetID("h")), WithoutHealthCheck()),
	)
	ld := tcpLoad(addr(t, l, "tcp"), 2)

	require.NoError(t, l.AddListener("tcp2", TCP, "127.0.0.1:0", WithForwardTo("app")))
	assert.Equal(t, "a", dialAsk(t, addr(t, l, "tcp2")))
	require.NoError(t, l.AddListener("http", HTTP, "127.0.0.1:0", WithForwardTo("web")))
	httpFront := addr(t, l, "http")

	// Removing an L4 listener stops forwarding at once: its established
	// connection is closed.
	c, err := net.Dial("tcp", addr(t, l, "tcp2"))
	require.NoError(t, err)
	defer c.Close()
	ask(t, c, "before")
	require.NoError(t, l.RemoveListener("tcp2"))
	c.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = bufio.NewReader(c).ReadString('\n')
	assert.Error(t, err, "an L4 listener's connections end with it")
	_, ok := l.Addr("tcp2")
	assert.False(t, ok)

	// Removing an L7 listener leaves its keep-alive connections serving
	// until they idle out; new connections are refused.
	kc, err := net.Dial("tcp", httpFront)
	require.NoError(t, err)
	defer kc.Close()
	br := bufio.NewReader(kc)
	fmt.Fprintf(kc, "GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, l.RemoveListener("http"))
	_, err = net.DialTimeout("tcp", httpFront, time.Second)
	assert.Error(t, err, "a removed listener accepts nothing")
	for _, path := range []string{"/two", "/three"} {
		kc.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(kc, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err, "the kept-alive connection still serves after its listener left")
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, 200, resp.StatusCode)
		assert.Contains(t, string(b), " "+path+" ")
	}
	kc.Close()
	ld.stop(t)
}

func TestLiveCertificates(t *testing.T) {
	h := newHTTPTarget(t, "h")
	old, fresh := testCert(t, "lb.test"), testCert(t, "lb.test")
	pool := x509.NewCertPool()
	pool.AddCert(old.Leaf)
	pool.AddCert(fresh.Leaf)
	l := startLB(t,
		WithListener("https", HTTPS, "127.0.0.1:0", WithForwardTo("web"), WithCertificates(old)),
		WithTargetGroup("web", HTTP, WithTarget(h.addr, WithTargetID("h")), WithoutHealthCheck()),
	)
	front := addr(t, l, "https")
	conf := &tls.Config{RootCAs: pool, ServerName: "lb.test"}
	established, err := tls.Dial("tcp", front, conf)
	require.NoError(t, err)
	defer established.Close()
	ld := newLoad()
	for range 4 {
		ld.wg.Go(func() {
			tr := &http.Transport{TLSClientConfig: conf}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			for !ld.stopped() {
				resp, err := c.Get("https://" + front + "/")
				if err == nil {
					io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				ld.record("h", err)
			}
		})
	}
	require.NoError(t, l.SetCertificates("https", fresh))
	nc, err := tls.Dial("tcp", front, conf)
	require.NoError(t, err)
	defer nc.Close()
	assert.Equal(t, fresh.Leaf.Raw, nc.ConnectionState().PeerCertificates[0].Raw, "new handshakes get the new certificate")
	assert.Equal(t, old.Leaf.Raw, established.ConnectionState().PeerCertificates[0].Raw, "established connections keep theirs")
	fmt.Fprintf(established, "GET / HTTP/1.1\r\nHost: lb.test\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(established), nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	ld.stop(t)
}

func TestLiveIdleTimeout(t *testing.T) {
	a := newEchoTarget(t, "a")
	l := startLB(t,
		WithListener("tcp", TCP, "127.0.0.1:0", WithForwardTo("app")),
		WithTargetGroup("app", TCP, WithTarget(a.addr, WithTargetID("a")), WithoutHealthCheck()),
	)
	front := addr(t, l, "tcp")
	before, err := net.Dial("tcp", front)
	require.NoError(t, err)
	defer before.Close()
	ask(t, before, "x")
	require.NoError(t, l.SetIdleTimeout("tcp", 200*time.Millisecond))
	after, err := net.Dial("tcp", front)
	require.NoError(t, err)
	defer after.Close()
	ask(t, after, "x")
	after.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = after.Read(make([]byte, 1))
	require.ErrorIs(t, err, syscall.ECONNRESET, "a new connection idle past the new timeout is reset")
	assert.Equal(t, "a", ask(t, before, "still alive"), "an older connection keeps the timeout it was made with")
	assert.Positive(t, l.Stats().Listeners[0].TCP.IdleResets)
}

func TestReconfigure(t *testing.T) {
	a, b := newEchoTarget(t, "a"), newEchoTarget(t, "b")
	opts := func(targets ...GroupOption) []Option {
		return []Option{WithLogger(quietLog),
			WithListener("tcp", TCP, "127.0.0.1:0", WithForwardTo("app")),
			WithTargetGroup("app", TCP, append(targets, WithoutHealthCheck())...)}
	}
	l := startLB(t, opts(WithTarget(a.addr, WithTargetID("a")))...)
	front := addr(t, l, "tcp")
	ld := tcpLoad(front, 4)

	err := l.Reconfigure(append(opts(WithTarget(b.addr, WithTargetID("b"), WithWeight(500))), WithListener("bad", HTTP, "nonsense"))...)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `listener "bad": addr "nonsense" is not host:port`)
	assert.Contains(t, err.Error(), `target[0] "b": weight 500 is out of range 0..100`)
	assert.Equal(t, map[string]int{"a": 4}, nextFrom(t, front, 4), "an invalid configuration changes nothing")

	// a leaves (draining: what it has in flight finishes), b arrives.
	require.NoError(t, l.Reconfigure(opts(WithTarget(b.addr, WithTargetID("b")))...))
	assert.Equal(t, front, addr(t, l, "tcp"), "the listener kept its socket")
	assert.Equal(t, map[string]int{"b": 4}, nextFrom(t, front, 4))
	ld.stop(t)
}

func TestFixedSettingChangeRefusesNobody(t *testing.T) {
	h := newHTTPTarget(t, "h")
	l := startLB(t,
		WithListener("web", HTTP, "127.0.0.1:0", WithForwardTo("app")),
		WithTargetGroup("app", HTTP, WithTarget(h.addr, WithTargetID("h")), WithoutHealthCheck()),
	)
	url := "http://" + addr(t, l, "web") + "/"
	ld := httpLoad(url, 4)
	for i := range 5 {
		// MaxHeaderBytes is fixed when an HTTP proxy starts serving: the
		// listener gets a new proxy on the same socket.
		require.NoError(t, l.modifyListener("web", func(li *listenerConfig) error { li.maxHeaderBytes = 32<<10 + i; return nil }))
		name, code := httpGet(t, http.DefaultClient, url)
		require.Equal(t, 200, code)
		require.Equal(t, "h", name)
	}
	http.DefaultClient.CloseIdleConnections()
	ld.stop(t)
}

// TestReconfigureFailureChangesNothing: a configuration that passes
// validation but whose resources cannot be had (here a health checker that
// fails to start, as an ICMP socket can without privileges) is refused
// whole: the groups it would have changed keep their settings, nothing new
// starts, and the next good configuration applies.
func TestReconfigureFailureChangesNothing(t *testing.T) {
	a := newEchoTarget(t, "a")
	opts := func(algo balancer.Algorithm, extra ...Option) []Option {
		return append([]Option{WithLogger(quietLog),
			WithListener("tcp", TCP, "127.0.0.1:0", WithForwardTo("app")),
			WithTargetGroup("app", TCP, WithTarget(a.addr, WithTargetID("a")), WithAlgorithm(algo), WithoutHealthCheck())}, extra...)
	}
	l := startLB(t, opts(balancer.RoundRobin)...)
	l.mu.Lock()
	l.newChecker = func(cfg *groupConfig) (healthcheck.Checker, io.Closer, error) {
		if cfg.name == "udp" {
			return nil, nil, errors.New("no ICMP socket")
		}
		return newChecker(cfg)
	}
	l.mu.Unlock()

	err := l.Reconfigure(opts(balancer.LeastConnections,
		WithListener("dns", UDP, "127.0.0.1:0", WithForwardTo("udp")),
		WithTargetGroup("udp", UDP, WithTarget("127.0.0.1:53", WithTargetID("u"))))...)
	require.ErrorContains(t, err, `target group "udp": health check: no ICMP socket`)
	st := l.Stats()
	require.Len(t, st.Groups, 1, "the new group did not start")
	assert.Equal(t, balancer.RoundRobin, st.Groups[0].Algorithm, "the existing group kept its algorithm")
	_, ok := l.Addr("dns")
	assert.False(t, ok, "the new listener did not start")
	assert.Equal(t, map[string]int{"a": 2}, nextFrom(t, addr(t, l, "tcp"), 2))

	require.NoError(t, l.Reconfigure(opts(balancer.LeastConnections)...))
	assert.Equal(t, balancer.LeastConnections, l.Stats().Groups[0].Algorithm)
}
