package lb

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lbkit/lbkit/balancer"
	"github.com/lbkit/lbkit/healthcheck"
	"github.com/lbkit/lbkit/sticky"
)

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// fastHealth checks often, so tests wait milliseconds, not seconds.
var fastHealth = HealthCheck{Interval: 40 * time.Millisecond, Timeout: 30 * time.Millisecond, HealthyThreshold: 1, UnhealthyThreshold: 1}

// tcpTarget listens on 127.0.0.1 and accepts (and closes) connections until
// the test ends or stop is called.
type tcpTarget struct {
	ln   net.Listener
	addr string
	wg   sync.WaitGroup
}

func newTCPTarget(t *testing.T) *tcpTarget {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	tt := &tcpTarget{ln: ln, addr: ln.Addr().String()}
	tt.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	})
	t.Cleanup(tt.stop)
	return tt
}

func (tt *tcpTarget) stop() { tt.ln.Close(); tt.wg.Wait() }

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// events collects health events from a group's hooks.
type events struct {
	ch      chan HealthEvent
	pending []HealthEvent // received, not yet waited for
}

func newEvents() *events { return &events{ch: make(chan HealthEvent, 100)} }

func (e *events) hooks() Hooks { return Hooks{HealthChange: func(ev HealthEvent) { e.ch <- ev }} }

// wait returns the next event for target, failing after a generous bound.
// Events for other targets are kept for their own wait.
func (e *events) wait(t *testing.T, target string) HealthEvent {
	t.Helper()
	return e.waitFor(t, target, func(HealthEvent) bool { return true })
}

// waitServing returns the next event that leaves target serving or not.
func (e *events) waitServing(t *testing.T, target string, serving bool) HealthEvent {
	t.Helper()
	return e.waitFor(t, target, func(ev HealthEvent) bool { return ev.Serving == serving })
}

// waitFor returns the next event for target that ok accepts, dropping the
// target's events ok refuses.
func (e *events) waitFor(t *testing.T, target string, ok func(HealthEvent) bool) HealthEvent {
	t.Helper()
	for i := 0; i < len(e.pending); i++ {
		if ev := e.pending[i]; ev.Target == target {
			e.pending = slices.Delete(e.pending, i, i+1)
			i--
			if ok(ev) {
				return ev
			}
		}
	}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev := <-e.ch:
			switch {
			case ev.Target != target:
				e.pending = append(e.pending, ev)
			case ok(ev):
				return ev
			}
		case <-deadline:
			t.Fatalf("no health event for %s", target)
		}
	}
}

func startGroup(t *testing.T, ev *events, opts ...GroupOption) *group {
	t.Helper()
	var c config
	WithTargetGroup("web", TCP, opts...)(&c)
	require.NoError(t, c.validate())
	hooks := Hooks{}
	if ev != nil {
		hooks = ev.hooks()
	}
	g, err := newGroup(c.groups[0], quietLog, hooks)
	require.NoError(t, err)
	t.Cleanup(g.close)
	return g
}

func pickIDs(t *testing.T, g *group, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		c, err := g.up().Choose(balancer.PickInfo{}, nil)
		if errors.Is(err, balancer.ErrNoTarget) {
			got[""]++
			continue
		}
		require.NoError(t, err)
		got[c.Target.ID]++
		c.Done()
	}
	return got
}

func TestGroupHealthDecidesTraffic(t *testing.T) {
	up := newTCPTarget(t)
	down := closedAddr(t)
	ev := newEvents()
	g := startGroup(t, ev, WithTarget(up.addr, WithTargetID("up")), WithTarget(down, WithTargetID("down")), WithHealthCheck(fastHealth))

	// New targets get no traffic until their first check passes.
	assert.True(t, ev.wait(t, "up").Serving)
	assert.Equal(t, map[string]int{"up": 20}, pickIDs(t, g, 20))
	assert.Equal(t, sticky.Usable, g.targetState("up"))
	assert.Equal(t, sticky.Unusable, g.targetState("down"))

	up.stop()
	e := ev.wait(t, "up")
	assert.False(t, e.Serving)
	assert.Regexp(t, "connection (refused|reset)", e.Reason) // reset: a check caught the listener closing
	assert.Equal(t, map[string]int{"": 5}, pickIDs(t, g, 5), "no healthy target: refused, never a hang")
}

func TestGroupWithoutHealthCheck(t *testing.T) {
	g := startGroup(t, nil, WithTarget(closedAddr(t), WithTargetID("a")), WithoutHealthCheck())
	assert.Equal(t, map[string]int{"a": 3}, pickIDs(t, g, 3), "checks off: every target counts as healthy")
}

