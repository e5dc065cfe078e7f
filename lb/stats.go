package lb

import (
	"cmp"
	"slices"
	"time"

	"github.com/lbkit/lbkit/balancer"
	"github.com/lbkit/lbkit/flowtable"
	"github.com/lbkit/lbkit/healthcheck"
	"github.com/lbkit/lbkit/proxy"
	"github.com/lbkit/lbkit/sticky"
)

// Stats is one snapshot of a load balancer's counters: the flow table,
// every listener and every target group with its targets. Taking it is
// cheap (atomics and short locks) and it is safe to call often.
type Stats struct {
	// Time is when the snapshot was taken.
	Time time.Time `json:"time,omitzero"`
	// Flows are the flow table's counters, per protocol and in total,
	// named as the reference load balancer's metrics (NewFlowCount,
	// ActiveFlowCount, RejectedFlowCount, ...).
	Flows flowtable.Stats `json:"flows"`
	// Descriptors describes the descriptor budget.
	Descriptors DescriptorStats `json:"descriptors"`
	// Listeners lists every listener, sorted by name.
	Listeners []ListenerStats `json:"listeners"`
	// Groups lists every target group, sorted by name.
	Groups []GroupStats `json:"groups"`
}

// DescriptorStats describe the descriptor budget (see WithDescriptorBudget):
// the process's limit it was made from, the reserve left out, and what the
// proxies hold of it (Limit is 0 when there is no budget).
type DescriptorStats struct {
	// ProcessLimit is the process's descriptor limit (soft RLIMIT_NOFILE)
	// when the load balancer started; 0 if unknown.
	ProcessLimit int `json:"process_limit"`
	// Reserve is what the default budget leaves out of ProcessLimit for
	// listeners, health checks, HTTP target connections and the rest; 0
	// when the budget was set by WithDescriptorBudget.
	Reserve int `json:"reserve"`
	// Limit, InUse, Refused and Evicted are the budget, what TCP, UDP and
	// HTTP clients hold of it now, how many new ones it refused, and how
	// many unreplied UDP flows were evicted to make room in it.
	proxy.DescriptorStats
}

// ListenerStats are one listener's counters. Exactly one of TCP, UDP and
// HTTP is set, by protocol (TLS listeners report TCP). They restart from zero
// when a change of a setting the proxy fixes at start replaces the
// listener's proxy.
type ListenerStats struct {
	Name     string   `json:"name"`
	Protocol Protocol `json:"protocol"`
	// Addr is the bound address.
	Addr string `json:"address"`
	// AcceptErrors counts failed accepts on the listener's socket (TCP,
	// TLS, HTTP, HTTPS): out of descriptors and the like. Each is retried
	// after a back-off (5 ms doubling to 1 s) and accepting resumes by
	// itself. AcceptFailingSince is when the current run of them began,
	// zero while accepting works. Unlike the proxies' counters they last
	// as long as the listener's socket.
	AcceptErrors       uint64           `json:"accept_errors"`
	AcceptFailingSince time.Time        `json:"accept_failing_since,omitzero"`
	TCP                *proxy.TCPStats  `json:"tcp,omitzero"`
	UDP                *proxy.UDPStats  `json:"udp,omitzero"`
	HTTP               *proxy.HTTPStats `json:"http,omitzero"`
}

// GroupStats are one target group's counters.
type GroupStats struct {
	Name      string             `json:"name"`
	Protocol  Protocol           `json:"protocol"`
	Algorithm balancer.Algorithm `json:"algorithm"`
	// Healthy and Unhealthy count targets that do and do not receive new
	// traffic for health reasons (checks or ejection); weight and draining
	// do not count here.
	Healthy   int `json:"healthy"`
	Unhealthy int `json:"unhealthy"`
	// NoTarget counts connections and requests refused because no target
	// could take them.
	NoTarget uint64 `json:"no_target"`
	// Sticky are the session-persistence counters (hits, misses, re-picks
	// because the remembered target could not serve, sessions held,
	// refused for capacity, bad cookies by reason), zero without
	// stickiness. They restart when the stickiness setting changes.
	Sticky sticky.Stats `json:"sticky"`
	// Targets lists every target, sorted by ID.
	Targets []TargetStats `json:"targets"`
}

