package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const sec = uint64(time.Second) // rand values that give whole-second offsets

func TestThresholdsAndFirstSuccessExact(t *testing.T) {
	clk := newFakeClock()
	t0 := clk.Now()
	sc := newScripted()
	h := newHarness(t, sc, withClock(clk), WithInterval(10*time.Second), WithTimeout(time.Second),
		WithRand(seqRand(2*sec)))
	require.NoError(t, h.Add(Target{ID: "a", Addr: "127.0.0.1:1"}))

	st := mustStatus(t, h.Monitor, "a")
	assert.Equal(t, Unhealthy, st.State)
	assert.Equal(t, "not checked yet", st.Reason)
	assert.Equal(t, t0.Add(2*time.Second), st.NextCheck, "first check at the random offset")

	at := t0.Add(2 * time.Second)
	step := func(err error, advance time.Duration) Status {
		t.Helper()
		sc.set("a", err)
		clk.Advance(advance)
		rec := h.checks(t, 1)[0]
		require.Equal(t, at, rec.due)
		require.Equal(t, at, rec.r.Time, "started when due: the fake clock did not move")
		at = at.Add(10 * time.Second)
		st := mustStatus(t, h.Monitor, "a")
		require.Equal(t, at, st.NextCheck, "next check one interval after the last started")
		return st
	}

	// A new target: a failure keeps it unhealthy with the reason...
	st = step(errRefused(), 2*time.Second)
	assert.Equal(t, Unhealthy, st.State)
	assert.Equal(t, 1, st.Failures)
	assert.Equal(t, "connection refused", st.Reason)
	require.Len(t, st.Results, 1)
	assert.Equal(t, Result{Time: t0.Add(2 * time.Second), OK: false, Reason: "connection refused"}, st.Results[0])

	// ...and its first success makes it healthy at once.
	st = step(nil, 10*time.Second)
	assert.Equal(t, Healthy, st.State)
	assert.Equal(t, "first successful check", st.Reason)
	assert.Equal(t, at.Add(-10*time.Second), st.Since)
	c := h.change(t)
	assert.Equal(t, Change{Target: Target{ID: "a", Addr: "127.0.0.1:1"}, Time: st.Since,
		Old: Condition{State: Unhealthy}, New: Condition{State: Healthy}, Reason: "first successful check"}, c)

	// Then it takes exactly 3 failures to go down...
	for i := 1; i <= 2; i++ {
		st = step(errRefused(), 10*time.Second)
		assert.Equal(t, Healthy, st.State, "after %d failures", i)
		assert.Equal(t, i, st.Failures)
	}
	st = step(&CheckError{Reason: "status 503, want 200"}, 10*time.Second)
	assert.Equal(t, Unhealthy, st.State)
	assert.Equal(t, 3, st.Failures)
	assert.Equal(t, "status 503, want 200", st.Reason)
	c = h.change(t)
	assert.Equal(t, Condition{State: Healthy}, c.Old)
	assert.Equal(t, Condition{State: Unhealthy}, c.New)
	assert.Equal(t, "status 503, want 200", c.Reason)

	// ...and exactly 3 successes to come back: no longer a new target.
	for i := 1; i <= 2; i++ {
		st = step(nil, 10*time.Second)
		assert.Equal(t, Unhealthy, st.State, "after %d successes", i)
		assert.Equal(t, i, st.Successes)
		assert.Zero(t, st.Failures)
	}
	st = step(nil, 10*time.Second)
	assert.Equal(t, Healthy, st.State)
	assert.Equal(t, "3 consecutive successful checks", st.Reason)
	c = h.change(t)
	assert.Equal(t, "3 consecutive successful checks", c.Reason)
	assert.True(t, c.New.Serving())

	assert.Empty(t, h.closeAndDrain(t), "no other change")
	assert.Equal(t, 8, sc.count("a"))
}

