package balancer

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// targets returns n targets t000, t001, ... with the given weights cycled.
func targets(n int, weights ...int) []Target {
	if len(weights) == 0 {
		weights = []int{1}
	}
	ts := make([]Target, n)
	for i := range ts {
		ts[i] = Target{
			ID:     fmt.Sprintf("t%03d", i),
			Addr:   fmt.Sprintf("10.0.%d.%d:80", i/250, i%250+1),
			Weight: weights[i%len(weights)],
		}
	}
	return ts
}

// seeded returns a reproducible, concurrency-safe random source.
func seeded(seed uint64) func() uint64 {
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(seed, seed^0x5bd1e995))
	return func() uint64 {
		mu.Lock()
		defer mu.Unlock()
		return r.Uint64()
	}
}

func mustNew(t testing.TB, opts ...Option) *Balancer {
	t.Helper()
	b, err := New(opts...)
	require.NoError(t, err)
	return b
}

// counts picks n times (releasing each pick) and counts picks per target ID.
func counts(t testing.TB, b *Balancer, n int, info func(i int) PickInfo) map[string]int {
	t.Helper()
	c := map[string]int{}
	for i := range n {
		var pi PickInfo
		if info != nil {
			pi = info(i)
		}
		p, err := b.Pick(pi)
		require.NoError(t, err)
		c[p.Target.ID]++
		p.Done()
	}
	return c
}

// requireShares checks that every eligible target got its weight's share of
// picks within tol (relative), and that no other target got any.
func requireShares(t *testing.T, ts []Target, got map[string]int, n int, tol float64) {
	t.Helper()
	total := 0
	for _, x := range ts {
		if x.eligible() {
			total += x.Weight
		}
	}
	for _, x := range ts {
		if !x.eligible() {
			assert.Zero(t, got[x.ID], "target %s is not eligible but was picked", x.ID)
			continue
		}
		want := float64(n) * float64(x.Weight) / float64(total)
		assert.InEpsilon(t, want, float64(got[x.ID]), tol, "target %s (weight %d)", x.ID, x.Weight)
	}
}

func TestDistributionWithinOnePercent(t *testing.T) {
	const picks = 1_000_000
	// Shares 5/7, 1/7, 1/7: large enough that 1% is several standard
	// deviations of the random algorithms over 10^6 picks (and the seeds make
	// the test exact anyway). An unhealthy and a zero-weight target must get
	// nothing.
	ts := targets(5, 5, 1, 1, 3, 0)
	ts[3].Health = Unhealthy
	for _, algo := range []Algorithm{RoundRobin, Random, SourceIPHash, KeyHash} {
		t.Run(algo.String(), func(t *testing.T) {
			b := mustNew(t, WithAlgorithm(algo), WithTargets(ts...), WithRand(seeded(1)))
			r := rand.New(rand.NewPCG(2, 3))
			got := counts(t, b, picks, func(int) PickInfo {
				var a [16]byte
				for i := range a {
					a[i] = byte(r.Uint32())
				}
				return PickInfo{Source: netip.AddrFrom16(a), Hash: r.Uint64()}
			})
			requireShares(t, ts, got, picks, 0.01)
		})
	}
}

func TestRoundRobinIsExactPerCycle(t *testing.T) {
	ts := targets(5, 3, 1, 4, 1, 2)
	b := mustNew(t, WithTargets(ts...))
	got := counts(t, b, 11*1000, nil) // 11 = one cycle
	for _, x := range ts {
		assert.Equal(t, x.Weight*1000, got[x.ID], x.ID)
	}
}

