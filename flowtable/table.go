package flowtable

import (
	"errors"
	"fmt"
	"math/bits"
	"reflect"
	"sync"
	"sync/atomic"
	"time"
)

const cacheLine = 64

// Table is a flow table: flows keyed by their 5-tuple, each holding a value
// of type V (typically a pointer to the proxy's per-flow state), with
// per-protocol idle timeouts, a capacity, an optional per-source limit and
// counters.
//
// Lookups take no lock, allocate nothing and never read the system clock.
// New flows, deletions and expiry lock one shard. All methods are safe for
// concurrent use. Make tables with New; the zero Table is not usable. Close a
// table to stop its sweeper.
type Table[V any] struct {
	// Read by every lookup; tick is written once per sweep.
	shards []shard[V]
	shift  uint   // 64 - log2(len(shards)): a key's shard is the top bits of its hash
	seed   uint64 // mixed into every key's hash, so that clients cannot aim collisions
	// tick is the coarse clock: the number of sweep intervals from the
	// table's epoch to the latest sweep, plus 1 (0 marks a flow that is not
	// live, see entry.seen). Only Sweep advances it, and never backwards.
	tick atomic.Uint64
	_    [cacheLine]byte

	// reserved counts live flows plus creations in progress, against the
	// capacity. Every new and removed flow writes it: a line of its own.
	reserved atomic.Int64
	_        [cacheLine - 8]byte

	timeouts  [numProtos]atomic.Uint32 // idle timeout of new flows, in ticks
	durations [numProtos]atomic.Int64  // the same as set, for IdleTimeout
	// utimeouts is the idle timeout of unreplied flows per protocol, in
	// ticks; 0: flows of that protocol start replied (never on
	// probation). Fixed at New.
	utimeouts [numProtos]uint32
	stream    uint64 // ticks after its first reply that make a flow two-way (streamAfter)
	// probation counts the flows in the shards' probation lists, so that
	// eviction gives up at once when there are none.
	probation atomic.Int64
	evictNext atomic.Uint32 // the shard where the next eviction starts looking
	src       *sources      // per-source counts; nil without a limit
	onExpire  func(Key, V)
	onEvict   func(Key, V)                       // evicted flows' callback: onEvict, else onExpire
	idleCheck func(Key, V) (time.Duration, bool) // see WithIdleCheck; nil for none
	cfg       config
	epoch     time.Time
	closed    atomic.Bool

	sweepMu  sync.Mutex       // serialises sweeps; guards expired, expNext and sweepNow
	sweepNow time.Time        // the clock reading of the sweep in progress, for idleCheck
	expired  []expiredFlow[V] // flows expired by sweeps, their callbacks due from expNext on
	expNext  int

	stop      chan struct{} // closed by Close; nil with WithManualSweep
	done      chan struct{} // closed when the sweeper returns; nil with WithManualSweep
	closeOnce sync.Once
}

// entry is one flow. Lookups reach it without a lock, so everything they
// read is fixed before the entry is published, except seen, which is atomic:
// key before the entry enters the index, val before seen first becomes
// non-zero. The wheel fields, state and timeout are touched only under the
// shard's mutex.
//
// Lookups read key, seen and val, so they come first; with V a pointer the
// entry is 80 bytes, and state fits in what was padding.
type entry[V any] struct {
	key  ckey
	list uint16 // wheel list holding the entry; noList once removed
	// state is the flow's probation: stateProbation while it is unreplied
	// (see WithUnrepliedTimeout), stateReplied once Ref.Replied was called,
	// and in the low bits the tick of that first reply modulo 1<<14, which
	// is enough: the flow leaves probation (or expires) within its unreplied
	// timeout of that tick, and a wrong reading of a wrapped tick only
	// delays leaving it.
	state   uint16
	timeout uint32 // idle timeout in ticks, fixed at creation unless SetFlowTimeout
	// seen is the tick of the flow's latest lookup, or 0 while the flow is
	// pending (its creation is in progress) or dead (deleted or expired).
	// Lookups raise it with compare-and-swap, never lower it and never set
	// it to 0; removal sets it to 0 under the shard's mutex. Because the
	// expiry check and a lookup's refresh both act on this one word, a
	// Lookup that returns a flow has either refreshed it before the sweep
	// looked, or seen it before it died: it never returns a flow on which
	// the expiry callback has already run.
	seen       atomic.Uint64
	val        V
	prev, next *entry[V] // wheel bucket list
}

