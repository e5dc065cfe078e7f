package lb

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestServeFailureRefusesClients: should a proxy refuse its settings when it
// starts serving (validation keeps such settings out; this forces one in),
// its listener's socket closes, so clients are refused at once rather than
// left waiting, and Diagnose says why.
func TestServeFailureRefusesClients(t *testing.T) {
	h := newHTTPTarget(t, "h")
	l := startLB(t,
		WithListener("web", HTTP, "127.0.0.1:0", ForwardTo("app")),
		WithTargetGroup("app", HTTP, Target(h.addr), WithoutHealthCheck()),
	)
	front := addr(t, l, "web")
	l.mu.Lock()
	li := l.listeners["web"]
	bad := *li.cfg
	bad.retry.Ratio = 11 // refused by the proxy when it starts
	require.NoError(t, l.serveListener(li, &bad))
	l.mu.Unlock()
	require.Eventually(t, func() bool { return li.failed.Load() != nil }, 10*time.Second, time.Millisecond)
	requireRefused(t, front)
	d := l.Diagnose(Query{})
	require.Len(t, d.Listeners, 1)
	assert.False(t, d.Listeners[0].OK)
	assert.Contains(t, d.Listeners[0].Reasons[0], "not serving: ")
	assert.Contains(t, d.Listeners[0].Reasons[0], "Retry.Ratio 11")
}