func TestRoundRobinSmoothness(t *testing.T) {
	b := mustNew(t, WithTargets(
		Target{ID: "a", Addr: "127.0.0.1:1", Weight: 5},
		Target{ID: "b", Addr: "127.0.0.1:2", Weight: 1},
		Target{ID: "c", Addr: "127.0.0.1:3", Weight: 1},
	))
	var seq strings.Builder
	for range 7 * 3 { // three cycles, so runs across the wrap count
		p, err := b.Pick(PickInfo{})
		require.NoError(t, err)
		seq.WriteString(p.Target.ID)
		p.Done()
	}
	s := seq.String()
	assert.NotContains(t, s, "aaaaa", "weights 5,1,1 must interleave: %s", s)
	assert.Equal(t, 3, maxRun(s), "sequence %s", s)
}

func maxRun(s string) int {
	best, run := 0, 0
	for i := range len(s) {
		if i > 0 && s[i] == s[i-1] {
			run++
		} else {
			run = 1
		}
		best = max(best, run)
	}
	return best
}

// TestRoundRobinLag checks, for random weight sets, that no prefix of the
// cycle lets a target fall behind or run ahead of its exact share by more
// than nginx's smooth WRR does, plus one: smooth, not merely proportional.
func TestRoundRobinLag(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for trial := range 200 {
		n := 1 + r.IntN(12)
		ws := make([]int, n)
		for i := range ws {
			ws[i] = 1 + r.IntN(MaxWeight)
		}
		ts := targets(n, ws...)
		ours := mustNew(t, WithTargets(ts...))
		ref := newNginxWRR(ts)
		total := 0
		for _, w := range ws {
			total += w
		}
		cycle := len(buildSchedule(ws))
		lag := func(pick func() string) float64 {
			seen := map[string]int{}
			worst := 0.0
			for k := 1; k <= cycle; k++ {
				seen[pick()]++
				for _, x := range ts {
					exp := float64(k) * float64(x.Weight) / float64(total)
					worst = math.Max(worst, math.Abs(float64(seen[x.ID])-exp))
				}
			}
			return worst
		}
		got := lag(func() string { p, _ := ours.Pick(PickInfo{}); p.Done(); return p.Target.ID })
		want := lag(ref.pick)
		require.LessOrEqual(t, got, want+1, "trial %d weights %v", trial, ws)
	}
}

func TestLeastConnectionsBalancesHeldPicks(t *testing.T) {
	for _, n := range []int{4, 40} { // exact, then two random choices
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			ts := targets(n, 1, 2, 3, 4)
			b := mustNew(t, WithAlgorithm(LeastConnections), WithTargets(ts...), WithRand(seeded(9)))
			for range n * 250 {
				_, err := b.Pick(PickInfo{}) // held: never Done
				require.NoError(t, err)
			}
			st := b.Stats()
			lo, hi := math.Inf(1), math.Inf(-1)
			for _, x := range st.Targets {
				r := float64(x.Active) / float64(x.Weight)
				lo, hi = math.Min(lo, r), math.Max(hi, r)
			}
			// Exact: every (active)/weight within one pick of the others.
			// Two random choices: within a few percent of the mean load.
			tol := 1.0
			if n > DefaultExactLimit {
				tol = 0.15 * (lo + hi) / 2
			}
			assert.LessOrEqual(t, hi-lo, tol, "active/weight spread %v..%v", lo, hi)
		})
	}
}

func TestLeastConnectionsTiesRoundRobin(t *testing.T) {
	b := mustNew(t, WithAlgorithm(LeastConnections), WithTargets(targets(3)...))
	var seq []string
	for range 6 {
		p, err := b.Pick(PickInfo{})
		require.NoError(t, err)
		seq = append(seq, p.Target.ID)
		p.Done()
	}
	assert.Equal(t, []string{"t000", "t001", "t002", "t000", "t001", "t002"}, seq)
}