// shard is a part of the table: its index, its timing wheel and its
// counters.
type shard[V any] struct {
	_ [cacheLine]byte
	// idx is read by every lookup and replaced only when the index is
	// rebuilt, so it sits alone on its cache line, away from the mutex and
	// counters that writers dirty.
	idx atomic.Pointer[index[V]]
	_   [cacheLine - 8]byte

	mu      sync.Mutex   // guards the fields below, the groups of idx, and the wheel fields of entries
	cond    sync.Cond    // L is &mu; broadcast when a pending flow is published or abandoned
	waiters atomic.Int32 // goroutines waiting in cond for a pending flow; see create
	count   int          // entries in idx, live and pending
	used    int          // slots of idx not empty: count plus tombstones
	wheel[V]
	cnt [numProtos]counters // atomics written under mu, read by Stats without it
}

// The bits of entry.state.
const (
	stateProbation = 1 << 15
	stateReplied   = 1 << 14
	replyTickMask  = 1<<14 - 1
)

// streamAfter is how long after its destination's first answer a flow must
// still see traffic to leave probation: conntrack's rule for a UDP flow to
// become ASSURED ("still active after two seconds"). A one-shot query and
// its answer (a spoofed datagram that the target answers, or a DNS lookup)
// stay unreplied flows.
const streamAfter = 2 * time.Second

// expiredFlow is a flow removed by a sweep, waiting for its callback.
type expiredFlow[V any] struct {
	key ckey
	val V
}

// New returns an empty Table configured by opts, or an error listing every
// invalid option. Unless WithManualSweep is given, it starts the table's
// sweeper goroutine; Close stops it.
func New[V any](opts ...Option) (*Table[V], error) {
	cfg := defaultConfig()
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	err := cfg.validate()
	var onExpire func(Key, V)
	if cfg.onExpire != nil {
		f, ok := cfg.onExpire.(func(Key, V))
		if !ok {
			err = errors.Join(err, fmt.Errorf("%w: expiry callback is a %T, want func(flowtable.Key, %v) for this table",
				ErrInvalidOption, cfg.onExpire, reflect.TypeFor[V]()))
		}
		onExpire = f
	}
	onEvict := onExpire
	if cfg.onEvict != nil {
		f, ok := cfg.onEvict.(func(Key, V))
		if !ok {
			err = errors.Join(err, fmt.Errorf("%w: eviction callback is a %T, want func(flowtable.Key, %v) for this table",
				ErrInvalidOption, cfg.onEvict, reflect.TypeFor[V]()))
		}
		onEvict = f
	}
	idleCheck, ierr := idleCheckOf[V](cfg.idleCheck)
	err = errors.Join(err, ierr)
	if err != nil {
		return nil, err
	}
	cfg.withDefaults()

	t := &Table[V]{
		shards:    make([]shard[V], cfg.shards),
		shift:     uint(64 - bits.TrailingZeros(uint(cfg.shards))),
		seed:      cfg.seed,
		onExpire:  onExpire,
		onEvict:   onEvict,
		idleCheck: idleCheck,
		cfg:       cfg,
		epoch:     cfg.clock(),
	}
	t.tick.Store(1)
	for i, d := range cfg.timeouts {
		n, _ := ticksFor(d, cfg.interval) // validated
		t.timeouts[i].Store(n)
		t.durations[i].Store(int64(d))
	}
	for i, d := range cfg.unreplied {
		if d > 0 {
			t.utimeouts[i], _ = ticksFor(d, cfg.interval) // validated
		}
	}
	st, _ := ticksFor(streamAfter, cfg.interval)
	t.stream = uint64(st)
	if cfg.maxPerSource > 0 {
		t.src = newSources(cfg.shards, int32(min(cfg.maxPerSource, 1<<31-1)), cfg.seed)
	}
	for i := range t.shards {
		s := &t.shards[i]
		s.idx.Store(newIndex[V](1))
		s.cond.L = &s.mu
		s.swept = 1
		s.total = &t.probation
	}
	if !cfg.manual {
		t.stop = make(chan struct{})
		t.done = make(chan struct{})
		tk := time.NewTicker(cfg.interval)
		go t.sweeper(tk)
	}
	return t, nil
}

