package sticky

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"sync/atomic"
)

// SourceIP is session persistence by client IP address, at L4 and L7: a
// client's connections, flows or requests go to the target it was first
// sent to, for as long as it keeps coming back within the duration.
//
// It is a table with a capacity (WithCapacity), sharded so that lookups on
// different cores rarely share a lock. Lookup takes one shard lock and
// allocates nothing. Expiry costs no goroutine and no timer (see the
// package documentation), so a SourceIP holds nothing to close: drop it and
// the garbage collector takes it.
//
// Keys are whole addresses by default, or prefixes (WithPrefix) for
// clients behind NATs that rotate addresses.
//
// Make one with NewSourceIP; the zero SourceIP is not usable. All methods
// are safe for concurrent use.
type SourceIP struct {
	state       func(id string) TargetState
	stopOnDrain bool
	clock       clock
	v4Bits      int
	v6Bits      int
	seed        [2]uint64 // keys the shard hash, so clients cannot aim at one shard

	t *table[[16]byte]

	noSource   atomic.Uint64 // lookups without a valid Source
	repicks    atomic.Uint64
	remembered atomic.Uint64
}

// NewSourceIP returns a source-IP policy, or an error listing every invalid
// option. Options: WithTargetState, WithDuration, WithClock,
// WithStopOnDrain, WithCapacity, WithPrefix.
func NewSourceIP(opts ...Option) (*SourceIP, error) {
	c, err := newConfig(kindSourceIP, opts)
	if err != nil {
		return nil, err
	}
	return &SourceIP{
		state:       c.state,
		stopOnDrain: c.stopOnDrain,
		clock:       newClock(c.clock),
		v4Bits:      c.v4Bits,
		v6Bits:      c.v6Bits,
		seed:        [2]uint64{rand.Uint64(), rand.Uint64()},
		t:           newTable[[16]byte](int64(c.duration), c.capacity),
	}, nil
}

// Lookup returns the target remembered for r.Source (or its prefix) when
// the session is live and the target's state allows it; a hit refreshes the
// session. It takes one shard lock and allocates nothing.
func (p *SourceIP) Lookup(r Request) (string, bool) {
	k, ok := p.key(r.Source)
	if !ok {
		p.noSource.Add(1)
		return "", false
	}
	id, ok := p.t.get(p.hash(&k), k, p.now())
	if !ok {
		return "", false
	}
	if !usable(p.state, p.stopOnDrain, id) {
		p.repicks.Add(1)
		return "", false
	}
	return id, true
}

// Remember records that r.Source was sent to target id, creating, moving
// or refreshing its session. When the table is full of live sessions a new
// client is refused and counted (Stats.Refused). An invalid Source or an
// empty id is ignored. resp is not used.
func (p *SourceIP) Remember(r Request, id string, _ Response) {
	k, ok := p.key(r.Source)
	if !ok || id == "" {
		return
	}
	if changed, _ := p.t.put(p.hash(&k), k, id, p.now()); changed {
		p.remembered.Add(1)
	}
}

// Stats returns the policy's counters. It first drops expired sessions, so
// Entries counts live ones.
func (p *SourceIP) Stats() Stats {
	rep := p.repicks.Load() // before the table's found count, which includes it
	ts := p.t.stats(p.now())
	return Stats{
		Hits:       ts.found - rep,
		Misses:     ts.missed + rep + p.noSource.Load(),
		Repicks:    rep,
		Remembered: p.remembered.Load(),
		Refused:    ts.refused,
		Entries:    ts.entries,
		Expired:    ts.expired,
	}
}

// key returns the table key of a client address: the address masked to its
// family's prefix, IPv4 (and IPv4-mapped IPv6) as ::ffff:a.b.c.d, zone
// dropped.
func (p *SourceIP) key(a netip.Addr) ([16]byte, bool) {
	if !a.IsValid() {
		return [16]byte{}, false
	}
	a = a.Unmap()
	bits := p.v6Bits
	if a.Is4() {
		bits = p.v4Bits
	}
	if bits == a.BitLen() {
		return a.As16(), true // As16 drops the zone
	}
	pfx, err := a.Prefix(bits) // drops the zone too
	if err != nil {
		return [16]byte{}, false
	}
	return pfx.Addr().As16(), true
}

// hash spreads keys over shards: wyhash's mixing step (a 128-bit product
// folded to 64 bits) of the key's halves under per-table seeds, a few
// instructions where xxhash of 16 bytes costs several times more.
func (p *SourceIP) hash(k *[16]byte) uint64 {
	hi, lo := bits.Mul64(binary.LittleEndian.Uint64(k[:8])^p.seed[0], binary.LittleEndian.Uint64(k[8:])^p.seed[1])
	return hi ^ lo
}

// now returns the table time: nanoseconds since the clock's first reading.
func (p *SourceIP) now() int64 { return p.clock.since() }

// usable applies the usability rule to a remembered target.
func usable(state func(string) TargetState, stopOnDrain bool, id string) bool {
	switch state(id) {
	case Usable:
		return true
	case Draining:
		return !stopOnDrain
	}
	return false // Unusable, and any unknown state: never pin to what may be dead
}