func TestLeastConnectionsConcurrentPickDone(t *testing.T) {
	ts := targets(30, 1, 3)
	b := mustNew(t, WithAlgorithm(LeastConnections), WithTargets(ts...))
	const workers, rounds, hold = 8, 2000, 5
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			held := make([]Pick, 0, hold)
			for i := range rounds {
				p, err := b.Pick(PickInfo{})
				if err != nil {
					t.Error(err)
					return
				}
				held = append(held, p)
				if len(held) == hold || i == rounds-1 {
					for _, h := range held {
						h.Done()
					}
					held = held[:0]
				}
				if w == 0 && i%100 == 0 { // a writer among the readers
					_ = b.SetWeight("t005", 1+i%MaxWeight)
				}
			}
		})
	}
	wg.Wait()
	for _, x := range b.Stats().Targets {
		assert.Zero(t, x.Active, "target %s still counts open picks after every Done", x.ID)
	}
}

func TestNoTarget(t *testing.T) {
	cases := map[string][]Target{
		"empty":        nil,
		"all weight 0": targets(3, 0),
		"all unhealthy": func() []Target {
			ts := targets(3)
			for i := range ts {
				ts[i].Health = Unhealthy
			}
			return ts
		}(),
	}
	for name, ts := range cases {
		for algo := range Algorithm(len(algorithmNames)) {
			t.Run(name+"/"+algo.String(), func(t *testing.T) {
				b := mustNew(t, WithAlgorithm(algo), WithTargets(ts...))
				p, err := b.Pick(PickInfo{Source: netip.MustParseAddr("192.0.2.1")})
				require.ErrorIs(t, err, ErrNoTarget)
				assert.Zero(t, p)
				p.Done() // harmless on a zero Pick
				assert.Equal(t, uint64(1), b.Stats().NoTarget)
			})
		}
	}
}

func TestZeroBalancer(t *testing.T) {
	var b Balancer
	_, err := b.Pick(PickInfo{})
	require.ErrorIs(t, err, ErrNoTarget)
	require.NoError(t, b.Add(Target{ID: "a", Addr: "[::1]:8080", Weight: 1}))
	p, err := b.Pick(PickInfo{})
	require.NoError(t, err)
	assert.Equal(t, "a", p.Target.ID)
	assert.Equal(t, RoundRobin, b.Algorithm())
}

func TestChangeAppliesToNextPick(t *testing.T) {
	for algo := range Algorithm(len(algorithmNames)) {
		t.Run(algo.String(), func(t *testing.T) {
			b := mustNew(t, WithAlgorithm(algo), WithTargets(targets(4)...))
			info := func(i int) PickInfo {
				return PickInfo{Source: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), Hash: uint64(i) * 0x9e3779b97f4a7c15}
			}
			require.NoError(t, b.SetHealth("t001", Unhealthy))
			require.NoError(t, b.SetWeight("t002", 0))
			got := counts(t, b, 2000, info)
			assert.Zero(t, got["t001"])
			assert.Zero(t, got["t002"])
			assert.Positive(t, got["t000"])
			assert.Positive(t, got["t003"])

			require.NoError(t, b.Remove("t000", "t003"))
			_, err := b.Pick(info(0))
			require.ErrorIs(t, err, ErrNoTarget)

			require.NoError(t, b.SetHealth("t001", Healthy))
			got = counts(t, b, 100, info)
			assert.Equal(t, map[string]int{"t001": 100}, got)
		})
	}
}

// TestPicksSeeWholeSnapshots flips between two target sets while picking:
// every pick must come from one set or the other, with the set's own
// weight and health, never a mix.
func TestPicksSeeWholeSnapshots(t *testing.T) {
	setA := targets(5)
	setB := targets(5, 2)
	for i := range setB {
		setB[i].ID = "b" + setB[i].ID
	}
	setB[0].Health = Unhealthy
	for algo := range Algorithm(len(algorithmNames)) {
		t.Run(algo.String(), func(t *testing.T) {
			b := mustNew(t, WithAlgorithm(algo), WithTargets(setA...))
			var stop atomic.Bool
			var wg sync.WaitGroup
			wg.Go(func() {
				for i := 0; !stop.Load(); i++ {
					set := setA
					if i%2 == 1 {
						set = setB
					}
					if err := b.Update(set); err != nil {
						t.Error(err)
						return
					}
				}
			})
			for i := range 20000 {
				p, err := b.Pick(PickInfo{Hash: uint64(i), Source: netip.AddrFrom4([4]byte{1, 2, 3, byte(i)})})
				require.NoError(t, err)
				x := p.Target
				if strings.HasPrefix(x.ID, "b") {
					require.Equal(t, 2, x.Weight, "pick %+v", x)
					require.NotEqual(t, "bt000", x.ID, "unhealthy target picked")
				} else {
					require.Equal(t, 1, x.Weight, "pick %+v", x)
				}
				p.Done()
			}
			stop.Store(true)
			wg.Wait()
		})
	}
}