func TestRetriesSetsBothThresholds(t *testing.T) {
	clk := newFakeClock()
	sc := newScripted()
	h := newHarness(t, sc, withClock(clk), WithInterval(time.Second), WithTimeout(time.Second),
		WithRetries(2), WithInitialState(Healthy), WithRand(seqRand(0)))
	sc.set("a", errRefused()) // before Add: the first check is due at once
	require.NoError(t, h.Add(Target{ID: "a", Addr: "127.0.0.1:1"}))
	h.checks(t, 1) // due at once: offset 0
	assert.Equal(t, Healthy, mustStatus(t, h.Monitor, "a").State)
	clk.Advance(time.Second)
	h.checks(t, 1)
	assert.Equal(t, Unhealthy, mustStatus(t, h.Monitor, "a").State, "2 failures with retries 2")
	sc.set("a", nil)
	clk.Advance(time.Second)
	h.checks(t, 1)
	assert.Equal(t, Unhealthy, mustStatus(t, h.Monitor, "a").State)
	clk.Advance(time.Second)
	h.checks(t, 1)
	assert.Equal(t, Healthy, mustStatus(t, h.Monitor, "a").State, "2 successes with retries 2")
}

func TestInitialStateHealthy(t *testing.T) {
	clk := newFakeClock()
	sc := newScripted()
	h := newHarness(t, sc, withClock(clk), WithInterval(time.Second), WithTimeout(time.Second),
		WithInitialState(Healthy), WithRand(seqRand(sec/2)))
	require.NoError(t, h.Add(Target{ID: "a", Addr: "127.0.0.1:1"}))
	st := mustStatus(t, h.Monitor, "a")
	assert.Equal(t, Healthy, st.State, "serving before the first check")
	assert.True(t, st.Serving())

	sc.set("a", errRefused())
	clk.Advance(time.Second / 2)
	for i := 1; i <= 3; i++ {
		if i > 1 {
			clk.Advance(time.Second)
		}
		h.checks(t, 1)
	}
	assert.Equal(t, Unhealthy, mustStatus(t, h.Monitor, "a").State, "down after the unhealthy threshold")
	sc.set("a", nil)
	clk.Advance(time.Second)
	h.checks(t, 1)
	assert.Equal(t, Unhealthy, mustStatus(t, h.Monitor, "a").State,
		"a target that started healthy is not new: one success is not enough")
	changes := h.closeAndDrain(t)
	require.Len(t, changes, 1)
	assert.Equal(t, "connection refused", changes[0].Reason)
}

func TestFirstCheckAtRandomOffsetInsideFirstInterval(t *testing.T) {
	clk := newFakeClock()
	t0 := clk.Now()
	sc := newScripted()
	// Offsets 7 s, 1 s, 4 s; 13 s wraps to 3 s inside a 10 s interval.
	h := newHarness(t, sc, withClock(clk), WithInterval(10*time.Second), WithTimeout(time.Second),
		WithRand(seqRand(7*sec, 1*sec, 4*sec, 13*sec)))
	for _, id := range []string{"a", "b", "c", "d"} {
		require.NoError(t, h.Add(Target{ID: id, Addr: "127.0.0.1:1"}))
	}
	want := map[string]time.Duration{"a": 7 * time.Second, "b": time.Second, "c": 4 * time.Second, "d": 3 * time.Second}
	for id, off := range want {
		assert.Equal(t, t0.Add(off), mustStatus(t, h.Monitor, id).NextCheck, id)
	}
	var order []string
	for _, step := range []time.Duration{time.Second, 2 * time.Second, time.Second, 3 * time.Second} {
		clk.Advance(step)
		rec := h.checks(t, 1)[0]
		order = append(order, rec.id)
		assert.Equal(t, t0.Add(want[rec.id]), rec.due)
		assert.Equal(t, rec.due, rec.r.Time, "%s started when due", rec.id)
	}
	assert.Equal(t, []string{"b", "d", "c", "a"}, order)
	assert.Zero(t, h.Stats().Late)
}

