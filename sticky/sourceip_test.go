package sticky

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func src(s string) Request { return Request{Source: netip.MustParseAddr(s)} }

func mustSourceIP(t testing.TB, opts ...SourceIPOption) *SourceIP {
	t.Helper()
	p, err := NewSourceIP(opts...)
	require.NoError(t, err)
	return p
}

func requireHit(t *testing.T, p Policy, r Request, want string) {
	t.Helper()
	id, ok := p.Lookup(r)
	require.True(t, ok, "want a hit on %s", want)
	require.Equal(t, want, id)
}

func requireMiss(t *testing.T, p Policy, r Request) {
	t.Helper()
	id, ok := p.Lookup(r)
	require.False(t, ok, "want a miss, got %q", id)
	require.Empty(t, id)
}

func TestSourceIPExpiryIsExact(t *testing.T) {
	clk := newFakeClock()
	p := mustSourceIP(t, WithClock(clk.Now), WithDuration(time.Minute))
	a := src("192.0.2.1")
	requireMiss(t, p, a)
	p.Remember(a, "t1", nil)
	clk.Advance(time.Minute - time.Nanosecond)
	requireHit(t, p, a, "t1") // refreshed: lives until +2m-1ns
	clk.Advance(time.Minute - time.Nanosecond)
	requireHit(t, p, a, "t1")
	clk.Advance(time.Minute)
	requireMiss(t, p, a) // exactly one duration without use
	st := p.Stats()
	assert.Equal(t, Stats{Hits: 2, Misses: 2, Remembered: 1, Expired: 1}, st)
}

func TestSourceIPRememberRefreshesAndMoves(t *testing.T) {
	clk := newFakeClock()
	p := mustSourceIP(t, WithClock(clk.Now), WithDuration(time.Minute))
	a := src("2001:db8::1")
	p.Remember(a, "t1", nil)
	clk.Advance(50 * time.Second)
	p.Remember(a, "t1", nil) // same target: a refresh, not a change
	clk.Advance(50 * time.Second)
	requireHit(t, p, a, "t1")
	p.Remember(a, "t2", nil)
	requireHit(t, p, a, "t2")
	assert.Equal(t, uint64(2), p.Stats().Remembered)
}

func TestSourceIPKeys(t *testing.T) {
	cases := []struct {
		name     string
		v4, v6   int
		same     [][2]string
		distinct [][2]string
	}{
		{
			name: "whole addresses", v4: 32, v6: 128,
			same: [][2]string{
				{"192.0.2.1", "::ffff:192.0.2.1"}, // IPv4-mapped is IPv4
				{"fe80::1%eth0", "fe80::1%eth1"},  // zones ignored
				{"127.0.0.1", "127.0.0.1"},
			},
			distinct: [][2]string{
				{"192.0.2.1", "192.0.2.2"},
				{"2001:db8::1", "2001:db8::2"},
				{"0.0.0.1", "::1"}, // families never meet
				{"192.0.2.1", "::c000:201"},
			},
		},
		{
			name: "prefixes", v4: 24, v6: 64,
			same: [][2]string{
				{"192.0.2.1", "192.0.2.254"},
				{"2001:db8:0:1::1", "2001:db8:0:1:ffff::9"},
				{"::ffff:198.51.100.7", "198.51.100.200"},
			},
			distinct: [][2]string{
				{"192.0.2.1", "192.0.3.1"},
				{"2001:db8:0:1::1", "2001:db8:0:2::1"},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := mustSourceIP(t, WithPrefix(tc.v4, tc.v6))
			for i, pair := range tc.same {
				id := fmt.Sprint("same", i)
				p.Remember(src(pair[0]), id, nil)
				requireHit(t, p, src(pair[1]), id)
			}
			for i, pair := range tc.distinct {
				id := fmt.Sprint("distinct", i)
				p.Remember(src(pair[0]), id, nil)
				got, ok := p.Lookup(src(pair[1]))
				assert.False(t, ok && got == id, "%s and %s share a key", pair[0], pair[1])
			}
		})
	}
}

func TestSourceIPInvalidSource(t *testing.T) {
	p := mustSourceIP(t)
	p.Remember(Request{}, "t1", nil)
	p.Remember(src("192.0.2.1"), "", nil)
	requireMiss(t, p, Request{})
	requireMiss(t, p, src("192.0.2.1"))
	st := p.Stats()
	assert.Equal(t, 0, st.Entries)
	assert.Equal(t, uint64(2), st.Misses)
	assert.Zero(t, st.Remembered)
}