func TestPickAllocatesNothing(t *testing.T) {
	for algo := range Algorithm(len(algorithmNames)) {
		for _, n := range []int{3, 100} {
			t.Run(fmt.Sprintf("%s/%d", algo, n), func(t *testing.T) {
				b := mustNew(t, WithAlgorithm(algo), WithTargets(targets(n, 1, 2, 3)...))
				var avoid [1]string
				avoid[0] = "t001"
				info := PickInfo{Source: netip.MustParseAddr("2001:db8::1"), Hash: 42, Exclude: avoid[:]}
				allocs := testing.AllocsPerRun(1000, func() {
					p, err := b.Pick(info)
					if err != nil {
						panic(err)
					}
					p.Done()
				})
				assert.Zero(t, allocs)
			})
		}
	}
}

func TestValidationListsEveryProblem(t *testing.T) {
	_, err := New(WithTargets(
		Target{ID: "a", Addr: "127.0.0.1:80", Weight: 101},
		Target{ID: "a", Addr: "127.0.0.1:81", Weight: 1},
		Target{ID: "", Addr: "", Weight: -1},
		Target{ID: "c", Addr: "no-port", Weight: 1},
		Target{ID: "d", Addr: "127.0.0.1:0", Weight: 1},
		Target{ID: "e", Addr: ":80", Weight: 1},
		Target{ID: "f", Addr: "127.0.0.1:99999", Weight: 1},
	), WithMaglevSize(65536), WithAlgorithm(Algorithm(99)))
	require.Error(t, err)
	msg := err.Error()
	for _, want := range []string{
		`target[0] "a": invalid target: weight 101 is out of range 0..100`,
		`target[1] "a": duplicate target: id also used by target[0]`,
		`target[2]: invalid target: id is empty`,
		`target[2]: invalid target: addr is empty`,
		`target[2]: invalid target: weight -1 is out of range`,
		`target[3] "c": invalid target: addr "no-port" is not host:port`,
		`target[4] "d": invalid target: addr "127.0.0.1:0" has port "0"`,
		`target[5] "e": invalid target: addr ":80" has no host`,
		`target[6] "f": invalid target: addr "127.0.0.1:99999" has port "99999"`,
		`maglev size 65536 is not a prime`,
		`algorithm 99 is unknown`,
	} {
		assert.Contains(t, msg, want)
	}
	assert.ErrorIs(t, err, ErrInvalidTarget)
	assert.ErrorIs(t, err, ErrDuplicateTarget)
	assert.ErrorIs(t, err, ErrInvalidOption)
}

func TestChangesValidateAndAreAllOrNothing(t *testing.T) {
	b := mustNew(t, WithTargets(targets(3)...))
	before := b.Targets()

	err := b.Add(Target{ID: "t000", Addr: "127.0.0.1:1", Weight: 1}, Target{ID: "new", Addr: "bad", Weight: 1})
	require.ErrorIs(t, err, ErrDuplicateTarget)
	require.ErrorIs(t, err, ErrInvalidTarget)
	require.ErrorIs(t, b.Remove("t000", "missing"), ErrUnknownTarget)
	require.ErrorIs(t, b.SetWeight("t000", 101), ErrInvalidTarget)
	require.ErrorIs(t, b.SetWeight("missing", 1), ErrUnknownTarget)
	require.ErrorIs(t, b.SetHealth("t000", Health(7)), ErrInvalidTarget)
	require.ErrorIs(t, b.SetAlgorithm(Algorithm(42)), ErrInvalidOption)
	require.ErrorIs(t, b.Update([]Target{{ID: "x", Addr: "127.0.0.1:1", Weight: 200}}), ErrInvalidTarget)
	assert.Equal(t, before, b.Targets(), "a refused change must change nothing")
}

