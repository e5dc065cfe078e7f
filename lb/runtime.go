package lb

import (
	"slices"
	"time"

	"github.com/lbkit/lbkit/balancer"
	"github.com/lbkit/lbkit/healthcheck"
)

// DrainTarget takes a target out of rotation for maintenance, as an
// operator does with HAProxy's "set server … state drain" or by
// deregistering it from an AWS target group, but keeps it in the group: it
// gets no new connections or requests at once (sticky sessions move to
// other targets), the ones it has continue until the group's deregistration
// delay passes and are then closed, and its health checks go on, so that
// UndrainTarget puts it back as it is. The target may be static or
// discovered.
//
// Like every run-time setter, it changes the load balancer's configuration:
// a Reconfigure with options that do not drain it undrains it.
func (l *LoadBalancer) DrainTarget(group, id string) error {
	return l.setOverride(group, id, func(o *targetOverride) { o.drained = true })
}

// UndrainTarget ends DrainTarget: the target gets new traffic again, and its
// connections still open are no longer closed when the delay passes.
func (l *LoadBalancer) UndrainTarget(group, id string) error {
	return l.setOverride(group, id, func(o *targetOverride) { o.drained = false })
}

// SetTargetHealthCheck turns the health checks of one target off or on,
// as HAProxy's "disable health" and "enable health" do. Off, the target is
// no longer checked, passive ejection leaves it alone, and it is treated as
// healthy: use it for a target whose checks fail for a reason that does not
// affect its traffic. On again, it keeps serving and its checks decide from
// then on (the unhealthy threshold applies as usual).
func (l *LoadBalancer) SetTargetHealthCheck(group, id string, enabled bool) error {
	return l.setOverride(group, id, func(o *targetOverride) { o.checksOff = !enabled })
}

// setOverride changes the operator's setting of one target of a group. The
// target must be configured (Target) or, while running, held (discovered).
func (l *LoadBalancer) setOverride(group, id string, f func(*targetOverride)) error {
	return l.modifyGroup(group, func(g *groupConfig) error {
		if !slices.ContainsFunc(g.targets, func(t targetConfig) bool { return t.id == id }) && !l.holdsLocked(group, id) {
			return notFound(Object{Kind: KindTarget, Name: id}, Object{Kind: KindTargetGroup, Name: group})
		}
		o := g.overrides[id]
		f(&o)
		if o == (targetOverride{}) {
			delete(g.overrides, id)
			return nil
		}
		if g.overrides == nil {
			g.overrides = map[string]targetOverride{}
		}
		g.overrides[id] = o
		return nil
	})
}

// holdsLocked reports whether the running group holds target id as one
// of its targets (a discovered target is held but not configured; a
// deregistering one is held but no longer one of them). l.mu is held.
func (l *LoadBalancer) holdsLocked(group, id string) bool {
	g := l.groups[group]
	if g == nil {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	m, ok := g.members[id]
	return ok && (m.static || m.discovered)
}

// applyOverridesLocked makes the held targets match the operator's
// settings in g.cfg: drains started or ended, health checks turned off or
// on. g.mu is held.
func (g *group) applyOverridesLocked() {
	for id, m := range g.members {
		o := g.cfg.overrides[id]
		if o.drained != m.drained {
			g.setDrainedLocked(m, o.drained)
		}
		if o.checksOff != m.checksOff {
			g.setChecksOffLocked(m, o.checksOff)
		}
	}
	g.settlePriorityLocked()
	g.publishStatesLocked()
}

// setDrainedLocked starts or ends an operator's drain of m.
func (g *group) setDrainedLocked(m *member, drained bool) {
	id := m.t.id
	m.drained = drained
	deregistering := !m.drainUntil.IsZero()
	if drained {
		delay := g.cfg.deregDelay
		if delay == 0 {
			delay = DefaultDeregistrationDelay
		}
		delay = max(delay, 0)
		m.drainCut = time.Now().Add(delay)
		if !deregistering {
			// A deregistering target has weight 0 and its own deadline.
			if err := g.bal.SetWeight(id, 0); err != nil {
				g.log.Error("drain target", "target", id, "err", err)
			}
			g.up().Drain(id, delay)
		}
		g.log.Info("target drained by an operator", "target", id, "connections_closed_at", m.drainCut)
		return
	}
	m.drainCut = time.Time{}
	if !deregistering {
		g.up().Undrain(id)
		if err := g.bal.SetWeight(id, g.weightLocked(m)); err != nil {
			g.log.Error("undrain target", "target", id, "err", err)
		}
	}
	g.log.Info("target undrained by an operator", "target", id)
}

// setChecksOffLocked turns m's health checks off (it leaves the monitor and
// is treated as healthy) or on again (it rejoins the monitor as healthy).
func (g *group) setChecksOffLocked(m *member, off bool) {
	id := m.t.id
	m.checksOff = off
	if off {
		_ = g.mon().Remove(id)
		g.passive.Delete(id)
		m.cond = healthcheck.Condition{State: healthcheck.Healthy}
		if err := g.bal.SetHealth(id, balancer.Healthy); err != nil {
			g.log.Error("turn health checks off", "target", id, "err", err)
		}
		g.log.Info("target health checks turned off by an operator; treated as healthy", "target", id)
		return
	}
	if err := g.mon().AddWithState(healthcheck.Healthy, healthcheck.Target{ID: id, Addr: m.t.addr}); err != nil {
		g.log.Error("turn health checks on", "target", id, "err", err)
	}
	g.log.Info("target health checks turned on by an operator", "target", id)
}
