package lb

import (
	"errors"
	"time"

	"github.com/lbkit/lbkit/proxy"
)

// Defaults of the descriptor budget and of the flow limits that follow it.
const (
	// MinDescriptorReserve is the smallest reserve the default descriptor
	// budget leaves out of the process's limit (see DescriptorReserve):
	// enough for a health monitor's full concurrency
	// (healthcheck.DefaultMaxConcurrent, 256 checks in flight) besides
	// the runtime, the standard streams, log files, listening sockets and
	// an admin endpoint in a small process.
	MinDescriptorReserve = 256
	// DescriptorReserveShare: the default reserve is at least
	// 1/DescriptorReserveShare of the process's limit, for what grows
	// with traffic but is not counted connection by connection: HTTP
	// target connections (one per request in flight, and each target's
	// keep-alive pool), DNS lookups of discovery, admin scrapes.
	DescriptorReserveShare = 8
	// MinFlowsPerSource and FlowsPerSourceShare make the default
	// per-source cap (see DefaultMaxFlowsPerSource).
	MinFlowsPerSource   = 64
	FlowsPerSourceShare = 16
)

// DescriptorReserve returns the descriptors the default budget leaves out of
// a process limit of limit descriptors: 1/8 of it, at least
// MinDescriptorReserve, and never more than half of it. With the usual
// limits: 1 024 → 256, 20 000 → 2 500, 1 048 576 → 131 072.
func DescriptorReserve(limit int) int {
	return max(limit/DescriptorReserveShare, min(MinDescriptorReserve, limit/2))
}

// DefaultMaxFlowsPerSource returns the default cap on one client address's
// flows for a flow table of the given capacity: a sixteenth of it, at least
// MinFlowsPerSource, and never more than a quarter of it (a TCP flow costs
// two descriptors, so one address never holds more than half the budget). So one host, or one
// address an attacker can use, never holds more than a sixteenth of what a
// busy table holds (a real client behind a NAT of thousands of users still
// fits at the defaults: 65 536 flows), while it takes 16 addresses to fill
// it; spoofed UDP sources are handled by eviction of unreplied flows
// instead.
func DefaultMaxFlowsPerSource(capacity int) int {
	return max(capacity/FlowsPerSourceShare, min(MinFlowsPerSource, capacity/4), 1)
}

// limits are the flow table's and the descriptor budget's sizes, worked out
// from the configuration and the process's descriptor limit when the load
// balancer starts. They cannot change while it runs.
type limits struct {
	process   int // the process's descriptor limit; 0: unknown
	reserve   int // left out of it by the default budget
	budget    int // descriptors the proxies may hold; 0: no budget
	maxFlows  int
	perSource int           // 0: no cap
	unreplied time.Duration // 0: UDP flows start replied
}

// limits works out c's limits for a process limit of process descriptors
// (0: unknown).
func (c *config) limits(process int) limits {
	lm := limits{process: process}
	switch {
	case c.budgetSet:
		lm.budget = c.budget
	case process > 0:
		lm.reserve = DescriptorReserve(process)
		lm.budget = process - lm.reserve
	}
	lm.maxFlows = c.maxFlows
	if lm.maxFlows == 0 {
		lm.maxFlows = DefaultMaxFlows
		if lm.budget > 0 {
			// A UDP flow costs one descriptor: more flows than that
			// could never be held.
			lm.maxFlows = min(DefaultMaxFlows, lm.budget)
		}
	}
	lm.perSource = DefaultMaxFlowsPerSource(lm.maxFlows)
	if c.perSourceSet {
		lm.perSource = c.perSource
	}
	lm.unreplied = proxy.DefaultUnrepliedTimeout
	if c.unrepliedSet {
		lm.unreplied = c.unreplied
	}
	return lm
}

// errLimitsFixed is returned by a change of the flow table's limits while
// the load balancer runs.
var errLimitsFixed = errors.New("lb: the flow table's limits (WithMaxFlows, WithMaxFlowsPerSource, WithUnrepliedTimeout, WithDescriptorBudget) cannot change while the load balancer runs")

// descriptorStats returns the budget's numbers; l.mu is held.
func (l *LoadBalancer) descriptorStats() DescriptorStats {
	return DescriptorStats{ProcessLimit: l.limits.process, Reserve: l.limits.reserve, DescriptorStats: l.fds.Stats()}
}
