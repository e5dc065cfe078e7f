package flowtable

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNewListsEveryInvalidOption(t *testing.T) {
	_, err := New[int](
		WithMaxFlows(0),
		WithMaxFlowsPerSource(-1),
		WithIdleTimeout(TCP, 0),
		WithIdleTimeout(UDP, -time.Second),
		WithIdleTimeout(Proto(1), time.Second),
		WithSweepInterval(time.Microsecond),
		WithShards(3),
		WithClock(nil),
		WithOnExpire(func(Key, string) {}),
	)
	require.ErrorIs(t, err, ErrInvalidOption)
	for _, want := range []string{
		"max flows 0 is below 1",
		"max flows per source -1 is negative",
		"tcp idle timeout 0s is not positive",
		"udp idle timeout -1s is not positive",
		"protocol proto(1)",
		"sweep interval 1µs is below 1ms",
		"shards 3 is not a power of two",
		"clock is nil",
		"expiry callback is a func(flowtable.Key, string), want func(flowtable.Key, int)",
	} {
		assert.Contains(t, err.Error(), want)
	}
	assert.Len(t, strings.Split(err.Error(), "\n"), 9, "one line per problem:\n%v", err)
}

func TestTimeoutTooLongForInterval(t *testing.T) {
	_, err := New[int](WithSweepInterval(time.Millisecond), WithIdleTimeout(TCP, 1<<32*time.Millisecond))
	require.ErrorIs(t, err, ErrInvalidOption)
	assert.Contains(t, err.Error(), "tcp idle timeout")
	tb, _ := newManual[int](t, WithSweepInterval(time.Millisecond))
	require.ErrorIs(t, tb.SetIdleTimeout(UDP, 1<<32*time.Millisecond), ErrInvalidOption)
	require.ErrorIs(t, tb.SetIdleTimeout(UDP, 0), ErrInvalidOption)
	require.ErrorIs(t, tb.SetIdleTimeout(Proto(47), time.Second), ErrInvalidOption)
	require.ErrorIs(t, tb.SetFlowTimeout(key4(TCP, 1), -time.Second), ErrInvalidOption)
	require.NoError(t, tb.SetIdleTimeout(UDP, (1<<32-1)*time.Millisecond))
}

func TestDefaults(t *testing.T) {
	tb, err := New[int](WithManualSweep())
	require.NoError(t, err)
	defer tb.Close()
	assert.Equal(t, 350*time.Second, tb.IdleTimeout(TCP))
	assert.Equal(t, 120*time.Second, tb.IdleTimeout(UDP))
	assert.Zero(t, tb.IdleTimeout(Proto(1)))
	st := tb.Stats()
	assert.Equal(t, DefaultMaxFlows, st.MaxFlows)
	assert.Zero(t, st.MaxFlowsPerSource)
	assert.Equal(t, defaultShards(1), 16)
	assert.Equal(t, defaultShards(2), 32)
	assert.Equal(t, defaultShards(6), 128)
	assert.Equal(t, defaultShards(1000), 1024)
	assert.Equal(t, 1<<bitsLen(len(tb.shards)-1), len(tb.shards), "shards must be a power of two")
}

func bitsLen(n int) int {
	l := 0
	for ; n > 0; n >>= 1 {
		l++
	}
	return l
}

func TestLookupCreateDelete(t *testing.T) {
	tb, _ := newManual[string](t)
	k := key4(TCP, 7)
	_, ok := tb.Lookup(k)
	require.False(t, ok)
	v, created, err := tb.LoadOrCreate(k, value("a"))
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, "a", v)
	v, created, err = tb.LoadOrCreate(k, func() (string, error) { panic("create called for an existing flow") })
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, "a", v)
	v, ok = tb.Lookup(k)
	require.True(t, ok)
	require.Equal(t, "a", v)
	require.Equal(t, 1, tb.Len())

	v, ok = tb.Delete(k)
	require.True(t, ok)
	require.Equal(t, "a", v)
	_, ok = tb.Delete(k)
	require.False(t, ok)
	_, ok = tb.Lookup(k)
	require.False(t, ok)

	// A nil create makes a flow with the zero value.
	v, created, err = tb.LoadOrCreate(k, nil)
	require.NoError(t, err)
	require.True(t, created)
	require.Empty(t, v)
	st := tb.Stats()
	require.Equal(t, Counters{NewFlowCount: 2, ActiveFlowCount: 1, DeletedFlowCount: 1}, st.TCP)
	require.Equal(t, st.TCP, st.Total)
	require.Zero(t, st.UDP)
}

