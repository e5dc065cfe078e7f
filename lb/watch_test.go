package lb

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lbkit/lbkit/healthcheck"
	"github.com/lbkit/lbkit/sticky"
)

// fakeWatcher is a Watcher the test drives: each Watch call registers its
// push function and waits until its context ends or the test ends it.
type fakeWatcher struct {
	watches chan *fakeWatch // one per Watch call
}

type fakeWatch struct {
	push func(Update)
	end  chan error // the test sends what Watch returns
}

func newFakeWatcher() *fakeWatcher { return &fakeWatcher{watches: make(chan *fakeWatch, 10)} }

func (f *fakeWatcher) Targets(context.Context) ([]Discovered, error) {
	return nil, errors.New("fake watcher: not polled")
}

func (f *fakeWatcher) String() string { return "fake watcher" }

func (f *fakeWatcher) Watch(ctx context.Context, push func(Update)) error {
	w := &fakeWatch{push: push, end: make(chan error, 1)}
	f.watches <- w
	select {
	case <-ctx.Done():
		return ctx.Err()
	case err := <-w.end:
		return err
	}
}

// next returns the next Watch call.
func (f *fakeWatcher) next(t *testing.T) *fakeWatch {
	t.Helper()
	select {
	case w := <-f.watches:
		return w
	case <-time.After(10 * time.Second):
		t.Fatal("the group did not call Watch")
		return nil
	}
}

func weightOf(t *testing.T, g *group, id string) int {
	t.Helper()
	tgt, ok := g.bal.Target(id)
	require.True(t, ok, "target %s is in the balancer", id)
	return tgt.Weight
}

// TestWatcherPushesApplyAtOnce: a push is in the balancer when push
// returns; a draining target drains like a removed one and is not
// registered again while it stays draining; serving again undrains it.
func TestWatcherPushesApplyAtOnce(t *testing.T) {
	a, b := newTCPTarget(t), newTCPTarget(t)
	fw := newFakeWatcher()
	g := startGroup(t, nil, WithoutHealthCheck(), WithDeregistrationDelay(time.Hour), WithDiscovery(fw, time.Hour),
		WithStickiness(Stickiness{Kind: SourceIP}))
	w := fw.next(t)

	w.push(Update{Targets: []Discovered{{Addr: a.addr}, {Addr: b.addr, Weight: 5}}})
	assert.Equal(t, sorted(a.addr, b.addr), g.memberIDs(), "applied before push returned, no poll")
	assert.Equal(t, 5, weightOf(t, g, b.addr))

	w.push(Update{Targets: []Discovered{{Addr: a.addr}, {Addr: b.addr, Weight: 5, State: Draining}}})
	assert.Equal(t, 0, weightOf(t, g, b.addr), "draining: no new traffic")
	assert.Equal(t, sticky.Draining, g.targetState(b.addr), "draining: sticky sessions continue")
	assert.Equal(t, map[string]int{a.addr: 6}, pickIDs(t, g, 6))
	g.mu.Lock()
	until := g.members[b.addr].drainUntil
	g.mu.Unlock()
	assert.False(t, until.IsZero(), "the group's deregistration delay runs")

	w.push(Update{Targets: []Discovered{{Addr: a.addr}, {Addr: b.addr, Weight: 5, State: Draining}}})
	g.mu.Lock()
	assert.Equal(t, until, g.members[b.addr].drainUntil, "still draining: the delay is not restarted")
	g.mu.Unlock()

	w.push(Update{Targets: []Discovered{{Addr: a.addr}, {Addr: b.addr, Weight: 5}}})
	assert.Equal(t, 5, weightOf(t, g, b.addr), "serving again: undrained")
	assert.Equal(t, sticky.Usable, g.targetState(b.addr))

	w.push(Update{Targets: []Discovered{{Addr: a.addr}}})
	assert.Equal(t, 0, weightOf(t, g, b.addr), "vanished: drains like draining")
}

