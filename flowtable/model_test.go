package flowtable

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The model-based test applies random sequences of operations to a Table and
// to model, a plain map that implements the documented behaviour in the most
// direct way, and compares them after every step: results, length, content,
// counters, expiry callbacks, per-source counts and the table's internal
// invariants. Time is a fake clock, so expiry is compared tick for tick.
//
// Probation (WithUnrepliedTimeout) is modelled directly: a flow made while
// its protocol has an unreplied timeout is on probation until Ref.Replied
// was called at some tick r and it was seen at r+2 s or later; until then
// its idle timeout is the shorter of the two, and it may be evicted. The
// table applies the rule lazily (when a sweep or an eviction looks); the
// model applies it at once, which must come to the same. Which unreplied
// flow an eviction takes is the table's choice (the first due in a shard);
// the model checks that it was one it may take, and that a full table
// evicts whenever the model holds one.

// chooser feeds the harness its choices: a seeded PRNG in TestModel, the
// fuzzer's bytes in FuzzModel.
type chooser interface {
	intn(n int) int // in [0, n)
	done() bool
}

type randChooser struct {
	r    *rand.Rand
	left int
}

func (c *randChooser) intn(n int) int { return c.r.IntN(n) }
func (c *randChooser) done() bool {
	c.left--
	return c.left < 0
}

// byteChooser reads choices from fuzz input, one byte each (two when n is
// above 256); exhausted input reads as zeros and ends the run.
type byteChooser struct{ b []byte }

func (c *byteChooser) byte() int {
	if len(c.b) == 0 {
		return 0
	}
	x := c.b[0]
	c.b = c.b[1:]
	return int(x)
}

func (c *byteChooser) intn(n int) int {
	x := c.byte()
	if n > 256 {
		x = x<<8 | c.byte()
	}
	return x % n
}
func (c *byteChooser) done() bool { return len(c.b) == 0 }

// model is the reference flow table.
type model struct {
	interval time.Duration
	tick     uint64
	timeouts [numProtos]uint32
	unrep    [numProtos]uint32 // unreplied timeouts in ticks; 0: off
	stream   uint64            // ticks from the first reply that make a flow two-way
	maxFlows int
	maxSrc   int
	flows    map[Key]*mflow
	srcs     map[[16]byte]int // flows per source address
	cnt      [numProtos]Counters
}

type mflow struct {
	val     int
	seen    uint64
	timeout uint32
	prob    bool   // made on probation
	replied bool   // Ref.Replied was called
	r       uint64 // tick of that call
}

// onProbation reports whether f is still on probation: made so, and not yet
// answered and seen stream ticks after the answer.
func (m *model) onProbation(f *mflow) bool {
	return f.prob && !(f.replied && f.seen >= f.r+m.stream)
}

// deadline is the tick from which f is due.
func (m *model) deadline(k Key, f *mflow) uint64 {
	to := f.timeout
	if u := m.unrep[protoIndex(k.Proto)]; m.onProbation(f) && u < to {
		to = u
	}
	return f.seen + 1 + uint64(to)
}

// evictable returns the model's flows that an eviction may take.
func (m *model) evictable() []Key {
	var ks []Key
	for k, f := range m.flows {
		if m.onProbation(f) {
			ks = append(ks, k)
		}
	}
	return ks
}

// norm returns the key as the table identifies it: without zones.
func norm(k Key) Key {
	k.Src = netip.AddrPortFrom(k.Src.Addr().WithZone(""), k.Src.Port())
	k.Dst = netip.AddrPortFrom(k.Dst.Addr().WithZone(""), k.Dst.Port())
	return k
}

func (m *model) ticks(d time.Duration) uint32 {
	return uint32((d + m.interval - 1) / m.interval)
}

func (m *model) sourceCount(a netip.Addr) int { return m.srcs[addr16of(a)] }

func (m *model) add(k Key, f *mflow) {
	m.flows[k] = f
	m.srcs[addr16of(k.Src.Addr())]++
}

func (m *model) remove(k Key) {
	delete(m.flows, k)
	a := addr16of(k.Src.Addr())
	if m.srcs[a]--; m.srcs[a] == 0 {
		delete(m.srcs, a)
	}
}

