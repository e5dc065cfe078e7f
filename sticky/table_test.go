package sticky

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// refTable is the reference the table is checked against: a plain map that
// drops every expired entry eagerly before each operation. The table drops
// them lazily, in bounded sweeps, with no goroutine; from outside the two
// must be indistinguishable.
type refTable struct {
	m                map[uint64]refEntry
	ttl              int64
	capacity         int
	found, missed    uint64
	expired, refused uint64
}

type refEntry struct {
	id  string
	exp int64
}

func (r *refTable) expire(now int64) {
	for k, e := range r.m {
		if e.exp <= now {
			delete(r.m, k)
			r.expired++
		}
	}
}

func (r *refTable) get(k uint64, now int64) (string, bool) {
	r.expire(now)
	e, ok := r.m[k]
	if !ok {
		r.missed++
		return "", false
	}
	r.found++
	r.m[k] = refEntry{e.id, now + r.ttl}
	return e.id, true
}

func (r *refTable) put(k uint64, id string, now int64) (changed, refused bool) {
	r.expire(now)
	e, ok := r.m[k]
	if !ok && len(r.m) >= r.capacity {
		r.refused++
		return false, true
	}
	r.m[k] = refEntry{id, now + r.ttl}
	return !ok || e.id != id, false
}

func (r *refTable) repoint(k uint64, id string, now int64) bool {
	r.expire(now)
	e, ok := r.m[k]
	if !ok {
		return false
	}
	r.m[k] = refEntry{id, now + r.ttl}
	return e.id != id
}

func (r *refTable) del(k uint64, now int64) {
	r.expire(now)
	delete(r.m, k)
}

// spread is the test's key hash: a multiplication that sends consecutive
// keys to different shards.
func spread(k uint64) uint64 { return k * 0x9e3779b97f4a7c15 }

// TestTableMatchesReference runs random operations on a table and on the
// reference with a clock moving by random steps, and requires the same
// answer to every call and the same counters whenever Stats is taken.
func TestTableMatchesReference(t *testing.T) {
	for _, tc := range []struct {
		keys, capacity int
		ttl, step      int64
	}{
		{keys: 40, capacity: 10, ttl: 100, step: 30},   // full most of the time
		{keys: 500, capacity: 300, ttl: 1000, step: 5}, // many shards in play
		{keys: 8, capacity: 100, ttl: 50, step: 60},    // everything expires often
		{keys: 2000, capacity: 64, ttl: 10, step: 3},   // every shard, tiny capacity
	} {
		t.Run(fmt.Sprintf("keys=%d/cap=%d/ttl=%d", tc.keys, tc.capacity, tc.ttl), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(tc.keys), uint64(tc.capacity)))
			tab := newTable[uint64](tc.ttl, tc.capacity)
			ref := &refTable{m: map[uint64]refEntry{}, ttl: tc.ttl, capacity: tc.capacity}
			now := int64(0)
			for op := range 30000 {
				now += r.Int64N(tc.step + 1)
				k := r.Uint64N(uint64(tc.keys))
				id := fmt.Sprintf("t%d", r.IntN(3))
				switch x := r.IntN(100); {
				case x < 45:
					gotID, gotOK := tab.get(spread(k), k, now)
					wantID, wantOK := ref.get(k, now)
					require.Equal(t, wantOK, gotOK, "op %d get(%d) at %d", op, k, now)
					require.Equal(t, wantID, gotID, "op %d get(%d) at %d", op, k, now)
				case x < 85:
					gotC, gotR := tab.put(spread(k), k, id, now)
					wantC, wantR := ref.put(k, id, now)
					require.Equal(t, wantR, gotR, "op %d put(%d) refused, at %d", op, k, now)
					require.Equal(t, wantC, gotC, "op %d put(%d) changed, at %d", op, k, now)
				case x < 93:
					require.Equal(t, ref.repoint(k, id, now), tab.repoint(spread(k), k, id, now), "op %d repoint(%d)", op, k)
				case x < 97:
					tab.del(spread(k), k, now)
					ref.del(k, now)
				default:
					ref.expire(now)
					st := tab.stats(now)
					require.Equal(t, len(ref.m), st.entries, "op %d entries", op)
					require.Equal(t, ref.expired, st.expired, "op %d expired", op)
					require.Equal(t, ref.refused, st.refused, "op %d refused", op)
					require.Equal(t, ref.found, st.found, "op %d found", op)
					require.Equal(t, ref.missed, st.missed, "op %d missed", op)
				}
			}
			checkTableInvariants(t, tab)
		})
	}
}

// checkTableInvariants checks every shard's structure: the index and the
// list hold the same entries, the list is ordered by expiry, free slots and
// entries add up, and the count matches.
func checkTableInvariants[K comparable](t *testing.T, tab *table[K]) {
	t.Helper()
	total := 0
	for si := range tab.shards {
		s := &tab.shards[si]
		s.mu.Lock()
		n, prev, last := 0, int32(none), int64(-1<<63)
		for i := s.oldest; i != none; i = s.nodes[i].next {
			nd := s.nodes[i]
			require.Equal(t, prev, nd.prev, "shard %d: broken back link", si)
			require.GreaterOrEqual(t, nd.exp, last, "shard %d: list out of expiry order", si)
			j, ok := s.index[nd.key]
			require.True(t, ok, "shard %d: listed entry not indexed", si)
			require.Equal(t, i, j, "shard %d: index points elsewhere", si)
			prev, last = i, nd.exp
			n++
			require.LessOrEqual(t, n, len(s.nodes), "shard %d: list has a cycle", si)
		}
		require.Equal(t, prev, s.newest, "shard %d: newest is not the list's end", si)
		require.Equal(t, len(s.index), n, "shard %d", si)
		free := 0
		for i := s.free; i != none; i = s.nodes[i].next {
			require.Empty(t, s.nodes[i].id, "shard %d: a free slot keeps its ID", si)
			free++
			require.LessOrEqual(t, free, len(s.nodes), "shard %d: free list has a cycle", si)
		}
		require.Equal(t, len(s.nodes), n+free, "shard %d: slots lost", si)
		total += n
		s.mu.Unlock()
	}
	require.Equal(t, int64(total), tab.count.Load())
}