func TestFirstCheckOffsetsSpreadOverInterval(t *testing.T) {
	clk := newFakeClock()
	t0 := clk.Now()
	m, err := New(newScripted(), withClock(clk), WithInterval(5*time.Second)) // default rand
	require.NoError(t, err)
	defer m.Close()
	var ts []Target
	for i := range 1000 {
		ts = append(ts, Target{ID: fmt.Sprint(i), Addr: "127.0.0.1:1"})
	}
	require.NoError(t, m.Add(ts...))
	var tenths [10]int
	for _, st := range m.Statuses() {
		off := st.NextCheck.Sub(t0)
		require.True(t, off >= 0 && off < 5*time.Second, "offset %v outside [0, interval)", off)
		tenths[off/(500*time.Millisecond)]++
	}
	for i, n := range tenths {
		// 100 expected per tenth; 50 is more than 5 standard deviations away.
		assert.Greater(t, n, 50, "tenth %d of the interval got %d of 1000 first checks", i, n)
	}
}

func TestFirstCheckWithin(t *testing.T) {
	clk := newFakeClock()
	t0 := clk.Now()
	m, err := New(newScripted(), withClock(clk), WithInterval(5*time.Second), WithFirstCheckWithin(time.Second))
	require.NoError(t, err)
	defer m.Close()
	var ts []Target
	for i := range 1000 {
		ts = append(ts, Target{ID: fmt.Sprint(i), Addr: "127.0.0.1:1"})
	}
	require.NoError(t, m.Add(ts...))
	var tenths [10]int
	for _, st := range m.Statuses() {
		off := st.NextCheck.Sub(t0)
		require.True(t, off >= 0 && off < time.Second, "offset %v outside [0, 1s)", off)
		tenths[off/(100*time.Millisecond)]++
	}
	for i, n := range tenths {
		assert.Greater(t, n, 50, "tenth %d of the window got %d of 1000 first checks", i, n)
	}
	for _, d := range []time.Duration{-time.Second, 6 * time.Second} {
		_, err := New(nil, WithInterval(5*time.Second), WithFirstCheckWithin(d))
		assert.ErrorIs(t, err, ErrInvalidOption, "%v", d)
	}
}

func TestJitter(t *testing.T) {
	clk := newFakeClock()
	t0 := clk.Now()
	j := 2 * time.Second
	// Offset 0; then jitter +1 s (3 s into [0, 4 s]) and -2 s (0).
	h := newHarness(t, newScripted(), withClock(clk), WithInterval(10*time.Second), WithTimeout(time.Second),
		WithJitter(j), WithRand(seqRand(0, 3*sec, 0)))
	require.NoError(t, h.Add(Target{ID: "a", Addr: "127.0.0.1:1"}))
	h.checks(t, 1)
	assert.Equal(t, t0.Add(11*time.Second), mustStatus(t, h.Monitor, "a").NextCheck)
	clk.Advance(11 * time.Second)
	h.checks(t, 1)
	assert.Equal(t, t0.Add(19*time.Second), mustStatus(t, h.Monitor, "a").NextCheck)

	// The offset always lies in [-j, +j] and covers it.
	lo, hi := time.Duration(0), time.Duration(0)
	m2, err := New(nil, WithInterval(10*time.Second), WithTimeout(time.Second), WithJitter(j))
	require.NoError(t, err)
	defer m2.Close()
	for range 10000 {
		d := m2.jitter()
		require.True(t, d >= -j && d <= j, "jitter %v outside ±%v", d, j)
		lo, hi = min(lo, d), max(hi, d)
	}
	assert.Less(t, lo, -j*9/10)
	assert.Greater(t, hi, j*9/10)
}

// gate is a Checker that blocks every check until the test releases it, and
// tracks how many run at once.
type gate struct {
	mu       sync.Mutex // guards running, calls and max
	running  int
	calls    int
	max      int
	started  chan string
	release  chan struct{}
	canceled chan string
}

