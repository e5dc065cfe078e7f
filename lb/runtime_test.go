package lb

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// targetStats returns the stats of one target of one group.
func targetStats(t *testing.T, l *LoadBalancer, group, id string) TargetStats {
	t.Helper()
	for _, g := range l.Stats().Groups {
		if g.Name != group {
			continue
		}
		for _, ts := range g.Targets {
			if ts.ID == id {
				return ts
			}
		}
	}
	t.Fatalf("no target %s/%s in Stats", group, id)
	return TargetStats{}
}

// targetDiagnosis returns the diagnosis of one target of one group.
func targetDiagnosis(t *testing.T, l *LoadBalancer, group, id string) TargetDiagnosis {
	t.Helper()
	g, _ := l.Diagnose(Query{}).Group(group)
	td, ok := g.Target(id)
	if !ok {
		t.Fatalf("no target %s/%s in Diagnose", group, id)
	}
	return td
}

// connectedTo opens connections through front until one reaches target.
func connectedTo(t *testing.T, front, target string) net.Conn {
	t.Helper()
	for range 100 {
		c, err := net.Dial("tcp", front)
		require.NoError(t, err)
		if ask(t, c, "who") == target {
			t.Cleanup(func() { c.Close() })
			return c
		}
		c.Close()
	}
	t.Fatalf("no connection through %s reached %s in 100 attempts", front, target)
	return nil
}

func TestDrainTargetKeepsItInTheGroup(t *testing.T) {
	a, b := newEchoTarget(t, "a"), newEchoTarget(t, "b")
	ev := newEvents()
	l := startLB(t, WithHooks(ev.hooks()),
		WithListener("tcp", TCP, "127.0.0.1:0", WithForwardTo("app")),
		WithTargetGroup("app", TCP, WithTarget(a.addr, WithTargetID("a")), WithTarget(b.addr, WithTargetID("b")),
			WithHealthCheck(fastHealth), WithDeregistrationDelay(time.Hour)),
	)
	waitServing(t, l, "app", 2)
	front := addr(t, l, "tcp")
	onA := connectedTo(t, front, "a")

	require.NoError(t, l.DrainTarget("app", "a"))
	assert.Equal(t, map[string]int{"b": 10}, nextFrom(t, front, 10), "a drained target gets no new connections")
	assert.Equal(t, "a", ask(t, onA, "still there"), "its established connection continues")
	ts := targetStats(t, l, "app", "a")
	assert.True(t, ts.Drained)
	assert.False(t, ts.Serving)
	assert.True(t, ts.Healthy, "it is still checked and healthy")
	assert.WithinDuration(t, time.Now().Add(time.Hour), ts.DrainUntil, time.Minute, "its connections are closed when the deregistration delay passes")
	td := targetDiagnosis(t, l, "app", "a")
	assert.False(t, td.OK)
	assert.True(t, td.Drained)
	assert.Contains(t, td.Reasons, "drained by an operator: no new traffic; connections open when it was drained are closed at "+ts.DrainUntil.Format(time.TimeOnly))

	// Its checks go on: stopping it is noticed while it is drained.
	a.stop()
	ev.waitServing(t, "a", false)
	assert.False(t, targetStats(t, l, "app", "a").Healthy)
	newEchoTargetOn(t, "a", a.addr)
	ev.waitServing(t, "a", true)

	require.NoError(t, l.UndrainTarget("app", "a"))
	got := nextFrom(t, front, 10)
	assert.Equal(t, 5, got["a"], "undrained, it takes its turns again: %v", got)
	ts = targetStats(t, l, "app", "a")
	assert.False(t, ts.Drained)
	assert.True(t, ts.Serving)
	assert.True(t, ts.DrainUntil.IsZero())
}