func TestInvalidKeys(t *testing.T) {
	tb, _ := newManual[int](t)
	for _, k := range []Key{
		{},
		{Proto: 1, Src: dst4, Dst: dst4},
		{Proto: TCP, Dst: dst4},
		{Proto: UDP, Src: dst4},
		{Proto: UDP, Src: netip.AddrPortFrom(netip.Addr{}, 80), Dst: dst4},
	} {
		_, _, err := tb.LoadOrCreate(k, value(1))
		require.ErrorIs(t, err, ErrInvalidKey, "%v", k)
		_, ok := tb.Lookup(k)
		require.False(t, ok)
		_, ok = tb.Delete(k)
		require.False(t, ok)
		require.ErrorIs(t, tb.SetFlowTimeout(k, time.Second), ErrNoFlow)
	}
	require.Zero(t, tb.Stats().Total)
}

func TestCapacityRefusesAndCountsExactly(t *testing.T) {
	tb, _ := newManual[int](t, WithMaxFlows(3))
	for i := range 3 {
		p := []Proto{TCP, UDP, TCP}[i]
		_, _, err := tb.LoadOrCreate(key4(p, i), value(i))
		require.NoError(t, err)
	}
	calls := 0
	create := func() (int, error) { calls++; return 99, nil }
	for i := range 5 {
		_, _, err := tb.LoadOrCreate(key4(TCP, 10+i), create)
		require.ErrorIs(t, err, ErrFull)
	}
	_, _, err := tb.LoadOrCreate(key6(UDP, 1), create)
	require.ErrorIs(t, err, ErrFull)
	require.Zero(t, calls, "create must not run for a refused flow")

	// Established flows are untouched and still answer.
	for i := range 3 {
		p := []Proto{TCP, UDP, TCP}[i]
		v, created, err := tb.LoadOrCreate(key4(p, i), create)
		require.NoError(t, err)
		require.False(t, created)
		require.Equal(t, i, v)
	}
	st := tb.Stats()
	require.Equal(t, Counters{NewFlowCount: 2, ActiveFlowCount: 2, RejectedFlowCount: 5}, st.TCP)
	require.Equal(t, Counters{NewFlowCount: 1, ActiveFlowCount: 1, RejectedFlowCount: 1}, st.UDP)
	require.Equal(t, uint64(6), st.Total.RejectedFlowCount)
	require.Equal(t, 3, st.MaxFlows)

	// Room made by a delete is available at once.
	_, ok := tb.Delete(key4(UDP, 1))
	require.True(t, ok)
	_, created, err := tb.LoadOrCreate(key4(TCP, 10), create)
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, 1, calls)
	_, _, err = tb.LoadOrCreate(key4(TCP, 11), create)
	require.ErrorIs(t, err, ErrFull)
	require.Equal(t, uint64(6), tb.Stats().TCP.RejectedFlowCount)
}