// TestWatcherDrainedTargetIsNotRegisteredAgain: a target that drained to
// the end while the source still lists it as draining stays out.
func TestWatcherDrainedTargetIsNotRegisteredAgain(t *testing.T) {
	a, b := newTCPTarget(t), newTCPTarget(t)
	fw := newFakeWatcher()
	g := startGroup(t, nil, WithoutHealthCheck(), WithDeregistrationDelay(-1), WithDiscovery(fw, time.Hour))
	w := fw.next(t)
	w.push(Update{Targets: []Discovered{{Addr: a.addr}, {Addr: b.addr}}})
	w.push(Update{Targets: []Discovered{{Addr: a.addr}, {Addr: b.addr, State: Draining}}})
	assert.Equal(t, []string{a.addr}, g.memberIDs(), "no delay: removed at once")
	w.push(Update{Targets: []Discovered{{Addr: a.addr}, {Addr: b.addr, State: Draining}}})
	assert.Equal(t, []string{a.addr}, g.memberIDs(), "a draining target is never registered")
}

// TestWatcherDisconnectKeepsLastList: an Update with Err and a Watch that
// ends both keep the last list, Diagnose says so, and the watch starts
// again by itself.
func TestWatcherDisconnectKeepsLastList(t *testing.T) {
	a, b := newTCPTarget(t), newTCPTarget(t)
	fw := newFakeWatcher()
	l := startLB(t,
		WithListener("front", TCP, "127.0.0.1:0", WithForwardTo("web")),
		WithTargetGroup("web", TCP, WithoutHealthCheck(), WithDiscovery(fw, 20*time.Millisecond)))
	w := fw.next(t)
	w.push(Update{Targets: []Discovered{{Addr: a.addr, Zone: "zone-a"}, {Addr: b.addr}}})
	d := l.Diagnose(Query{})
	require.Len(t, d.Groups, 1)
	assert.Regexp(t, `^fake watcher \(watch\): 2 targets, last change \d\d:\d\d:\d\d$`, d.Groups[0].Discovery)
	assert.Equal(t, "zone-a", d.Groups[0].Targets[0].Zone+d.Groups[0].Targets[1].Zone)

	w.push(Update{Err: errors.New("connection refused")})
	d = l.Diagnose(Query{})
	assert.Regexp(t, `^fake watcher \(watch\): 2 targets; watch disconnected since \d\d:\d\d:\d\d, serving the last 2 targets$`, d.Groups[0].Discovery)
	assert.Contains(t, d.String(), "connection refused (serving the last good answer: 2 targets)")
	assert.True(t, d.Groups[0].OK)

	w.end <- errors.New("stream reset")
	w2 := fw.next(t) // started again after the back-off, which the interval bounds
	d = l.Diagnose(Query{})
	assert.Contains(t, d.Groups[0].Reasons[0], "watch disconnected: stream reset")
	assert.Len(t, d.Groups[0].Targets, 2, "still the last list")
	w.push(Update{Targets: nil}) // the ended watch's late call is ignored
	assert.Len(t, l.Diagnose(Query{}).Groups[0].Targets, 2)

	w2.push(Update{Targets: []Discovered{{Addr: a.addr}}})
	d = l.Diagnose(Query{})
	assert.Empty(t, d.Groups[0].Reasons, "a good answer clears the failure")
	assert.Regexp(t, `^fake watcher \(watch\): 1 targets, last change`, d.Groups[0].Discovery)
}

// TestWatcherStopsWithGroup: closing the group cancels the watch; the
// watch's goroutine is gone (goleak checks).
func TestWatcherStopsWithGroup(t *testing.T) {
	fw := newFakeWatcher()
	g := startGroup(t, nil, WithoutHealthCheck(), WithDiscovery(fw, time.Hour))
	w := fw.next(t)
	g.close()
	w.push(Update{Targets: []Discovered{{Addr: "127.0.0.1:1"}}})
	assert.Empty(t, g.memberIDs(), "a push after the end is ignored")
}

