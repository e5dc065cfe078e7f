package flowtable

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestCreateOnceUnderRace starts many goroutines on LoadOrCreate for the same
// new key at once, round after round: create must run exactly once, exactly
// one caller must see created, and every caller must get the winner's value.
func TestCreateOnceUnderRace(t *testing.T) {
	const goroutines, rounds = 8, 300
	tb, _ := newManual[*int](t, WithShards(2))
	for round := range rounds {
		k := key4(UDP, round)
		var calls atomic.Int32
		start := make(chan struct{})
		vals := make([]*int, goroutines)
		created := make([]bool, goroutines)
		var wg sync.WaitGroup
		for g := range goroutines {
			wg.Go(func() {
				<-start
				v, c, err := tb.LoadOrCreate(k, func() (*int, error) {
					calls.Add(1)
					return new(int), nil
				})
				if err != nil {
					panic(err)
				}
				vals[g], created[g] = v, c
			})
		}
		close(start)
		wg.Wait()
		require.Equal(t, int32(1), calls.Load(), "round %d: create calls", round)
		winners := 0
		for g := range goroutines {
			require.Same(t, vals[0], vals[g], "round %d: goroutine %d got another value", round, g)
			if created[g] {
				winners++
			}
		}
		require.Equal(t, 1, winners, "round %d: callers that saw created", round)
	}
	require.Equal(t, uint64(rounds), tb.Stats().UDP.NewFlowCount)
	checkInvariants(t, tb, "after the rounds")
}

// pendingCreate starts LoadOrCreate of k with a create that blocks until
// released, and returns once create is running.
type pendingCreate struct {
	release chan struct{}
	done    chan struct{}
	v       string
	created bool
	err     error
	panic   any
}

func startPending(tb *Table[string], k Key, outcome func() (string, error)) *pendingCreate {
	p := &pendingCreate{release: make(chan struct{}), done: make(chan struct{})}
	running := make(chan struct{})
	go func() {
		defer close(p.done)
		defer func() { p.panic = recover() }()
		p.v, p.created, p.err = tb.LoadOrCreate(k, func() (string, error) {
			close(running)
			<-p.release
			return outcome()
		})
	}()
	<-running
	return p
}

type result struct {
	v       string
	created bool
	err     error
}

// startWaiters starts n LoadOrCreate calls for k and waits until all n are
// blocked on the shard's condition variable.
func startWaiters(t *testing.T, tb *Table[string], k Key, n int, calls *atomic.Int32) chan result {
	t.Helper()
	out := make(chan result, n)
	for i := range n {
		go func() {
			v, c, err := tb.LoadOrCreate(k, func() (string, error) {
				calls.Add(1)
				return fmt.Sprintf("waiter-%d", i), nil
			})
			out <- result{v, c, err}
		}()
	}
	ck, h, _ := tb.pack(k)
	_ = ck
	s := tb.shardOf(h)
	waitFor(t, "waiters to block", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.waiters.Load() == int32(n)
	})
	return out
}

func TestPendingFlowIsInvisibleAndWaitersGetTheWinnersValue(t *testing.T) {
	tb, _ := newManual[string](t)
	k := key4(TCP, 1)
	p := startPending(tb, k, func() (string, error) { return "winner", nil })

	// While create runs, the flow does not exist for anyone.
	_, ok := tb.Lookup(k)
	require.False(t, ok)
	_, ok = tb.Delete(k)
	require.False(t, ok)
	require.ErrorIs(t, tb.SetFlowTimeout(k, time.Second), ErrNoFlow)
	require.Zero(t, tb.Len())
	tb.Range(func(Key, string) bool { t.Fatal("Range saw a pending flow"); return false })
	require.Zero(t, tb.Stats().Total)

	var calls atomic.Int32
	out := startWaiters(t, tb, k, 3, &calls)
	select {
	case r := <-out:
		t.Fatalf("a waiter returned %+v before create did", r)
	default:
	}
	close(p.release)
	<-p.done
	require.NoError(t, p.err)
	require.True(t, p.created)
	require.Equal(t, "winner", p.v)
	for range 3 {
		r := <-out
		require.Equal(t, result{v: "winner"}, r)
	}
	require.Zero(t, calls.Load(), "waiters must not run create")
	require.Equal(t, uint64(1), tb.Stats().TCP.NewFlowCount)
}

func TestFailedCreateHandsOverToAWaiter(t *testing.T) {
	for _, mode := range []string{"error", "panic"} {
		t.Run(mode, func(t *testing.T) {
			tb, _ := newManual[string](t, WithMaxFlows(1))
			k := key4(UDP, 1)
			boom := errors.New("upstream unreachable")
			p := startPending(tb, k, func() (string, error) {
				if mode == "panic" {
					panic("create panicked")
				}
				return "", boom
			})
			var calls atomic.Int32
			out := startWaiters(t, tb, k, 3, &calls)
			close(p.release)
			<-p.done
			if mode == "panic" {
				require.Equal(t, "create panicked", p.panic)
			} else {
				require.ErrorIs(t, p.err, boom)
				require.False(t, p.created)
			}
			// One waiter creates the flow (the capacity of 1 was given
			// back), the others get its value.
			var rs []result
			for range 3 {
				rs = append(rs, <-out)
			}
			require.Equal(t, int32(1), calls.Load())
			winners := 0
			for _, r := range rs {
				require.NoError(t, r.err)
				require.Equal(t, rs[0].v, r.v)
				if r.created {
					winners++
				}
			}
			require.Equal(t, 1, winners)
			require.Equal(t, Counters{NewFlowCount: 1, ActiveFlowCount: 1}, tb.Stats().UDP)
			checkInvariants(t, tb, "after the hand-over")
		})
	}
}

