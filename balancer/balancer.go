package balancer

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

// Balancer holds a set of targets and picks among them.
//
// Changes (Add, Remove, Update, SetWeight, SetHealth, SetAlgorithm) are
// serialised by a mutex; each builds a new immutable snapshot and publishes
// it with one atomic store before returning, so the very next Pick sees it.
// Pick takes no lock and allocates nothing: it loads the current snapshot and
// sees either the old or the new one, whole. Picks in flight when a change
// lands finish on the snapshot they loaded.
//
// A zero Balancer is valid: round-robin with no targets, every option at its
// default. All methods are safe for concurrent use.
type Balancer struct {
	snap atomic.Pointer[snapshot]
	_    [56]byte // keep the read-mostly snapshot pointer off the cursor's cache line
	// cursor advances on every round-robin pick (and starts the scan of an
	// exact least-connections pick); it outlives snapshots.
	cursor   atomic.Uint64
	_        [56]byte
	noTarget atomic.Uint64 // picks that returned ErrNoTarget

	mu      sync.Mutex           // serialises changes; guards the fields below
	once    bool                 // cfg defaults applied
	cfg     config               // options; cfg.algo is the current algorithm
	targets []Target             // sorted by ID
	eps     map[string]*endpoint // live counters of current targets, by ID
	retired map[string]*endpoint // counters of removed targets with picks still open
	mg      *maglev              // last Maglev table, reused while its targets and weights hold
}

// endpoint is the live state of one target, shared by every snapshot that
// holds the target, so counts survive changes of weight, health and
// algorithm.
type endpoint struct {
	active atomic.Int64 // picks not yet released with Done
	_      [56]byte     // written by every pick of this target: a cache line of its own
}

// New returns a Balancer configured by opts, or an error listing every
// invalid option and target.
func New(opts ...Option) (*Balancer, error) {
	b := &Balancer{}
	for _, o := range opts {
		o(&b.cfg)
	}
	if err := b.cfg.validate(); err != nil {
		return nil, err
	}
	b.init()
	ts := b.cfg.targets
	b.cfg.targets = nil
	b.replace(slices.Clone(ts))
	return b, nil
}

// init applies defaults once; b.mu is held or b is not yet shared.
func (b *Balancer) init() {
	if b.once {
		return
	}
	b.once = true
	b.cfg.withDefaults()
	b.eps = make(map[string]*endpoint)
	b.retired = make(map[string]*endpoint)
}

// Add adds targets. If any is invalid or its ID is already held, nothing is
// added and the error lists every problem.
func (b *Balancer) Add(ts ...Target) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.init()
	all := append(slices.Clone(b.targets), ts...)
	if err := validateTargets(all); err != nil {
		return err
	}
	b.replace(all)
	return nil
}

// Remove removes the targets with the given IDs. If any ID is unknown,
// nothing is removed. Picks already made stay valid and their Done still
// releases them; if a target with the same ID is added back while such picks
// are open, its count of active picks carries on from them.
func (b *Balancer) Remove(ids ...string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.init()
	drop := make(map[string]bool, len(ids))
	var errs []error
	for _, id := range ids {
		if _, ok := b.find(id); !ok {
			errs = append(errs, fmt.Errorf("balancer: remove %q: %w", id, ErrUnknownTarget))
		}
		drop[id] = true
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	keep := make([]Target, 0, len(b.targets))
	for _, t := range b.targets {
		if !drop[t.ID] {
			keep = append(keep, t)
		}
	}
	b.replace(keep)
	return nil
}

// Update replaces the whole target set with ts. Targets whose ID stays keep
// their live counters. If any target is invalid, nothing changes and the
// error lists every problem.
func (b *Balancer) Update(ts []Target) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.init()
	if err := validateTargets(ts); err != nil {
		return err
	}
	b.replace(slices.Clone(ts))
	return nil
}

// SetWeight sets the weight of the target with the given ID (0..MaxWeight;
// 0 stops new traffic to it).
func (b *Balancer) SetWeight(id string, weight int) error {
	return b.modify(id, func(t *Target) { t.Weight = weight })
}

// SetHealth sets the health mark of the target with the given ID.
func (b *Balancer) SetHealth(id string, h Health) error {
	return b.modify(id, func(t *Target) { t.Health = h })
}

func (b *Balancer) modify(id string, f func(*Target)) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.init()
	i, ok := b.find(id)
	if !ok {
		return fmt.Errorf("balancer: %q: %w", id, ErrUnknownTarget)
	}
	t := b.targets[i]
	f(&t)
	if err := t.validate(); err != nil {
		return fmt.Errorf("balancer: %q: %w", id, err)
	}
	if t == b.targets[i] {
		return nil
	}
	ts := slices.Clone(b.targets)
	ts[i] = t
	b.replace(ts)
	return nil
}

// SetAlgorithm changes the picking algorithm. Picks already made keep their
// targets; the next pick uses the new algorithm. Connections picked before a
// switch to LeastConnections are not in its counts (see Pick).
func (b *Balancer) SetAlgorithm(a Algorithm) error {
	if !a.valid() {
		return fmt.Errorf("%w: algorithm %d is unknown", ErrInvalidOption, a)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.init()
	if b.cfg.algo == a && b.snap.Load() != nil {
		return nil
	}
	b.cfg.algo = a
	b.replace(b.targets)
	return nil
}

// Algorithm returns the current picking algorithm.
func (b *Balancer) Algorithm() Algorithm {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cfg.algo
}

// Targets returns a copy of the targets, sorted by ID.
func (b *Balancer) Targets() []Target {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.targets)
}

// Target returns the target with the given ID.
func (b *Balancer) Target(id string) (Target, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if i, ok := b.find(id); ok {
		return b.targets[i], true
	}
	return Target{}, false
}

// find returns the position of id in b.targets; b.mu is held.
func (b *Balancer) find(id string) (int, bool) {
	return slices.BinarySearchFunc(b.targets, id, func(t Target, id string) int { return cmp.Compare(t.ID, id) })
}

// replace makes ts (already valid; owned by the callee from now on) the
// target set and publishes a snapshot for it; b.mu is held.
func (b *Balancer) replace(ts []Target) {
	slices.SortFunc(ts, func(x, y Target) int { return cmp.Compare(x.ID, y.ID) })
	eps := make(map[string]*endpoint, len(ts))
	for _, t := range ts {
		ep := b.eps[t.ID]
		if ep == nil {
			ep = b.retired[t.ID]
			delete(b.retired, t.ID)
		}
		if ep == nil {
			ep = new(endpoint)
		}
		eps[t.ID] = ep
	}
	for id, ep := range b.eps {
		if _, ok := eps[id]; !ok && ep.active.Load() > 0 {
			b.retired[id] = ep
		}
	}
	for id, ep := range b.retired {
		if ep.active.Load() <= 0 {
			delete(b.retired, id)
		}
	}
	b.targets, b.eps = ts, eps
	b.snap.Store(b.build())
}
