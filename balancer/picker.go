package balancer

import (
	"cmp"
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
	// Exclude lists target IDs not to pick, for a retry after a failed
	// connection: every algorithm then chooses among the other eligible
	// targets (the hash algorithms deterministically, so every node retries
	// a given client on the same target), and Pick returns ErrNoTarget when
	// all are excluded. Keep it short; it is scanned linearly. A slice over
	// a stack array keeps Pick allocation-free.
	Exclude []string
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
	if s.algo == RoundRobin && len(info.Exclude) > 0 {
		// A retry takes the next target of the cycle without moving the
		// cursor: were it to consume a slot, the next request would start
		// where the failed one did, and with one slow target of two every
		// request would start on it.
		var ok bool
		if i, ok = s.roundRobinAvoiding(b, info.Exclude); !ok {
			b.noTarget.Add(1)
			return Pick{}, ErrNoTarget
		}
	} else {
		i = s.pick(b, &info, 0)
	}
	if len(info.Exclude) > 0 && excluded(info.Exclude, s.targets[i].t.ID) {
		var ok bool
		if i, ok = s.pickAvoiding(b, &info); !ok {
			b.noTarget.Add(1)
			return Pick{}, ErrNoTarget
		}
	}
	e := &s.targets[i]
	if s.algo == LeastConnections {
		e.ep.active.Add(1)
		return Pick{Target: e.t, ep: e.ep}, nil
	}
	return Pick{Target: e.t}, nil
}

// PickTarget returns a Pick of the target with the given ID, whatever its
// health and weight, for callers that chose the target themselves: a sticky
// session going back to its target. Under LeastConnections it is counted
// like any pick, so release it with Done. ok is false when the balancer does
// not hold the ID. Like Pick, it takes no lock and allocates nothing.
func (b *Balancer) PickTarget(id string) (p Pick, ok bool) {
	s := b.snap.Load()
	if s == nil {
		return Pick{}, false
	}
	i, ok := slices.BinarySearchFunc(s.targets, id, func(e entry, id string) int { return cmp.Compare(e.t.ID, id) })
	if !ok {
		return Pick{}, false
	}
	e := &s.targets[i]
	if s.algo == LeastConnections {
		e.ep.active.Add(1)
		return Pick{Target: e.t, ep: e.ep}, true
	}
	return Pick{Target: e.t}, true
}

// pick returns the position of the target the algorithm chooses. attempt
// perturbs the hash algorithms' key so that a retry avoiding a target lands
// elsewhere, deterministically.
func (s *snapshot) pick(b *Balancer, info *PickInfo, attempt uint64) uint32 {
	switch s.algo {
	case RoundRobin:
		return s.sched[(b.cursor.Add(1)-1)%uint64(len(s.sched))]
	case LeastConnections:
		return s.leastConnections(b, info.Exclude)
	case SourceIPHash:
		return s.mg.lookup(rehash(HashAddr(info.Source), attempt))
	case KeyHash:
		return s.mg.lookup(rehash(info.Hash, attempt))
	default: // Random
		return s.alias.sample(s.rand())
	}
}

// roundRobinAvoiding returns the first target of the cycle, from the
// cursor on, that is not excluded, leaving the cursor where it is. ok is
// false when every eligible target is excluded.
func (s *snapshot) roundRobinAvoiding(b *Balancer, exclude []string) (uint32, bool) {
	n := uint64(len(s.sched))
	at := b.cursor.Load()
	for k := range n {
		if i := s.sched[(at+k)%n]; !excluded(exclude, s.targets[i].t.ID) {
			return i, true
		}
	}
	return 0, false
}

// maxAvoidAttempts bounds the re-picks that try to avoid excluded targets
// before falling back to a scan.
const maxAvoidAttempts = 8

// pickAvoiding re-picks until the choice is not excluded: a few tries of the
// algorithm (so a retry stays balanced), then the first eligible target in
// ID order that is not excluded. ok is false when every eligible target is
// excluded.
func (s *snapshot) pickAvoiding(b *Balancer, info *PickInfo) (uint32, bool) {
	for attempt := uint64(1); attempt <= maxAvoidAttempts; attempt++ {
		if i := s.pick(b, info, attempt); !excluded(info.Exclude, s.targets[i].t.ID) {
			return i, true
		}
	}
	for _, i := range s.elig {
		if !excluded(info.Exclude, s.targets[i].t.ID) {
			return i, true
		}
	}
	return 0, false
}

func excluded(ids []string, id string) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

func rehash(h, attempt uint64) uint64 {
	if attempt == 0 {
		return h
	}
	return mix64(h + attempt*0x9e3779b97f4a7c15)
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
// least (active+1)/weight, skipping excluded targets: all compared from a
// rotating start (ties go round-robin) up to exactLimit targets; above it,
// the better of two weighted random choices (an excluded choice is then
// re-picked by Pick).
func (s *snapshot) leastConnections(b *Balancer, exclude []string) uint32 {
	n := len(s.elig)
	if n > s.exactLimit {
		x, y := s.alias.sample(s.rand()), s.alias.sample(s.rand())
		if s.lessLoaded(y, x) {
			return y
		}
		return x
	}
	var at uint64
	if len(exclude) > 0 {
		at = b.cursor.Load() // a retry leaves the ties' rotation alone
	} else {
		at = b.cursor.Add(1) - 1
	}
	start := int(at % uint64(n))
	best := s.elig[start]
	bestOK := !excluded(exclude, s.targets[best].t.ID)
	for k := 1; k < n; k++ {
		j := start + k
		if j >= n {
			j -= n
		}
		c := s.elig[j]
		if len(exclude) > 0 && excluded(exclude, s.targets[c].t.ID) {
			continue
		}
		if !bestOK || s.lessLoaded(c, best) {
			best, bestOK = c, true
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