func TestSourceLimitRefusesAndCountsExactly(t *testing.T) {
	tb, clk := newManual[int](t, WithMaxFlowsPerSource(2), WithMaxFlows(100), WithIdleTimeout(UDP, time.Second))
	a4 := netip.MustParseAddr("127.0.0.9")
	a6 := netip.MustParseAddr("2001:db8::9")
	mk := func(p Proto, a netip.Addr, port uint16) Key {
		d := dst4
		if a.Is6() {
			d = dst6
		}
		return Key{Proto: p, Src: netip.AddrPortFrom(a, port), Dst: d}
	}
	mapped := netip.AddrFrom16(a4.As16())
	require.NoError(t, create(tb, mk(TCP, a4, 1)))
	// The IPv4-mapped form is the same source.
	require.NoError(t, create(tb, mk(UDP, mapped, 2)))
	require.ErrorIs(t, create(tb, mk(TCP, a4, 3)), ErrSourceLimit)
	require.ErrorIs(t, create(tb, mk(UDP, mapped, 4)), ErrSourceLimit)
	require.ErrorIs(t, create(tb, mk(UDP, a4, 5)), ErrSourceLimit)
	// Other sources are not affected.
	require.NoError(t, create(tb, mk(TCP, a6, 1)))
	require.NoError(t, create(tb, mk(TCP, a6, 2)))
	require.ErrorIs(t, create(tb, mk(TCP, a6, 3)), ErrSourceLimit)

	st := tb.Stats()
	require.Equal(t, Counters{NewFlowCount: 3, ActiveFlowCount: 3, RejectedSourceFlowCount: 2}, st.TCP)
	require.Equal(t, Counters{NewFlowCount: 1, ActiveFlowCount: 1, RejectedSourceFlowCount: 2}, st.UDP)
	require.Equal(t, 2, st.MaxFlowsPerSource)
	require.Equal(t, 4, tb.Len(), "per-source refusals take no capacity")

	// A delete frees the source's slot; so does an expiry.
	_, ok := tb.Delete(mk(TCP, a4, 1))
	require.True(t, ok)
	require.NoError(t, create(tb, mk(TCP, a4, 3)))
	require.ErrorIs(t, create(tb, mk(TCP, a4, 4)), ErrSourceLimit)
	tb.Sweep(clk.Advance(2 * time.Second)) // the UDP flow expires
	require.NoError(t, create(tb, mk(TCP, a4, 4)))
	require.Equal(t, 2, tb.src.count(addr16of(a4)))
	require.Equal(t, uint64(3), tb.Stats().TCP.RejectedSourceFlowCount)
}

func create[V any](tb *Table[V], k Key) error {
	var zero V
	_, _, err := tb.LoadOrCreate(k, value(zero))
	return err
}

// TestExpiryNeverEarlyWithinOneTick checks the expiry rule against real
// (fake-clock) time: with a sweep at every interval boundary, as the
// sweeper does, and lookups at arbitrary moments between sweeps, a flow is
// expired no sooner than its idle timeout after its last lookup and no later
// than its timeout, rounded up to whole intervals, plus one interval.
func TestExpiryNeverEarlyWithinOneTick(t *testing.T) {
	const iv = time.Second
	r := rand.New(rand.NewPCG(1, 2))
	for _, to := range []time.Duration{time.Second, 2500 * time.Millisecond, 120 * time.Second,
		350 * time.Second, 700 * time.Second, 3000 * time.Second} {
		for trial := range 8 {
			t.Run(fmt.Sprintf("timeout=%v/trial=%d", to, trial), func(t *testing.T) {
				var expiredAt time.Time
				var clk *fakeClock
				tb, clk := newManual[int](t, WithSweepInterval(iv), WithIdleTimeout(UDP, to),
					WithOnExpire(func(Key, int) { expiredAt = clk.Now() }))
				// now is always inside interval number tick, which
				// ends at boundary.
				boundary := epoch0.Add(iv)
				inInterval := func() { // advance to a random moment before the boundary
					if gap := boundary.Sub(clk.Now()); gap > 0 {
						clk.Advance(time.Duration(r.Int64N(int64(gap))))
					}
				}
				sweep := func() {
					clk.Advance(boundary.Sub(clk.Now()))
					tb.Sweep(clk.Now())
					boundary = boundary.Add(iv)
				}
				k := key4(UDP, trial)
				inInterval()
				require.NoError(t, create(tb, k))
				last := clk.Now()
				// Traffic for a while, a lookup in some intervals, then
				// silence; the flow may expire in either phase.
				traffic := r.IntN(3 * int(to/iv+1))
				for i := 0; expiredAt.IsZero() && i < traffic+int(to/iv)+3; i++ {
					if i < traffic && r.IntN(3) == 0 {
						inInterval()
						_, ok := tb.Lookup(k)
						require.True(t, ok, "flow gone without a callback")
						last = clk.Now()
					}
					sweep()
					if expiredAt.IsZero() {
						require.Equal(t, 1, tb.Len(), "flow gone without a callback")
					}
				}
				require.False(t, expiredAt.IsZero(), "flow not expired %v after its last lookup", clk.Now().Sub(last))
				require.Zero(t, tb.Len())
				idle := expiredAt.Sub(last)
				rounded := (to + iv - 1) / iv * iv
				assert.GreaterOrEqual(t, idle, to, "expired before its idle timeout")
				assert.LessOrEqual(t, idle, rounded+iv, "expired more than one interval late")
			})
		}
	}
}