// pack returns the compact form of k and its hash, or ok false for an
// invalid key.
func (t *Table[V]) pack(k Key) (ck ckey, h uint64, ok bool) {
	if ck, ok = makeKey(k); !ok {
		return ck, 0, false
	}
	return ck, ck.hash(t.seed), true
}

func (t *Table[V]) shardOf(h uint64) *shard[V] { return &t.shards[h>>t.shift] }

// touch records a lookup of e at the current coarse tick and reports whether
// e is live. It raises seen and never lowers it, so that of two lookups
// racing across a tick the later tick wins; when seen is already current it
// writes nothing, so that a flow's cache line is dirtied once per tick at
// most, not once per packet.
func (t *Table[V]) touch(e *entry[V]) bool {
	w := e.seen.Load()
	if w == 0 {
		return false
	}
	now := t.tick.Load()
	for w < now {
		if e.seen.CompareAndSwap(w, now) {
			return true
		}
		if w = e.seen.Load(); w == 0 {
			return false
		}
	}
	return true
}

// Lookup returns the value of the flow with key k and records the lookup as
// traffic: the flow's idle time starts again. It takes no lock, allocates
// nothing and reads the coarse clock, not the system clock. The UDP proxy
// calls it for every datagram.
//
// A flow whose creation is still in progress (see LoadOrCreate) is not found.
func (t *Table[V]) Lookup(k Key) (v V, ok bool) {
	ck, h, valid := t.pack(k)
	if !valid {
		return v, false
	}
	e := t.shardOf(h).idx.Load().find(h, &ck)
	if e == nil || !t.touch(e) {
		return v, false
	}
	return e.val, true
}

// LoadOrCreate returns the value of the flow with key k, as Lookup does, or,
// when there is none, makes one with the value that create returns. created
// reports whether this call made the flow.
//
// Creation happens once per flow: while one caller runs create for a key,
// the other callers for that key wait for it and then return its value. If
// create fails (returns an error or panics), nothing is stored, its error is
// returned to its caller, and one of the waiting callers runs its own create.
// create runs without any lock of the table held, so it may dial a socket or
// use the table, except to call LoadOrCreate for the same key, which would
// wait for itself. A nil create makes a flow with the zero value.
//
// Before create runs, the new flow is checked against the capacity and the
// per-source limit. When the table is full, an unreplied flow (see
// WithUnrepliedTimeout) is evicted to make room if there is one; otherwise,
// and when the source is at its limit, the flow is refused with ErrFull or
// ErrSourceLimit and counted, create is not called, and no other flow is
// touched. LoadOrCreate returns ErrInvalidKey for an invalid key and,
// after Close, ErrClosed for a new flow. These errors are returned unwrapped and refusing
// allocates nothing.
//
// A new flow's idle timeout is the one in force for its protocol when
// LoadOrCreate is called.
func (t *Table[V]) LoadOrCreate(k Key, create func() (V, error)) (v V, created bool, err error) {
	return t.loadOrCreate(k, create, nil)
}

// LoadOrCreateRef is LoadOrCreate for owners that keep a handle on their
// flows: create is given the new flow's Ref, with which the owner records
// traffic (Ref.Touch) and its destination's answers (Ref.Replied) without
// hashing the key again. A nil create makes a flow with the zero value.
func (t *Table[V]) LoadOrCreateRef(k Key, create func(Ref[V]) (V, error)) (v V, created bool, err error) {
	return t.loadOrCreate(k, nil, create)
}