func newGate() *gate {
	return &gate{started: make(chan string, 100), release: make(chan struct{}), canceled: make(chan string, 100)}
}

func (g *gate) Check(ctx context.Context, t Target) error {
	g.mu.Lock()
	g.running++
	g.calls++
	g.max = max(g.max, g.running)
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.running--
		g.mu.Unlock()
	}()
	g.started <- t.ID
	select {
	case <-g.release:
		return nil
	case <-ctx.Done():
		g.canceled <- t.ID
		return ctx.Err()
	}
}

func (g *gate) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls
}

func (g *gate) waitStarted(t *testing.T, n int) []string {
	t.Helper()
	var ids []string
	for range n {
		select {
		case id := <-g.started:
			ids = append(ids, id)
		case <-time.After(wait):
			t.Fatalf("%d checks started, want %d", len(ids), n)
		}
	}
	return ids
}

func TestMaxConcurrent(t *testing.T) {
	clk := newFakeClock()
	g := newGate()
	h := newHarness(t, g, withClock(clk), WithMaxConcurrent(2), WithRand(seqRand()))
	for i := range 5 {
		require.NoError(t, h.Add(Target{ID: fmt.Sprint(i), Addr: "127.0.0.1:1"})) // all due now
	}
	started := g.waitStarted(t, 2)
	assert.Equal(t, 2, h.Stats().InFlight)
	for range 3 {
		g.release <- struct{}{}
		started = append(started, g.waitStarted(t, 1)...)
	}
	g.release <- struct{}{}
	g.release <- struct{}{}
	h.checks(t, 5)
	assert.ElementsMatch(t, []string{"0", "1", "2", "3", "4"}, started)
	g.mu.Lock()
	assert.Equal(t, 2, g.max, "never more than the limit at once")
	g.mu.Unlock()
	assert.Zero(t, h.Stats().InFlight)
}

func TestLateChecksAreCounted(t *testing.T) {
	clk := newFakeClock()
	t0 := clk.Now()
	g := newGate()
	h := newHarness(t, g, withClock(clk), WithInterval(10*time.Second), WithTimeout(time.Second),
		WithMaxConcurrent(1), WithRand(seqRand()))
	require.NoError(t, h.Add(Target{ID: "a", Addr: "127.0.0.1:1"}, Target{ID: "b", Addr: "127.0.0.1:1"}))
	assert.Equal(t, []string{"a"}, g.waitStarted(t, 1), "ties go by ID")
	clk.Advance(2 * time.Second) // b waits for a's slot past interval/10
	g.release <- struct{}{}
	assert.Equal(t, []string{"b"}, g.waitStarted(t, 1))
	g.release <- struct{}{}
	recs := h.checks(t, 2)
	if recs[0].id == "b" { // a's slot is free before its result is recorded
		recs[0], recs[1] = recs[1], recs[0]
	}
	assert.Equal(t, []string{"a", "b"}, []string{recs[0].id, recs[1].id})
	assert.Equal(t, t0, recs[1].due)
	assert.Equal(t, t0.Add(2*time.Second), recs[1].r.Time)
	assert.Equal(t, uint64(1), h.Stats().Late)
	assert.Equal(t, t0.Add(12*time.Second), mustStatus(t, h.Monitor, "b").NextCheck,
		"an interval after the late start: never sooner than the interval")
}

