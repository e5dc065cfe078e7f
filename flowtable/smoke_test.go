package flowtable

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestSmoke(t *testing.T) {
	var got []Key
	tb, clk := newManual[int](t, WithOnExpire(func(k Key, v int) { got = append(got, k) }), WithIdleTimeout(UDP, 5*time.Second))
	k := key4(UDP, 1)
	v, created, err := tb.LoadOrCreate(k, value(7))
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, 7, v)
	v, ok := tb.Lookup(k)
	require.True(t, ok)
	require.Equal(t, 7, v)
	for i := 0; i < 5; i++ {
		require.Zero(t, tb.Sweep(clk.Advance(time.Second)))
	}
	require.Equal(t, 1, tb.Sweep(clk.Advance(time.Second)))
	require.Equal(t, []Key{k}, got)
	require.Zero(t, tb.Len())
	allocs := testing.AllocsPerRun(100, func() { tb.Lookup(k) })
	require.Zero(t, allocs)
	_, _, _ = tb.LoadOrCreate(k, value(8))
	allocs = testing.AllocsPerRun(100, func() { tb.Lookup(k); tb.LoadOrCreate(k, value(9)) })
	require.Zero(t, allocs)
}
