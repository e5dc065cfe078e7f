package flowtable

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMatchFunctions checks the bit tricks on control words against a
// byte-by-byte reading, on random words and on words built from the four
// kinds of byte: each may over-report only above a true match, so "any" is
// exact and the lowest report is true.
func TestMatchFunctions(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	kinds := []uint64{ctrlEmpty, ctrlDeleted, ctrlFull | 0x05, ctrlFull | 0x04}
	for i := range 200000 {
		var c uint64
		if i%2 == 0 {
			c = r.Uint64()
		} else {
			for j := range groupSlots {
				c |= kinds[r.IntN(len(kinds))] << (8 * j)
			}
		}
		tag := ctrlFull | r.Uint64N(0x80)
		if i%3 == 0 {
			tag = ctrlFull | 0x05
		}
		var wantTag, wantEmpty, wantFree uint64
		for j := range groupSlots {
			b := c >> (8 * j) & 0xff
			bit := uint64(0x80) << (8 * j)
			if b == tag {
				wantTag |= bit
			}
			if b == ctrlEmpty {
				wantEmpty |= bit
			}
			if b&0x80 == 0 {
				wantFree |= bit
			}
		}
		check := func(name string, got, want uint64) {
			if got&want != want || (got != 0) != (want != 0) || (want != 0 && got&-got != want&-want) {
				t.Fatalf("%s(%#016x, tag %#x) = %#016x, want %#016x (may over-report only above the lowest true match)", name, c, tag, got, want)
			}
		}
		check("matchTag", matchTag(c, tag), wantTag)
		check("matchEmpty", matchEmpty(c), wantEmpty)
		require.Equal(t, wantFree, matchFree(c))
	}
}

// TestIndexCollisions fills an index with entries of identical hash, so
// that they share a tag and a probe sequence across groups, then removes
// and re-inserts some: every entry stays findable, tombstones are left only
// in full groups and reused, and removed entries are gone.
func TestIndexCollisions(t *testing.T) {
	x := newIndex[int](8)
	const h = 0xdeadbeef12345678
	es := make([]*entry[int], 30)
	for i := range es {
		es[i] = &entry[int]{val: i}
		es[i].key.sport = uint16(i)
		x.insert(h, es[i])
	}
	for i, e := range es {
		require.Same(t, e, x.find(h, &e.key), "entry %d", i)
	}
	missing := ckey{sport: 200}
	require.Nil(t, x.find(h, &missing))
	// The first group is full: removing from it leaves a tombstone, so
	// the entries probed past it stay reachable.
	freed, found := x.remove(h, es[0])
	require.True(t, found)
	require.False(t, freed)
	freed, found = x.remove(h, es[0])
	require.False(t, found)
	require.False(t, freed)
	for _, e := range es[1:] {
		require.Same(t, e, x.find(h, &e.key))
	}
	require.Nil(t, x.find(h, &es[0].key))
	// The last group used has empty slots: removing there frees them.
	freed, found = x.remove(h, es[29])
	require.True(t, found)
	require.True(t, freed)
	// A new entry takes the tombstone.
	n := &entry[int]{val: 99}
	n.key.sport = 99
	require.False(t, x.insert(h, n), "the tombstone is reused")
	require.Same(t, n, x.find(h, &n.key))
	// Entries of other hashes are unaffected.
	o := &entry[int]{val: 7}
	o.key.sport, o.key.dport = 7, 1
	x.insert(h+1<<7, o)
	require.Same(t, o, x.find(h+1<<7, &o.key))
}

// TestIndexFullOfTombstonesTerminates makes every group of an index hold
// tombstones and no empty slot: finds must still terminate.
func TestIndexFullOfTombstonesTerminates(t *testing.T) {
	x := newIndex[int](2)
	es := make([]*entry[int], 2*groupSlots)
	for i := range es {
		es[i] = &entry[int]{}
		es[i].key.sport = uint16(i)
		x.insert(uint64(i)<<7, es[i])
	}
	for i, e := range es {
		_, found := x.remove(uint64(i)<<7, e)
		require.True(t, found)
	}
	for i, e := range es {
		require.Nil(t, x.find(uint64(i)<<7, &e.key))
	}
}

// TestChurnKeepsTheIndexBounded creates and deletes many distinct flows
// with a constant number alive: tombstones must be cleaned by rebuilds, not
// make the index grow.
func TestChurnKeepsTheIndexBounded(t *testing.T) {
	tb, _ := newManual[int](t, WithShards(1))
	const live = 1000
	for i := range live {
		require.NoError(t, create(tb, key4(TCP, i)))
	}
	maxGroups := 0
	for i := live; i < 100*live; i++ {
		require.NoError(t, create(tb, key4(TCP, i)))
		_, ok := tb.Delete(key4(TCP, i-live))
		require.True(t, ok)
		maxGroups = max(maxGroups, len(tb.shards[0].idx.Load().groups))
	}
	require.LessOrEqual(t, maxGroups, 2*groupsFor(live))
	checkInvariants(t, tb, "after churn")
}