func TestRemoveStopsChecksAtOnce(t *testing.T) {
	clk := newFakeClock()
	g := newGate()
	sc := newScripted()
	c := CheckerFunc(func(ctx context.Context, t Target) error {
		if t.ID == "a" {
			return g.Check(ctx, t)
		}
		return sc.Check(ctx, t)
	})
	h := newHarness(t, c, withClock(clk), WithInterval(10*time.Second), WithTimeout(time.Second),
		WithRand(seqRand(0, 5*sec)))
	require.NoError(t, h.Add(Target{ID: "a", Addr: "127.0.0.1:1"}, Target{ID: "b", Addr: "127.0.0.1:2"}))
	g.waitStarted(t, 1)
	assert.True(t, mustStatus(t, h.Monitor, "a").Checking)

	require.ErrorIs(t, h.Remove("a", "nope"), ErrUnknownTarget)
	_, ok := h.Status("a")
	require.True(t, ok, "a failed Remove removes nothing")

	require.NoError(t, h.Remove("a"))
	select {
	case id := <-g.canceled:
		assert.Equal(t, "a", id, "the check in flight is canceled")
	case <-time.After(wait):
		t.Fatal("check of a removed target not canceled")
	}
	_, ok = h.Status("a")
	assert.False(t, ok)

	var ids []string
	for _, step := range []time.Duration{5 * time.Second, 10 * time.Second, 10 * time.Second} {
		clk.Advance(step)
		ids = append(ids, h.checks(t, 1)[0].id)
	}
	assert.Equal(t, []string{"b", "b", "b"}, ids)
	st := h.Stats()
	assert.Equal(t, uint64(3), st.Checks, "the canceled check of a is not recorded")
	assert.Equal(t, 1, st.Targets)
	assert.Equal(t, 1, g.count(), "a was checked once, never again")
	changes := h.closeAndDrain(t)
	require.Len(t, changes, 1)
	assert.Equal(t, "b", changes[0].Target.ID)
}

func TestCloseCancelsChecksInFlight(t *testing.T) {
	g := newGate()
	m, err := New(g, WithRand(seqRand()))
	require.NoError(t, err)
	require.NoError(t, m.Add(Target{ID: "a", Addr: "127.0.0.1:1"}))
	g.waitStarted(t, 1)
	require.NoError(t, m.Close())
	assert.Equal(t, "a", <-g.canceled, "Close returned after canceling the check")
	require.NoError(t, m.Close(), "Close twice is fine")
	assert.ErrorIs(t, m.Add(Target{ID: "b", Addr: "127.0.0.1:1"}), ErrClosed)
	assert.ErrorIs(t, m.Remove("a"), ErrClosed)
	assert.ErrorIs(t, m.Update(nil), ErrClosed)
	assert.ErrorIs(t, m.ReportFailure("a", "x"), ErrClosed)
	assert.ErrorIs(t, m.ReportSuccess("a"), ErrClosed)
}

func TestHealthCheckingOff(t *testing.T) {
	clk := newFakeClock()
	h := newHarness(t, nil, withClock(clk))
	require.NoError(t, h.Add(Target{ID: "a", Addr: "127.0.0.1:1"}, Target{ID: "b", Addr: "[::1]:2"}))
	for _, st := range h.Statuses() {
		assert.Equal(t, Healthy, st.State)
		assert.True(t, st.Serving())
		assert.Equal(t, "health checking off", st.Reason)
		assert.True(t, st.NextCheck.IsZero(), "never checked")
	}
	h.mu.Lock()
	assert.Zero(t, h.due.len(), "nothing scheduled")
	h.mu.Unlock()
	st := h.Stats()
	assert.Equal(t, Stats{Targets: 2, Healthy: 2, Serving: 2}, st)
}

func TestChangeCallbackMayCallMonitor(t *testing.T) {
	clk := newFakeClock()
	got := make(chan Status, 10)
	var m *Monitor
	ready := make(chan struct{})
	m, err := New(newScripted(), withClock(clk), WithRand(seqRand()), WithOnChange(func(c Change) {
		<-ready
		// Would deadlock if the Monitor's lock were held.
		st, _ := m.Status(c.Target.ID)
		_ = m.Stats()
		got <- st
	}))
	require.NoError(t, err)
	close(ready)
	defer m.Close()
	require.NoError(t, m.Add(Target{ID: "a", Addr: "127.0.0.1:1"}))
	select {
	case st := <-got:
		assert.Equal(t, Healthy, st.State)
	case <-time.After(wait):
		t.Fatal("callback blocked")
	}
}