func (t *Table[V]) loadOrCreate(k Key, create func() (V, error), createRef func(Ref[V]) (V, error)) (v V, created bool, err error) {
	ck, h, valid := t.pack(k)
	if !valid {
		return v, false, ErrInvalidKey
	}
	s := t.shardOf(h)
	if e := s.idx.Load().find(h, &ck); e != nil && t.touch(e) {
		return e.val, false, nil
	}
	return t.create(s, h, &ck, create, createRef)
}

// Ref refers to one flow of a table, for the flow's owner to act on it
// without looking its key up again: LoadOrCreateRef gives it to the function
// that makes the flow. A Ref outlives its flow harmlessly: once the flow is
// gone (deleted, expired or evicted), its methods do nothing, even if a new
// flow was made for the same key. The zero Ref refers to no flow.
type Ref[V any] struct {
	t *Table[V]
	e *entry[V]
}

// Touch records traffic on the flow, as Lookup does: its idle time starts
// again. It reports whether the flow is live. It takes no lock, allocates
// nothing and hashes nothing.
func (r Ref[V]) Touch() bool {
	if r.e == nil {
		return false
	}
	return r.t.touch(r.e)
}

// Replied records that the flow's destination answered (the UDP proxy calls
// it on the first datagram back from the target), and traffic, as Touch. A
// flow on probation (see
// WithUnrepliedTimeout) leaves it once it still sees traffic, either way,
// 2 s after this first answer, as conntrack's ASSURED. It takes the flow's
// shard lock: call it once, on the first answer. It does nothing for a flow
// not on probation, or gone.
func (r Ref[V]) Replied() {
	if r.e == nil {
		return
	}
	t, e := r.t, r.e
	s := t.shardOf(e.key.hash(t.seed))
	s.mu.Lock()
	// Touched under the lock, so that seen is at least the reply's tick
	// for as long as the flow lives (a sweep reads both under it): the
	// rule measures from the reply forward.
	if t.touch(e) && e.state&(stateProbation|stateReplied) == stateProbation {
		e.state |= stateReplied | uint16(e.seen.Load()&replyTickMask)
	}
	s.mu.Unlock()
}

// twoWay reports whether the flow e on probation, last seen at tick w, has
// met the rule to leave it: answered, and traffic streamAfter later.
func (t *Table[V]) twoWay(e *entry[V], w uint64) bool {
	return e.state&stateReplied != 0 && (w-uint64(e.state&replyTickMask))&replyTickMask >= t.stream
}

// timeoutOf returns the idle timeout in force for e, in ticks: its own, or
// its protocol's unreplied timeout if that is shorter and e is on
// probation; s.mu is held.
func (t *Table[V]) timeoutOf(e *entry[V]) uint32 {
	if e.state&stateProbation != 0 {
		if u := t.utimeouts[e.key.protoIdx()]; u < e.timeout {
			return u
		}
	}
	return e.timeout
}

// confirm takes e, last seen at tick w, off probation if it met the rule,
// and reports whether it did. The caller relinks e (its list changes); s.mu
// is held.
func (t *Table[V]) confirm(e *entry[V], w uint64) bool {
	if e.state&stateProbation == 0 || !t.twoWay(e, w) {
		return false
	}
	e.state &^= stateProbation
	return true
}

