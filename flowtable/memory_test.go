package flowtable

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

// heapPerFlow fills a table with n flows of 8-byte values and returns the
// heap bytes per flow beyond the value, and the table's whole heap, as
// runtime.MemStats counts them after a collection.
func heapPerFlow(tb testing.TB, n int) (perFlow float64, total uint64) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	t, err := New[uint64](WithManualSweep(), WithMaxFlows(n), WithHashSeed(1))
	require.NoError(tb, err)
	for i := range n {
		if _, _, err := t.LoadOrCreate(benchKey(uint64(i)), value(uint64(i))); err != nil {
			tb.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	require.Equal(tb, n, t.Len())
	runtime.KeepAlive(t)
	total = after.HeapAlloc - before.HeapAlloc
	return float64(total)/float64(n) - 8, total
}

// TestMemoryPerFlow holds the target: at most 100 bytes of overhead
// per flow beyond its value, at 10^6 flows. It measures the heap, not time.
// Skipped with -short and under the race detector, which changes memory
// use; BenchmarkMemory reports 10^6 and 10^7.
func TestMemoryPerFlow(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("builds 10^6 flows; skipped with -short and under -race")
	}
	per, total := heapPerFlow(t, 1_000_000)
	t.Logf("10^6 flows: %.1f bytes of overhead per flow, %.1f MiB in all", per, float64(total)/(1<<20))
	require.LessOrEqual(t, per, 100.0)
}