func TestRemovedTargetKeepsCountingOpenPicks(t *testing.T) {
	b := mustNew(t, WithAlgorithm(LeastConnections), WithTargets(targets(1)...))
	p1, err := b.Pick(PickInfo{})
	require.NoError(t, err)
	p2, err := b.Pick(PickInfo{})
	require.NoError(t, err)
	require.NoError(t, b.Remove("t000"))
	p1.Done() // released after removal: no panic
	require.NoError(t, b.Add(targets(1)...))
	assert.Equal(t, int64(1), b.Stats().Targets[0].Active, "re-added target carries its open pick")
	p2.Done()
	assert.Zero(t, b.Stats().Targets[0].Active)
}

func TestSetAlgorithmCounts(t *testing.T) {
	b := mustNew(t, WithAlgorithm(LeastConnections), WithTargets(targets(2)...))
	var held []Pick
	for range 10 {
		p, err := b.Pick(PickInfo{}) // counted
		require.NoError(t, err)
		held = append(held, p)
	}
	require.NoError(t, b.SetAlgorithm(RoundRobin))
	for range 4 {
		p, err := b.Pick(PickInfo{}) // not counted; Done is a no-op
		require.NoError(t, err)
		p.Done()
	}
	st := b.Stats()
	assert.Equal(t, RoundRobin, st.Algorithm)
	assert.Equal(t, int64(5), st.Targets[0].Active)
	assert.Equal(t, int64(5), st.Targets[1].Active)
	require.NoError(t, b.SetAlgorithm(LeastConnections))
	for _, p := range held { // released after two switches: counts stay exact
		p.Done()
	}
	st = b.Stats()
	assert.Zero(t, st.Targets[0].Active)
	assert.Zero(t, st.Targets[1].Active)
}

func TestStats(t *testing.T) {
	ts := targets(4)
	ts[1].Health = Unhealthy
	ts[2].Weight = 0
	b := mustNew(t, WithTargets(ts...))
	st := b.Stats()
	assert.Equal(t, 3, st.Healthy)
	assert.Equal(t, 1, st.Unhealthy)
	assert.Equal(t, 2, st.Eligible)
	require.Len(t, st.Targets, 4)
	assert.Equal(t, ts[1], st.Targets[1].Target)
}

func TestAlgorithmNames(t *testing.T) {
	for a := range Algorithm(len(algorithmNames)) {
		got, err := ParseAlgorithm(a.String())
		require.NoError(t, err)
		assert.Equal(t, a, got)
		text, err := a.MarshalText()
		require.NoError(t, err)
		var back Algorithm
		require.NoError(t, back.UnmarshalText(text))
		assert.Equal(t, a, back)
	}
	_, err := ParseAlgorithm("fastest")
	require.ErrorIs(t, err, ErrInvalidOption)
	_, err = Algorithm(200).MarshalText()
	require.Error(t, err)
	assert.Equal(t, "algorithm(200)", Algorithm(200).String())
	assert.Equal(t, "unhealthy", Unhealthy.String())
	assert.True(t, errors.Is(fmt.Errorf("ctx: %w", ErrNoTarget), ErrNoTarget))
}

