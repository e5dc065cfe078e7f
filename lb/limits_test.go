package lb

import (
	"errors"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lbkit/lbkit/proxy"
)

func TestDefaultLimits(t *testing.T) {
	for _, tc := range []struct {
		process, reserve, budget, maxFlows, perSource int
	}{
		{64, 32, 32, 32, 8},
		{1024, 256, 768, 768, 64},
		{20000, 2500, 17500, 17500, 1093},
		{1 << 20, 1 << 17, 7 << 17, 7 << 17, 7 << 13},
		{1 << 24, 1 << 21, 7 << 21, DefaultMaxFlows, DefaultMaxFlows / 16},
	} {
		lm := (&config{}).limits(tc.process)
		assert.Equal(t, limits{process: tc.process, reserve: tc.reserve, budget: tc.budget, maxFlows: tc.maxFlows,
			perSource: tc.perSource, unreplied: proxy.DefaultUnrepliedTimeout}, lm, "process limit %d", tc.process)
	}
	lm := (&config{}).limits(0)
	assert.Equal(t, limits{maxFlows: DefaultMaxFlows, perSource: DefaultMaxFlows / 16, unreplied: 30 * time.Second}, lm, "unknown limit: no budget")

	c := build([]Option{WithDescriptorBudget(0), WithMaxFlowsPerSource(0), WithUnrepliedTimeout(0)})
	assert.Equal(t, limits{process: 20000, maxFlows: DefaultMaxFlows}, c.limits(20000), "0 turns each off")
	c = build([]Option{WithDescriptorBudget(100), WithMaxFlows(50)})
	assert.Equal(t, limits{process: 20000, budget: 100, maxFlows: 50, perSource: 12, unreplied: 30 * time.Second}, c.limits(20000))
}

// TestStartUsesTheProcessLimit: the flow table and the budget a started load
// balancer reports follow the process's descriptor limit.
func TestStartUsesTheProcessLimit(t *testing.T) {
	process, ok := processFileLimit()
	if !ok {
		t.Skip("the descriptor limit cannot be read here")
	}
	l := startLB(t)
	st := l.Stats()
	want := (&config{}).limits(process)
	assert.Equal(t, process, st.Descriptors.ProcessLimit)
	assert.Equal(t, want.reserve, st.Descriptors.Reserve)
	assert.Equal(t, want.budget, st.Descriptors.Limit)
	assert.Equal(t, want.maxFlows, st.Flows.MaxFlows)
	assert.Equal(t, want.perSource, st.Flows.MaxFlowsPerSource)
}

// TestLimitsCannotChangeWhileRunning: a reload that changes a limit of the
// flow table or the budget is refused and changes nothing.
func TestLimitsCannotChangeWhileRunning(t *testing.T) {
	l := startLB(t, WithDescriptorBudget(100))
	for _, o := range []Option{WithDescriptorBudget(101), WithMaxFlows(7), WithMaxFlowsPerSource(0), WithUnrepliedTimeout(time.Second)} {
		require.ErrorIs(t, l.Reconfigure(WithDescriptorBudget(100), o), errLimitsFixed)
	}
	require.NoError(t, l.Reconfigure(WithDescriptorBudget(100)), "the same limits")
	_, err := New(WithDescriptorBudget(-1), WithUnrepliedTimeout(-time.Second))
	require.ErrorContains(t, err, "descriptor budget -1 is negative")
	require.ErrorContains(t, err, "unreplied timeout -1s is negative")
}

// TestDescriptorBudgetRefusesAndDiagnoses: with the budget spent, a new TCP
// connection is reset and reported with reason "descriptors"; an HTTP
// listener of the same load balancer refuses too; Diagnose names the limit
// with its numbers; the budget comes back as connections end.
func TestDescriptorBudgetRefusesAndDiagnoses(t *testing.T) {
	e := newEchoTarget(t, "e")
	h := newHTTPTarget(t, "h")
	var mu sync.Mutex
	var reasons []string
	l := startLB(t,
		WithDescriptorBudget(3),
		WithListener("raw", TCP, "127.0.0.1:0", WithForwardTo("echo")),
		WithListener("web", HTTP, "127.0.0.1:0", WithForwardTo("app")),
		WithTargetGroup("echo", TCP, WithTarget(e.addr), WithoutHealthCheck()),
		WithTargetGroup("app", HTTP, WithTarget(h.addr), WithoutHealthCheck()),
		WithHooks(Hooks{FlowRejected: func(ev FlowRejectedEvent) {
			mu.Lock()
			reasons = append(reasons, ev.Listener+":"+ev.Reason)
			mu.Unlock()
		}}),
	)
	held, err := net.Dial("tcp", addr(t, l, "raw"))
	require.NoError(t, err)
	defer held.Close()
	assert.Equal(t, "e", ask(t, held, "hi"), "2 of 3 descriptors")
	requireCut(t, addr(t, l, "raw"))
	// One descriptor left: an HTTP client fits, a second does not.
	h1, err := net.Dial("tcp", addr(t, l, "web"))
	require.NoError(t, err)
	defer h1.Close()
	require.Eventually(t, func() bool { return l.Stats().Descriptors.InUse == 3 }, 10*time.Second, time.Millisecond)
	requireCut(t, addr(t, l, "web"))

	require.Eventually(t, func() bool { return l.Stats().Descriptors.Refused == 2 }, 10*time.Second, time.Millisecond)
	mu.Lock()
	assert.ElementsMatch(t, []string{"raw:descriptors", "web:descriptors"}, reasons)
	mu.Unlock()
	st := l.Stats()
	var raw, web ListenerStats
	for _, ls := range st.Listeners {
		if ls.Name == "raw" {
			raw = ls
		} else {
			web = ls
		}
	}
	assert.Equal(t, uint64(1), raw.TCP.RejectedDescriptors)
	assert.Equal(t, uint64(1), web.HTTP.RejectedDescriptors)

	d := l.Diagnose(Query{})
	assert.True(t, d.Flows.DescriptorsFull)
	assert.Contains(t, d.Problems, "the descriptor budget is spent (3 of 3 descriptors held by clients; set by WithDescriptorBudget; the process limit is "+
		itoa(d.Flows.Descriptors.ProcessLimit)+"): new connections and flows are refused (2 so far)")
	assert.Contains(t, d.Flows.Limits[0], "descriptor budget: 2 new connections and flows refused, the budget being 3 descriptors")
	assert.Contains(t, d.String(), "descriptor budget: 3 of 3 in use")

	held.Close()
	h1.Close()
	require.Eventually(t, func() bool { return l.Stats().Descriptors.InUse == 0 }, 10*time.Second, time.Millisecond)
	assert.Equal(t, "e", dialAsk(t, addr(t, l, "raw")))
	require.Eventually(t, func() bool { return !l.Diagnose(Query{}).Flows.DescriptorsFull }, 10*time.Second, time.Millisecond)
}

func itoa(n int) string { return strconv.Itoa(n) }

// requireCut checks that a client of addr is cut at once: reset or closed
// right after connecting (or while connecting, if the reset comes first).
func requireCut(t *testing.T, addr string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = c.Read(make([]byte, 1))
	require.Error(t, err)
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "cut, not left waiting")
}
