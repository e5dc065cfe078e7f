package proxy

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/lbkit/lbkit/balancer"
	"github.com/lbkit/lbkit/sticky"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// mapPolicy is a minimal sticky.Policy: source IP → target ID.
type mapPolicy struct {
	mu sync.Mutex // guards m
	m  map[netip.Addr]string
}

func (p *mapPolicy) Lookup(r sticky.Request) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	id, ok := p.m[r.Source]
	return id, ok
}

func (p *mapPolicy) Remember(r sticky.Request, id string, _ sticky.Response) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.m[r.Source] = id
}

func testUpstream(t *testing.T, n int) *Upstream {
	t.Helper()
	var ts []balancer.Target
	for i := range n {
		ts = append(ts, balancer.Target{ID: string(rune('a' + i)), Addr: "127.0.0.1:1", Weight: 1})
	}
	b, err := balancer.New(balancer.WithTargets(ts...))
	require.NoError(t, err)
	return &Upstream{Name: "web", Balancer: b}
}

func TestUpstreamChooseSticky(t *testing.T) {
	u := testUpstream(t, 3)
	pol := &mapPolicy{m: map[netip.Addr]string{}}
	u.SetSticky(pol)
	client := balancer.PickInfo{Source: netip.MustParseAddr("192.0.2.1")}

	c, err := u.Choose(client, nil)
	require.NoError(t, err)
	assert.False(t, c.Sticky)
	u.Remember(client, nil, c, nil)
	for range 5 {
		again, err := u.Choose(client, nil)
		require.NoError(t, err)
		assert.True(t, again.Sticky)
		assert.Equal(t, c.Target.ID, again.Target.ID)
	}

	// Excluded (it just failed): the balancer picks another.
	info := client
	info.Exclude = []string{c.Target.ID}
	other, err := u.Choose(info, nil)
	require.NoError(t, err)
	assert.False(t, other.Sticky)
	assert.NotEqual(t, c.Target.ID, other.Target.ID)

	// Gone from the balancer: the balancer picks.
	require.NoError(t, u.Balancer.Remove(c.Target.ID))
	moved, err := u.Choose(client, nil)
	require.NoError(t, err)
	assert.False(t, moved.Sticky)
	assert.NotEqual(t, c.Target.ID, moved.Target.ID)

	u.SetSticky(nil)
	assert.Nil(t, u.Sticky())
}

func TestUpstreamNoTarget(t *testing.T) {
	u := testUpstream(t, 1)
	require.NoError(t, u.Balancer.SetHealth("a", balancer.Unhealthy))
	_, err := u.Choose(balancer.PickInfo{}, nil)
	require.ErrorIs(t, err, balancer.ErrNoTarget)
	assert.EqualError(t, err, `proxy: target group "web": balancer: no healthy target with weight > 0`)
}

type closer struct{ closed chan struct{} }

func newCloser() *closer { return &closer{closed: make(chan struct{})} }

func (c *closer) Close() error { close(c.closed); return nil }

func (c *closer) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

func TestUpstreamDrain(t *testing.T) {
	u := testUpstream(t, 2)
	st := u.state("a")
	done := newCloser()
	release := st.track(done)
	release() // ended before the drain: never closed
	open := newCloser()
	st.track(open)
	other := newCloser()
	u.state("b").track(other)

	u.Drain("a", time.Hour)
	assert.False(t, open.isClosed(), "closed before the deadline")
	assert.False(t, u.Stats().Targets[0].DrainDeadline.IsZero())
	u.Undrain("a")
	assert.True(t, u.Stats().Targets[0].DrainDeadline.IsZero())

	u.Drain("a", 10*time.Millisecond)
	select {
	case <-open.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("open connection not closed at the drain deadline")
	}
	assert.False(t, done.isClosed())
	assert.False(t, other.isClosed(), "another target's connection was closed")

	late := newCloser()
	st.track(late) // a sticky session reaching it after the deadline
	assert.True(t, late.isClosed())

	now := newCloser()
	u.state("b").track(now)
	u.Drain("b", 0)
	assert.True(t, now.isClosed())
	assert.True(t, other.isClosed())
}

func TestUpstreamStatsForgetsDepartedTargets(t *testing.T) {
	u := testUpstream(t, 2)
	u.state("a").conns.Add(3)
	u.state("b").observeStatus(&u.state("b").hot[0], 503, 20*time.Millisecond)
	u.state("b").observeStatus(&u.state("b").hot[0], 200, 40*time.Millisecond)
	st := u.Stats()
	require.Len(t, st.Targets, 2)
	assert.Equal(t, uint64(3), st.Targets[0].Connections)
	assert.Equal(t, StatusClasses{0, 1, 0, 0, 1}, st.Targets[1].Status)
	assert.Equal(t, 30*time.Millisecond, st.Targets[1].AvgResponseTime)

	require.NoError(t, u.Balancer.Remove("a"))
	assert.Len(t, u.Stats().Targets, 2, "reported once more after leaving")
	assert.Len(t, u.Stats().Targets, 1, "then forgotten")
}

// TestUpstreamDrainMovedLater: a drain whose deadline moved later must not
// close at the old deadline, even when the old timer fired just before the
// move and its callback ran just after.
func TestUpstreamDrainMovedLater(t *testing.T) {
	u := testUpstream(t, 1)
	var fires []func()
	u.afterFunc = func(_ time.Duration, f func()) *time.Timer {
		fires = append(fires, f)
		return time.NewTimer(time.Hour) // stopped by the next Drain; never fires in the test
	}
	open := newCloser()
	u.state("a").track(open)
	u.Drain("a", time.Millisecond)
	u.Drain("a", time.Hour) // the move: Stop could not catch the old timer
	require.Len(t, fires, 2)
	fires[0]() // the old timer's callback runs late
	assert.False(t, open.isClosed(), "closed at the old deadline after it moved")
	fires[1]()
	assert.True(t, open.isClosed(), "closed at the new deadline")
}

func TestUpstreamOnResponse(t *testing.T) {
	u := testUpstream(t, 1)
	type seen struct {
		id     string
		status int
		d      time.Duration
	}
	var got []seen
	u.OnResponse = func(id string, status int, d time.Duration) { got = append(got, seen{id, status, d}) }
	u.state("a").observeStatus(&u.state("a").hot[0], 204, 7*time.Millisecond)
	assert.Equal(t, []seen{{"a", 204, 7 * time.Millisecond}}, got)
	assert.Zero(t, testing.AllocsPerRun(100, func() { u.state("a").observeStatus(&u.state("a").hot[0], 200, time.Millisecond) }))
}