func (m *model) total() Counters {
	var c Counters
	c.add(m.cnt[tcpIndex])
	c.add(m.cnt[udpIndex])
	return c
}

// harness drives a table and its model with the same operations.
type harness struct {
	t        testing.TB
	c        chooser
	tb       *Table[int]
	clk      *fakeClock
	m        model
	keys     []Key
	big      bool
	expired  []string // callbacks of the current sweep, as "key=val"
	nextVal  int
	timeouts []time.Duration
	refs     []heldRef // refs given to create functions, live or not
}

// heldRef is a Ref the harness kept, with the model flow it was made for.
type heldRef struct {
	key Key
	ref Ref[int]
	f   *mflow
}

func newHarness(t testing.TB, c chooser) *harness {
	h := &harness{t: t, c: c, clk: newFakeClock(), nextVal: 1}
	h.timeouts = []time.Duration{time.Second, 2 * time.Second, 3500 * time.Millisecond, 10 * time.Second,
		100 * time.Second, 600 * time.Second, 2000 * time.Second}
	shards := []int{1, 2, 8}[c.intn(3)]
	h.big = c.intn(8) == 0
	nkeys, maxFlows := 24+c.intn(24), 1+c.intn(40)
	if h.big {
		nkeys, maxFlows = 3000, 2000+c.intn(1000)
	}
	maxSrc := 0
	if c.intn(2) == 0 {
		maxSrc = 1 + c.intn(6)
		if h.big {
			maxSrc = 50 + c.intn(500)
		}
	}
	tcpTO, udpTO := h.timeouts[c.intn(len(h.timeouts))], h.timeouts[c.intn(len(h.timeouts))]
	h.m = model{interval: time.Second, tick: 1, maxFlows: maxFlows, maxSrc: maxSrc, flows: map[Key]*mflow{}, srcs: map[[16]byte]int{}}
	h.m.timeouts = [numProtos]uint32{h.m.ticks(tcpTO), h.m.ticks(udpTO)}
	h.m.stream = uint64(h.m.ticks(streamAfter))
	// Unreplied timeouts: off, or one of the short timeouts, for UDP
	// mostly, sometimes for TCP too.
	var unrep [numProtos]time.Duration
	for p := range unrep {
		if c.intn(3) >= 2-p { // UDP two times in three, TCP one in three
			unrep[p] = []time.Duration{time.Second, 2 * time.Second, 3500 * time.Millisecond, 10 * time.Second, 30 * time.Second}[c.intn(5)]
			h.m.unrep[p] = h.m.ticks(unrep[p])
		}
	}
	var err error
	h.tb, err = New[int](WithClock(h.clk.Now), WithManualSweep(), WithShards(shards),
		WithMaxFlows(maxFlows), WithMaxFlowsPerSource(maxSrc),
		WithIdleTimeout(TCP, tcpTO), WithIdleTimeout(UDP, udpTO),
		WithUnrepliedTimeout(TCP, unrep[tcpIndex]), WithUnrepliedTimeout(UDP, unrep[udpIndex]),
		WithOnExpire(func(k Key, v int) { h.expired = append(h.expired, fmt.Sprintf("%v=%d", k, v)) }))
	require.NoError(t, err)
	for i := range nkeys {
		h.keys = append(h.keys, modelKey(i))
	}
	return h
}

// modelKey returns the i-th key of the model's universe: few sources, so
// that per-source limits bite; IPv4, IPv6, IPv4-mapped IPv6 (the same
// source as its IPv4 form) and link-local IPv6; both protocols.
func modelKey(i int) Key {
	p := TCP
	if i/2%2 == 1 {
		p = UDP
	}
	n := i / 4 % 6
	var src netip.Addr
	dst := dst4
	switch i % 4 {
	case 0:
		src = netip.AddrFrom4([4]byte{127, 0, 0, byte(n + 1)})
	case 1:
		src = netip.MustParseAddr(fmt.Sprintf("2001:db8::%d", n+1))
		dst = dst6
	case 2:
		src = netip.AddrFrom16(netip.AddrFrom4([4]byte{127, 0, 0, byte(n + 1)}).As16())
		dst = netip.AddrPortFrom(netip.AddrFrom16(dst4.Addr().As16()), dst4.Port())
	case 3:
		src = netip.MustParseAddr(fmt.Sprintf("fe80::%d", n+1))
		dst = dst6
	}
	return Key{Proto: p, Src: netip.AddrPortFrom(src, uint16(1000+i)), Dst: dst}
}

