package sticky

import (
	"math"
	"sync"
	"sync/atomic"
)

const (
	// shardBits sets the number of shards of a table: 64, enough that
	// lookups from every core rarely meet on one lock.
	shardBits = 6
	numShards = 1 << shardBits
	// sweepBatch is the most expired entries one table operation drops from
	// its shard, so that no request pays for a long sweep after an idle
	// spell; Stats sweeps fully.
	sweepBatch = 8
	// MaxCapacity is the largest capacity a table accepts (positions within
	// a shard are int32).
	MaxCapacity = 1 << 30
	none        = -1 // the null position in a shard's lists
)

// table maps keys to target IDs. Every entry lives for a fixed time to
// live, refreshed on use; the table holds at most capacity entries and never
// evicts a live one to make room.
//
// Expiry needs no goroutine and no timer. Because every entry gets the same
// time to live, the order in which entries expire is the order in which they
// were last used: each shard keeps its entries in a doubly linked list in
// that order (an index-linked arena, so entries cost the garbage collector
// nothing per entry). A sweep drops expired entries from the old end and
// stops at the first live one, so it never looks at a live entry twice and
// finds out in O(1) that nothing is left to drop. Each operation sweeps a
// few entries of its shard; a lookup also checks the entry it finds.
type table[K comparable] struct {
	ttl      int64 // nanoseconds; fixed
	slack    int64 // ttl/1024: a hit refreshes an entry only if it has aged more than this
	capacity int64 // fixed
	// saveEvery is how long after its last write to a Store an entry in
	// use is written again (putSave), so that the store's copy, whose
	// time to live starts at each write, outlives a session other nodes
	// may meet. Fixed; 0 without a store.
	saveEvery int64
	count     atomic.Int64
	refused   atomic.Uint64
	next      atomic.Uint32 // shard where the next reclaim starts
	shards    [numShards]shard[K]
}

// shard is one lock's worth of a table.
type shard[K comparable] struct {
	mu sync.Mutex // guards every field below

	index map[K]int32 // key → position in nodes
	nodes []node[K]
	free  int32 // first free position, linked through node.next; none if no free position
	// oldest and newest are the ends of the use-ordered list of entries
	// (none when the shard is empty). Invariant: exp never decreases from
	// oldest to newest.
	oldest, newest int32
	found, missed  uint64 // lookups that found a live entry, and that did not
	expired        uint64 // entries dropped because their time passed

	_ [64]byte // keep neighbouring shards' locks off one cache line
}

// node is one entry, or a free slot.
type node[K comparable] struct {
	key        K
	id         string
	exp        int64 // the entry is expired at any time ≥ exp
	saved      int64 // when it was last written to the store (putSave)
	prev, next int32
}

// newTable returns an empty table; ttl is in nanoseconds.
func newTable[K comparable](ttl int64, capacity int) *table[K] {
	t := &table[K]{ttl: ttl, slack: ttl / 1024, capacity: int64(capacity)}
	for i := range t.shards {
		s := &t.shards[i]
		s.free, s.oldest, s.newest = none, none, none
		s.index = make(map[K]int32)
	}
	return t
}

// shard returns the shard for a key hash: its top bits, since callers'
// hashes are well mixed and Go maps use the low bits themselves.
func (t *table[K]) shard(h uint64) *shard[K] { return &t.shards[h>>(64-shardBits)] }

// get returns the ID stored under k if the entry is live at now, and
// refreshes it; h is k's hash.
func (t *table[K]) get(h uint64, k K, now int64) (string, bool) {
	s := t.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	t.sweep(s, now, sweepBatch)
	i, ok := s.index[k]
	if !ok {
		s.missed++
		return "", false
	}
	if s.nodes[i].exp <= now {
		// Expired, but behind a later entry that a concurrent caller's
		// earlier clock reading put there, or beyond this sweep's batch.
		t.remove(s, i)
		s.expired++
		s.missed++
		return "", false
	}
	t.touch(s, i, now)
	s.found++
	return s.nodes[i].id, true
}

// put stores id under k (h is k's hash), live from now for the time to
// live. It reports whether that changed anything (a new entry, another ID,
// an expired entry revived) and whether it was refused because the table
// is full of live entries.
func (t *table[K]) put(h uint64, k K, id string, now int64) (changed, refused bool) {
	changed, refused, _ = t.putSave(h, k, id, now)
	return changed, refused
}

// putSave is put that also reports whether the entry should be written to
// the policy's Store now: it is new, moved, revived, or was last written
// saveEvery ago or more. Reporting it counts as the write.
func (t *table[K]) putSave(h uint64, k K, id string, now int64) (changed, refused, save bool) {
	s := t.shard(h)
	for attempt := 0; ; attempt++ {
		s.mu.Lock()
		t.sweep(s, now, sweepBatch)
		if i, ok := s.index[k]; ok {
			n := &s.nodes[i]
			changed = n.id != id || n.exp <= now
			if n.exp <= now {
				s.expired++
			}
			n.id = id
			t.touch(s, i, now)
			if save = changed || now-n.saved >= t.saveEvery; save {
				n.saved = now
			}
			s.mu.Unlock()
			return changed, false, save
		}
		if t.count.Add(1) <= t.capacity {
			t.insert(s, k, id, now)
			s.mu.Unlock()
			return true, false, true
		}
		t.count.Add(-1)
		s.mu.Unlock()
		// Full. Expired entries may wait in shards nobody touched lately;
		// drop some and try once more. Never evict a live entry.
		if attempt > 0 || !t.reclaim(now) {
			t.refused.Add(1)
			return false, true, false
		}
	}
}