func TestExclude(t *testing.T) {
	for algo := range Algorithm(len(algorithmNames)) {
		t.Run(algo.String(), func(t *testing.T) {
			b := mustNew(t, WithAlgorithm(algo), WithTargets(targets(3)...), WithRand(seeded(4)))
			for i := range 300 {
				info := PickInfo{Source: netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), Hash: uint64(i) * 7919}
				info.Exclude = []string{"t000"}
				p, err := b.Pick(info)
				require.NoError(t, err)
				require.NotEqual(t, "t000", p.Target.ID)
				p.Done()
				if algo.usesMaglev() { // deterministic: every node retries a client on the same target
					again, err := b.Pick(info)
					require.NoError(t, err)
					require.Equal(t, p.Target.ID, again.Target.ID)
				}
				info.Exclude = []string{"t002", "t000"}
				p, err = b.Pick(info)
				require.NoError(t, err)
				require.Equal(t, "t001", p.Target.ID)
				p.Done()
				info.Exclude = []string{"t002", "t000", "t001"}
				_, err = b.Pick(info)
				require.ErrorIs(t, err, ErrNoTarget)
			}
			for _, x := range b.Stats().Targets {
				require.Zero(t, x.Active)
			}
		})
	}
}

func TestExcludeSpreadsRetries(t *testing.T) {
	// Clients of an excluded target must spread over the others, not all
	// fall onto one.
	b := mustNew(t, WithAlgorithm(SourceIPHash), WithTargets(targets(4)...))
	got := map[string]int{}
	for i := range 4000 {
		p, err := b.Pick(PickInfo{Source: netip.AddrFrom4([4]byte{10, 2, byte(i >> 8), byte(i)}), Exclude: []string{"t003"}})
		require.NoError(t, err)
		got[p.Target.ID]++
	}
	for _, id := range []string{"t000", "t001", "t002"} {
		assert.InDelta(t, 4000/3, got[id], 150, "target %s: %v", id, got)
	}
}

func TestRetryKeepsTheCycle(t *testing.T) {
	// A retry must not consume the next request's turn: with one of two
	// targets failing, requests alternate between them as they would
	// without the failure, instead of every request starting on the
	// failing one.
	for _, algo := range []Algorithm{RoundRobin, LeastConnections} {
		t.Run(algo.String(), func(t *testing.T) {
			b := mustNew(t, WithAlgorithm(algo), WithTargets(targets(2)...))
			first := map[string]int{}
			for range 100 {
				p, err := b.Pick(PickInfo{})
				require.NoError(t, err)
				first[p.Target.ID]++
				if p.Target.ID == "t000" { // fails: retried elsewhere
					r, err := b.Pick(PickInfo{Exclude: []string{"t000"}})
					require.NoError(t, err)
					require.Equal(t, "t001", r.Target.ID)
					r.Done()
				}
				p.Done()
			}
			require.Equal(t, map[string]int{"t000": 50, "t001": 50}, first)
		})
	}
}

func TestPickTarget(t *testing.T) {
	ts := targets(3)
	ts[1].Health = Unhealthy
	ts[2].Weight = 0
	b := mustNew(t, WithAlgorithm(LeastConnections), WithTargets(ts...))
	for _, x := range ts { // whatever the health and weight: the caller chose
		p, ok := b.PickTarget(x.ID)
		require.True(t, ok)
		assert.Equal(t, x, p.Target)
		assert.Equal(t, int64(1), b.Stats().Targets[slices.IndexFunc(ts, func(y Target) bool { return y.ID == x.ID })].Active)
		p.Done()
	}
	_, ok := b.PickTarget("nope")
	assert.False(t, ok)
	var zero Balancer
	_, ok = zero.PickTarget("t000")
	assert.False(t, ok)
	assert.Zero(t, testing.AllocsPerRun(100, func() {
		p, _ := b.PickTarget("t001")
		p.Done()
	}))
}

func TestHealthOf(t *testing.T) {
	assert.Equal(t, Healthy, HealthOf(true))
	assert.Equal(t, Unhealthy, HealthOf(false))
	assert.Equal(t, Healthy, Health(0), "the zero mark serves")
}