// pick returns a key of the universe, sometimes with a zone, which must not
// matter.
func (h *harness) pick() Key {
	k := h.keys[h.c.intn(len(h.keys))]
	if a := k.Src.Addr(); a.Is6() && !a.Is4In6() && h.c.intn(4) == 0 {
		k.Src = netip.AddrPortFrom(a.WithZone([]string{"eth0", "lo", "7"}[h.c.intn(3)]), k.Src.Port())
	}
	return k
}

func (h *harness) run() {
	for step := 0; !h.c.done(); step++ {
		op := h.c.intn(100)
		desc := h.step(op)
		h.check(step, desc)
	}
}

func (h *harness) step(op int) string {
	t, m := h.t, &h.m
	switch {
	case op < 35:
		return h.loadOrCreate()
	case op < 42:
		return h.refOp()
	case op < 60:
		k := h.pick()
		v, ok := h.tb.Lookup(k)
		f := m.flows[norm(k)]
		if f == nil {
			require.False(t, ok, "lookup %v", k)
			return "lookup miss " + k.String()
		}
		require.True(t, ok, "lookup %v", k)
		require.Equal(t, f.val, v, "lookup %v", k)
		f.seen = m.tick
		return "lookup hit " + k.String()
	case op < 70:
		k := h.pick()
		v, ok := h.tb.Delete(k)
		f := m.flows[norm(k)]
		if f == nil {
			require.False(t, ok, "delete %v", k)
			return "delete miss " + k.String()
		}
		require.True(t, ok, "delete %v", k)
		require.Equal(t, f.val, v)
		m.remove(norm(k))
		c := &m.cnt[protoIndex(k.Proto)]
		c.ActiveFlowCount--
		c.DeletedFlowCount++
		return "delete " + k.String()
	case op < 85:
		return h.sweep()
	case op < 90:
		p := []Proto{TCP, UDP}[h.c.intn(2)]
		d := h.timeouts[h.c.intn(len(h.timeouts))]
		require.NoError(t, h.tb.SetIdleTimeout(p, d))
		require.Equal(t, d, h.tb.IdleTimeout(p))
		m.timeouts[protoIndex(p)] = m.ticks(d)
		return fmt.Sprintf("idle timeout %v %v", p, d)
	case op < 95:
		k := h.pick()
		d := h.timeouts[h.c.intn(len(h.timeouts))]
		err := h.tb.SetFlowTimeout(k, d)
		f := m.flows[norm(k)]
		if f == nil {
			require.ErrorIs(t, err, ErrNoFlow)
			return "flow timeout miss " + k.String()
		}
		require.NoError(t, err)
		f.timeout = m.ticks(d)
		return fmt.Sprintf("flow timeout %v %v", k, d)
	default:
		calls := 0
		h.tb.Range(func(Key, int) bool { calls++; return false })
		require.Equal(t, min(1, len(m.flows)), calls, "Range must stop when f returns false")
		h.compareContent()
		return "range"
	}
}

// refOp uses a kept Ref: Touch, Replied, or an explicit Evict.
func (h *harness) refOp() string {
	t, m := h.t, &h.m
	if len(h.refs) == 0 || h.c.intn(6) == 0 {
		return h.evict(false)
	}
	r := h.refs[h.c.intn(len(h.refs))]
	live := m.flows[r.key] == r.f
	if h.c.intn(2) == 0 {
		got := r.ref.Touch()
		require.Equal(t, live, got, "Touch of %v (live %v)", r.key, live)
		if live {
			r.f.seen = m.tick
		}
		return fmt.Sprintf("touch %v live=%v", r.key, live)
	}
	r.ref.Replied()
	if live {
		r.f.seen = m.tick
		if r.f.prob && !r.f.replied {
			r.f.replied, r.f.r = true, m.tick
		}
	}
	return fmt.Sprintf("replied %v live=%v", r.key, live)
}

