package proxy

import (
	"bufio"
	"net"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lbkit/lbkit/balancer"
	"github.com/lbkit/lbkit/flowtable"
)

// fakeClock is a clock that tests move, for flow tables swept by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *fakeClock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

// manualFlows returns a flow table on a fake clock, swept by the test.
func manualFlows(t *testing.T, opts ...flowtable.Option) (*FlowTable, *fakeClock) {
	t.Helper()
	clk := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	ft, err := NewFlowTable(append([]flowtable.Option{flowtable.WithClock(clk.Now), flowtable.WithManualSweep()}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { ft.Close() })
	return ft, clk
}

// refusals records OnRefuse reports.
type refusals struct {
	mu      sync.Mutex
	reasons []RefuseReason
}

func (r *refusals) hook(x Refusal) {
	r.mu.Lock()
	r.reasons = append(r.reasons, x.Reason)
	r.mu.Unlock()
}

func (r *refusals) list() []RefuseReason {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]RefuseReason(nil), r.reasons...)
}

// TestTCPDescriptorBudget: a TCP connection costs two descriptors from
// accept to close; with the budget spent a new client is reset at once,
// counted and reported, and served again once a connection ends.
func TestTCPDescriptorBudget(t *testing.T) {
	checkFDs(t)
	a := startTCPTarget(t, "tcp4", "a", echoHandler)
	d := NewDescriptors(2*TCPDescriptors, nil)
	var refused refusals
	p := &TCP{Flows: newTestFlows(t), Descriptors: d, OnRefuse: refused.hook}
	p.SetUpstream(newTestUpstream(t, a))
	addr := startTCPProxy(t, p, "tcp4")
	c1, c2 := dial(t, "tcp4", addr), dial(t, "tcp4", addr)
	require.Equal(t, "1", exchangeMsg(t, c1, "1", 0))
	require.Equal(t, "2", exchangeMsg(t, c2, "2", 0))
	assert.Equal(t, int64(4), d.Stats().InUse)

	// Over the budget: reset, right after the handshake (or during it,
	// when the reset comes first).
	if c3, err := net.Dial("tcp4", addr); err == nil {
		require.True(t, isReset(readErr(c3)), "over the budget: reset")
		c3.Close()
	} else {
		require.True(t, isReset(err), "over the budget: reset, got %v", err)
	}
	waitFor(t, "refusal counted", func() bool { return p.Stats().RejectedDescriptors == 1 })
	assert.Equal(t, []RefuseReason{RefusedDescriptors}, refused.list())
	assert.Equal(t, "descriptors", RefusedDescriptors.String())
	assert.Equal(t, uint64(1), d.Stats().Refused)

	c1.Close()
	waitFor(t, "descriptors given back", func() bool { return d.Stats().InUse == 2 })
	c4 := dial(t, "tcp4", addr)
	require.Equal(t, "4", exchangeMsg(t, c4, "4", 0))
	c2.Close()
	c4.Close()
	waitFor(t, "all given back", func() bool { return d.Stats().InUse == 0 })
}

// TestHTTPDescriptorBudget: an HTTP client connection costs one descriptor
// from accept to close; over the budget a new connection is closed at
// accept, counted and reported; kept-alive connections keep working.
func TestHTTPDescriptorBudget(t *testing.T) {
	tg := newTarget(t, "a", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("a")) })
	d := NewDescriptors(1, nil)
	var refused refusals
	h := configured(t, &HTTP{Descriptors: d, OnRefuse: refused.hook}, forwardTo(t, upstreamOf(t, "app", tg)))
	addr := serve(t, h)
	c1, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c1.Close()
	br := bufio.NewReader(c1)
	get1 := func() int {
		_, err := c1.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		require.NoError(t, err)
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusOK, get1())
	assert.Equal(t, int64(1), d.Stats().InUse)

	// Over the budget: reset at accept, without an answer (the reset may
	// even beat the end of the client's connect).
	if c2, err := net.Dial("tcp", addr); err == nil {
		defer c2.Close()
		_, _ = c2.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		_ = c2.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = c2.Read(make([]byte, 1))
		require.Error(t, err, "over the budget: closed without an answer")
	}
	waitFor(t, "refusal counted", func() bool { return h.Stats().RejectedDescriptors == 1 })
	assert.Equal(t, []RefuseReason{RefusedDescriptors}, refused.list())
	require.Equal(t, http.StatusOK, get1(), "the kept-alive connection goes on")

	c1.Close()
	waitFor(t, "descriptor given back", func() bool { return d.Stats().InUse == 0 })
	code, _ := get(t, client(t), "http://"+addr+"/")
	assert.Equal(t, http.StatusOK, code)
}

