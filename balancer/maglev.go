package balancer

import (
	"encoding/binary"
	"net/netip"
	"slices"

	"github.com/cespare/xxhash/v2"
)

// DefaultMaglevSize is the Maglev table size used while the balancer holds
// at most DefaultMaglevSize/100 targets (of any weight and health). It is
// prime.
const DefaultMaglevSize = 65537

// maglevSizes are the table sizes the balancer grows through: primes, each
// about twice the one before. A table of size M keeps every target's share
// within about 1% of its weight while M ≥ 100 × targets.
//
// This list MUST NOT change: nodes that choose different sizes for the same
// targets build different tables and stop agreeing on clients.
var maglevSizes = [...]uint32{
	DefaultMaglevSize, 131071, 262139, 524287, 1048573, 2097143, 4194301, 8388593,
}

// maglevSizeFor returns the first size in maglevSizes that is at least 100
// times n, or the largest (beyond 83 885 targets the table stays at
// 8 388 593 entries and balance drifts past 1 %).
//
// n counts every target in the set, whatever its weight and health, so that
// draining a target (weight 0) or a health change never changes the size:
// a size change builds a table on another modulus, and most clients move.
// Adding or removing the target that crosses a size step (the 656th, the
// 1311th, ...) does move them; WithMaglevSize avoids that.
func maglevSizeFor(n int) uint32 {
	for _, m := range maglevSizes {
		if uint64(m) >= 100*uint64(n) {
			return m
		}
	}
	return maglevSizes[len(maglevSizes)-1]
}

// The frozen hash-key format of the table. Each target's permutation of the
// table is (offset + j·skip) mod M with
//
//	offset = xxh64("lbkit/maglev/offset\x00" + ID) mod M
//	skip   = xxh64("lbkit/maglev/skip\x00" + ID) mod (M-1) + 1
//
// Targets take turns in ascending ID order. These strings and that order MUST
// NOT change: they are what lets two processes with the same targets build
// byte-identical tables. TestMaglevGolden guards them.
const (
	maglevOffsetKey = "lbkit/maglev/offset\x00"
	maglevSkipKey   = "lbkit/maglev/skip\x00"
)

// buildMaglev fills a Maglev lookup table of size m (a prime) for targets
// given by ID and weight, in the order given; the caller sorts them by ID.
// Entry values are positions into ids. Weights are honoured by turns: a
// target of weight w takes a turn in round r when ⌊(r+1)·w/wmax⌋ > ⌊r·w/wmax⌋,
// so over the table it claims entries in proportion to w. Targets of weight
// 0 claim nothing; if every weight is 0 the table is nil.
//
// The algorithm is Maglev's (Eisenbud et al., NSDI 2016, §3.4) with a bitmap of
// claimed entries so the probe loop stays in cache.
func buildMaglev(ids []string, weights []int, m uint32) []uint32 {
	n := len(ids)
	wmax := 0
	for _, w := range weights {
		wmax = max(wmax, w)
	}
	if n == 0 || wmax == 0 {
		return nil
	}
	offset := make([]uint32, n)
	skip := make([]uint32, n)
	var d xxhash.Digest
	for i, id := range ids {
		offset[i] = uint32(keyHash(&d, maglevOffsetKey, id) % uint64(m))
		skip[i] = uint32(keyHash(&d, maglevSkipKey, id)%uint64(m-1)) + 1
	}
	table := make([]uint32, m)
	taken := make([]uint64, (m+63)/64)
	// next[i] is where target i's permutation resumes: its current candidate.
	next := offset
	filled := uint32(0)
	for r := 0; filled < m; r++ {
		for i := 0; i < n && filled < m; i++ {
			w := weights[i]
			if w <= 0 || (r+1)*w/wmax == r*w/wmax {
				continue
			}
			c := next[i]
			for taken[c/64]&(1<<(c%64)) != 0 {
				c += skip[i]
				if c >= m {
					c -= m
				}
			}
			taken[c/64] |= 1 << (c % 64)
			table[c] = uint32(i)
			c += skip[i]
			if c >= m {
				c -= m
			}
			next[i] = c
			filled++
		}
	}
	return table
}

func keyHash(d *xxhash.Digest, prefix, id string) uint64 {
	d.Reset()
	d.WriteString(prefix)
	d.WriteString(id)
	return d.Sum64()
}