// TestPriorityFailover: new traffic goes to the best priority with a
// serving target, fails over when its last target fails, and comes back.
func TestPriorityFailover(t *testing.T) {
	a, b, c := newTCPTarget(t), newTCPTarget(t), newTCPTarget(t)
	fw := newFakeWatcher()
	g := startGroup(t, nil, WithoutHealthCheck(), WithDiscovery(fw, time.Hour), WithStickiness(Stickiness{Kind: SourceIP}))
	w := fw.next(t)
	w.push(Update{Targets: []Discovered{{Addr: a.addr, Priority: 0}, {Addr: b.addr, Priority: 1}, {Addr: c.addr, Priority: 1}}})
	assert.Equal(t, map[string]int{a.addr: 6}, pickIDs(t, g, 6), "priority 0 takes everything")
	assert.Equal(t, sticky.Draining, g.targetState(b.addr), "standby targets keep their sessions, take no new ones")

	down := func(id string, serving bool) {
		st := healthcheck.Unhealthy
		if serving {
			st = healthcheck.Healthy
		}
		g.healthChanged(healthcheck.Change{Target: healthcheck.Target{ID: id}, New: healthcheck.Condition{State: st}})
	}
	down(a.addr, false)
	assert.Equal(t, map[string]int{b.addr: 3, c.addr: 3}, pickIDs(t, g, 6), "priority 1 takes over")
	assert.Equal(t, sticky.Usable, g.targetState(b.addr))

	down(a.addr, true)
	assert.Equal(t, map[string]int{a.addr: 6}, pickIDs(t, g, 6), "priority 0 back")

	w.push(Update{Targets: []Discovered{{Addr: a.addr, State: Draining}, {Addr: b.addr, Priority: 1}, {Addr: c.addr, Priority: 1}}})
	assert.Equal(t, map[string]int{b.addr: 3, c.addr: 3}, pickIDs(t, g, 6), "a draining target does not hold its priority")
}

// TestPriorityDiagnose: standby targets say why they get nothing.
func TestPriorityDiagnose(t *testing.T) {
	a, b := newTCPTarget(t), newTCPTarget(t)
	fw := newFakeWatcher()
	g := startGroup(t, nil, WithoutHealthCheck(), WithDiscovery(fw, time.Hour))
	w := fw.next(t)
	w.push(Update{Targets: []Discovered{{Addr: a.addr, Zone: "z1"}, {Addr: b.addr, Zone: "z2", Priority: 2}}})
	g.mu.Lock()
	g.cfg.proto = TCP
	g.mu.Unlock()
	gd := g.diagnose()
	require.Len(t, gd.Targets, 2)
	for _, td := range gd.Targets {
		if td.ID == b.addr {
			assert.False(t, td.OK)
			assert.Equal(t, []string{"standby: priority 2; new traffic goes to priority 0, which has a serving target"}, td.Reasons)
			assert.Equal(t, 2, td.Priority)
		} else {
			assert.True(t, td.OK)
			assert.Equal(t, "z1", td.Zone)
		}
	}
}

func TestNormalizeWeights(t *testing.T) {
	for _, tc := range []struct{ in, want []int }{
		{[]int{0, -3, 1, 100}, []int{1, 1, 1, 100}},
		{[]int{200, 100, 1}, []int{100, 50, 1}},
		{[]int{4294967295, 1000, 3}, []int{100, 1, 1}},
		{[]int{1000, 999, 5}, []int{100, 100, 1}},
		{nil, nil},
	} {
		ds := make([]Discovered, len(tc.in))
		for i, w := range tc.in {
			ds[i].Weight = w
		}
		NormalizeWeights(ds)
		var got []int
		for _, d := range ds {
			got = append(got, d.Weight)
		}
		assert.Equal(t, tc.want, got, "in %v", tc.in)
	}
}

// TestWatcherNormalizesWeights: a pushed weight above 100 is scaled.
func TestWatcherNormalizesWeights(t *testing.T) {
	a, b := newTCPTarget(t), newTCPTarget(t)
	fw := newFakeWatcher()
	g := startGroup(t, nil, WithoutHealthCheck(), WithDiscovery(fw, time.Hour))
	w := fw.next(t)
	in := []Discovered{{Addr: a.addr, Weight: 1000}, {Addr: b.addr, Weight: 250}}
	w.push(Update{Targets: in})
	assert.Equal(t, 100, weightOf(t, g, a.addr))
	assert.Equal(t, 25, weightOf(t, g, b.addr))
	assert.Equal(t, 1000, in[0].Weight, "the source's slice is not changed")
}
