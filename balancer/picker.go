package balancer

import (
	"net/netip"
	"slices"
)

// PickInfo carries what a pick may depend on. Fields an algorithm does not
// use are ignored; the zero PickInfo suits RoundRobin, LeastConnections and
// Random.
type PickInfo struct {
	// Source is the client address; SourceIPHash maps it to a target (see
	// HashAddr). An invalid (zero) Source hashes like any other key.
	Source netip.Addr
	// Hash is the key hash KeyHash maps to a target, from HashString or
	// HashBytes of a URI, header or cookie value.
	Hash uint64
}

// Pick is the result of Balancer.Pick: the chosen target, and the handle
// that releases it.
type Pick struct {
	// Target is a copy of the chosen target as it was in the snapshot the
	// pick used.
	Target Target
	ep     *endpoint // set when the pick was counted (LeastConnections)
}

// Done releases the pick. For a LeastConnections pick, the target's count of
// active picks goes down by one; for other algorithms Done does nothing, as
// they keep no count. Call it exactly once per successful Pick, when the
// connection or request the pick was for ends, whatever the algorithm: code
// that does so keeps working when the algorithm changes. Done on a zero Pick
// does nothing.
func (p Pick) Done() {
	if p.ep != nil {
		p.ep.active.Add(-1)
	}
}

// Pick chooses a target for a new connection or request. It takes no lock,
// allocates nothing and never blocks. It returns ErrNoTarget when no target
// is Healthy with a weight above 0.
//
// Only LeastConnections counts active picks: the count costs two atomic
// read-modify-writes per connection (Pick and Done), which would double the
// cost of a round-robin or hash pick for a number nobody reads. So after a
// switch to LeastConnections, connections picked before the switch are not
// counted; the counts converge as those connections end, and picks made
// under LeastConnections are released correctly after any later switch.
func (b *Balancer) Pick(info PickInfo) (Pick, error) {
	s := b.snap.Load()
	if s == nil || len(s.elig) == 0 {
		b.noTarget.Add(1)
		return Pick{}, ErrNoTarget
	}
	var i uint32
	switch s.algo {
	case RoundRobin:
		i = s.sched[(b.cursor.Add(1)-1)%uint64(len(s.sched))]
	case LeastConnections:
		e := &s.targets[s.leastConnections(b)]
		e.ep.active.Add(1)
		return Pick{Target: e.t, ep: e.ep}, nil
	case SourceIPHash:
		i = s.mg.lookup(HashAddr(info.Source))
	case KeyHash:
		i = s.mg.lookup(info.Hash)
	default: // Random
		i = s.alias.sample(s.rand())
	}
	return Pick{Target: s.targets[i].t}, nil
}

// snapshot is an immutable view of the targets with the picking structure of
// one algorithm. Positions in the structures index targets.
type snapshot struct {
	algo    Algorithm
	targets []entry  // every target, sorted by ID
	elig    []uint32 // positions of Healthy targets of weight > 0, ascending

	sched      []uint32   // RoundRobin: one smooth cycle
	alias      aliasTable // Random; LeastConnections above exactLimit
	exactLimit int
	rand       func() uint64
	mg         *maglevView // SourceIPHash, KeyHash
}

type entry struct {
	t  Target
	ep *endpoint
}

// build returns a snapshot of b.targets for b.cfg.algo; b.mu is held.
func (b *Balancer) build() *snapshot {
	s := &snapshot{
		algo:       b.cfg.algo,
		targets:    make([]entry, len(b.targets)),
		exactLimit: b.cfg.exactLimit,
		rand:       b.cfg.rand,
	}
	var weights []int
	for i, t := range b.targets {
		s.targets[i] = entry{t: t, ep: b.eps[t.ID]}
		if t.eligible() {
			s.elig = append(s.elig, uint32(i))
			weights = append(weights, t.Weight)
		}
	}
	switch s.algo {
	case RoundRobin:
		for _, p := range buildSchedule(weights) {
			s.sched = append(s.sched, s.elig[p])
		}
	case LeastConnections, Random:
		s.alias = newAliasTable(slices.Clone(s.elig), weights)
	case SourceIPHash, KeyHash:
		s.mg = b.maglevView(s)
	}
	return s
}

// leastConnections returns the position of the eligible target with the
// least (active+1)/weight: all compared from a rotating start (ties go
// round-robin) up to exactLimit targets, the better of two weighted random
// choices above.
func (s *snapshot) leastConnections(b *Balancer) uint32 {
	n := len(s.elig)
	if n > s.exactLimit {
		x, y := s.alias.sample(s.rand()), s.alias.sample(s.rand())
		if s.lessLoaded(y, x) {
			return y
		}
		return x
	}
	start := int((b.cursor.Add(1) - 1) % uint64(n))
	best := s.elig[start]
	for k := 1; k < n; k++ {
		j := start + k
		if j >= n {
			j -= n
		}
		if c := s.elig[j]; s.lessLoaded(c, best) {
			best = c
		}
	}
	return best
}

// lessLoaded reports whether target x would be less loaded than y after one
// more pick: (ax+1)/wx < (ay+1)/wy, compared in integers.
func (s *snapshot) lessLoaded(x, y uint32) bool {
	ex, ey := &s.targets[x], &s.targets[y]
	ax, ay := ex.ep.active.Load()+1, ey.ep.active.Load()+1
	return ax*int64(ey.t.Weight) < ay*int64(ex.t.Weight)
}