// TestExpiryTickExact pins the expiry rule in ticks: a flow last seen at
// tick s with a timeout of T intervals is present at every sweep up to tick
// s+T and gone at the sweep of tick s+1+T.
func TestExpiryTickExact(t *testing.T) {
	var expired []int
	tb, clk := newManual[int](t, WithIdleTimeout(TCP, 4*time.Second), WithIdleTimeout(UDP, 3*time.Second),
		WithOnExpire(func(_ Key, v int) { expired = append(expired, v) }))
	_, _, err := tb.LoadOrCreate(key4(TCP, 1), value(1)) // seen at tick 1, due at tick 6
	require.NoError(t, err)
	_, _, err = tb.LoadOrCreate(key4(UDP, 2), value(2)) // seen at tick 1, due at tick 5
	require.NoError(t, err)
	for tick := 2; tick <= 4; tick++ {
		require.Zero(t, tb.Sweep(clk.Advance(time.Second)), "tick %d", tick)
	}
	_, ok := tb.Lookup(key4(TCP, 1)) // seen at tick 4, now due at tick 9
	require.True(t, ok)
	require.Equal(t, 1, tb.Sweep(clk.Advance(time.Second))) // tick 5
	require.Equal(t, []int{2}, expired)
	for tick := 6; tick <= 8; tick++ {
		require.Zero(t, tb.Sweep(clk.Advance(time.Second)), "tick %d", tick)
	}
	require.Equal(t, 1, tb.Sweep(clk.Advance(time.Second))) // tick 9
	require.Equal(t, []int{2, 1}, expired)
	require.Equal(t, Counters{NewFlowCount: 2, ExpiredFlowCount: 2}, tb.Stats().Total)
}

func TestIdleTimeoutChangeAppliesToNewFlowsOnly(t *testing.T) {
	var expired []int
	tb, clk := newManual[int](t, WithIdleTimeout(UDP, 10*time.Second),
		WithOnExpire(func(_ Key, v int) { expired = append(expired, v) }))
	_, _, err := tb.LoadOrCreate(key4(UDP, 1), value(1))
	require.NoError(t, err)
	require.NoError(t, tb.SetIdleTimeout(UDP, 2*time.Second))
	require.Equal(t, 2*time.Second, tb.IdleTimeout(UDP))
	_, _, err = tb.LoadOrCreate(key4(UDP, 2), value(2))
	require.NoError(t, err)
	tb.Sweep(clk.Advance(3 * time.Second))
	require.Equal(t, []int{2}, expired, "the new flow has the new timeout")
	tb.Sweep(clk.Advance(7 * time.Second))
	require.Equal(t, []int{2}, expired, "the old flow keeps its timeout")
	tb.Sweep(clk.Advance(time.Second))
	require.Equal(t, []int{2, 1}, expired)
}

func TestSetFlowTimeout(t *testing.T) {
	var expired []int
	tb, clk := newManual[int](t, WithIdleTimeout(TCP, 100*time.Second),
		WithOnExpire(func(_ Key, v int) { expired = append(expired, v) }))
	for i := 1; i <= 3; i++ {
		_, _, err := tb.LoadOrCreate(key4(TCP, i), value(i))
		require.NoError(t, err)
	}
	require.ErrorIs(t, tb.SetFlowTimeout(key4(TCP, 9), time.Second), ErrNoFlow)
	require.NoError(t, tb.SetFlowTimeout(key4(TCP, 2), 1000*time.Second)) // longer
	tb.Sweep(clk.Advance(50 * time.Second))
	require.Empty(t, expired)
	// A shorter timeout that has already passed expires at the next
	// sweep, even one at the same tick.
	require.NoError(t, tb.SetFlowTimeout(key4(TCP, 3), 10*time.Second))
	require.Equal(t, 1, tb.Sweep(clk.Now()))
	require.Equal(t, []int{3}, expired)
	tb.Sweep(clk.Advance(51 * time.Second))
	require.Equal(t, []int{3, 1}, expired)
	tb.Sweep(clk.Advance(899 * time.Second)) // tick 1001
	require.Equal(t, []int{3, 1}, expired)
	tb.Sweep(clk.Advance(time.Second)) // tick 1002 = 1 + 1 + 1000
	require.Equal(t, []int{3, 1, 2}, expired)
}

