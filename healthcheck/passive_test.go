package healthcheck

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPassiveEjectionAndCap(t *testing.T) {
	clk := newFakeClock()
	t0 := clk.Now()
	// Health checking off: every target healthy, so only ejection moves them.
	h := newHarness(t, nil, withClock(clk), WithEjection(3, 30*time.Second), WithMaxEjectedPercent(50))
	for _, id := range []string{"a", "b", "c", "d"} {
		require.NoError(t, h.Add(Target{ID: id, Addr: "127.0.0.1:1"}))
	}

	// Consecutive means consecutive: a success starts the count over.
	require.NoError(t, h.ReportFailure("a", "connection reset"))
	require.NoError(t, h.ReportFailure("a", "connection reset"))
	require.NoError(t, h.ReportSuccess("a"))
	assert.Zero(t, mustStatus(t, h.Monitor, "a").PassiveFailures)
	for range 3 {
		require.NoError(t, h.ReportFailure("a", "connection reset"))
	}
	c := h.change(t)
	assert.Equal(t, Change{
		Target: Target{ID: "a", Addr: "127.0.0.1:1"}, Time: t0,
		Old: Condition{State: Healthy}, New: Condition{State: Healthy, Ejected: true},
		Reason: "ejected: 3 consecutive failures, last: connection reset",
	}, c)
	assert.False(t, c.New.Serving())
	assert.Equal(t, "healthy, ejected", c.New.String())
	st := mustStatus(t, h.Monitor, "a")
	assert.True(t, st.Ejected)
	assert.Equal(t, Healthy, st.State, "ejection is not health")
	assert.Equal(t, t0.Add(30*time.Second), st.EjectedUntil)
	assert.Equal(t, "3 consecutive failures, last: connection reset", st.EjectionReason)

	// Failures of traffic sent before the ejection do not extend it.
	require.NoError(t, h.ReportFailure("a", "late"))
	assert.Equal(t, t0.Add(30*time.Second), mustStatus(t, h.Monitor, "a").EjectedUntil)

	clk.Advance(10 * time.Second)
	for range 3 {
		require.NoError(t, h.ReportFailure("b", "502 from target"))
	}
	c = h.change(t)
	assert.Equal(t, "b", c.Target.ID)
	assert.True(t, c.New.Ejected)

	// The cap: 2 of 4 ejected is 50 %; c stays in service.
	for range 4 {
		require.NoError(t, h.ReportFailure("c", "timeout"))
	}
	st = mustStatus(t, h.Monitor, "c")
	assert.False(t, st.Ejected)
	assert.True(t, st.Serving())
	assert.Equal(t, 4, st.PassiveFailures)
	assert.Equal(t, "not ejected after 4 consecutive failures (last: timeout): 2 of 4 targets already ejected, cap 50%", st.EjectionReason)
	stats := h.Stats()
	assert.Equal(t, uint64(2), stats.Ejections)
	assert.Equal(t, uint64(2), stats.EjectionsRefused, "failures 3 and 4 of c")
	assert.Equal(t, 2, stats.Ejected)
	assert.Equal(t, 2, stats.Serving)
	assert.Equal(t, 4, stats.Healthy)

	// Ejections end after their period, each at its own time.
	clk.Advance(20 * time.Second)
	c = h.change(t)
	assert.Equal(t, "a", c.Target.ID)
	assert.Equal(t, "ejection ended after 30s", c.Reason)
	assert.Equal(t, Condition{State: Healthy}, c.New)
	assert.Equal(t, t0.Add(30*time.Second), c.Time)
	st = mustStatus(t, h.Monitor, "a")
	assert.Zero(t, st.PassiveFailures)
	assert.True(t, st.EjectedUntil.IsZero())
	assert.Empty(t, st.EjectionReason)
	assert.True(t, mustStatus(t, h.Monitor, "b").Ejected, "b's period is not over")

	// With room under the cap again, c's next failure ejects it.
	require.NoError(t, h.ReportFailure("c", "timeout"))
	c = h.change(t)
	assert.Equal(t, "c", c.Target.ID)
	assert.Equal(t, "ejected: 5 consecutive failures, last: timeout", c.Reason)

	clk.Advance(10 * time.Second)
	c = h.change(t)
	assert.Equal(t, "b", c.Target.ID)
	assert.False(t, c.New.Ejected)
	assert.Empty(t, h.closeAndDrain(t))
}

func TestEjectionCapNeverEmptiesSmallGroups(t *testing.T) {
	for n, maxEjected := range map[int]int{1: 0, 2: 1, 3: 1, 4: 2, 5: 2} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			m, err := New(nil, WithEjection(1, time.Minute))
			require.NoError(t, err)
			defer m.Close()
			for i := range n {
				require.NoError(t, m.Add(Target{ID: fmt.Sprint(i), Addr: "127.0.0.1:1"}))
			}
			for i := range n {
				require.NoError(t, m.ReportFailure(fmt.Sprint(i), "refused"))
			}
			st := m.Stats()
			assert.Equal(t, maxEjected, st.Ejected)
			assert.Equal(t, n-maxEjected, st.Serving)
			assert.Equal(t, uint64(n-maxEjected), st.EjectionsRefused)
		})
	}
}

func TestEjectionAndHealthCombine(t *testing.T) {
	clk := newFakeClock()
	sc := newScripted()
	sc.set("a", errRefused())
	h := newHarness(t, sc, withClock(clk), WithInterval(time.Second), WithTimeout(time.Second),
		WithRetries(1), WithInitialState(Healthy), WithEjection(1, time.Minute), WithRand(seqRand(sec/2)),
		WithTargets(Target{ID: "a", Addr: "127.0.0.1:1"}, Target{ID: "b", Addr: "127.0.0.1:2"}))
	require.NoError(t, h.ReportFailure("a", "reset"))
	c := h.change(t)
	assert.Equal(t, Condition{State: Healthy, Ejected: true}, c.New)
	clk.Advance(time.Second / 2)
	h.checks(t, 2)
	c = h.change(t)
	assert.Equal(t, Condition{State: Healthy, Ejected: true}, c.Old)
	assert.Equal(t, Condition{State: Unhealthy, Ejected: true}, c.New)
	assert.Equal(t, "unhealthy, ejected", c.New.String())
	assert.Equal(t, `target "a" (127.0.0.1:1): healthy, ejected → unhealthy, ejected: connection refused`, c.String())
}

func TestPassiveOffAndUnknownTargets(t *testing.T) {
	m, err := New(nil, WithEjection(0, 0), WithTargets(Target{ID: "a", Addr: "127.0.0.1:1"}))
	require.NoError(t, err)
	defer m.Close()
	for range 100 {
		require.NoError(t, m.ReportFailure("a", ""))
	}
	st := mustStatus(t, m, "a")
	assert.False(t, st.Ejected, "ejection off")
	assert.Equal(t, 100, st.PassiveFailures, "still counted for diagnosis")
	require.ErrorIs(t, m.ReportFailure("zz", "x"), ErrUnknownTarget)
	require.ErrorIs(t, m.ReportSuccess("zz"), ErrUnknownTarget)
}

func TestReportSuccessAllocatesNothing(t *testing.T) {
	m, err := New(nil, WithTargets(Target{ID: "a", Addr: "127.0.0.1:1"}))
	require.NoError(t, err)
	defer m.Close()
	allocs := testing.AllocsPerRun(1000, func() {
		if err := m.ReportSuccess("a"); err != nil {
			panic(err)
		}
	})
	assert.Zero(t, allocs)
}