// twoWay makes c's flow two-way: answered, and used again 2 s later.
func twoWay(t *testing.T, ft *FlowTable, clk *fakeClock, c *net.UDPConn, id string) {
	t.Helper()
	require.Equal(t, id+"x", roundTrip(t, c, "x"))
	ft.Sweep(clk.Advance(2 * time.Second))
	require.Equal(t, id+"y", roundTrip(t, c, "y"))
}

// TestUDPUnrepliedFlowsMakeRoom: when the flow table is full, a new flow
// evicts an unreplied one (answered once, or never) and never a two-way
// flow; with only two-way flows left it is refused, as before.
func TestUDPUnrepliedFlowsMakeRoom(t *testing.T) {
	checkFDs(t)
	a := startUDPTarget(t, "udp4", "a")
	ft, clk := manualFlows(t, flowtable.WithMaxFlows(2))
	var refused refusals
	p := &UDP{Flows: ft, OnRefuse: refused.hook}
	p.SetUpstream(newUDPUpstream(t, a))
	addr := startUDPProxy(t, p, "udp4")

	real := udpClient(t, "udp4", addr)
	twoWay(t, ft, clk, real, "a")
	once := udpClient(t, "udp4", addr)
	require.Equal(t, "a1", roundTrip(t, once, "1"), "a query and its answer: still unreplied")
	fresh := udpClient(t, "udp4", addr)
	require.Equal(t, "a2", roundTrip(t, fresh, "2"), "the full table made room")
	st := ft.Stats().UDP
	assert.Equal(t, uint64(1), st.EvictedFlowCount)
	assert.Zero(t, st.RejectedFlowCount)
	require.Equal(t, "a3", roundTrip(t, real, "3"))
	assert.Equal(t, uint64(3), ft.Stats().UDP.NewFlowCount, "the two-way flow was kept, not made again")

	twoWay(t, ft, clk, fresh, "a")
	late := udpClient(t, "udp4", addr)
	_, err := late.Write([]byte("4"))
	require.NoError(t, err)
	waitFor(t, "table full", func() bool { return p.Stats().RejectedTableFull == 1 })
	assert.Equal(t, []RefuseReason{RefusedTableFull}, refused.list())
}

// TestUDPDescriptorBudget: a UDP flow costs one descriptor; with the budget
// spent a new flow evicts an unreplied one, never a two-way one, and is
// refused (RefusedDescriptors) when none is left. Descriptors are given
// back when flows end.
func TestUDPDescriptorBudget(t *testing.T) {
	checkFDs(t)
	a := startUDPTarget(t, "udp4", "a")
	ft, clk := manualFlows(t)
	d := NewDescriptors(2, ft)
	var refused refusals
	p := &UDP{Flows: ft, Descriptors: d, OnRefuse: refused.hook}
	p.SetUpstream(newUDPUpstream(t, a))
	addr := startUDPProxy(t, p, "udp4")

	real := udpClient(t, "udp4", addr)
	twoWay(t, ft, clk, real, "a")
	spoofed := udpClient(t, "udp4", addr)
	_, err := spoofed.Write([]byte("s"))
	require.NoError(t, err)
	waitFor(t, "second flow", func() bool { return d.Stats().InUse == 2 })
	fresh := udpClient(t, "udp4", addr)
	require.Equal(t, "a1", roundTrip(t, fresh, "1"), "the spent budget made room")
	assert.Equal(t, uint64(1), d.Stats().Evicted)
	assert.Equal(t, uint64(1), ft.Stats().UDP.EvictedFlowCount)
	assert.Equal(t, int64(2), d.Stats().InUse)
	require.Equal(t, "a2", roundTrip(t, real, "2"))

	twoWay(t, ft, clk, fresh, "a")
	late := udpClient(t, "udp4", addr)
	_, err = late.Write([]byte("3"))
	require.NoError(t, err)
	waitFor(t, "budget refusal", func() bool { return p.Stats().RejectedDescriptors == 1 })
	assert.Equal(t, []RefuseReason{RefusedDescriptors}, refused.list())
	assert.Equal(t, uint64(1), d.Stats().Refused)

	require.NoError(t, p.Close())
	assert.Zero(t, d.Stats().InUse, "closed flows give their descriptors back")
}

