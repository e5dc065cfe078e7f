package flowtable

import (
	"math/bits"
	"sync/atomic"
)

// The index of a shard is an open-addressing hash table in the manner of
// Swiss tables (Abseil, and Go's own maps since 1.24), changed so that
// readers take no lock: a lookup of the UDP proxy runs per datagram, and a
// read lock would be an atomic write to a line every core shares.
//
// Slots are grouped by seven; a group is one 64-byte cache line: a control
// word with one byte per slot, then seven entry pointers. A control byte is
// ctrlEmpty, ctrlDeleted (a tombstone), or 0x80|tag for a full slot, where
// tag is 7 bits of the key's hash, so one load of the control word and a few
// bit operations find the candidate slots of a group. The eighth control
// byte is never used.
//
// Concurrency. Writers hold the shard's mutex. Readers load the control word
// and the slot pointers atomically and verify every candidate's key, so a
// stale control byte costs at most a wasted comparison:
//   - insert stores the pointer before the control byte: a reader that sees
//     the tag sees the entry;
//   - remove stores the control byte before clearing the pointer: a reader
//     that saw the old tag may load nil, which it skips;
//   - a group that has no empty slot never gets one again (remove marks a
//     slot empty only in a group that already has one, otherwise it leaves a
//     tombstone), so a reader never stops early on a group that a key it
//     looks for was probed past;
//   - growing or cleaning builds a new index and publishes it with one
//     atomic store; the old one is never written again, and a reader still
//     on it sees the table as it was when the reader started.
//
// Entries are immutable while readers may see them, except for their seen
// word (atomic): see entry.
type index[V any] struct {
	groups []group[V]
	mask   uint64 // len(groups)-1; len(groups) is a power of two
}

// group is seven slots and their control bytes: 64 bytes, one cache line.
type group[V any] struct {
	ctrl  atomic.Uint64
	slots [groupSlots]atomic.Pointer[entry[V]]
}

const (
	groupSlots = 7

	ctrlEmpty   = 0x00 // so that a freshly allocated index is all empty
	ctrlDeleted = 0x01
	ctrlFull    = 0x80 // | 7-bit tag

	lsbs = 0x0001010101010101 // lowest bit of each used control byte
	msbs = 0x0080808080808080 // highest bit of each used control byte

	// maxLoadNum/maxLoadDen is the fraction of slots that may be used (full
	// or tombstones) before the index is rebuilt.
	maxLoadNum, maxLoadDen = 7, 8
)

// tagOf returns the control byte of a full slot holding a key of hash h.
// The low 7 bits of the hash choose the tag, the bits above them the group,
// and the top bits the shard, so the three are independent.
func tagOf(h uint64) uint64 { return ctrlFull | h&0x7f }

// matchTag returns a bitset, one high bit per control byte, of the slots of
// c whose byte equals tag. It may report a false match above a true one (the
// classic zero-byte trick borrows); callers verify the key.
func matchTag(c, tag uint64) uint64 {
	v := c ^ (lsbs * tag)
	return (v - lsbs) &^ v & msbs
}

// matchEmpty returns the slots of c that are empty. It may also report
// tombstones (0x01) that sit just above an empty byte, as the subtraction
// borrows through them, but only there, so "some slot is empty" is exact and
// the lowest reported slot is a true one.
func matchEmpty(c uint64) uint64 { return (c - lsbs) &^ c & msbs }

// matchFree returns the slots of c that are empty or tombstones.
func matchFree(c uint64) uint64 { return ^c & msbs }

// slotOf returns the slot number of the lowest bit set in a bitset.
func slotOf(m uint64) int { return bits.TrailingZeros64(m) >> 3 }

func newIndex[V any](groups int) *index[V] {
	return &index[V]{groups: make([]group[V], groups), mask: uint64(groups - 1)}
}

// capacity returns the number of slots.
func (x *index[V]) capacity() int { return len(x.groups) * groupSlots }

// maxUsed returns how many slots may be used (full or tombstone) before the
// index must be rebuilt.
func (x *index[V]) maxUsed() int { return x.capacity() * maxLoadNum / maxLoadDen }

// groupsFor returns the number of groups of an index built for n entries:
// the smallest power of two that leaves it at most half full, so that it
// can take as many entries again before the next rebuild.
func groupsFor(n int) int {
	g := 1
	for g*groupSlots < 2*n {
		g *= 2
	}
	return g
}

// find returns the entry with key k and hash h, or nil. It is safe without
// the shard's mutex. The entry may be pending or dead; see entry.seen.
func (x *index[V]) find(h uint64, k *ckey) *entry[V] {
	tag := tagOf(h)
	g := (h >> 7) & x.mask
	for i := uint64(1); ; i++ {
		grp := &x.groups[g]
		c := grp.ctrl.Load()
		for m := matchTag(c, tag); m != 0; m &= m - 1 {
			if e := grp.slots[slotOf(m)].Load(); e != nil && e.key.equal(k) {
				return e
			}
		}
		// Every group has been probed after len(groups) steps of the
		// triangular sequence, which visits each group once.
		if matchEmpty(c) != 0 || i > x.mask {
			return nil
		}
		g = (g + i) & x.mask
	}
}

// insert adds e, whose key has hash h and is not in the index, and reports
// whether it took an empty slot (rather than a tombstone). The shard's mutex
// is held and the index has a free slot (used < capacity).
func (x *index[V]) insert(h uint64, e *entry[V]) (tookEmpty bool) {
	g := (h >> 7) & x.mask
	for i := uint64(1); ; i++ {
		grp := &x.groups[g]
		c := grp.ctrl.Load()
		if m := matchFree(c); m != 0 {
			j := slotOf(m)
			shift := 8 * uint(j)
			tookEmpty = (c>>shift)&0xff == ctrlEmpty
			grp.slots[j].Store(e)
			grp.ctrl.Store(c&^(0xff<<shift) | tagOf(h)<<shift)
			return tookEmpty
		}
		g = (g + i) & x.mask
	}
}

// remove takes e, whose key has hash h, out of the index, and reports
// whether its slot became empty (rather than a tombstone) and whether e was
// found at all. The shard's mutex is held.
func (x *index[V]) remove(h uint64, e *entry[V]) (freedEmpty, found bool) {
	tag := tagOf(h)
	g := (h >> 7) & x.mask
	for i := uint64(1); ; i++ {
		grp := &x.groups[g]
		c := grp.ctrl.Load()
		for m := matchTag(c, tag); m != 0; m &= m - 1 {
			j := slotOf(m)
			if grp.slots[j].Load() != e {
				continue
			}
			shift := 8 * uint(j)
			b := uint64(ctrlDeleted)
			if matchEmpty(c) != 0 {
				b, freedEmpty = ctrlEmpty, true
			}
			grp.ctrl.Store(c&^(0xff<<shift) | b<<shift)
			grp.slots[j].Store(nil)
			return freedEmpty, true
		}
		if matchEmpty(c) != 0 || i > x.mask {
			return false, false
		}
		g = (g + i) & x.mask
	}
}

// each calls f for every entry in the index, pending and dead ones included;
// it is safe without the shard's mutex.
func (x *index[V]) each(f func(*entry[V]) bool) bool {
	for g := range x.groups {
		grp := &x.groups[g]
		for j := range grp.slots {
			if e := grp.slots[j].Load(); e != nil && !f(e) {
				return false
			}
		}
	}
	return true
}