func TestGroupDeregistrationDrains(t *testing.T) {
	a, b := newTCPTarget(t), newTCPTarget(t)
	g := startGroup(t, nil, WithTarget(a.addr, WithTargetID("a")), WithTarget(b.addr, WithTargetID("b")), WithoutHealthCheck(), WithDeregistrationDelay(time.Hour))

	var c config
	WithTargetGroup("web", TCP, WithTarget(b.addr, WithTargetID("b")), WithoutHealthCheck(), WithDeregistrationDelay(time.Hour))(&c)
	require.NoError(t, g.apply(c.groups[0]))

	assert.Equal(t, map[string]int{"b": 10}, pickIDs(t, g, 10), "a deregistering target takes no new connections")
	assert.Equal(t, sticky.Draining, g.targetState("a"), "its sticky sessions continue")
	assert.Equal(t, []string{"a", "b"}, g.memberIDs(), "it is held until the delay passes")
	assert.False(t, g.up().Stats().Targets[0].DrainDeadline.IsZero())

	// Registered again before the delay passes: back in rotation at once.
	WithTargetGroup("web", TCP, WithTarget(a.addr, WithTargetID("a")), WithTarget(b.addr, WithTargetID("b")), WithoutHealthCheck())(&c)
	require.NoError(t, g.apply(c.groups[1]))
	assert.Equal(t, map[string]int{"a": 5, "b": 5}, pickIDs(t, g, 10))
	assert.Equal(t, sticky.Usable, g.targetState("a"))

	// With a short delay the target is removed when it passes.
	c = config{}
	WithTargetGroup("web", TCP, WithTarget(b.addr, WithTargetID("b")), WithoutHealthCheck(), WithDeregistrationDelay(20*time.Millisecond))(&c)
	require.NoError(t, g.apply(c.groups[0]))
	require.Eventually(t, func() bool { return slices.Equal(g.memberIDs(), []string{"b"}) }, 10*time.Second, 5*time.Millisecond)
	assert.Equal(t, sticky.Unusable, g.targetState("a"))
}

func TestGroupPassiveEjection(t *testing.T) {
	a, b := newTCPTarget(t), newTCPTarget(t)
	ev := newEvents()
	g := startGroup(t, ev, WithTarget(a.addr, WithTargetID("a")), WithTarget(b.addr, WithTargetID("b")), WithoutHealthCheck(), WithPassiveEjection(3, time.Hour, 50))
	up := g.up()
	for range 2 {
		up.OnResult("a", errors.New("connection reset"))
	}
	up.OnResult("a", nil) // a success ends the run
	for range 2 {
		up.OnResult("a", errors.New("connection reset"))
	}
	assert.Equal(t, map[string]int{"a": 5, "b": 5}, pickIDs(t, g, 10), "not ejected: the run was broken")
	up.OnResult("a", errors.New("connection reset"))
	e := ev.wait(t, "a")
	assert.True(t, e.Ejected)
	assert.False(t, e.Serving)
	assert.Contains(t, e.Reason, "3 consecutive failures")
	assert.Equal(t, map[string]int{"b": 10}, pickIDs(t, g, 10))

	// The cap: b cannot be ejected too (50% of 2 targets is 1).
	for range 5 {
		up.OnResult("b", errors.New("connection reset"))
	}
	assert.Equal(t, map[string]int{"b": 4}, pickIDs(t, g, 4))
}

func TestGroupStickySessionsFollowHealth(t *testing.T) {
	a, b := newTCPTarget(t), newTCPTarget(t)
	ev := newEvents()
	g := startGroup(t, ev, WithTarget(a.addr, WithTargetID("a")), WithTarget(b.addr, WithTargetID("b")), WithHealthCheck(fastHealth), WithStickiness(Stickiness{Kind: SourceIP}))
	ev.wait(t, "a")
	ev.wait(t, "b")
	client := balancer.PickInfo{Source: netip.MustParseAddr("192.0.2.10")}
	first, err := g.up().Choose(client, nil)
	require.NoError(t, err)
	g.up().Remember(client, nil, first, nil)
	for range 5 {
		c, err := g.up().Choose(client, nil)
		require.NoError(t, err)
		require.True(t, c.Sticky)
		require.Equal(t, first.Target.ID, c.Target.ID)
	}
	victim := map[string]*tcpTarget{"a": a, "b": b}[first.Target.ID]
	victim.stop()
	require.False(t, ev.wait(t, first.Target.ID).Serving)
	moved, err := g.up().Choose(client, nil)
	require.NoError(t, err)
	assert.False(t, moved.Sticky, "never pinned to a dead target")
	assert.NotEqual(t, first.Target.ID, moved.Target.ID)
}

// fakeSource is a discovery source the test controls.
type fakeSource struct {
	mu  sync.Mutex // guards ds, err
	ds  []Discovered
	err error
}

func (f *fakeSource) set(err error, ds ...Discovered) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ds, f.err = ds, err
}

func (f *fakeSource) Targets(context.Context) ([]Discovered, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ds), f.err
}

func (f *fakeSource) String() string { return "fake" }