func TestSweepAfterLongGapAndBackwardClock(t *testing.T) {
	var expired int
	tb, clk := newManual[int](t, WithIdleTimeout(TCP, 2000*time.Second), WithIdleTimeout(UDP, 30*time.Second),
		WithOnExpire(func(Key, int) { expired++ }))
	for i := range 300 {
		require.NoError(t, create(tb, key4(TCP, i)))
		require.NoError(t, create(tb, key6(UDP, i)))
	}
	// Far more than one wheel revolution at once: every UDP flow is due,
	// no TCP flow is.
	require.Equal(t, 300, tb.Sweep(clk.Advance(1900*time.Second)))
	require.Equal(t, 300, expired)
	require.Equal(t, 300, tb.Len())
	checkInvariants(t, tb, "after a long gap")
	// A clock going backwards does not move the coarse clock back.
	tick := tb.tick.Load()
	require.Zero(t, tb.Sweep(clk.Now().Add(-time.Hour)))
	require.Equal(t, tick, tb.tick.Load())
	require.Equal(t, 300, tb.Sweep(clk.Advance(101*time.Second)))
	require.Zero(t, tb.Len())
	checkInvariants(t, tb, "after all expired")
}

func TestIPv6Keys(t *testing.T) {
	var got []Key
	tb, clk := newManual[int](t, WithIdleTimeout(UDP, time.Second), WithOnExpire(func(k Key, _ int) { got = append(got, k) }))
	ll := netip.MustParseAddrPort("[fe80::1%eth0]:5000")
	v6 := Key{Proto: UDP, Src: netip.MustParseAddrPort("[2001:db8::1]:5000"), Dst: dst6}
	v4 := Key{Proto: UDP, Src: netip.MustParseAddrPort("127.0.0.1:5000"), Dst: dst4}
	mapped := Key{Proto: UDP, Src: netip.MustParseAddrPort("[::ffff:127.0.0.1]:5000"), Dst: netip.MustParseAddrPort("[::ffff:127.0.0.1]:8080")}
	zoned := Key{Proto: UDP, Src: ll, Dst: dst6}
	for i, k := range []Key{v6, v4, mapped, zoned} {
		v, created, err := tb.LoadOrCreate(k, value(i))
		require.NoError(t, err)
		require.True(t, created, "%v is its own flow", k)
		require.Equal(t, i, v)
	}
	// The zone is not part of the identity.
	other := zoned
	other.Src = netip.AddrPortFrom(ll.Addr().WithZone("eth1"), ll.Port())
	v, ok := tb.Lookup(other)
	require.True(t, ok)
	require.Equal(t, 3, v)

	seen := map[Key]int{}
	tb.Range(func(k Key, v int) bool { seen[k] = v; return true })
	noZone := zoned
	noZone.Src = netip.AddrPortFrom(ll.Addr().WithZone(""), ll.Port())
	require.Equal(t, map[Key]int{v6: 0, v4: 1, mapped: 2, noZone: 3}, seen, "keys come back exactly, without zone")

	tb.Sweep(clk.Advance(3 * time.Second))
	require.ElementsMatch(t, []Key{v6, v4, mapped, noZone}, got)
}

func TestRangeMayDeleteEveryFlow(t *testing.T) {
	tb, _ := newManual[int](t, WithShards(4))
	for i := range 1000 {
		require.NoError(t, create(tb, key4(TCP, i)))
	}
	n := 0
	tb.Range(func(k Key, _ int) bool {
		_, ok := tb.Delete(k)
		require.True(t, ok)
		n++
		return true
	})
	require.Equal(t, 1000, n)
	require.Zero(t, tb.Len())
	checkInvariants(t, tb, "after deleting all")
	for i := range tb.shards {
		require.Len(t, tb.shards[i].idx.Load().groups, 1, "an emptied index shrinks")
	}
}