// create is the slow path of LoadOrCreate: the flow was not found live
// without the lock.
//
// It reserves capacity and inserts a pending entry (seen 0) under the
// shard's mutex, runs create without the mutex, and publishes the entry by
// storing seen, still without the mutex: the entry is already in the index
// and in the wheel (with the deadline it will have at the earliest), so
// publishing needs no other write. Callers that find the pending entry wait
// on the shard's condition variable. The hand-off is a Dekker pair on
// seen and waiters: a waiter counts itself in waiters before it checks
// seen, the publisher stores seen before it reads waiters, so either the
// waiter sees the flow or the publisher sees the waiter and broadcasts,
// taking the mutex first so that the waiter is already in Wait.
func (t *Table[V]) create(s *shard[V], h uint64, ck *ckey, create func() (V, error), createRef func(Ref[V]) (V, error)) (v V, created bool, err error) {
	p := ck.protoIdx()
	s.mu.Lock()
	for evictions := 0; ; evictions++ {
		e := s.idx.Load().find(h, ck)
		if e != nil {
			s.waiters.Add(1)
			if t.touch(e) {
				s.waiters.Add(-1)
				v = e.val
				s.mu.Unlock()
				return v, false, nil
			}
			// Found but not live under the mutex: pending, as dead entries
			// leave the index in the same critical section that kills them.
			s.cond.Wait()
			s.waiters.Add(-1)
			continue
		}
		if t.closed.Load() {
			err = ErrClosed
			break
		}
		reserved := t.reserve()
		if !reserved && evictions < maxEvictions && t.probation.Load() > 0 {
			// Full: an unreplied flow makes room, if there is one, and
			// its unit of capacity passes to this flow, so that no other
			// caller takes it meanwhile. Another shard's lock is never
			// taken with this one held; the key is looked up again
			// afterwards, as another caller may have made it.
			s.mu.Unlock()
			reserved = t.evict(true)
			s.mu.Lock()
			if reserved && s.idx.Load().find(h, ck) != nil {
				t.reserved.Add(-1)
				continue
			}
		}
		if !reserved {
			s.cnt[p].rejected.Add(1)
			err = ErrFull
			break
		}
		if t.src != nil && !t.src.acquire(ck.source()) {
			t.reserved.Add(-1)
			s.cnt[p].rejectedSource.Add(1)
			err = ErrSourceLimit
		}
		break
	}
	if err != nil {
		s.mu.Unlock()
		return v, false, err
	}
	e := &entry[V]{key: *ck, timeout: t.timeouts[p].Load()}
	if t.utimeouts[p] > 0 {
		e.state = stateProbation
	}
	t.insert(s, h, e)
	now := t.tick.Load()
	s.link(e, now+1+uint64(t.timeoutOf(e)), now)
	s.mu.Unlock()

	published := false
	defer func() {
		if !published { // create failed or panicked: abandon the pending flow
			s.mu.Lock()
			t.removeIndex(s, h, e)
			s.unlink(e)
			t.release(ck)
			s.cond.Broadcast()
			s.mu.Unlock()
		}
	}()
	switch {
	case create != nil:
		v, err = create()
	case createRef != nil:
		v, err = createRef(Ref[V]{t: t, e: e})
	}
	if err != nil {
		var zero V
		return zero, false, err
	}

	e.val = v
	s.cnt[p].created.Add(1)     // before the flow is visible, so that no removal is counted first
	e.seen.Store(t.tick.Load()) // publishes the flow
	published = true
	if s.waiters.Load() > 0 {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	}
	return v, true, nil
}

// maxEvictions bounds how many times one new flow evicts: more than once
// only if another caller made the same key meanwhile.
const maxEvictions = 4

// Evict removes one unreplied flow (see WithUnrepliedTimeout), if there is
// one, and reports whether it did: the flow whose deadline comes first in
// its shard, looking at the shards in turn. The expiry callback runs for it
// on the calling goroutine, with no lock of the table held, and it is
// counted in EvictedFlowCount. A flow that has met the rule to leave
// probation is never evicted, and neither is any flow of a protocol with no
// unreplied timeout.
//
// LoadOrCreate evicts by itself when the table is full; Evict is for owners
// with another limit, such as the proxies' file-descriptor budget.
func (t *Table[V]) Evict() bool { return t.evict(false) }

// evict is Evict; with keep, the evicted flow's unit of capacity is not
// given back but kept for the caller's new flow.
func (t *Table[V]) evict(keep bool) bool {
	if t.probation.Load() == 0 || t.closed.Load() {
		return false
	}
	n := uint32(len(t.shards))
	start := t.evictNext.Add(1)
	for i := range n {
		s := &t.shards[(start+i)&(n-1)]
		if s.nprob.Load() == 0 {
			continue
		}
		if f, ok := t.evictFrom(s, keep); ok {
			if t.onEvict != nil {
				t.onEvict(f.key.key(), f.val)
			}
			return true
		}
	}
	return false
}

