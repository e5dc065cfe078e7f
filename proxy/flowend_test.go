package proxy

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/lbkit/lbkit/flowtable"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// flowEnds records OnFlowEnd reports.
type flowEnds struct {
	mu   sync.Mutex
	ends []FlowEnd
}

func (r *flowEnds) hook(e FlowEnd) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ends = append(r.ends, e)
}

// wait returns the n-th report (1-based), waiting for it.
func (r *flowEnds) wait(t *testing.T, n int) FlowEnd {
	t.Helper()
	waitFor(t, "the flow's end reported", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.ends) >= n
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ends[n-1]
}

// TestTCPFlowEnd: a connection's end is reported with the bytes each way,
// its target, its duration and why it ended: the client closed first, the
// target did, the idle timeout, the drain deadline, the proxy's Close.
func TestTCPFlowEnd(t *testing.T) {
	checkFDs(t)
	// The target answers each message, and closes after "bye".
	a := startTCPTarget(t, "tcp4", "a", func(c net.Conn) {
		buf := make([]byte, 64)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			if _, err := c.Write(append([]byte("re:"), buf[:n]...)); err != nil {
				return
			}
			if string(buf[:n]) == "bye" {
				c.Close()
				return
			}
		}
	})
	var ends flowEnds
	ft := newTestFlows(t, flowtable.WithIdleTimeout(flowtable.TCP, 300*time.Millisecond))
	p := &TCP{Flows: ft, OnFlowEnd: ends.hook}
	u := newTestUpstream(t, a)
	require.NoError(t, p.SetUpstream(u))
	addr := startTCPProxy(t, p, "tcp4")
	read := func(c net.Conn, want string) {
		t.Helper()
		buf := make([]byte, len(want))
		require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
		_, err := io.ReadFull(c, buf)
		require.NoError(t, err)
		require.Equal(t, want, string(buf))
	}

	// The client closes first.
	c := dial(t, "tcp4", addr)
	_, err := io.WriteString(c, "hello")
	require.NoError(t, err)
	read(c, "re:hello")
	start := time.Now()
	c.Close()
	e := ends.wait(t, 1)
	assert.Equal(t, flowtable.TCP, e.Proto)
	assert.Equal(t, ClosedByClient, e.Reason)
	assert.Equal(t, "client_close", e.Reason.String())
	assert.Equal(t, uint64(5), e.BytesIn)
	assert.Equal(t, uint64(8), e.BytesOut)
	assert.Equal(t, "a", e.Target.ID)
	assert.Equal(t, a.Addr(), e.Target.Addr)
	assert.Equal(t, c.LocalAddr().String(), e.Client.String())
	assert.Positive(t, e.Duration)
	assert.False(t, e.Start.After(start), "started before the client closed")
	assert.NoError(t, e.Err)

	// The target closes first.
	c = dial(t, "tcp4", addr)
	_, err = io.WriteString(c, "bye")
	require.NoError(t, err)
	read(c, "re:bye")
	e = ends.wait(t, 2)
	assert.Equal(t, ClosedByTarget, e.Reason)
	assert.Equal(t, uint64(3), e.BytesIn)
	assert.Equal(t, uint64(6), e.BytesOut)

	// Idle for the idle timeout.
	c = dial(t, "tcp4", addr)
	_, err = io.WriteString(c, "x")
	require.NoError(t, err)
	read(c, "re:x")
	e = ends.wait(t, 3)
	assert.Equal(t, ClosedIdle, e.Reason)
	assert.GreaterOrEqual(t, e.Duration, 300*time.Millisecond)

	// Drained: reset when the deregistration delay passes.
	require.NoError(t, ft.SetIdleTimeout(flowtable.TCP, time.Hour))
	c = dial(t, "tcp4", addr)
	_, err = io.WriteString(c, "y")
	require.NoError(t, err)
	read(c, "re:y")
	u.Drain("a", 0)
	e = ends.wait(t, 4)
	assert.Equal(t, ClosedDrain, e.Reason)

	// Open when the proxy closes (another proxy: this one's target is
	// drained).
	var ends2 flowEnds
	p2 := &TCP{Flows: newTestFlows(t), OnFlowEnd: ends2.hook}
	require.NoError(t, p2.SetUpstream(newTestUpstream(t, a)))
	c = dial(t, "tcp4", startTCPProxy(t, p2, "tcp4"))
	_, err = io.WriteString(c, "z")
	require.NoError(t, err)
	read(c, "re:z")
	require.NoError(t, p2.Close())
	e = ends2.wait(t, 1)
	assert.Equal(t, ClosedShutdown, e.Reason)
	assert.Equal(t, uint64(1), e.BytesIn)
	assert.Equal(t, uint64(4), e.BytesOut)
}

// TestUDPFlowEnd: a UDP flow's end is reported with its datagrams and
// bytes each way: idle, evicted for a new flow (unreplied), closed with
// the proxy.
func TestUDPFlowEnd(t *testing.T) {
	checkFDs(t)
	a := startUDPTarget(t, "udp4", "a")
	var ends flowEnds
	ft, clk := manualFlows(t, flowtable.WithMaxFlows(2), flowtable.WithShards(1))
	p := &UDP{Flows: ft, OnFlowEnd: ends.hook}
	require.NoError(t, p.SetUpstream(newUDPUpstream(t, a)))
	addr := startUDPProxy(t, p, "udp4")

	c := udpClient(t, "udp4", addr)
	require.Equal(t, "ahello", roundTrip(t, c, "hello"))
	require.Equal(t, "aworld!", roundTrip(t, c, "world!"))
	ft.Sweep(clk.Advance(121 * time.Second))
	e := ends.wait(t, 1)
	assert.Equal(t, flowtable.UDP, e.Proto)
	assert.Equal(t, ClosedIdle, e.Reason)
	assert.Equal(t, uint64(2), e.DatagramsIn)
	assert.Equal(t, uint64(2), e.DatagramsOut)
	assert.Equal(t, uint64(11), e.BytesIn)
	assert.Equal(t, uint64(13), e.BytesOut)
	assert.Equal(t, "a", e.Target.ID)
	assert.Equal(t, c.LocalAddr().String(), e.Client.String())

	// Two flows fill the table; the first, never answered by the table's
	// reckoning (one answer only: a query and its reply), is evicted by
	// a third.
	c1 := udpClient(t, "udp4", addr)
	require.Equal(t, "a1", roundTrip(t, c1, "1"))
	c2 := udpClient(t, "udp4", addr)
	require.Equal(t, "a2", roundTrip(t, c2, "2"))
	c3 := udpClient(t, "udp4", addr)
	require.Equal(t, "a3", roundTrip(t, c3, "3"))
	e = ends.wait(t, 2)
	assert.Equal(t, ClosedEvicted, e.Reason)
	assert.Equal(t, "evicted", e.Reason.String())
	assert.Equal(t, uint64(1), e.DatagramsIn)

	require.NoError(t, p.Close())
	e = ends.wait(t, 4)
	assert.Equal(t, ClosedShutdown, e.Reason)
}