func TestChangesInOrderPerTarget(t *testing.T) {
	clk := newFakeClock()
	sc := newScripted()
	h := newHarness(t, sc, withClock(clk), WithInterval(time.Second), WithTimeout(time.Second),
		WithRetries(1), WithRand(seqRand()))
	var ts []Target
	for i := range 20 {
		ts = append(ts, Target{ID: fmt.Sprintf("t%02d", i), Addr: "127.0.0.1:1"})
	}
	require.NoError(t, h.Add(ts...))
	h.checks(t, 20)
	for round := range 10 {
		for _, x := range ts {
			if round%2 == 0 {
				sc.set(x.ID, errRefused())
			} else {
				sc.set(x.ID, nil)
			}
		}
		clk.Advance(time.Second)
		h.checks(t, 20)
	}
	changes := h.closeAndDrain(t)
	require.Len(t, changes, 20*11)
	last := map[string]Condition{}
	for _, c := range changes {
		prev, seen := last[c.Target.ID]
		if !seen {
			prev = Condition{State: Unhealthy}
		}
		require.Equal(t, prev, c.Old, "change of %s does not follow the previous one", c.Target.ID)
		require.NotEqual(t, c.Old, c.New)
		last[c.Target.ID] = c.New
	}
}

func TestStatusKeepsLastResults(t *testing.T) {
	clk := newFakeClock()
	n := 0
	c := CheckerFunc(func(ctx context.Context, t Target) error {
		n++ // checks of one target never overlap
		clk.Advance(time.Duration(n) * 10 * time.Millisecond)
		if n%2 == 0 {
			return &CheckError{Reason: fmt.Sprintf("failure %d", n)}
		}
		return nil
	})
	h := newHarness(t, c, withClock(clk), WithInterval(time.Second), WithTimeout(time.Second),
		WithHistory(3), WithRand(seqRand()))
	require.NoError(t, h.Add(Target{ID: "a", Addr: "127.0.0.1:1"}))
	h.checks(t, 1)
	for range 4 {
		clk.Advance(time.Second)
		h.checks(t, 1)
	}
	st := mustStatus(t, h.Monitor, "a")
	require.Len(t, st.Results, 3)
	for i, r := range st.Results {
		k := i + 3 // checks 3, 4, 5, oldest first
		assert.Equal(t, time.Duration(k)*10*time.Millisecond, r.Latency)
		assert.Equal(t, k%2 == 1, r.OK)
		if !r.OK {
			assert.Equal(t, fmt.Sprintf("failure %d", k), r.Reason)
		}
	}
	assert.Equal(t, uint64(5), h.Stats().Checks)
	assert.Equal(t, uint64(2), h.Stats().Failures)
}

func TestPlainErrorsAndTimeoutsGetReasons(t *testing.T) {
	c := CheckerFunc(func(ctx context.Context, t Target) error {
		if t.ID == "slow" {
			<-ctx.Done() // a custom checker that just runs out of time
			return ctx.Err()
		}
		return errors.New("database is read-only")
	})
	h := newHarness(t, c, WithInterval(time.Hour), WithTimeout(50*time.Millisecond), WithRand(seqRand()))
	require.NoError(t, h.Add(Target{ID: "slow", Addr: "127.0.0.1:1"}, Target{ID: "ro", Addr: "127.0.0.1:1"}))
	got := map[string]string{}
	for _, r := range h.checks(t, 2) {
		got[r.id] = r.r.Reason
	}
	assert.Equal(t, map[string]string{"slow": "timeout after 50ms", "ro": "database is read-only"}, got)
}