// TestUDPRepliesMarkTheFlow: the first reply marks the flow replied through
// its Ref; a flow whose target never answers stays unreplied and idles out
// after the unreplied timeout, well before the UDP idle timeout.
func TestUDPRepliesMarkTheFlow(t *testing.T) {
	checkFDs(t)
	a := startUDPTarget(t, "udp4", "a")
	silent, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer silent.Close()
	ft, clk := manualFlows(t)
	pa := &UDP{Flows: ft}
	pa.SetUpstream(newUDPUpstream(t, a))
	addrA := startUDPProxy(t, pa, "udp4")
	ps := &UDP{Flows: ft}
	b, err := balancerWith(silent.LocalAddr().String())
	require.NoError(t, err)
	ps.SetUpstream(&Upstream{Name: "silent", Balancer: b})
	addrS := startUDPProxy(t, ps, "udp4")

	real := udpClient(t, "udp4", addrA)
	twoWay(t, ft, clk, real, "a")
	ask := udpClient(t, "udp4", addrS)
	_, err = ask.Write([]byte("?"))
	require.NoError(t, err)
	waitFor(t, "flow made", func() bool { return ft.Len() == 2 })
	assert.Equal(t, 2, ft.Stats().Unreplied, "the two-way flow leaves probation at its next sweep")
	ft.Sweep(clk.Advance(DefaultUnrepliedTimeout + time.Second))
	assert.Equal(t, uint64(1), ft.Stats().UDP.ExpiredFlowCount, "the unanswered flow idled out after 30 s")
	waitFor(t, "closed", func() bool { return ps.Stats().ActiveFlows == 0 })
	assert.Equal(t, 1, ft.Len())
	assert.Zero(t, ft.Stats().Unreplied)
}

// balancerWith returns a balancer of one target at addr.
func balancerWith(addr string) (*balancer.Balancer, error) {
	return balancer.New(balancer.WithTargets(balancer.Target{ID: "s", Addr: addr, Weight: 1}))
}

// TestDescriptorsNeverOverLimit: takers racing for a spent budget never
// show above its limit, not even for a moment (Diagnose and the metrics
// read InUse while clients are refused), and every take is either granted
// or counted as refused.
func TestDescriptorsNeverOverLimit(t *testing.T) {
	const limit, takers, rounds = 8, 8, 2000
	d := NewDescriptors(limit, nil)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var over int64
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if u := d.Stats().InUse; u > limit {
				over = u
			}
			select {
			case <-stop:
				return
			default:
			}
		}
	}()
	// One taker holds most of the budget all along, so the others are
	// refused often.
	require.True(t, d.take(limit-TCPDescriptors))
	var mu sync.Mutex
	ok := 0
	for range takers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			for range rounds {
				if d.take(TCPDescriptors) {
					n++
					runtime.Gosched() // held a while, as a connection is
					d.release(TCPDescriptors)
				}
			}
			mu.Lock()
			ok += n
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(stop)
	<-sampled
	d.release(limit - TCPDescriptors)
	assert.Zero(t, over, "InUse went above the limit")
	st := d.Stats()
	assert.Equal(t, int64(0), st.InUse)
	assert.Equal(t, uint64(takers*rounds), uint64(ok)+st.Refused)
	assert.NotZero(t, st.Refused, "the budget was spent at times")
}