// maglevIndex maps a 64-bit key hash onto a table of size m with a
// multiply-shift of its high 32 bits (Lemire's reduction) rather than a
// division. Like the table format, this mapping MUST NOT change.
func maglevIndex(h uint64, m int) int {
	return int(((h >> 32) * uint64(m)) >> 32)
}

// HashString returns the 64-bit key hash of s for KeyHash balancers
// (PickInfo.Hash): xxh64 of its bytes.
func HashString(s string) uint64 { return xxhash.Sum64String(s) }

// HashBytes returns the 64-bit key hash of b for KeyHash balancers
// (PickInfo.Hash): xxh64 of b.
func HashBytes(b []byte) uint64 { return xxhash.Sum64(b) }

// HashAddr returns the key hash SourceIPHash uses for a client address. The
// address is taken in its 16-byte form (IPv4 as IPv4-mapped IPv6, so
// 192.0.2.1 and ::ffff:192.0.2.1 are one client; the zone ignored) as two
// big-endian words hi and lo, and hashed as mix(hi ^ mix(lo)), mix being the
// SplitMix64 finalizer. Like the table format, this MUST NOT change.
//
// It avoids Addr.As16 on purpose: copying its 16-byte result stalls store
// forwarding and cost three times the hash itself.
func HashAddr(a netip.Addr) uint64 {
	var hi, lo uint64
	if a.Is4() {
		b := a.As4()
		lo = 0xffff<<32 | uint64(binary.BigEndian.Uint32(b[:]))
	} else {
		var buf [16]byte
		if b, _ := a.WithZone("").AppendBinary(buf[:0]); len(b) == 16 {
			hi, lo = binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
		}
	}
	return mix64(hi ^ mix64(lo))
}

// mix64 is the SplitMix64 finalizer: a bijection with full avalanche.
func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// maglev is a built table and what it was built from. The balancer keeps the
// last one and reuses it while the targets of weight above 0 and their
// weights are unchanged, so health changes never rebuild it.
type maglev struct {
	ids     []string // targets of weight > 0, ascending
	weights []int
	m       uint32
	table   []uint32 // positions into ids
}

// maglevView is a snapshot's consistent-hash structure. The base table maps
// every target of weight above 0, healthy or not. When some of them are
// unhealthy, a fallback table built over the healthy ones serves the entries
// that land on an unhealthy target. So a target going down moves only its own
// clients (the rest of the base table is untouched), and when it comes back
// the fallback goes away and its clients return to it: the weakness the
// references document (a client seen on two targets after a flap) cannot
// happen here.
type maglevView struct {
	m        int
	base     []uint32 // positions into pool
	fallback []uint32 // positions into pool; nil when every pool target is healthy
	up       []bool   // up[p]: pool target p is healthy
	pool     []uint32 // positions into snapshot.targets
}

func (v *maglevView) lookup(h uint64) uint32 {
	x := maglevIndex(h, v.m)
	p := v.base[x]
	if v.fallback != nil && !v.up[p] {
		p = v.fallback[x]
	}
	return v.pool[p]
}

// maglevView builds the consistent-hash structure for snapshot s, reusing
// b.mg when it still fits; b.mu is held.
func (b *Balancer) maglevView(s *snapshot) *maglevView {
	var (
		ids     []string
		weights []int
		pool    []uint32
	)
	for i := range s.targets {
		if t := &s.targets[i].t; t.Weight > 0 {
			ids = append(ids, t.ID)
			weights = append(weights, t.Weight)
			pool = append(pool, uint32(i))
		}
	}
	m := b.cfg.maglevSize
	if m == 0 {
		m = maglevSizeFor(len(s.targets))
	}
	if b.mg == nil || b.mg.m != m || !slices.Equal(b.mg.ids, ids) || !slices.Equal(b.mg.weights, weights) {
		b.mg = &maglev{ids: ids, weights: weights, m: m, table: buildMaglev(ids, weights, m)}
	}
	v := &maglevView{m: int(m), base: b.mg.table, up: make([]bool, len(pool)), pool: pool}
	var (
		upIDs     []string
		upWeights []int
		upPos     []uint32
	)
	for p, i := range pool {
		if s.targets[i].t.Health == Healthy {
			v.up[p] = true
			upIDs = append(upIDs, ids[p])
			upWeights = append(upWeights, weights[p])
			upPos = append(upPos, uint32(p))
		}
	}
	if len(upPos) < len(pool) && len(upPos) > 0 {
		fb := buildMaglev(upIDs, upWeights, m)
		for x, q := range fb {
			fb[x] = upPos[q]
		}
		v.fallback = fb
	}
	return v
}