// evict calls Evict (inCreate false) or accounts for the eviction a full
// table made in LoadOrCreate (inCreate true; the callback has run): the
// table must evict exactly when the model holds an unreplied flow, and take
// one of those.
func (h *harness) evict(inCreate bool) string {
	t, m := h.t, &h.m
	can := m.evictable()
	if !inCreate {
		h.expired = []string{}
		got := h.tb.Evict()
		require.Equal(t, len(can) > 0, got, "Evict with %d unreplied flows in the model", len(can))
	}
	if len(can) == 0 {
		require.Empty(t, h.expired, "a flow evicted with none unreplied")
		return "evict none"
	}
	require.Len(t, h.expired, 1, "one flow evicted")
	for _, k := range can {
		if fmt.Sprintf("%v=%d", k, m.flows[k].val) == h.expired[0] {
			m.remove(k)
			c := &m.cnt[protoIndex(k.Proto)]
			c.ActiveFlowCount--
			c.EvictedFlowCount++
			h.expired = []string{}
			return "evict " + k.String()
		}
	}
	t.Fatalf("evicted %s, which is not among the unreplied flows %v", h.expired[0], can)
	return ""
}

func (h *harness) loadOrCreate() string {
	t, m := h.t, &h.m
	if h.c.intn(30) == 0 { // an invalid key
		bad := []Key{{Proto: 1, Src: dst4, Dst: dst4}, {Proto: TCP, Dst: dst4}, {Proto: UDP, Src: dst6}}[h.c.intn(3)]
		_, _, err := h.tb.LoadOrCreate(bad, value(0))
		require.ErrorIs(t, err, ErrInvalidKey)
		return "create invalid"
	}
	k := h.pick()
	nk := norm(k)
	fail := h.c.intn(10) // 0: create returns an error, 1: create panics
	val := h.nextVal
	h.nextVal++
	calls := 0
	createErr := errors.New("dial failed")
	var ref Ref[int]
	create := func() (int, error) {
		calls++
		switch fail {
		case 0:
			return val, createErr
		case 1:
			panic("create panicked")
		}
		return val, nil
	}
	withRef := h.c.intn(2) == 0
	var (
		v        int
		created  bool
		err      error
		panicked any
	)
	h.expired = []string{}
	func() {
		defer func() { panicked = recover() }()
		if withRef {
			v, created, err = h.tb.LoadOrCreateRef(k, func(r Ref[int]) (int, error) {
				ref = r
				return create()
			})
		} else {
			v, created, err = h.tb.LoadOrCreate(k, create)
		}
	}()
	p := protoIndex(k.Proto)
	c := &m.cnt[p]
	evicted := ""
	if m.flows[nk] == nil && len(m.flows) >= m.maxFlows {
		evicted = h.evict(true) + "; "
	} else {
		require.Empty(t, h.expired, "a flow evicted while the table had room")
	}
	if f := m.flows[nk]; f != nil {
		require.NoError(t, err)
		require.Nil(t, panicked)
		require.Zero(t, calls, "create called for an existing flow")
		require.False(t, created)
		require.Equal(t, f.val, v)
		f.seen = m.tick
		return "load " + k.String()
	}
	switch {
	case len(m.flows) >= m.maxFlows:
		require.ErrorIs(t, err, ErrFull)
		require.Zero(t, calls, "create called for a refused flow")
		c.RejectedFlowCount++
		return "create full " + k.String()
	case m.maxSrc > 0 && m.sourceCount(nk.Src.Addr()) >= m.maxSrc:
		require.ErrorIs(t, err, ErrSourceLimit)
		require.Zero(t, calls, "create called for a refused flow")
		c.RejectedSourceFlowCount++
		return evicted + "create source limit " + k.String()
	}
	require.Equal(t, 1, calls)
	switch fail {
	case 0:
		require.ErrorIs(t, err, createErr)
		require.False(t, created)
		require.Zero(t, v)
		return "create error " + k.String()
	case 1:
		require.Equal(t, "create panicked", panicked)
		return "create panic " + k.String()
	}
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, val, v)
	f := &mflow{val: val, seen: m.tick, timeout: m.timeouts[p], prob: m.unrep[p] > 0}
	m.add(nk, f)
	if withRef {
		h.refs = append(h.refs, heldRef{key: nk, ref: ref, f: f})
		if len(h.refs) > 64 {
			h.refs = h.refs[1:]
		}
	}
	c.NewFlowCount++
	c.ActiveFlowCount++
	return evicted + "create " + k.String()
}