// evictFrom evicts the first unreplied flow of s, soonest due first: the
// overdue list, then the buckets in the order the sweep will visit them.
// A flow sits in the bucket of the deadline it had when it was linked, and
// lookups do not move it, so on the way flows refreshed since are moved to
// the bucket of their real deadline (as a sweep would) rather than evicted
// before flows that are idle; flows found to have met the rule to leave
// probation are moved out; pending ones are left alone.
func (t *Table[V]) evictFrom(s *shard[V], keep bool) (expiredFlow[V], bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tick := t.tick.Load()
	for i := range uint64(lists) {
		b := uint16(probBase + overdue)
		if i > 0 {
			b = uint16(probBase + (s.swept+i)&wheelMask)
		}
		for e := s.heads[b]; e != nil; {
			next := e.next
			w := e.seen.Load()
			switch {
			case w == 0: // pending
			case t.confirm(e, w):
				s.unlink(e)
				s.link(e, w+1+uint64(e.timeout), tick)
			case w+1+uint64(t.timeoutOf(e)) > tick && listOf(true, w+1+uint64(t.timeoutOf(e)), tick) != b:
				s.unlink(e) // refreshed since it was linked: not the next due
				s.link(e, w+1+uint64(t.timeoutOf(e)), tick)
			case e.seen.CompareAndSwap(w, 0):
				t.removeIndex(s, e.key.hash(t.seed), e)
				s.unlink(e)
				if keep {
					if t.src != nil {
						t.src.release(e.key.source())
					}
				} else {
					t.release(&e.key)
				}
				s.cnt[e.key.protoIdx()].evicted.Add(1)
				return expiredFlow[V]{key: e.key, val: e.val}, true
			default:
				continue // a lookup raised seen meanwhile: look again
			}
			e = next
		}
	}
	return expiredFlow[V]{}, false
}

