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

	t      *table[[16]byte]
	remote *remote // nil without WithStore

	noSource     atomic.Uint64 // lookups without a valid Source
	repicks      atomic.Uint64
	remembered   atomic.Uint64
	storeServed  atomic.Uint64 // local misses the store answered with a usable target
	storeRepicks atomic.Uint64 // local misses the store answered with an unusable one
}

// NewSourceIP returns a source-IP policy, or an error listing every invalid
// option. Options: WithTargetState, WithDuration, WithClock,
// WithStopOnDrain, WithCapacity, WithPrefix, WithStore, WithStoreTimeout.
func NewSourceIP(opts ...SourceIPOption) (*SourceIP, error) {
	c, err := newConfig(kindSourceIP, func(c *config) {
		for _, o := range opts {
			if o == nil {
				c.nilOption = true
				continue
			}
			o.applySourceIP(c)
		}
	})
	if err != nil {
		return nil, err
	}
	p := &SourceIP{
		state:       c.state,
		stopOnDrain: c.stopOnDrain,
		clock:       newClock(c.clock),
		v4Bits:      c.v4Bits,
		v6Bits:      c.v6Bits,
		seed:        [2]uint64{rand.Uint64(), rand.Uint64()},
		t:           newTable[[16]byte](int64(c.duration), c.capacity),
		remote:      newRemote(c),
	}
	p.t.saveEvery = saveEvery(c)
	return p, nil
}

// Lookup returns the target remembered for r.Source (or its prefix) when
// the session is live and the target's state allows it; a hit refreshes the
// session. It takes one shard lock and allocates nothing. With a Store, a
// local miss asks the store (see Store).
func (p *SourceIP) Lookup(r Request) (string, bool) {
	k, ok := p.key(r.Source)
	if !ok {
		p.noSource.Add(1)
		return "", false
	}
	h, now := p.hash(&k), p.now()
	id, ok := p.t.get(h, k, now)
	if !ok {
		if p.remote == nil {
			return "", false
		}
		return p.lookupStore(h, &k, now)
	}
	if !usable(p.state, p.stopOnDrain, id) {
		p.repicks.Add(1)
		return "", false
	}
	return id, true
}

// lookupStore asks the store about a key the local table missed and, when
// the target it names is usable, remembers it locally.
func (p *SourceIP) lookupStore(h uint64, k *[16]byte, now int64) (string, bool) {
	id, ok := p.remote.load(sourceKey(k, p.v4Bits, p.v6Bits), now)
	if !ok {
		return "", false
	}
	if !usable(p.state, p.stopOnDrain, id) {
		p.storeRepicks.Add(1)
		return "", false
	}
	p.t.put(h, *k, id, now)
	p.storeServed.Add(1)
	return id, true
}

// Remember records that r.Source was sent to target id, creating, moving
// or refreshing its session (and writing it to the Store when it is new,
// moved, or due to be refreshed there). When the table is full of live sessions a new
// client is refused and counted (Stats.Refused). An invalid Source or an
// empty id is ignored. resp is not used.
func (p *SourceIP) Remember(r Request, id string, _ Response) {
	k, ok := p.key(r.Source)
	if !ok || id == "" {
		return
	}
	now := p.now()
	changed, _, save := p.t.putSave(p.hash(&k), k, id, now)
	if changed {
		p.remembered.Add(1)
	}
	if save && p.remote != nil {
		p.remote.save(sourceKey(&k, p.v4Bits, p.v6Bits), id, now)
	}
}

// Stats returns the policy's counters. It first drops expired sessions, so
// Entries counts live ones.
func (p *SourceIP) Stats() Stats {
	rep := p.repicks.Load()        // before the table's found count, which includes it
	served := p.storeServed.Load() // before the table's missed count, which includes it
	ts := p.t.stats(p.now())
	st := Stats{
		Hits:       ts.found - rep + served,
		Misses:     ts.missed - served + rep + p.noSource.Load(),
		Repicks:    rep + p.storeRepicks.Load(),
		Remembered: p.remembered.Load(),
		Refused:    ts.refused,
		Entries:    ts.entries,
		Expired:    ts.expired,
	}
	p.remote.stats(&st)
	return st
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
