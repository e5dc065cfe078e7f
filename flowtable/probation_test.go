package flowtable

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestUnrepliedFlowsExpireEarly: a UDP flow that its target never answered
// expires after the unreplied timeout; one answered and used 2 s later keeps
// the full idle timeout; one answered once only (a query and its answer)
// still counts as unreplied.
func TestUnrepliedFlowsExpireEarly(t *testing.T) {
	var expired []Key
	var mu sync.Mutex
	tb, clk := newManual[int](t, WithUnrepliedTimeout(UDP, 30*time.Second),
		WithOnExpire(func(k Key, _ int) { mu.Lock(); expired = append(expired, k); mu.Unlock() }))
	refs := map[string]Ref[int]{}
	for i, name := range []string{"silent", "oneshot", "stream"} {
		_, _, err := tb.LoadOrCreateRef(key4(UDP, i), func(r Ref[int]) (int, error) { refs[name] = r; return i, nil })
		require.NoError(t, err)
	}
	tcp := key4(TCP, 9)
	_, _, err := tb.LoadOrCreate(tcp, value(9))
	require.NoError(t, err)
	assert.Equal(t, 3, tb.Stats().Unreplied, "UDP flows start unreplied; TCP has no unreplied timeout")

	refs["oneshot"].Replied()
	refs["stream"].Replied()
	tb.Sweep(clk.Advance(2 * time.Second))
	require.True(t, refs["stream"].Touch(), "traffic 2 s after the first answer: two-way")
	// 30 s after its last traffic an unreplied flow is still there; a
	// second later (the sweep interval) it is gone.
	for range 28 {
		tb.Sweep(clk.Advance(time.Second))
	}
	assert.Empty(t, expired)
	tb.Sweep(clk.Advance(time.Second))
	assert.ElementsMatch(t, []Key{key4(UDP, 0), key4(UDP, 1)}, expired)
	_, ok := tb.Lookup(key4(UDP, 2))
	assert.True(t, ok, "the two-way flow keeps its 120 s")
	assert.False(t, refs["silent"].Touch(), "a Ref of an expired flow finds nothing")
	assert.Equal(t, 0, tb.Stats().Unreplied, "the sweep took the two-way flow off probation")
	_, ok = tb.Lookup(tcp)
	assert.True(t, ok)
}

// TestFullTableEvictsUnrepliedNeverTwoWay: a full table makes room for a
// new flow by evicting an unreplied one, never a two-way flow nor a TCP
// flow; with none left to evict it refuses, as before.
func TestFullTableEvictsUnrepliedNeverTwoWay(t *testing.T) {
	var evicted []int
	tb, clk := newManual[int](t, WithMaxFlows(10), WithShards(4), WithUnrepliedTimeout(UDP, 30*time.Second),
		WithOnExpire(func(_ Key, v int) { evicted = append(evicted, v) }))
	var real []Ref[int]
	for i := range 4 {
		_, _, err := tb.LoadOrCreateRef(key4(UDP, i), func(r Ref[int]) (int, error) { real = append(real, r); return i, nil })
		require.NoError(t, err)
		real[i].Replied()
	}
	for i := range 3 {
		_, _, err := tb.LoadOrCreate(key4(TCP, 100+i), value(100+i))
		require.NoError(t, err)
	}
	tb.Sweep(clk.Advance(2 * time.Second))
	for _, r := range real {
		require.True(t, r.Touch())
	}
	// 3 places left; 20 spoofed flows come: 17 of them evict an earlier one.
	for i := range 20 {
		_, created, err := tb.LoadOrCreate(key4(UDP, 1000+i), value(1000+i))
		require.NoError(t, err, "spoofed flow %d", i)
		require.True(t, created)
	}
	require.Len(t, evicted, 17)
	for _, v := range evicted {
		assert.GreaterOrEqual(t, v, 1000, "only unreplied flows are evicted")
	}
	st := tb.Stats()
	assert.Equal(t, uint64(17), st.UDP.EvictedFlowCount)
	assert.Equal(t, 10, tb.Len())
	assert.Equal(t, st.Total.NewFlowCount, st.Total.ActiveFlowCount+st.Total.EvictedFlowCount)
	for i := range 4 {
		_, ok := tb.Lookup(key4(UDP, i))
		assert.True(t, ok, "two-way flow %d kept", i)
	}
	// Only two-way and TCP flows left besides the 3 newest spoofed ones:
	// evict those, then a new flow is refused.
	for range 3 {
		require.True(t, tb.Evict())
	}
	require.False(t, tb.Evict(), "nothing unreplied left")
	for i := range 3 {
		_, _, err := tb.LoadOrCreate(key4(UDP, 2000+i), value(2000+i))
		require.NoError(t, err)
	}
	// Again 3 unreplied flows among the two-way and TCP ones: they go,
	// and the TCP flows, with no unreplied timeout, never do.
	require.True(t, tb.Evict())
	require.True(t, tb.Evict())
	require.True(t, tb.Evict())
	_, _, err := tb.LoadOrCreate(key4(UDP, 3000), value(3000))
	require.NoError(t, err, "room made by the evictions")
	for i := range 3 {
		_, ok := tb.Lookup(key4(TCP, 100+i))
		assert.True(t, ok, "TCP flow %d kept", i)
	}
	checkInvariants(t, tb, "after evictions")
}