func TestUpdate(t *testing.T) {
	clk := newFakeClock()
	sc := newScripted()
	// First checks of a, b and c at once; of the targets Update adds, later.
	h := newHarness(t, sc, withClock(clk), WithInterval(time.Second), WithTimeout(time.Second),
		WithRand(seqRand(0, 0, 0, sec/2, sec/2)))
	require.NoError(t, h.Add(Target{ID: "a", Addr: "127.0.0.1:1"}, Target{ID: "b", Addr: "127.0.0.1:2"}, Target{ID: "c", Addr: "127.0.0.1:3"}))
	h.checks(t, 3)
	require.Equal(t, Healthy, mustStatus(t, h.Monitor, "a").State)

	err := h.Update([]Target{{ID: "a", Addr: "127.0.0.1:1"}, {ID: "x", Addr: "bad"}})
	require.ErrorIs(t, err, ErrInvalidTarget)
	assert.Len(t, h.Targets(), 3, "an invalid update changes nothing")

	require.NoError(t, h.Update([]Target{
		{ID: "a", Addr: "127.0.0.1:1"}, // kept
		{ID: "b", Addr: "127.0.0.1:9"}, // moved: starts afresh
		{ID: "d", Addr: "127.0.0.1:4"}, // new
	}))
	assert.Equal(t, []Target{{ID: "a", Addr: "127.0.0.1:1"}, {ID: "b", Addr: "127.0.0.1:9"}, {ID: "d", Addr: "127.0.0.1:4"}}, h.Targets())
	assert.Equal(t, Healthy, mustStatus(t, h.Monitor, "a").State)
	assert.Len(t, mustStatus(t, h.Monitor, "a").Results, 1)
	b := mustStatus(t, h.Monitor, "b")
	assert.Equal(t, Unhealthy, b.State)
	assert.Equal(t, "not checked yet", b.Reason)
	assert.Empty(t, b.Results)
	_, ok := h.Status("c")
	assert.False(t, ok)
}

func TestAddValidatesEverything(t *testing.T) {
	m, err := New(nil, WithTargets(Target{ID: "a", Addr: "127.0.0.1:1"}))
	require.NoError(t, err)
	defer m.Close()
	err = m.Add(
		Target{ID: "a", Addr: "127.0.0.1:1"},
		Target{ID: "", Addr: ""},
		Target{ID: "c", Addr: "no-port"},
		Target{ID: "d", Addr: "127.0.0.1:0"},
		Target{ID: "e", Addr: ":80"},
		Target{ID: "e", Addr: "127.0.0.1:80"},
	)
	require.Error(t, err)
	for _, want := range []string{
		`target[0] "a": duplicate target: already monitored`,
		`target[1]: invalid target: id is empty`,
		`target[1]: invalid target: addr is empty`,
		`target[2] "c": invalid target: addr "no-port" is not host:port`,
		`target[3] "d": invalid target: addr "127.0.0.1:0" has port "0", want 1..65535`,
		`target[4] "e": invalid target: addr ":80" has no host`,
		`target[5] "e": duplicate target: id also used by target[4]`,
	} {
		assert.Contains(t, err.Error(), want)
	}
	assert.Equal(t, []Target{{ID: "a", Addr: "127.0.0.1:1"}}, m.Targets(), "all or nothing")
}

