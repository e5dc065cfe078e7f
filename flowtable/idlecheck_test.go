package flowtable

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestIdleCheck drives a flow whose traffic the table cannot see: the idle
// check reports activity, and the flow lives exactly as long as that
// activity says, to the sweep interval.
func TestIdleCheck(t *testing.T) {
	type check struct {
		idle time.Duration
		ok   bool
	}
	var (
		answer check
		asked  []Key
	)
	var expired []int
	tb, clk := newManual[int](t,
		WithIdleTimeout(TCP, 5*time.Second),
		WithIdleCheck(func(k Key, v int) (time.Duration, bool) {
			asked = append(asked, k)
			return answer.idle, answer.ok
		}),
		WithOnExpire(func(k Key, v int) { expired = append(expired, v) }),
	)
	k := key4(TCP, 1)
	_, _, err := tb.LoadOrCreate(k, value(1))
	require.NoError(t, err)

	// Not due: the check is not asked.
	for range 5 {
		require.Zero(t, tb.Sweep(clk.Advance(time.Second)))
	}
	require.Empty(t, asked)

	// Due at the 6th second; the owner saw traffic 2 s ago, at 4 s, in the
	// interval that ends at 5 s: kept, and due again at 10 s.
	answer = check{idle: 2 * time.Second, ok: true}
	require.Zero(t, tb.Sweep(clk.Advance(time.Second)))
	require.Equal(t, []Key{k}, asked)
	asked = nil
	for range 3 {
		require.Zero(t, tb.Sweep(clk.Advance(time.Second)))
	}
	require.Empty(t, asked, "not due again before 5 s after the reported activity")

	// Due again; the owner's activity is older than the timeout: expired.
	answer = check{idle: time.Minute, ok: true}
	require.Equal(t, 1, tb.Sweep(clk.Advance(time.Second)))
	require.Equal(t, []Key{k}, asked)
	require.Equal(t, []int{1}, expired)

	// ok false expires as usual.
	asked, expired = nil, nil
	_, _, err = tb.LoadOrCreate(k, value(2))
	require.NoError(t, err)
	answer = check{ok: false}
	n := 0
	for range 7 {
		n += tb.Sweep(clk.Advance(time.Second))
	}
	require.Equal(t, 1, n)
	require.Equal(t, []int{2}, expired)
	require.Len(t, asked, 1)

	// An activity no later than the last lookup does not keep it.
	asked, expired = nil, nil
	_, _, err = tb.LoadOrCreate(k, value(3))
	require.NoError(t, err)
	answer = check{idle: 6 * time.Second, ok: true}
	n = 0
	for range 7 {
		n += tb.Sweep(clk.Advance(time.Second))
	}
	require.Equal(t, 1, n)
	require.Equal(t, []int{3}, expired)

	st := tb.Stats()
	require.Equal(t, uint64(3), st.TCP.ExpiredFlowCount)
	require.Zero(t, st.TCP.ActiveFlowCount)

	// Lookups stay free of allocations with an idle check installed.
	_, _, err = tb.LoadOrCreate(k, value(4))
	require.NoError(t, err)
	require.Zero(t, testing.AllocsPerRun(100, func() { tb.Lookup(k) }))
}

func TestIdleCheckWrongType(t *testing.T) {
	_, err := New[int](WithManualSweep(), WithIdleCheck(func(Key, string) (time.Duration, bool) { return 0, false }))
	require.ErrorIs(t, err, ErrInvalidOption)
	require.ErrorContains(t, err, "idle check")
}