func TestSourceIPCapacity(t *testing.T) {
	clk := newFakeClock()
	p := mustSourceIP(t, WithClock(clk.Now), WithDuration(time.Minute), WithCapacity(3))
	for i := 1; i <= 3; i++ {
		p.Remember(src(fmt.Sprintf("192.0.2.%d", i)), "t1", nil)
	}
	clk.Advance(30 * time.Second)
	p.Remember(src("192.0.2.4"), "t2", nil) // full: refused, counted
	p.Remember(src("192.0.2.5"), "t2", nil)
	requireMiss(t, p, src("192.0.2.4"))
	for i := 1; i <= 3; i++ { // established sessions are never evicted
		requireHit(t, p, src(fmt.Sprintf("192.0.2.%d", i)), "t1")
	}
	p.Remember(src("192.0.2.1"), "t2", nil) // an existing client may still move
	requireHit(t, p, src("192.0.2.1"), "t2")
	st := p.Stats()
	assert.Equal(t, uint64(2), st.Refused)
	assert.Equal(t, 3, st.Entries)

	clk.Advance(time.Minute) // all three expire: room again
	p.Remember(src("192.0.2.4"), "t2", nil)
	requireHit(t, p, src("192.0.2.4"), "t2")
	st = p.Stats()
	assert.Equal(t, 1, st.Entries)
	assert.Equal(t, uint64(3), st.Expired)
	assert.Equal(t, uint64(2), st.Refused)
}

// TestSourceIPTargetDownAndBack: a client's target turns Unusable, the
// client is re-picked and re-stuck elsewhere, and stays there when the old
// target returns. A client whose caller could not re-pick comes back to its
// target.
func TestSourceIPTargetDownAndBack(t *testing.T) {
	st := newStates()
	p := mustSourceIP(t, WithTargetState(st.get))
	moved, stranded := src("192.0.2.1"), src("192.0.2.2")
	p.Remember(moved, "a", nil)
	p.Remember(stranded, "a", nil)
	requireHit(t, p, moved, "a")

	st.set("a", Unusable)
	requireMiss(t, p, moved)
	p.Remember(moved, "b", nil) // the caller's new pick
	requireHit(t, p, moved, "b")
	requireMiss(t, p, stranded) // no target to move to: not remembered

	st.set("a", Usable)
	requireHit(t, p, moved, "b") // re-stuck: stays on b
	requireHit(t, p, stranded, "a")
	s := p.Stats()
	assert.Equal(t, uint64(2), s.Repicks)
	assert.Equal(t, uint64(4), s.Hits)
	assert.Equal(t, uint64(2), s.Misses)
}

func TestDraining(t *testing.T) {
	for _, stop := range []bool{false, true} {
		t.Run(fmt.Sprint("stop=", stop), func(t *testing.T) {
			st := newStates()
			p := mustSourceIP(t, WithTargetState(st.get), WithStopOnDrain(stop))
			a := src("192.0.2.1")
			p.Remember(a, "a", nil)
			st.set("a", Draining)
			if stop {
				requireMiss(t, p, a)
				assert.Equal(t, uint64(1), p.Stats().Repicks)
			} else {
				requireHit(t, p, a, "a")
				assert.Zero(t, p.Stats().Repicks)
			}
			st.set("a", Unusable) // the drain ends
			requireMiss(t, p, a)
			st.set("a", TargetState(42)) // unknown: never trusted
			requireMiss(t, p, a)
		})
	}
}

func TestSourceIPLookupAllocatesNothing(t *testing.T) {
	p := mustSourceIP(t, WithPrefix(24, 64))
	v4, v6 := src("192.0.2.7"), src("2001:db8::7")
	p.Remember(v4, "t1", nil)
	p.Remember(v6, "t2", nil)
	for _, r := range []Request{v4, v6, src("198.51.100.1"), {}} {
		allocs := testing.AllocsPerRun(1000, func() { p.Lookup(r) })
		assert.Zero(t, allocs, "lookup of %v", r.Source)
	}
	allocs := testing.AllocsPerRun(1000, func() { p.Remember(v4, "t1", nil) })
	assert.Zero(t, allocs, "refreshing Remember")
}

// TestSourceIPConcurrent runs lookups and remembers from several goroutines
// while targets flap, then checks that every lookup was counted once and the
// table holds what it should.
func TestSourceIPConcurrent(t *testing.T) {
	st := newStates()
	p := mustSourceIP(t, WithTargetState(st.get), WithCapacity(1000))
	const workers, rounds = 4, 3000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				r := src(fmt.Sprintf("10.%d.%d.%d", w, i%20, i%7))
				if _, ok := p.Lookup(r); !ok {
					p.Remember(r, fmt.Sprint("t", i%3), nil)
				}
				if w == 0 && i%500 == 0 {
					st.set("t1", TargetState(i/500%2*2)) // Usable, Unusable, ...
				}
			}
		})
	}
	wg.Wait()
	s := p.Stats()
	assert.Equal(t, uint64(workers*rounds), s.Hits+s.Misses)
	assert.Equal(t, workers*20*7, s.Entries) // 140 clients per worker
	assert.Zero(t, s.Refused)
	checkTableInvariants(t, p.t)
}