func TestOptionValidationListsEveryProblem(t *testing.T) {
	_, err := New(nil,
		WithInterval(0), WithTimeout(-1), WithJitter(-time.Second), WithThresholds(0, -1),
		WithInitialState(State(9)), WithMaxConcurrent(0), WithHistory(0), WithEjection(-1, 0),
		WithMaxEjectedPercent(101), WithRand(nil),
		WithTargets(Target{ID: "x", Addr: "nope"}))
	require.ErrorIs(t, err, ErrInvalidOption)
	require.ErrorIs(t, err, ErrInvalidTarget)
	for _, want := range []string{
		"interval 0s must be above 0", "timeout -1ns must be above 0", "jitter -1s is outside",
		"healthy threshold 0", "unhealthy threshold -1", "initial state state(9) is unknown",
		"max concurrent checks 0", "history 0", "ejection failures -1 is negative",
		"max ejected percent 101", "rand is nil", `addr "nope" is not host:port`,
	} {
		assert.Contains(t, err.Error(), want)
	}
	_, err = New(nil, WithInterval(time.Second), WithTimeout(2*time.Second), WithJitter(600*time.Millisecond))
	require.ErrorIs(t, err, ErrInvalidOption)
	assert.Contains(t, err.Error(), "timeout 2s exceeds interval 1s")
	assert.Contains(t, err.Error(), "jitter 600ms is outside 0..interval/2 (500ms)")
	_, err = New(nil, WithEjection(3, 0))
	assert.ErrorContains(t, err, "ejection period 0s must be above 0")
}

func TestMonitorWithRealTCP(t *testing.T) {
	srv := newTCPServer(t, "tcp", "127.0.0.1:0")
	// Timeouts generous for a loaded machine: a slow loopback connect must
	// not pass for the outage the test makes.
	h := newHarness(t, TCP{}, WithInterval(100*time.Millisecond), WithTimeout(100*time.Millisecond), WithRetries(2))
	require.NoError(t, h.Add(Target{ID: "a", Addr: srv.addr}))
	c := h.change(t)
	assert.Equal(t, "first successful check", c.Reason)
	assert.Equal(t, Healthy, c.New.State)

	srv.stop()
	c = h.change(t)
	assert.Equal(t, Unhealthy, c.New.State)
	assert.Equal(t, "connection refused", c.Reason)
	st := mustStatus(t, h.Monitor, "a")
	assert.Equal(t, "connection refused", st.Reason)
	assert.False(t, st.Serving())

	srv.restart()
	c = h.change(t)
	assert.Equal(t, Healthy, c.New.State)
	assert.Equal(t, "2 consecutive successful checks", c.Reason)
}

func TestAddWithStateCarriesHealthOver(t *testing.T) {
	clk := newFakeClock()
	sc := newScripted()
	h := newHarness(t, sc, withClock(clk), WithInterval(time.Second), WithTimeout(time.Second),
		WithThresholds(2, 2), WithRand(seqRand(0, 0)))
	sc.set("down", errRefused())
	require.NoError(t, h.AddWithState(Healthy, Target{ID: "up", Addr: "127.0.0.1:1"}))
	require.NoError(t, h.AddWithState(Unhealthy, Target{ID: "down", Addr: "127.0.0.1:2"}))
	assert.True(t, mustStatus(t, h.Monitor, "up").Serving(), "carried over: serving before any check")
	assert.False(t, mustStatus(t, h.Monitor, "down").Serving())

	h.checks(t, 2) // both due at once: offset 0
	assert.Equal(t, Healthy, mustStatus(t, h.Monitor, "up").State)
	assert.Equal(t, Unhealthy, mustStatus(t, h.Monitor, "down").State)
	sc.set("down", nil)
	clk.Advance(time.Second)
	h.checks(t, 2)
	assert.Equal(t, Unhealthy, mustStatus(t, h.Monitor, "down").State,
		"not new: one success is not enough, the healthy threshold applies")
	clk.Advance(time.Second)
	h.checks(t, 2)
	assert.Equal(t, Healthy, mustStatus(t, h.Monitor, "down").State)

	require.ErrorIs(t, h.AddWithState(State(9), Target{ID: "x", Addr: "127.0.0.1:3"}), ErrInvalidOption)
	require.ErrorIs(t, h.AddWithState(Healthy, Target{ID: "up", Addr: "127.0.0.1:1"}), ErrDuplicateTarget)
	changes := h.closeAndDrain(t)
	require.Len(t, changes, 1, "only down's recovery is a change")
	assert.Equal(t, "down", changes[0].Target.ID)
}