func TestZeroAllocations(t *testing.T) {
	tb, clk := newManual[*int](t, WithMaxFlows(2), WithMaxFlowsPerSource(1), WithIdleTimeout(UDP, 24*time.Hour))
	hit, hit2 := key4(UDP, 1), key4(UDP, 2)
	require.NoError(t, create(tb, hit))
	require.NoError(t, create(tb, hit2))
	full, sameSrc := key6(UDP, 3), hit
	sameSrc.Src = netip.AddrPortFrom(hit.Src.Addr(), 9)
	invalid := Key{Proto: 1}
	mk := func() (*int, error) { return nil, nil }
	for name, f := range map[string]func(){
		"Lookup hit":                  func() { tb.Lookup(hit) },
		"Lookup miss":                 func() { tb.Lookup(full) },
		"Lookup invalid":              func() { tb.Lookup(invalid) },
		"LoadOrCreate hit":            func() { _, _, _ = tb.LoadOrCreate(hit, mk) },
		"LoadOrCreate ErrFull":        func() { _, _, _ = tb.LoadOrCreate(full, mk) },
		"LoadOrCreate invalid":        func() { _, _, _ = tb.LoadOrCreate(invalid, mk) },
		"Stats":                       func() { _ = tb.Stats() },
		"Len":                         func() { _ = tb.Len() },
		"Sweep with nothing due":      func() { tb.Sweep(clk.Advance(time.Second)) },
		"Delete miss":                 func() { tb.Delete(full) },
		"SetFlowTimeout":              func() { _ = tb.SetFlowTimeout(hit, time.Hour) },
		"LoadOrCreate ErrSourceLimit": nil,
	} {
		if f == nil {
			continue
		}
		assert.Zero(t, testing.AllocsPerRun(200, f), name)
	}
	_, ok := tb.Delete(hit2)
	require.True(t, ok)
	_, _, err := tb.LoadOrCreate(sameSrc, mk)
	require.ErrorIs(t, err, ErrSourceLimit)
	assert.Zero(t, testing.AllocsPerRun(200, func() { _, _, _ = tb.LoadOrCreate(sameSrc, mk) }), "LoadOrCreate ErrSourceLimit")
}

func TestCloseStopsSweeperAndRefusesNewFlows(t *testing.T) {
	expired := make(chan Key, 1)
	tb, err := New[int](WithSweepInterval(time.Millisecond), WithIdleTimeout(UDP, time.Millisecond),
		WithOnExpire(func(k Key, _ int) { expired <- k }))
	require.NoError(t, err)
	k := key4(UDP, 1)
	require.NoError(t, create(tb, k))
	// The sweeper goroutine expires the flow by itself.
	select {
	case got := <-expired:
		require.Equal(t, k, got)
	case <-time.After(time.Minute):
		t.Fatal("the sweeper did not expire the flow")
	}
	require.NoError(t, create(tb, key4(TCP, 2)))
	require.NoError(t, tb.Close())
	require.NoError(t, tb.Close(), "Close is idempotent")
	require.ErrorIs(t, create(tb, key4(TCP, 3)), ErrClosed)
	require.Zero(t, tb.Sweep(time.Now().Add(time.Hour)), "a closed table expires nothing")
	// What is in the table can still be read and drained.
	_, ok := tb.Lookup(key4(TCP, 2))
	require.True(t, ok)
	_, ok = tb.Delete(key4(TCP, 2))
	require.True(t, ok)
	require.Zero(t, tb.Len())
}

func TestCreateErrorIsReturnedAndNothingStored(t *testing.T) {
	tb, _ := newManual[int](t, WithMaxFlows(1))
	boom := errors.New("dial: connection refused")
	v, created, err := tb.LoadOrCreate(key4(TCP, 1), func() (int, error) { return 5, boom })
	require.ErrorIs(t, err, boom)
	require.False(t, created)
	require.Zero(t, v)
	require.Zero(t, tb.Len())
	require.Zero(t, tb.Stats().Total)
	require.NoError(t, create(tb, key4(TCP, 2)), "the failed create gave its capacity back")
}
