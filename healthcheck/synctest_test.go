package healthcheck_test

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lbkit/lbkit/healthcheck"
)

// TestMonitorInSynctestBubble shows how a program tests a Monitor in
// virtual time, as the package's API offers no clock: inside a
// testing/synctest bubble, the Monitor's timers and time.Now follow the
// bubble's clock, which moves only when every goroutine of the bubble
// waits, so thresholds and intervals are exact and the test takes no real
// time.
func TestMonitorInSynctestBubble(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var down atomic.Bool
		checker := healthcheck.CheckerFunc(func(context.Context, healthcheck.Target) error {
			if down.Load() {
				return &healthcheck.CheckError{Reason: "connection refused"}
			}
			return nil
		})
		changes := make(chan healthcheck.Change, 10)
		m, err := healthcheck.New(checker,
			healthcheck.WithInterval(5*time.Second), healthcheck.WithTimeout(time.Second),
			healthcheck.WithThresholds(3, 2), healthcheck.WithFirstCheckWithin(time.Second),
			healthcheck.WithOnChange(func(c healthcheck.Change) { changes <- c }))
		require.NoError(t, err)
		defer m.Close()
		start := time.Now()
		require.NoError(t, m.Add(healthcheck.Target{ID: "a", Addr: "127.0.0.1:1"}))

		c := <-changes // the bubble's clock moves to the first check
		assert.Equal(t, "first successful check", c.Reason)
		assert.LessOrEqual(t, c.Time.Sub(start), time.Second, "first check within a second")

		down.Store(true)
		c = <-changes
		assert.Equal(t, "connection refused", c.Reason)
		assert.False(t, c.New.Serving())
		st, ok := m.Status("a")
		require.True(t, ok)
		assert.Equal(t, 2, st.Failures, "down after exactly the unhealthy threshold")

		down.Store(false)
		synctest.Wait()
		before := time.Now()
		c = <-changes
		assert.Equal(t, "3 consecutive successful checks", c.Reason)
		assert.InDelta(t, float64(15*time.Second), float64(c.Time.Sub(before)), float64(5*time.Second), "three intervals later")
	})
}