// TestTableNeverEvictsLiveEntries fills a table and checks that new keys
// are refused, old ones stay, and room comes back only as entries expire.
func TestTableNeverEvictsLiveEntries(t *testing.T) {
	tab := newTable[uint64](100, 5)
	for k := range uint64(5) {
		changed, refused := tab.put(spread(k), k, "a", int64(k)) // expiries 100..104
		require.True(t, changed)
		require.False(t, refused)
	}
	for k := uint64(5); k < 50; k++ {
		_, refused := tab.put(spread(k), k, "b", 99)
		require.True(t, refused, "key %d", k)
	}
	for k := range uint64(5) {
		id, ok := tab.get(spread(k), k, 99) // refreshed to 199
		require.True(t, ok)
		require.Equal(t, "a", id)
	}
	_, refused := tab.put(spread(100), 100, "c", 198)
	require.True(t, refused, "nothing has expired at 198")
	_, refused = tab.put(spread(100), 100, "c", 199)
	require.False(t, refused, "everything expired at 199: room again")
	st := tab.stats(199)
	assert.Equal(t, 1, st.entries)
	assert.Equal(t, uint64(5), st.expired)
	assert.Equal(t, uint64(46), st.refused)
	checkTableInvariants(t, tab)
}

// TestTableSweepIsBounded checks that one operation drops at most
// sweepBatch expired entries from its shard, and that later operations and
// Stats finish the job.
func TestTableSweepIsBounded(t *testing.T) {
	tab := newTable[uint64](10, 1000)
	h := uint64(0) // every key in shard 0
	for k := range uint64(100) {
		tab.put(h, k, "a", 0)
	}
	tab.get(h, 1000, 10) // everything expired; one bounded sweep
	assert.Equal(t, int64(100-sweepBatch), tab.count.Load())
	tab.get(h, 1000, 10)
	assert.Equal(t, int64(100-2*sweepBatch), tab.count.Load())
	st := tab.stats(10)
	assert.Equal(t, 0, st.entries)
	assert.Equal(t, uint64(100), st.expired)
	checkTableInvariants(t, tab)
}

// TestTableConcurrent hammers one table from several goroutines (run with
// -race) and checks the structure and the counters afterwards.
func TestTableConcurrent(t *testing.T) {
	tab := newTable[uint64](50, 200)
	const workers, ops = 4, 5000
	var mu sync.Mutex // guards gets
	gets := uint64(0)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			n := uint64(0)
			for i := range ops {
				now := int64(i) // each worker's clock moves forward; they differ
				k := r.Uint64N(500)
				switch r.IntN(4) {
				case 0, 1:
					tab.get(spread(k), k, now)
					n++
				case 2:
					tab.put(spread(k), k, "x", now)
				default:
					tab.repoint(spread(k), k, "y", now)
				}
			}
			mu.Lock()
			gets += n
			mu.Unlock()
		})
	}
	wg.Wait()
	checkTableInvariants(t, tab)
	st := tab.stats(0)
	assert.Equal(t, gets, st.found+st.missed)
	assert.LessOrEqual(t, st.entries, 200)
}

// TestTableOutOfOrderClocks covers callers whose clock readings reach the
// shard lock out of order: the list must stay ordered by expiry (or sweeps
// would stop early and keep expired entries), at the price of a later
// expiry for the late reading, never an earlier one.
func TestTableOutOfOrderClocks(t *testing.T) {
	tab := newTable[uint64](100, 10)
	tab.put(0, 1, "a", 50)
	tab.put(0, 2, "b", 10) // read the clock at 10, got the lock after 50
	checkTableInvariants(t, tab)
	_, ok := tab.get(0, 2, 149)
	assert.True(t, ok, "expiry may be late, never early")
	tab.get(0, 1, 120)
	tab.get(0, 2, 30)
	checkTableInvariants(t, tab)
}

// TestTableRefreshSlack: a hit within ttl/1024 of the last refresh writes
// nothing, so the entry may expire that much early, never more.
func TestTableRefreshSlack(t *testing.T) {
	const ttl = 1024 * 10 // slack 10
	tab := newTable[uint64](ttl, 10)
	exp := func(k uint64) int64 {
		s := tab.shard(spread(k))
		return s.nodes[s.index[k]].exp
	}
	tab.put(spread(1), 1, "a", 0)
	tab.put(spread(2), 2, "a", 0)
	_, ok := tab.get(spread(1), 1, 10)
	require.True(t, ok)
	assert.Equal(t, int64(ttl), exp(1), "within the slack: not refreshed")
	_, ok = tab.get(spread(2), 2, 11)
	require.True(t, ok)
	assert.Equal(t, int64(11+ttl), exp(2), "beyond the slack: refreshed")
	_, ok = tab.get(spread(1), 1, ttl)
	assert.False(t, ok, "expired 10 (the slack) before last use + ttl")
	checkTableInvariants(t, tab)
}
