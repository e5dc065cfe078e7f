package proxy

import (
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestArmWaitLazy: the wait for a request never ends before its timeout
// after the last request, at most lazyDeadline later, and a connection
// whose requests come often sets its deadline once per lazyDeadline, not
// at every request.
func TestArmWaitLazy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	nc, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer nc.Close()
	c := &conn1{nc: nc}

	const wait = 64 * time.Second
	slack := lazyDeadline(wait)
	require.Equal(t, 250*time.Millisecond, slack)
	assert.Equal(t, 10*time.Millisecond, lazyDeadline(640*time.Millisecond))

	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	require.NoError(t, c.armWait(t0, wait))
	assert.Equal(t, t0.Add(wait+slack), c.rdl)
	require.NoError(t, c.armWait(t0.Add(100*time.Millisecond), wait))
	assert.Equal(t, t0.Add(wait+slack), c.rdl, "within the margin: left alone")
	require.NoError(t, c.armWait(t0.Add(300*time.Millisecond), wait))
	assert.Equal(t, t0.Add(300*time.Millisecond+wait+slack), c.rdl, "past it: set again")

	// Requests at random intervals: the deadline is never early, never
	// more than the margin late, and set far less often than asked.
	rng := rand.New(rand.NewPCG(1, 2))
	now, sets := t0.Add(time.Second), 0
	for range 10000 {
		now = now.Add(time.Duration(rng.IntN(int(5 * time.Millisecond))))
		before := c.rdl
		require.NoError(t, c.armWait(now, wait))
		if !c.rdl.Equal(before) {
			sets++
		}
		require.False(t, c.rdl.Before(now.Add(wait)), "never earlier than the timeout")
		require.LessOrEqual(t, c.rdl.Sub(now.Add(wait)), slack, "at most the margin later")
	}
	assert.Less(t, sets, 10000/40, "set about once per %v of requests every 2.5ms on average", slack)

	// Another deadline set meanwhile (the request timeout of a slow head,
	// the watcher's abort) is replaced by the next wait.
	require.NoError(t, c.setReadDeadline(aLongTimeAgo))
	require.NoError(t, c.armWait(now, wait))
	assert.Equal(t, now.Add(wait+slack), c.rdl)
	require.NoError(t, c.setReadDeadline(time.Time{}))
	require.NoError(t, c.armWait(now, wait))
	assert.Equal(t, now.Add(wait+slack), c.rdl)
}