// TestConcurrentOperationsLoseNoFlow runs creates, lookups, deletes and
// per-flow timeouts from several goroutines against a sweeper driven by a
// fake clock, with a capacity and a per-source limit that bite. Afterwards
// every value ever created is accounted for exactly once: returned by
// Delete, passed to the expiry callback, or still in the table.
func TestConcurrentOperationsLoseNoFlow(t *testing.T) {
	const workers, ops, nkeys = 4, 3000, 200
	var expired []int64 // appended by the sweeping goroutine only
	clk := newFakeClock()
	tb, err := New[int64](WithClock(clk.Now), WithManualSweep(), WithShards(4),
		WithMaxFlows(80), WithMaxFlowsPerSource(6),
		WithIdleTimeout(TCP, 3*time.Second), WithIdleTimeout(UDP, 2*time.Second),
		WithOnExpire(func(_ Key, v int64) { expired = append(expired, v) }))
	require.NoError(t, err)
	defer tb.Close()

	var next atomic.Int64
	created := make([][]int64, workers)
	deleted := make([][]int64, workers)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	sweeper := make(chan struct{})
	go func() {
		defer close(sweeper)
		for {
			select {
			case <-stop:
				return
			default:
				tb.Sweep(clk.Advance(500 * time.Millisecond))
			}
		}
	}()
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 99))
			for range ops {
				i := r.IntN(nkeys)
				k := modelKey(i)
				switch op := r.IntN(10); {
				case op < 4:
					v, c, err := tb.LoadOrCreate(k, func() (int64, error) { return next.Add(1), nil })
					if c {
						created[w] = append(created[w], v)
					}
					if err != nil && !errors.Is(err, ErrFull) && !errors.Is(err, ErrSourceLimit) {
						panic(err)
					}
				case op < 7:
					tb.Lookup(k)
				case op < 9:
					if v, ok := tb.Delete(k); ok {
						deleted[w] = append(deleted[w], v)
					}
				default:
					_ = tb.SetFlowTimeout(k, time.Duration(1+r.IntN(4))*time.Second)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	<-sweeper

	seen := map[int64]string{}
	account := func(v int64, how string) {
		if prev, dup := seen[v]; dup {
			t.Fatalf("value %d reported twice: %s and %s", v, prev, how)
		}
		seen[v] = how
	}
	for _, vs := range deleted {
		for _, v := range vs {
			account(v, "deleted")
		}
	}
	for _, v := range expired {
		account(v, "expired")
	}
	remaining := 0
	tb.Range(func(_ Key, v int64) bool { account(v, "in table"); remaining++; return true })
	all := 0
	for _, vs := range created {
		for _, v := range vs {
			all++
			if _, ok := seen[v]; !ok {
				t.Fatalf("value %d was lost", v)
			}
		}
	}
	require.Len(t, seen, all, "values reported that were never created")
	st := tb.Stats().Total
	ndel := 0
	for _, vs := range deleted {
		ndel += len(vs)
	}
	require.Equal(t, Counters{
		NewFlowCount: uint64(all), ActiveFlowCount: uint64(remaining),
		ExpiredFlowCount: uint64(len(expired)), DeletedFlowCount: uint64(ndel),
		RejectedFlowCount: st.RejectedFlowCount, RejectedSourceFlowCount: st.RejectedSourceFlowCount,
	}, st)
	require.NotZero(t, len(expired), "the test must exercise expiry")
	require.NotZero(t, ndel, "the test must exercise deletes")
	require.NotZero(t, st.RejectedFlowCount, "the test must exercise the capacity")
	require.NotZero(t, st.RejectedSourceFlowCount, "the test must exercise the per-source limit")
	t.Logf("created %d, deleted %d, expired %d, remaining %d, refused %d full + %d per source",
		all, ndel, len(expired), remaining, st.RejectedFlowCount, st.RejectedSourceFlowCount)
	checkInvariants(t, tb, "after the run")
}

// TestOnExpireRunsWithoutLocksAndMayUseTheTable expires more flows from one
// shard than a sweep visits per lock hold. The callback checks that no shard
// lock is held, makes new flows, and deletes flows the sweep has not visited
// yet, including the one it would visit next: each flow must still be
// reported exactly once, by the callback or by Delete.
func TestOnExpireRunsWithoutLocksAndMayUseTheTable(t *testing.T) {
	const n = 5 * sweepBatch
	var tb *Table[int]
	var clk *fakeClock
	reported := map[int]string{}
	report := func(v int, how string) {
		if prev, dup := reported[v]; dup {
			t.Fatalf("flow %d reported twice: %s and %s", v, prev, how)
		}
		reported[v] = how
	}
	calls := 0
	tb, clk = newManual[int](t, WithShards(1), WithIdleTimeout(UDP, time.Second), WithIdleTimeout(TCP, time.Hour),
		WithOnExpire(func(k Key, v int) {
			calls++
			for i := range tb.shards {
				if !tb.shards[i].mu.TryLock() {
					t.Fatalf("shard %d locked during the expiry callback", i)
				}
				tb.shards[i].mu.Unlock()
			}
			report(v, "expired")
			require.NoError(t, create(tb, key4(TCP, v)))
			for _, o := range []int{v + 1, v + 7} { // likely still in the bucket
				if w, ok := tb.Delete(key4(UDP, o)); ok {
					report(w, "deleted")
				}
			}
		}))
	for i := range n {
		_, _, err := tb.LoadOrCreate(key4(UDP, i), value(i))
		require.NoError(t, err)
	}
	expired := tb.Sweep(clk.Advance(3 * time.Second))
	require.Equal(t, calls, expired)
	require.Len(t, reported, n)
	require.Greater(t, expired, sweepBatch, "the sweep must go through several lock holds")
	require.Equal(t, expired, tb.Len(), "one TCP flow made per callback")
	checkInvariants(t, tb, "after the sweep")
}

// TestLookupsTakeNoLock holds every shard's mutex, as writers and sweeps
// do, and checks that lookups, Range, Len and Stats still complete.
func TestLookupsTakeNoLock(t *testing.T) {
	tb, _ := newManual[int](t, WithShards(4))
	for i := range 100 {
		_, _, err := tb.LoadOrCreate(key4(UDP, i), value(i))
		require.NoError(t, err)
	}
	for i := range tb.shards {
		tb.shards[i].mu.Lock()
	}
	done := make(chan int)
	go func() {
		n := 0
		for i := range 100 {
			if v, ok := tb.Lookup(key4(UDP, i)); ok && v == i {
				n++
			}
			if v, _, err := tb.LoadOrCreate(key4(UDP, i), nil); err == nil && v == i {
				n++
			}
		}
		tb.Range(func(Key, int) bool { n++; return true })
		n += tb.Len() + int(tb.Stats().Total.ActiveFlowCount)
		done <- n
	}()
	select {
	case n := <-done:
		require.Equal(t, 500, n)
	case <-time.After(time.Minute):
		t.Fatal("a read blocked on a shard lock")
	}
	for i := range tb.shards {
		tb.shards[i].mu.Unlock()
	}
}

// TestLookupsDuringGrowth reads flows from other goroutines while one
// writer grows and shrinks a single shard's index many times, under -race.
func TestLookupsDuringGrowth(t *testing.T) {
	tb, _ := newManual[int](t, WithShards(1), WithMaxFlows(1<<20))
	const stable = 200
	for i := range stable {
		_, _, err := tb.LoadOrCreate(key6(TCP, i), value(i))
		require.NoError(t, err)
	}
	stop := make(chan struct{})
	var misses atomic.Int64
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				for i := range stable {
					if v, ok := tb.Lookup(key6(TCP, i)); !ok || v != i {
						misses.Add(1)
					}
				}
			}
		})
	}
	for round := range 5 {
		for i := range 5000 {
			require.NoError(t, create(tb, key4(UDP, round*5000+i)))
		}
		for i := range 5000 {
			_, ok := tb.Delete(key4(UDP, round*5000+i))
			require.True(t, ok)
		}
	}
	close(stop)
	wg.Wait()
	require.Zero(t, misses.Load(), "a stable flow was missed while the index was rebuilt")
	checkInvariants(t, tb, "after growth")
}

// TestPendingFlowSurvivesSweeps keeps a create running across sweeps past
// the deadline the flow would have had if it had been published at once:
// the sweeps must leave it alone, and once published it lives its full
// timeout from then.
func TestPendingFlowSurvivesSweeps(t *testing.T) {
	var expired []string
	tb, clk := newManual[string](t, WithIdleTimeout(UDP, 2*time.Second),
		WithOnExpire(func(_ Key, v string) { expired = append(expired, v) }))
	k := key4(UDP, 1)
	p := startPending(tb, k, func() (string, error) { return "slow", nil })
	for range 6 {
		require.Zero(t, tb.Sweep(clk.Advance(time.Second))) // up to tick 7
	}
	close(p.release)
	<-p.done
	require.NoError(t, p.err)
	require.True(t, p.created)
	checkInvariants(t, tb, "after publishing")
	// Seen at tick 7, due at tick 7+1+2.
	require.Zero(t, tb.Sweep(clk.Advance(time.Second)))
	require.Zero(t, tb.Sweep(clk.Advance(time.Second)))
	require.Empty(t, expired)
	require.Equal(t, 1, tb.Sweep(clk.Advance(time.Second)))
	require.Equal(t, []string{"slow"}, expired)
}