// reserve takes one unit of capacity, or reports that the table is full.
func (t *Table[V]) reserve() bool {
	max := int64(t.cfg.maxFlows)
	for {
		n := t.reserved.Load()
		if n >= max {
			return false
		}
		if t.reserved.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release gives back the capacity and the per-source count of a flow.
func (t *Table[V]) release(ck *ckey) {
	t.reserved.Add(-1)
	if t.src != nil {
		t.src.release(ck.source())
	}
}

// insert adds e to s's index, rebuilding the index first if it has no room
// left; s.mu is held.
func (t *Table[V]) insert(s *shard[V], h uint64, e *entry[V]) {
	x := s.idx.Load()
	if s.used+1 > x.maxUsed() {
		x = t.rebuild(s, groupsFor(s.count+1))
	}
	if x.insert(h, e) {
		s.used++
	}
	s.count++
}

// removeIndex takes e out of s's index, and shrinks the index when it has
// become mostly empty; s.mu is held.
func (t *Table[V]) removeIndex(s *shard[V], h uint64, e *entry[V]) {
	x := s.idx.Load()
	freedEmpty, found := x.remove(h, e)
	if !found {
		return
	}
	if freedEmpty {
		s.used--
	}
	s.count--
	if len(x.groups) > 1 && s.count*8 < x.capacity() {
		t.rebuild(s, groupsFor(s.count))
	}
}

// rebuild replaces s's index by one of the given number of groups holding
// the same entries, without tombstones, and returns it; s.mu is held.
// Lookups go on meanwhile on the old index, which no longer changes.
func (t *Table[V]) rebuild(s *shard[V], groups int) *index[V] {
	old := s.idx.Load()
	x := newIndex[V](groups)
	n := 0
	old.each(func(e *entry[V]) bool {
		x.insert(e.key.hash(t.seed), e)
		n++
		return true
	})
	s.count, s.used = n, n
	s.idx.Store(x)
	return x
}

// kill marks the live entry e dead and removes it; s.mu is held and e is in
// s's index and wheel. It returns false if e was not live.
func (t *Table[V]) kill(s *shard[V], h uint64, e *entry[V]) bool {
	if e.seen.Swap(0) == 0 {
		return false
	}
	t.removeIndex(s, h, e)
	s.unlink(e)
	t.release(&e.key)
	return true
}

// Delete removes the flow with key k and returns its value; the proxies call
// it when a connection closes or is reset. It does not call the expiry
// callback and is counted in DeletedFlowCount, not ExpiredFlowCount. A flow
// whose creation is in progress is not deleted.
func (t *Table[V]) Delete(k Key) (v V, ok bool) {
	ck, h, valid := t.pack(k)
	if !valid {
		return v, false
	}
	s := t.shardOf(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.idx.Load().find(h, &ck)
	if e == nil || !t.kill(s, h, e) {
		return v, false
	}
	s.cnt[ck.protoIdx()].deleted.Add(1)
	return e.val, true
}

// Range calls f for each flow, with its key (without zone) and value, until f
// returns false. It takes no lock, so f may use the table, and it does not
// count as traffic: no flow's idle time is reset. Range sees no consistent
// snapshot: a flow made or removed during the call may or may not be seen,
// and a key deleted and made again may be seen twice (as two flows); any
// other flow is seen exactly once.
func (t *Table[V]) Range(f func(k Key, v V) bool) {
	for i := range t.shards {
		ok := t.shards[i].idx.Load().each(func(e *entry[V]) bool {
			if e.seen.Load() == 0 {
				return true
			}
			return f(e.key.key(), e.val)
		})
		if !ok {
			return
		}
	}
}

// Len returns the number of flows in the table. Creations in progress are
// not counted.
func (t *Table[V]) Len() int {
	n := uint64(0)
	for i := range t.shards {
		for p := range t.shards[i].cnt {
			n += t.shards[i].cnt[p].active()
		}
	}
	return int(n)
}

// SetIdleTimeout sets the idle timeout of protocol p's new flows, d > 0,
// rounded up to a whole number of sweep intervals. Flows already in the
// table keep the timeout they were made with, as on the reference load
// balancer.
func (t *Table[V]) SetIdleTimeout(p Proto, d time.Duration) error {
	i := protoIndex(p)
	if i < 0 {
		return fmt.Errorf("flowtable: idle timeout for protocol %s: %w: only tcp and udp are tracked", p, ErrInvalidOption)
	}
	n, err := ticksFor(d, t.cfg.interval)
	if err != nil {
		return fmt.Errorf("flowtable: %s idle timeout: %w", p, err)
	}
	t.timeouts[i].Store(n)
	t.durations[i].Store(int64(d))
	return nil
}

// IdleTimeout returns the idle timeout of protocol p's new flows, as set, or
// 0 for a protocol the table does not track.
func (t *Table[V]) IdleTimeout(p Proto) time.Duration {
	i := protoIndex(p)
	if i < 0 {
		return 0
	}
	return time.Duration(t.durations[i].Load())
}

// SetFlowTimeout gives the flow with key k its own idle timeout, d > 0,
// rounded up to a whole number of sweep intervals, counted from its latest
// lookup. A shorter timeout that has already passed expires the flow at the
// next sweep. It returns ErrNoFlow if there is no such flow.
func (t *Table[V]) SetFlowTimeout(k Key, d time.Duration) error {
	n, err := ticksFor(d, t.cfg.interval)
	if err != nil {
		return fmt.Errorf("flowtable: flow timeout: %w", err)
	}
	ck, h, valid := t.pack(k)
	if !valid {
		return ErrNoFlow
	}
	s := t.shardOf(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.idx.Load().find(h, &ck)
	if e == nil {
		return ErrNoFlow
	}
	w := e.seen.Load()
	if w == 0 {
		return ErrNoFlow
	}
	e.timeout = n
	s.unlink(e)
	s.link(e, w+1+uint64(t.timeoutOf(e)), t.tick.Load())
	return nil
}

// Close stops the table's sweeper goroutine and waits for it to return; it
// must not be called from the expiry callback. Afterwards no flow expires
// (Sweep does nothing) and LoadOrCreate refuses new flows with ErrClosed,
// while Lookup, LoadOrCreate of existing flows, Delete, Range and Stats keep
// working, so that the owner can drain the flows. Close is idempotent and
// returns nil.
func (t *Table[V]) Close() error {
	t.closed.Store(true)
	if t.stop != nil {
		t.closeOnce.Do(func() { close(t.stop) })
		<-t.done
	}
	return nil
}