func (h *harness) sweep() string {
	t, m := h.t, &h.m
	steps := []time.Duration{0, 300 * time.Millisecond, time.Second, time.Second, 2 * time.Second,
		5 * time.Second, 37 * time.Second, 600 * time.Second, 1000 * time.Second, -2 * time.Second}
	now := h.clk.Advance(steps[h.c.intn(len(steps))])
	if d := now.Sub(epoch0); d >= 0 {
		m.tick = max(m.tick, 1+uint64(d/m.interval))
	}
	want := []string{}
	for k, f := range m.flows {
		if m.deadline(k, f) <= m.tick {
			want = append(want, fmt.Sprintf("%v=%d", k, f.val))
			m.remove(k)
			c := &m.cnt[protoIndex(k.Proto)]
			c.ActiveFlowCount--
			c.ExpiredFlowCount++
		}
	}
	h.expired = []string{}
	n := h.tb.Sweep(now)
	require.Equal(t, len(want), n, "flows expired by Sweep(%v)", now.Sub(epoch0))
	slices.Sort(want)
	slices.Sort(h.expired)
	require.Equal(t, want, h.expired, "expiry callbacks at tick %d", m.tick)
	return fmt.Sprintf("sweep to tick %d: %d expired", m.tick, n)
}

// compareContent compares the table's flows, through Range, with the
// model's.
func (h *harness) compareContent() {
	h.t.Helper()
	got := make(map[Key]int, len(h.m.flows))
	dup := false
	h.tb.Range(func(k Key, v int) bool {
		_, seen := got[k]
		dup = dup || seen
		got[k] = v
		return true
	})
	same := !dup && len(got) == len(h.m.flows)
	for k, f := range h.m.flows {
		if v, ok := got[k]; !ok || v != f.val {
			same = false
		}
	}
	if !same {
		want := map[Key]int{}
		for k, f := range h.m.flows {
			want[k] = f.val
		}
		require.False(h.t, dup, "Range saw a key twice")
		require.Equal(h.t, want, got)
	}
}

// check compares the table with the model after a step. It runs after
// every step, so it compares plainly and calls testify only to report.
func (h *harness) check(step int, desc string) {
	t, m := h.t, &h.m
	t.Helper()
	msg := func() string { return fmt.Sprintf("after step %d (%s)", step, desc) }
	if n := h.tb.Len(); n != len(m.flows) {
		require.Equal(t, len(m.flows), n, "Len "+msg())
	}
	st := h.tb.Stats()
	if st.TCP != m.cnt[tcpIndex] || st.UDP != m.cnt[udpIndex] || st.Total != m.total() {
		require.Equal(t, m.cnt[tcpIndex], st.TCP, "TCP counters "+msg())
		require.Equal(t, m.cnt[udpIndex], st.UDP, "UDP counters "+msg())
		require.Equal(t, m.total(), st.Total, "total counters "+msg())
	}
	if !h.big || step%50 == 0 {
		h.compareContent()
		checkInvariants(t, h.tb, desc)
		if h.tb.src != nil {
			got := map[[16]byte]int{}
			for i := range h.tb.src.shards {
				for a, n := range h.tb.src.shards[i].n {
					got[a] += int(n)
				}
			}
			if !maps.Equal(m.srcs, got) {
				require.Equal(t, m.srcs, got, "flows per source "+msg())
			}
		}
	}
}

