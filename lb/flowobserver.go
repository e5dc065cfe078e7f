package lb

import "github.com/lbkit/lbkit/proxy"

// FlowObserver is told of every TCP, TLS and UDP flow when it ends: the
// hook the tracing module's span per flow uses
// (github.com/lbkit/lbkit/tracing). FlowEnded is called from the flow's
// goroutine (or the flow table's sweeper, for an idle UDP flow) with no
// lock held; it must not block.
type FlowObserver interface {
	FlowEnded(FlowEndedEvent)
}

// FlowEndedEvent is one L4 flow's end: its listener, and what the proxy
// reports (client, group, target, bytes and datagrams each way, start,
// duration, close reason; see proxy.FlowEnd).
type FlowEndedEvent struct {
	// Listener names the listener.
	Listener string
	proxy.FlowEnd
}

// WithFlowObserver makes every TCP, TLS and UDP listener report each flow
// to o when it ends. Nil (the default): none. A Reconfigure applies a
// change to the flows that end afterwards.
func WithFlowObserver(o FlowObserver) Option {
	return func(c *config) { c.flowObserver = o }
}

// flowObserverBox holds the current FlowObserver for atomic replacement.
type flowObserverBox struct{ o FlowObserver }