// TargetStats are one target's state and counters.
type TargetStats struct {
	// ID and Addr identify the target; Weight is its weight.
	ID     string `json:"id"`
	Addr   string `json:"address"`
	Weight int    `json:"weight"`
	// Healthy is its health from active checks; Ejected says passive
	// signals took it out; Serving says it receives new traffic (healthy,
	// not ejected, weight > 0, not draining).
	Healthy bool `json:"healthy"`
	Ejected bool `json:"ejected"`
	Serving bool `json:"serving"`
	// DrainUntil is when its deregistration delay ends, if it is
	// deregistering, or when the connections it had when an operator
	// drained it are closed (see Drained).
	DrainUntil time.Time `json:"drain_until,omitzero"`
	// Drained says an operator drained it (LoadBalancer.DrainTarget); it
	// stays in the group, checked, without new traffic.
	Drained bool `json:"drained"`
	// HealthCheckOff says an operator turned its health checks off
	// (LoadBalancer.SetTargetHealthCheck); it is treated as healthy.
	HealthCheckOff bool `json:"health_check_off"`
	// Counters holds its traffic counters: connections, bytes, requests,
	// status classes, average response time.
	Counters proxy.TargetStats `json:"counters"`
}

// Stats returns a snapshot of the load balancer's counters.
func (l *LoadBalancer) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := Stats{Time: time.Now()}
	if l.flows != nil {
		st.Flows = l.flows.Stats()
		st.Descriptors = l.descriptorStats()
	}
	for _, li := range l.listeners {
		ls := ListenerStats{Name: li.cfg.name, Protocol: li.cfg.proto, Addr: li.addr.String()}
		if li.sock != nil {
			as := li.sock.acceptStats()
			ls.AcceptErrors, ls.AcceptFailingSince = as.Errors, as.FailingSince
		}
		switch {
		case li.tcp != nil:
			s := li.tcp.Stats()
			ls.TCP = &s
		case li.udp != nil:
			s := li.udp.Stats()
			ls.UDP = &s
		case li.http != nil:
			s := li.http.Stats()
			ls.HTTP = &s
		}
		st.Listeners = append(st.Listeners, ls)
	}
	slices.SortFunc(st.Listeners, func(a, b ListenerStats) int { return cmp.Compare(a.Name, b.Name) })
	for _, g := range l.groups {
		st.Groups = append(st.Groups, g.stats())
	}
	slices.SortFunc(st.Groups, func(a, b GroupStats) int { return cmp.Compare(a.Name, b.Name) })
	return st
}

// stats returns the group's state and counters.
func (g *group) stats() GroupStats {
	bs := g.bal.Stats()
	counters := map[string]proxy.TargetStats{}
	for _, t := range g.up().Stats().Targets {
		counters[t.ID] = t
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	gs := GroupStats{Name: g.name, Protocol: g.cfg.proto, Algorithm: bs.Algorithm, NoTarget: bs.NoTarget}
	if p, ok := g.up().Sticky().(interface{ Stats() sticky.Stats }); ok {
		gs.Sticky = p.Stats()
	}
	for _, bt := range bs.Targets {
		m, ok := g.members[bt.ID]
		if !ok {
			continue
		}
		ts := TargetStats{
			ID: bt.ID, Addr: bt.Addr, Weight: m.t.weight,
			Healthy:        m.cond.State == healthcheck.Healthy,
			Ejected:        m.cond.Ejected,
			Serving:        m.cond.Serving() && bt.Weight > 0 && m.drainUntil.IsZero(),
			DrainUntil:     m.drainUntil,
			Drained:        m.drained,
			HealthCheckOff: m.checksOff,
			Counters:       counters[bt.ID],
		}
		if ts.DrainUntil.IsZero() {
			ts.DrainUntil = m.drainCut
		}
		ts.Counters.ID = bt.ID
		if m.cond.Serving() {
			gs.Healthy++
		} else {
			gs.Unhealthy++
		}
		gs.Targets = append(gs.Targets, ts)
	}
	return gs
}

// Listener returns the statistics of the listener called name, and whether
// there is one.
func (s Stats) Listener(name string) (ListenerStats, bool) {
	return find(s.Listeners, func(l ListenerStats) bool { return l.Name == name })
}

// Group returns the statistics of the target group called name, and
// whether there is one.
func (s Stats) Group(name string) (GroupStats, bool) {
	return find(s.Groups, func(g GroupStats) bool { return g.Name == name })
}

// Target returns the statistics of the group's target id, and whether there
// is one.
func (g GroupStats) Target(id string) (TargetStats, bool) {
	return find(g.Targets, func(t TargetStats) bool { return t.ID == id })
}

// find returns the first element of s for which match is true.
func find[T any](s []T, match func(T) bool) (T, bool) {
	if i := slices.IndexFunc(s, match); i >= 0 {
		return s[i], true
	}
	var zero T
	return zero, false
}