// repoint moves a live entry under k to id and refreshes it; it creates
// nothing. It reports whether the ID changed.
func (t *table[K]) repoint(h uint64, k K, id string, now int64) bool {
	changed, _ := t.repointSave(h, k, id, now)
	return changed
}

// repointSave is repoint that also reports, as putSave does, whether the
// entry should be written to the policy's Store now.
func (t *table[K]) repointSave(h uint64, k K, id string, now int64) (changed, save bool) {
	s := t.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.index[k]
	if !ok || s.nodes[i].exp <= now {
		return false, false
	}
	n := &s.nodes[i]
	changed = n.id != id
	n.id = id
	t.touch(s, i, now)
	if save = changed || now-n.saved >= t.saveEvery; save {
		n.saved = now
	}
	return changed, save
}

// del removes the entry under k, if any; one already expired at now counts
// as expired.
func (t *table[K]) del(h uint64, k K, now int64) {
	s := t.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.index[k]; ok {
		if s.nodes[i].exp <= now {
			s.expired++
		}
		t.remove(s, i)
	}
}

// reclaim drops expired entries from the shards in turn until one yields
// some. It reports whether any were dropped. No shard lock is held on entry.
func (t *table[K]) reclaim(now int64) bool {
	start := t.next.Add(1)
	for j := range uint32(numShards) {
		s := &t.shards[(start+j)%numShards]
		s.mu.Lock()
		n := t.sweep(s, now, sweepBatch)
		s.mu.Unlock()
		if n > 0 {
			return true
		}
	}
	return false
}

// tableStats is what a table counts.
type tableStats struct {
	entries          int
	found, missed    uint64
	expired, refused uint64
}

// stats sweeps every shard fully (the work is the expired entries, plus one
// look per shard) and returns the counters.
func (t *table[K]) stats(now int64) tableStats {
	var st tableStats
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		t.sweep(s, now, math.MaxInt)
		st.found += s.found
		st.missed += s.missed
		st.expired += s.expired
		s.mu.Unlock()
	}
	st.entries = int(t.count.Load())
	st.refused = t.refused.Load()
	return st
}

// sweep drops up to max expired entries from the old end of s and returns
// how many it dropped; s.mu is held.
func (t *table[K]) sweep(s *shard[K], now int64, max int) int {
	n := 0
	for n < max && s.oldest != none && s.nodes[s.oldest].exp <= now {
		t.remove(s, s.oldest)
		s.expired++
		n++
	}
	return n
}

// expiry returns the expiry of an entry used at now: now plus the time to
// live, but never before the newest entry's, which keeps the list ordered
// when callers' clock readings arrive slightly out of order.
func (t *table[K]) expiry(s *shard[K], now int64) int64 {
	exp := now + t.ttl
	if s.newest != none {
		exp = max(exp, s.nodes[s.newest].exp)
	}
	return exp
}

// touch refreshes entry i and makes it the newest; s.mu is held. An entry
// refreshed within the last ttl/1024 is left as it is: a busy client's hits
// then only read the table, at the price of expiring up to ttl/1024 (1.2 s
// of 20 minutes) before a full duration has passed since its last use.
func (t *table[K]) touch(s *shard[K], i int32, now int64) {
	if s.nodes[i].exp >= now+t.ttl-t.slack {
		return
	}
	exp := t.expiry(s, now)
	s.unlink(i)
	s.nodes[i].exp = exp
	s.pushNewest(i)
}

// insert adds a new entry; s.mu is held and the table's count already
// includes it.
func (t *table[K]) insert(s *shard[K], k K, id string, now int64) {
	exp := t.expiry(s, now)
	var i int32
	if s.free != none {
		i = s.free
		s.free = s.nodes[i].next
	} else {
		s.nodes = append(s.nodes, node[K]{})
		i = int32(len(s.nodes) - 1)
	}
	s.nodes[i] = node[K]{key: k, id: id, exp: exp, saved: now}
	s.pushNewest(i)
	s.index[k] = i
}

// remove drops entry i; s.mu is held.
func (t *table[K]) remove(s *shard[K], i int32) {
	s.unlink(i)
	delete(s.index, s.nodes[i].key)
	s.nodes[i] = node[K]{next: s.free} // drop the ID string for the collector
	s.free = i
	t.count.Add(-1)
}

// unlink takes entry i out of the use-ordered list.
func (s *shard[K]) unlink(i int32) {
	n := &s.nodes[i]
	if n.prev != none {
		s.nodes[n.prev].next = n.next
	} else {
		s.oldest = n.next
	}
	if n.next != none {
		s.nodes[n.next].prev = n.prev
	} else {
		s.newest = n.prev
	}
	n.prev, n.next = none, none
}

// pushNewest appends unlinked entry i at the new end of the list.
func (s *shard[K]) pushNewest(i int32) {
	n := &s.nodes[i]
	n.prev, n.next = s.newest, none
	if s.newest != none {
		s.nodes[s.newest].next = i
	} else {
		s.oldest = i
	}
	s.newest = i
}