func TestDrainTargetClosesConnectionsAfterTheDelay(t *testing.T) {
	a, b := newEchoTarget(t, "a"), newEchoTarget(t, "b")
	l := startLB(t,
		WithListener("tcp", TCP, "127.0.0.1:0", WithForwardTo("app")),
		WithTargetGroup("app", TCP, WithTarget(a.addr, WithTargetID("a")), WithTarget(b.addr, WithTargetID("b")),
			WithoutHealthCheck(), WithDeregistrationDelay(50*time.Millisecond)),
	)
	front := addr(t, l, "tcp")
	onA := connectedTo(t, front, "a")
	onB := connectedTo(t, front, "b")
	require.NoError(t, l.DrainTarget("app", "a"))
	require.NoError(t, onA.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err := io.ReadAll(onA)
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the drained target's connection is reset once the delay passes: %v", err)
	assert.Equal(t, uint64(1), l.Stats().Listeners[0].TCP.DrainResets)
	assert.Equal(t, "b", ask(t, onB, "unaffected"))
	assert.Len(t, targetStatsAll(t, l, "app"), 2, "the drained target stays in the group")
}

func TestTargetHealthCheckOff(t *testing.T) {
	a, b := newEchoTarget(t, "a"), newEchoTarget(t, "b")
	ev := newEvents()
	// The check probes a port where nothing listens: both targets fail it.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	_, port, _ := net.SplitHostPort(closed.Addr().String())
	closed.Close()
	hc := fastHealth
	hc.Port, _ = strconv.Atoi(port)
	l := startLB(t, WithHooks(ev.hooks()),
		WithListener("tcp", TCP, "127.0.0.1:0", WithForwardTo("app")),
		WithTargetGroup("app", TCP, WithTarget(a.addr, WithTargetID("a")), WithTarget(b.addr, WithTargetID("b")), WithHealthCheck(hc)),
	)
	front := addr(t, l, "tcp")
	assert.False(t, targetStats(t, l, "app", "a").Serving, "its check fails")

	require.NoError(t, l.SetTargetHealthCheck("app", "a", false))
	ts := targetStats(t, l, "app", "a")
	assert.True(t, ts.HealthCheckOff)
	assert.True(t, ts.Healthy, "without checks it is treated as healthy")
	assert.True(t, ts.Serving)
	assert.Equal(t, map[string]int{"a": 6}, nextFrom(t, front, 6), "it takes the traffic; b, still checked, does not")
	assert.Contains(t, targetDiagnosis(t, l, "app", "a").Reasons, "note: health checks turned off by an operator; treated as healthy")

	// On again: it keeps serving until its checks fail it.
	require.NoError(t, l.SetTargetHealthCheck("app", "a", true))
	assert.False(t, targetStats(t, l, "app", "a").HealthCheckOff)
	ev.waitServing(t, "a", false)
	assert.False(t, targetStats(t, l, "app", "a").Serving)
}

func TestRuntimeSettersRefuseUnknownTargets(t *testing.T) {
	a := newEchoTarget(t, "a")
	l := startLB(t,
		WithListener("tcp", TCP, "127.0.0.1:0", WithForwardTo("app")),
		WithTargetGroup("app", TCP, WithTarget(a.addr, WithTargetID("a")), WithoutHealthCheck()),
	)
	for name, err := range map[string]error{
		"drain, no group":    l.DrainTarget("nope", "a"),
		"drain, no target":   l.DrainTarget("app", "nope"),
		"undrain, no target": l.UndrainTarget("app", "nope"),
		"checks, no target":  l.SetTargetHealthCheck("app", "nope", false),
		"weight, no target":  l.SetWeight("app", "nope", 1),
		"remove, no target":  l.RemoveTarget("app", "nope"),
		"add, no group":      l.AddTarget("nope", a.addr),
	} {
		assert.ErrorIs(t, err, ErrNotFound, name)
	}
	// Undraining what is not drained changes nothing and is no error.
	require.NoError(t, l.UndrainTarget("app", "a"))
	assert.True(t, targetStats(t, l, "app", "a").Serving)
}

// fixedSource discovers a fixed list of targets.
type fixedSource []Discovered

func (s fixedSource) Targets(context.Context) ([]Discovered, error) { return s, nil }
func (s fixedSource) String() string                                { return "fixed" }

func TestDrainDiscoveredTargetAndReconfigure(t *testing.T) {
	a, b := newEchoTarget(t, "a"), newEchoTarget(t, "b")
	src := fixedSource{{Addr: a.addr, Weight: 1}, {Addr: b.addr, Weight: 1}}
	group := func() Option {
		return WithTargetGroup("app", TCP, WithDiscovery(src, time.Hour), WithoutHealthCheck(), WithDeregistrationDelay(time.Hour))
	}
	listener := WithListener("tcp", TCP, "127.0.0.1:0", WithForwardTo("app"))
	l := startLB(t, listener, group())
	front := addr(t, l, "tcp")
	require.Eventually(t, func() bool { return len(targetStatsAll(t, l, "app")) == 2 }, 10*time.Second, 10*time.Millisecond)

	require.NoError(t, l.DrainTarget("app", a.addr), "a discovered target can be drained by its ID (its address)")
	assert.Equal(t, map[string]int{"b": 6}, nextFrom(t, front, 6))

	// A Reconfigure replaces the configuration, operator settings too.
	require.NoError(t, l.Reconfigure(listener, group()))
	assert.False(t, targetStats(t, l, "app", a.addr).Drained)
	assert.Equal(t, map[string]int{"a": 3, "b": 3}, nextFrom(t, front, 6))
}

// targetStatsAll returns the IDs of a group's targets in Stats.
func targetStatsAll(t *testing.T, l *LoadBalancer, group string) []string {
	t.Helper()
	var ids []string
	for _, g := range l.Stats().Groups {
		if g.Name == group {
			for _, ts := range g.Targets {
				ids = append(ids, ts.ID)
			}
		}
	}
	slices.Sort(ids)
	return ids
}

func TestWaitServingAndChecked(t *testing.T) {
	a := newEchoTarget(t, "a")
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	down := closed.Addr().String()
	closed.Close()
	slow := fastHealth
	slow.Interval, slow.Timeout = 200*time.Millisecond, 100*time.Millisecond
	l := startLB(t,
		WithListener("tcp", TCP, "127.0.0.1:0", WithForwardTo("app")),
		WithTargetGroup("app", TCP, WithTarget(a.addr, WithTargetID("a")), WithTarget(down, WithTargetID("down")), WithHealthCheck(slow)),
		WithTargetGroup("unchecked", TCP, WithTarget(a.addr, WithTargetID("a")), WithoutHealthCheck()),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, l.WaitChecked(ctx))
	for _, id := range []string{"a", "down"} {
		assert.NotEmpty(t, targetDiagnosis(t, l, "app", id).Health.Results, "%s was checked", id)
	}
	require.NoError(t, l.WaitServing(ctx, "app", ""), "a passed its first check")
	require.NoError(t, l.WaitServing(ctx, "app", "a"))
	require.NoError(t, l.WaitServing(ctx, "unchecked", ""))

	short, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	err = l.WaitServing(short, "app", "down")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), "target down of group app: unhealthy:", "the error says why")
	err = l.WaitServing(short, "nope", "")
	assert.Contains(t, err.Error(), "no target group nope")
}

func TestWarmupChecksBeforeListenersOpen(t *testing.T) {
	a := newEchoTarget(t, "a")
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	down := closed.Addr().String()
	closed.Close()
	hc := HealthCheck{Interval: time.Hour, Timeout: time.Second} // only the first check happens in the test
	l, err := New(WithWarmup(10*time.Second),
		WithListener("tcp", TCP, "127.0.0.1:0", WithForwardTo("app")),
		WithTargetGroup("app", TCP, WithTarget(a.addr, WithTargetID("a")), WithTarget(down, WithTargetID("down")), WithHealthCheck(hc)),
	)
	require.NoError(t, err)
	require.NoError(t, l.Start())
	defer l.Close()
	// Start returned: every target was checked, and the first client is
	// served by the healthy one at once.
	assert.NotEmpty(t, targetDiagnosis(t, l, "app", "a").Health.Results)
	assert.NotEmpty(t, targetDiagnosis(t, l, "app", "down").Health.Results)
	assert.Equal(t, "a", dialAsk(t, addr(t, l, "tcp")))
}
