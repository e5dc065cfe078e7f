package proxy

import (
	"math/bits"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"unsafe"
)

// Striped counters: the HTTP proxy counts every request several times (the
// listener's requests, in flight and status classes, the target's likewise).
// One atomic per counter would make every core write the same cache lines
// on every request; instead each counter set has a stripe per core (or so),
// a request writes the stripe it was given, and Stats adds the stripes up.
// Totals stay exact; only the reads (Stats, rare) pay.

// maxStripes bounds the stripes of a counter set.
const maxStripes = 16

// stripeCount returns the number of stripes for a new counter set:
// GOMAXPROCS rounded up to a power of two, at most maxStripes.
func stripeCount() int {
	n := runtime.GOMAXPROCS(0)
	if n <= 1 {
		return 1
	}
	return min(1<<bits.Len(uint(n-1)), maxStripes)
}

// pickStripe returns a stripe index below n (a power of two), spread at
// random so that concurrent writers mostly write different lines.
func pickStripe(n int) int { return int(rand.Uint32()) & (n - 1) }

// httpStripe is one stripe of an HTTP proxy's per-request counters, a
// cache line pair of its own.
type httpStripe struct {
	requests         atomic.Uint64
	active           atomic.Int64
	status, upstream [5]atomic.Uint64
	_                [128 - 96]byte
}

// targetStripe is one stripe of a target's per-request counters.
type targetStripe struct {
	requests  atomic.Uint64
	active    atomic.Int64
	status    [5]atomic.Uint64
	respNanos atomic.Uint64
	responses atomic.Uint64
	_         [128 - 72]byte
}

// statusIndex returns the class index of an HTTP status (0 for 1xx ... 4
// for 5xx), or -1.
func statusIndex(code int) int {
	if i := code/100 - 1; i >= 0 && i < 5 {
		return i
	}
	return -1
}

// The stripes must be what their padding says: a compile-time check.
var (
	_ [128 - unsafe.Sizeof(httpStripe{})]byte
	_ [unsafe.Sizeof(httpStripe{}) - 128]byte
	_ [128 - unsafe.Sizeof(targetStripe{})]byte
	_ [unsafe.Sizeof(targetStripe{}) - 128]byte
)