// TestFullTableRefusesWithoutProbation: with no unreplied timeout (the
// flowtable default) nothing is ever evicted: a full table refuses.
func TestFullTableRefusesWithoutProbation(t *testing.T) {
	tb, _ := newManual[int](t, WithMaxFlows(2))
	for i := range 2 {
		_, _, err := tb.LoadOrCreate(key4(UDP, i), value(i))
		require.NoError(t, err)
	}
	_, _, err := tb.LoadOrCreate(key4(UDP, 2), value(2))
	require.ErrorIs(t, err, ErrFull)
	assert.False(t, tb.Evict())
	assert.Equal(t, uint64(1), tb.Stats().UDP.RejectedFlowCount)
}

// TestEvictionUnderRace: while spoofed flows flood a full table from many
// goroutines (each new one evicting an unreplied one), real two-way flows
// are looked up, touched and answered, and sweeps run; no two-way flow is
// ever evicted and the counters add up.
func TestEvictionUnderRace(t *testing.T) {
	const real, floods, perFlood = 200, 6, 3000
	var evictedReal atomic.Int32
	var callbacks atomic.Int64
	tb, clk := newManual[int](t, WithMaxFlows(real+300), WithShards(8), WithUnrepliedTimeout(UDP, 30*time.Second),
		WithOnExpire(func(_ Key, v int) {
			callbacks.Add(1)
			if v < real {
				evictedReal.Add(1)
			}
		}))
	refs := make([]Ref[int], real)
	for i := range real {
		_, _, err := tb.LoadOrCreateRef(key4(UDP, i), func(r Ref[int]) (int, error) { refs[i] = r; return i, nil })
		require.NoError(t, err)
		refs[i].Replied()
	}
	now := clk.Advance(2 * time.Second)
	tb.Sweep(now)
	for _, r := range refs {
		require.True(t, r.Touch())
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range floods {
		wg.Go(func() {
			for i := range perFlood {
				v := real + g*perFlood + i
				if _, _, err := tb.LoadOrCreate(key4(UDP, 100_000+v), value(v)); err != nil {
					panic(err) // a full table always has an unreplied flow to evict here
				}
			}
		})
	}
	var others sync.WaitGroup
	others.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			refs[i%real].Touch()
			refs[(i+7)%real].Replied()
			if _, ok := tb.Lookup(key4(UDP, i%real)); !ok {
				panic("a two-way flow disappeared")
			}
		}
	})
	others.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				tb.Sweep(now) // the clock stands: nothing is due, but lists are walked
			}
		}
	})
	wg.Wait()
	close(stop)
	others.Wait()
	assert.Zero(t, evictedReal.Load(), "two-way flows evicted")
	st := tb.Stats().UDP
	assert.Equal(t, uint64(callbacks.Load()), st.EvictedFlowCount)
	assert.Equal(t, st.NewFlowCount, st.ActiveFlowCount+st.EvictedFlowCount)
	assert.Equal(t, uint64(real+300), st.ActiveFlowCount)
	checkInvariants(t, tb, "after the flood")
}

// TestEvictionTakesTheIdlestUnrepliedFlow: among unreplied flows, the one
// whose real deadline comes first is evicted: a flow refreshed since it was
// made is not taken for an idle one made later.
func TestEvictionTakesTheIdlestUnrepliedFlow(t *testing.T) {
	var evicted []int
	tb, clk := newManual[int](t, WithMaxFlows(2), WithShards(1), WithUnrepliedTimeout(UDP, 30*time.Second),
		WithOnExpire(func(_ Key, v int) { evicted = append(evicted, v) }))
	_, _, err := tb.LoadOrCreate(key4(UDP, 1), value(1)) // deadline bucket 32
	require.NoError(t, err)
	tb.Sweep(clk.Advance(4 * time.Second))
	_, _, err = tb.LoadOrCreate(key4(UDP, 2), value(2)) // deadline 36
	require.NoError(t, err)
	tb.Sweep(clk.Advance(5 * time.Second))
	_, ok := tb.Lookup(key4(UDP, 1)) // real deadline now 41, still in bucket 32
	require.True(t, ok)
	_, _, err = tb.LoadOrCreate(key4(UDP, 3), value(3))
	require.NoError(t, err)
	assert.Equal(t, []int{2}, evicted, "the idle flow goes, not the refreshed one")
	checkInvariants(t, tb, "after eviction")
}

// TestOnEvictSeparatesEvictionsFromExpiry: with WithOnEvict, a flow evicted
// for a new one goes to its function and one that idles out to
// WithOnExpire's, so that an owner can log each as what it was.
func TestOnEvictSeparatesEvictionsFromExpiry(t *testing.T) {
	var expired, evicted []int
	tb, clk := newManual[int](t, WithMaxFlows(2), WithShards(1), WithUnrepliedTimeout(UDP, 30*time.Second),
		WithOnExpire(func(_ Key, v int) { expired = append(expired, v) }),
		WithOnEvict(func(_ Key, v int) { evicted = append(evicted, v) }))
	for i := range 3 { // the third evicts the first
		_, _, err := tb.LoadOrCreate(key4(UDP, i), value(i))
		require.NoError(t, err)
	}
	assert.Len(t, evicted, 1, "the third flow evicted one")
	assert.Empty(t, expired)
	require.True(t, tb.Evict())
	assert.Len(t, evicted, 2)
	for range 32 {
		tb.Sweep(clk.Advance(time.Second))
	}
	assert.Len(t, expired, 1, "the last one idles out")
	assert.Len(t, evicted, 2, "and is not reported as evicted")
	assert.ElementsMatch(t, []int{0, 1, 2}, append(append([]int{}, evicted...), expired...))

	_, err := New[int](WithOnEvict(func(Key, string) {}))
	assert.ErrorIs(t, err, ErrInvalidOption, "a callback of another value type")
}