func TestGroupDiscovery(t *testing.T) {
	a, b := newTCPTarget(t), newTCPTarget(t)
	src := &fakeSource{}
	src.set(nil, Discovered{Addr: a.addr})
	static := newTCPTarget(t)
	g := startGroup(t, nil, WithTarget(static.addr), WithoutHealthCheck(), WithDeregistrationDelay(-1), WithDiscovery(src, time.Hour))
	g.stopDiscovery() // the test drives the source itself
	d := &discovery{src: src, cancel: func() {}, done: make(chan struct{})}
	close(d.done)
	g.mu.Lock()
	g.disco = d
	g.mu.Unlock()
	discover := func() { g.discoverOnce(context.Background(), d) }

	discover()
	assert.Equal(t, sorted(static.addr, a.addr), g.memberIDs())

	src.set(nil, Discovered{Addr: a.addr, Weight: 3}, Discovered{Addr: b.addr})
	discover()
	assert.Equal(t, sorted(static.addr, a.addr, b.addr), g.memberIDs())
	tgt, _ := g.bal.Target(a.addr)
	assert.Equal(t, 3, tgt.Weight, "a changed weight is applied")

	src.set(errors.New("SERVFAIL"))
	discover()
	assert.Equal(t, sorted(static.addr, a.addr, b.addr), g.memberIDs(), "a failing source keeps the last good answer")
	assert.EqualError(t, d.lastErr, "SERVFAIL")

	src.set(nil, Discovered{Addr: b.addr})
	discover()
	assert.Equal(t, sorted(static.addr, b.addr), g.memberIDs(), "a vanished target is deregistered")
	assert.Nil(t, d.lastErr)
}

func sorted(s ...string) []string { slices.Sort(s); return s }

// TestGroupHealthCheckChangeKeepsTargetsServing: new health-check settings
// replace the monitor, and targets keep their health meanwhile (no flap).
func TestGroupHealthCheckChangeKeepsTargetsServing(t *testing.T) {
	a := newTCPTarget(t)
	ev := newEvents()
	g := startGroup(t, ev, WithTarget(a.addr, WithTargetID("a")), WithHealthCheck(fastHealth))
	ev.waitServing(t, "a", true)
	var c config
	slower := fastHealth
	slower.Interval, slower.HealthyThreshold, slower.UnhealthyThreshold = time.Hour, 3, 3
	WithTargetGroup("web", TCP, WithTarget(a.addr, WithTargetID("a")), WithHealthCheck(slower))(&c)
	require.NoError(t, g.apply(c.groups[0]))
	assert.Equal(t, map[string]int{"a": 5}, pickIDs(t, g, 5), "still serving right after the swap")
	st, ok := g.mon().Status("a")
	require.True(t, ok)
	assert.True(t, st.Serving())
	select {
	case e := <-ev.ch:
		t.Fatalf("unexpected health change after the swap: %+v", e)
	default:
	}
}

// TestGroupProtocolChangeChangesDefaultCheck: a group whose protocol changes
// from TCP to HTTP gets the HTTP check its default now is.
func TestGroupProtocolChangeChangesDefaultCheck(t *testing.T) {
	a := newTCPTarget(t) // accepts TCP, but answers no HTTP
	ev := newEvents()
	g := startGroup(t, ev, WithTarget(a.addr, WithTargetID("a")), WithHealthCheck(fastHealth))
	ev.waitServing(t, "a", true)
	var c config
	WithTargetGroup("web", HTTP, WithTarget(a.addr, WithTargetID("a")), WithHealthCheck(fastHealth))(&c)
	require.NoError(t, g.apply(c.groups[0]))
	e := ev.waitServing(t, "a", false)
	assert.NotContains(t, e.Reason, "connection refused", "an HTTP check failed, not a TCP one: %s", e.Reason)
}

func TestGroupStickyPrefixOnOneFamily(t *testing.T) {
	a, b := newTCPTarget(t), newTCPTarget(t)
	g := startGroup(t, nil, WithTarget(a.addr, WithTargetID("a")), WithTarget(b.addr, WithTargetID("b")), WithoutHealthCheck(),
		WithStickiness(Stickiness{Kind: SourceIP, PrefixV4: 24})) // IPv6 keeps whole addresses
	first := balancer.PickInfo{Source: netip.MustParseAddr("192.0.2.10")}
	c, err := g.up().Choose(first, nil)
	require.NoError(t, err)
	g.up().Remember(first, nil, c, nil)
	same, err := g.up().Choose(balancer.PickInfo{Source: netip.MustParseAddr("192.0.2.99")}, nil)
	require.NoError(t, err)
	assert.True(t, same.Sticky, "one /24: one session")
	assert.Equal(t, c.Target.ID, same.Target.ID)
}

// TestHealthAcrossPackages checks the one way from a health check's verdict
// to a balancer's mark: healthcheck.State's zero value is Unhealthy,
// balancer.Health's is Healthy, so a conversion by number would invert them.
func TestHealthAcrossPackages(t *testing.T) {
	for _, tc := range []struct {
		cond healthcheck.Condition
		want balancer.Health
	}{
		{healthcheck.Condition{}, balancer.Unhealthy},
		{healthcheck.Condition{State: healthcheck.Healthy}, balancer.Healthy},
		{healthcheck.Condition{State: healthcheck.Healthy, Ejected: true}, balancer.Unhealthy},
		{healthcheck.Condition{State: healthcheck.Unhealthy}, balancer.Unhealthy},
	} {
		assert.Equal(t, tc.want, balancer.HealthOf(tc.cond.Serving()), "%+v", tc.cond)
	}
}