// checkInvariants checks the table's internal structure when no operation
// is in progress: every entry in an index is live and in the wheel list that
// the wheel's invariant allows, the shard counts match, the capacity counter
// matches, and the wheel holds nothing else. It runs after every step of the
// model test, so it uses plain comparisons rather than testify.
func checkInvariants[V any](t testing.TB, tb *Table[V], msg string) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("invariant: "+format+" "+msg, args...)
	}
	total, probTotal := 0, 0
	tick := tb.tick.Load()
	for i := range tb.shards {
		s := &tb.shards[i]
		s.mu.Lock()
		x := s.idx.Load()
		n, used, inIndex := 0, 0, map[*entry[V]]bool{}
		for g := range x.groups {
			c := x.groups[g].ctrl.Load()
			for j := range groupSlots {
				b := c >> (8 * j) & 0xff
				e := x.groups[g].slots[j].Load()
				switch {
				case b == ctrlEmpty || b == ctrlDeleted:
					if e != nil {
						fail("free slot (%#x) holds an entry", b)
					}
					if b == ctrlDeleted {
						used++
					}
				default:
					if e == nil {
						fail("full slot without entry")
					}
					h := e.key.hash(tb.seed)
					if tagOf(h) != b || tb.shardOf(h) != s || x.find(h, &e.key) != e {
						fail("entry %v misplaced", e.key.key())
					}
					if e.seen.Load() == 0 {
						fail("dead or pending entry %v in index", e.key.key())
					}
					n++
					used++
					inIndex[e] = true
				}
			}
		}
		if n != s.count || used != s.used || used > x.maxUsed() {
			fail("shard %d: count %d used %d, index has %d and %d of %d", i, s.count, s.used, n, used, x.maxUsed())
		}
		inWheel, nprob := 0, 0
		for b := range s.heads {
			var prev *entry[V]
			bucket, prob := b%lists, b >= probBase
			for e := s.heads[b]; e != nil; e = e.next {
				if !inIndex[e] || e.list != uint16(b) || e.prev != prev {
					fail("wheel list %d: bad entry %v (in index %v, list %d)", b, e.key.key(), inIndex[e], e.list)
				}
				if prob != (e.state&stateProbation != 0) {
					fail("wheel list %d: entry %v with state %#x", b, e.key.key(), e.state)
				}
				if prob {
					nprob++
				}
				// Bucket b is visited next at the first tick after swept
				// congruent to b, which must come no later than the
				// flow's deadline; the overdue list at the next sweep.
				d := e.seen.Load() + 1 + uint64(tb.timeoutOf(e))
				visit := s.swept + 1
				for bucket != overdue && visit&wheelMask != uint64(bucket) {
					visit++
				}
				if visit > max(d, tick+1) {
					fail("flow %v with deadline %d in list %d, visited at %d", e.key.key(), d, b, visit)
				}
				prev = e
				inWheel++
			}
		}
		if n != inWheel || s.cur != nil || s.swept != tick {
			fail("shard %d: %d live, %d in wheel, cursor %p, swept %d at tick %d", i, n, inWheel, s.cur, s.swept, tick)
		}
		if int(s.nprob.Load()) != nprob {
			fail("shard %d: nprob %d, %d in probation lists", i, s.nprob.Load(), nprob)
		}
		probTotal += nprob
		total += n
		s.mu.Unlock()
	}
	if r := tb.reserved.Load(); r != int64(total) {
		fail("reserved %d, %d flows", r, total)
	}
	if p := tb.probation.Load(); p != int64(probTotal) {
		fail("probation %d, %d in probation lists", p, probTotal)
	}
}

func TestModel(t *testing.T) {
	runs, steps := 60, 1500
	if testing.Short() {
		runs = 15
	}
	for seed := range runs {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			c := &randChooser{r: rand.New(rand.NewPCG(uint64(seed), 0x5eed)), left: steps}
			h := newHarness(t, c)
			if h.big {
				c.left = 6 * steps
			}
			h.run()
			require.NoError(t, h.tb.Close())
		})
	}
}

// FuzzModel runs the model-based test on operation sequences chosen by the
// fuzzer.
func FuzzModel(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("\x00\x00\x00\x00\x00\x00\x00\x00\x05\x01\x02\x03"))
	f.Add([]byte(strings.Repeat("\x01\x11\x22\x48\x50\x5a\x63", 40)))
	f.Add([]byte(strings.Repeat("\x02\x07\x01\x00\x03\x04\x4c\x05\x09\x5e\x10", 60)))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 4096 {
			b = b[:4096]
		}
		h := newHarness(t, &byteChooser{b: b})
		h.run()
		require.NoError(t, h.tb.Close())
	})
}
