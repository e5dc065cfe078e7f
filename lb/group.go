package lb

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lbkit/lbkit/balancer"
	"github.com/lbkit/lbkit/healthcheck"
	"github.com/lbkit/lbkit/proxy"
	"github.com/lbkit/lbkit/sticky"
)

// group is a running target group: the balancer that picks, the monitor that
// checks, the sticky policy, and the Upstream the proxies use, kept in step.
//
// Control-plane calls (apply, close) come from the LoadBalancer with its
// lock held, one at a time. The monitor's callbacks, drain timers and the
// discovery loop come from their own goroutines; all of them take g.mu, and
// nothing holds g.mu while waiting for one of them.
type group struct {
	name       string
	log        *slog.Logger
	hooks      Hooks
	bal        *balancer.Balancer
	newChecker func(*groupConfig) (healthcheck.Checker, io.Closer, error) // newChecker; tests replace it
	upPtr      atomic.Pointer[proxy.Upstream]                             // replaced when target TLS or PROXY protocol change
	monPtr     atomic.Pointer[healthcheck.Monitor]

	// states is what sticky policies learn about targets, rebuilt on every
	// change so their lookups read it without a lock.
	states atomic.Pointer[map[string]sticky.TargetState]
	// passive counts consecutive failures reported by the proxies per
	// target (ID → *atomic.Int32), so that successes, the common case,
	// reach the monitor only when they end a run of failures.
	passive sync.Map

	mu       sync.Mutex // guards the fields below
	cfg      *groupConfig
	members  map[string]*member // every target held: static, discovered, draining
	checker  io.Closer          // the monitor's checker, if it holds resources
	disco    *discovery
	closed   bool
	lastDisc []Discovered // last good discovery answer
	prio     int          // the priority new traffic goes to (see Discovered.Priority)
}

// member is one target of a group and what the group knows of it.
type member struct {
	t          targetConfig
	static     bool      // configured with Target
	discovered bool      // found by the discovery source
	drainUntil time.Time // deregistering until then; zero otherwise
	timer      *time.Timer
	cond       healthcheck.Condition

	// Set by an operator (see targetOverride and applyOverridesLocked).
	drained   bool      // no new traffic
	drainCut  time.Time // when drained, the moment its connections are closed
	checksOff bool      // removed from the monitor, treated as healthy
}

// up returns the group's current Upstream.
func (g *group) up() *proxy.Upstream { return g.upPtr.Load() }

// mon returns the group's current monitor.
func (g *group) mon() *healthcheck.Monitor { return g.monPtr.Load() }

// newGroup starts a group from its configuration (already validated).
func newGroup(cfg *groupConfig, log *slog.Logger, hooks Hooks) (*group, error) {
	g, err := makeGroup(cfg, log, hooks)
	if err != nil {
		return nil, err
	}
	if err := g.apply(cfg); err != nil {
		g.close()
		return nil, err
	}
	return g, nil
}

// makeGroup makes a group that runs nothing yet: apply (or prepare and
// commit) gives it its configuration.
func makeGroup(cfg *groupConfig, log *slog.Logger, hooks Hooks) (*group, error) {
	bal, err := balancer.New(balancer.WithAlgorithm(cfg.algo))
	if err != nil {
		return nil, err
	}
	g := &group{name: cfg.name, log: log.With("group", cfg.name), hooks: hooks, bal: bal, newChecker: newChecker, members: map[string]*member{}}
	g.states.Store(&map[string]sticky.TargetState{})
	g.upPtr.Store(g.newUpstream(cfg))
	return g, nil
}

func (g *group) newUpstream(cfg *groupConfig) *proxy.Upstream {
	up := &proxy.Upstream{Name: cfg.name, Balancer: g.bal, TLS: cfg.targetTLS, ProxyProtocol: cfg.proxyProtocol, OnResult: g.passiveResult}
	up.SetLimits(cfg.limits)
	if g.hooks.Response != nil {
		up.OnResponse = g.response
	}
	if old := g.up(); old != nil {
		up.SetSticky(old.Sticky())
	}
	return up
}

// apply makes the running group match cfg: algorithm, stickiness, health
// checks, data-plane settings and static targets, each changed only if it
// differs, so nothing established is disturbed.
func (g *group) apply(cfg *groupConfig) error {
	c, err := g.prepare(cfg)
	if err != nil {
		return err
	}
	return g.commit(c)
}

// groupChange is what applying a configuration to a group needs that may
// fail to be made (a sticky policy, a monitor and its checker's socket).
// prepare makes it before anything changes, so that a reconfiguration
// whose resources cannot be had changes nothing; commit installs it.
type groupChange struct {
	cfg     *groupConfig
	policy  sticky.Policy
	sticky  bool // policy replaces the current one (nil: none)
	mon     *healthcheck.Monitor
	checker io.Closer
}

// prepare builds what applying cfg needs; it changes nothing.
func (g *group) prepare(cfg *groupConfig) (*groupChange, error) {
	g.mu.Lock()
	old := g.cfg
	g.mu.Unlock()
	c := &groupChange{cfg: cfg}
	if old == nil || !reflect.DeepEqual(old.stickiness, cfg.stickiness) {
		p, err := g.newPolicy(cfg.stickiness)
		if err != nil {
			return nil, &FieldError{Object: Object{Kind: KindTargetGroup, Name: cfg.name, Index: -1}, Field: "Stickiness", Err: invalidBy(err)}
		}
		c.policy, c.sticky = p, true
	}
	if old == nil || old.noHealth != cfg.noHealth || !healthEqual(old.health, cfg.health) ||
		old.healthProtocol() != cfg.healthProtocol() || // the default check follows the group's protocol
		old.ejectFailures != cfg.ejectFailures || old.ejectPeriod != cfg.ejectPeriod || old.ejectMaxPct != cfg.ejectMaxPct {
		mon, checker, err := g.buildMonitor(cfg)
		if err != nil {
			return nil, &FieldError{Object: Object{Kind: KindTargetGroup, Name: cfg.name, Index: -1}, Field: "HealthCheck", Err: err}
		}
		c.mon, c.checker = mon, checker
	}
	return c, nil
}

// discard releases what prepare made, for a change that is not committed.
func (c *groupChange) discard() {
	if c.mon != nil {
		c.mon.Close()
	}
	if c.checker != nil {
		c.checker.Close()
	}
}

// commit makes the running group match c's configuration with what
// prepare made.
func (g *group) commit(c *groupChange) error {
	cfg := c.cfg
	g.mu.Lock()
	old := g.cfg
	g.mu.Unlock()

	if old == nil || old.algo != cfg.algo {
		if err := g.bal.SetAlgorithm(cfg.algo); err != nil {
			c.discard()
			return err
		}
	}
	if c.sticky {
		g.up().SetSticky(c.policy)
	}
	g.up().SetLimits(cfg.limits)
	if old != nil && (!tlsEqual(old.targetTLS, cfg.targetTLS) || old.proxyProtocol != cfg.proxyProtocol) {
		g.upPtr.Store(g.newUpstream(cfg))
	}
	if c.mon != nil {
		if err := g.installMonitor(c.mon, c.checker); err != nil {
			return fmt.Errorf("target group %q: health check: %w", cfg.name, err)
		}
	}

	g.mu.Lock()
	g.cfg = cfg
	want := map[string]targetConfig{}
	for _, t := range cfg.targets {
		want[t.id] = t
	}
	g.reconcileLocked(want, true)
	g.applyOverridesLocked()
	g.mu.Unlock()

	if old == nil || !sourceEqual(old.discovery, cfg.discovery) || old.discoveryInterval != cfg.discoveryInterval {
		g.restartDiscovery(cfg)
	}
	return nil
}

// reconcileLocked makes the static (static=true) or discovered targets
// match want: new ones registered, changed ones updated, vanished ones
// deregistered (a target both static and discovered stays while either
// wants it). g.mu is held.
func (g *group) reconcileLocked(want map[string]targetConfig, static bool) {
	for id, t := range want {
		m, ok := g.members[id]
		if !ok {
			g.registerLocked(t, static)
			continue
		}
		if static {
			m.static = true
		} else {
			m.discovered = true
		}
		if !m.drainUntil.IsZero() {
			g.undrainLocked(m)
		}
		if m.t != t {
			g.updateLocked(m, t)
		}
	}
	for id, m := range g.members {
		if _, ok := want[id]; ok {
			continue
		}
		if static {
			m.static = false
		} else {
			m.discovered = false
		}
		if !m.static && !m.discovered && m.drainUntil.IsZero() {
			g.deregisterLocked(m)
		}
	}
	g.settlePriorityLocked()
	g.publishStatesLocked()
}

// weightLocked is the weight the balancer gives a held target that is not
// deregistering: its own, or 0 while an operator drains it or its priority
// is not the one in use.
func (g *group) weightLocked(m *member) int {
	if m.drained || m.t.priority != g.prio {
		return 0
	}
	return m.t.weight
}

// settlePriorityLocked finds the best priority with a serving target (the
// lowest value; the lowest held at all when none serves) and, when that
// is not the one in use, moves new traffic there: every held target's
// weight changes in one balancer update. Groups whose targets all have
// priority 0 never change anything here. g.mu is held.
func (g *group) settlePriorityLocked() {
	best, serving, lowest, held := 0, false, 0, false
	for _, m := range g.members {
		if !m.drainUntil.IsZero() {
			continue
		}
		if !held || m.t.priority < lowest {
			lowest, held = m.t.priority, true
		}
		if m.cond.Serving() && m.t.weight > 0 && !m.drained && (!serving || m.t.priority < best) {
			best, serving = m.t.priority, true
		}
	}
	if !held {
		return
	}
	if !serving {
		best = lowest
	}
	if best == g.prio {
		return
	}
	g.log.Info("priority in use changed", "from", g.prio, "to", best)
	g.prio = best
	ts := g.bal.Targets()
	for i := range ts {
		if m, ok := g.members[ts[i].ID]; ok && m.drainUntil.IsZero() {
			ts[i].Weight = g.weightLocked(m)
		}
	}
	if err := g.bal.Update(ts); err != nil {
		g.log.Error("apply priority", "err", err)
	}
}

// registerLocked adds a new target: to the balancer (unhealthy until its
// first check passes, unless checks are off) and to the monitor.
func (g *group) registerLocked(t targetConfig, static bool) {
	o := g.cfg.overrides[t.id]
	m := &member{t: t, static: static, discovered: !static, drained: o.drained, checksOff: o.checksOff}
	if g.cfg.noHealth || m.checksOff {
		m.cond = healthcheck.Condition{State: healthcheck.Healthy}
	}
	h := balancer.HealthOf(m.cond.Serving()) // the zero Condition is not serving
	if m.drained {
		m.drainCut = time.Now() // nothing to cut yet
	}
	g.members[t.id] = m
	if err := g.bal.Add(balancer.Target{ID: t.id, Addr: t.addr, Weight: g.weightLocked(m), Health: h}); err != nil {
		g.log.Error("register target", "target", t.id, "err", err)
	}
	if !m.checksOff {
		if err := g.mon().Add(healthcheck.Target{ID: t.id, Addr: t.addr}); err != nil {
			g.log.Error("register target with health checks", "target", t.id, "err", err)
		}
	}
	g.log.Info("target registered", "target", t.id, "addr", t.addr, "weight", t.weight)
}

// updateLocked applies a changed address or weight of a held target.
func (g *group) updateLocked(m *member, t targetConfig) {
	moved := m.t.addr != t.addr
	m.t = t
	if !m.drainUntil.IsZero() {
		// Deregistering: it keeps weight 0 in the balancer.
	} else if moved {
		ts := g.bal.Targets()
		for i := range ts {
			if ts[i].ID == t.id {
				ts[i].Addr, ts[i].Weight = t.addr, g.weightLocked(m)
			}
		}
		if err := g.bal.Update(ts); err != nil {
			g.log.Error("update target", "target", t.id, "err", err)
		}
	} else if err := g.bal.SetWeight(t.id, g.weightLocked(m)); err != nil {
		g.log.Error("set weight", "target", t.id, "err", err)
	}
	if moved && !m.checksOff {
		mon := g.mon()
		_ = mon.Remove(t.id)
		_ = mon.Add(healthcheck.Target{ID: t.id, Addr: t.addr})
	}
}

// deregisterLocked starts a target's deregistration: no new connections at
// once (weight 0), established ones and sticky sessions until the delay
// passes, then it is removed.
func (g *group) deregisterLocked(m *member) {
	delay := g.cfg.deregDelay
	if delay == 0 {
		delay = DefaultDeregistrationDelay
	}
	id := m.t.id
	if delay < 0 {
		g.removeLocked(m)
		g.up().Drain(id, 0)
		return
	}
	m.drainUntil = time.Now().Add(delay)
	if err := g.bal.SetWeight(id, 0); err != nil {
		g.log.Error("deregister target", "target", id, "err", err)
	}
	g.up().Drain(id, delay)
	m.timer = time.AfterFunc(delay, func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.members[id] == m && !m.drainUntil.IsZero() {
			g.removeLocked(m)
			g.publishStatesLocked()
		}
	})
	g.log.Info("target deregistering", "target", id, "until", m.drainUntil)
}

// undrainLocked cancels a deregistration: the target was registered again.
func (g *group) undrainLocked(m *member) {
	if m.timer != nil {
		m.timer.Stop()
		m.timer = nil
	}
	m.drainUntil = time.Time{}
	if !m.drained {
		g.up().Undrain(m.t.id)
	}
	if err := g.bal.SetWeight(m.t.id, g.weightLocked(m)); err != nil {
		g.log.Error("re-register target", "target", m.t.id, "err", err)
	}
}

// removeLocked forgets a target everywhere.
func (g *group) removeLocked(m *member) {
	id := m.t.id
	delete(g.members, id)
	g.passive.Delete(id)
	_ = g.bal.Remove(id)
	_ = g.mon().Remove(id)
	g.log.Info("target removed", "target", id)
}

// publishStatesLocked rebuilds the target states sticky policies read.
func (g *group) publishStatesLocked() {
	st := make(map[string]sticky.TargetState, len(g.members))
	for id, m := range g.members {
		switch {
		case !m.cond.Serving():
			st[id] = sticky.Unusable
		case !m.drainUntil.IsZero() || g.weightLocked(m) == 0:
			st[id] = sticky.Draining
		default:
			st[id] = sticky.Usable
		}
	}
	g.states.Store(&st)
}

// targetState is the sticky policies' view of a target.
func (g *group) targetState(id string) sticky.TargetState {
	if s, ok := (*g.states.Load())[id]; ok {
		return s
	}
	return sticky.Unusable
}

// newPolicy builds the sticky policy for s, or nil for none.
func (g *group) newPolicy(s Stickiness) (sticky.Policy, error) {
	return buildPolicy(g.name, s, g.targetState)
}

// buildPolicy builds the sticky policy for s asking state about targets, or
// nil for none. Validation builds one too, so that the sticky package's own
// checks (cookie names, key lengths) run before anything starts.
func buildPolicy(group string, s Stickiness, state func(string) sticky.TargetState) (sticky.Policy, error) {
	common := []sticky.Option{sticky.WithTargetState(state)}
	if s.Duration > 0 {
		common = append(common, sticky.WithDuration(s.Duration))
	}
	var tables []sticky.TableOption // SourceIP and AppCookie only
	if s.Store != nil {
		tables = append(tables, sticky.WithStore(groupStore{s: s.Store, prefix: group + "/"}))
	}
	if s.StoreTimeout != 0 {
		tables = append(tables, sticky.WithStoreTimeout(s.StoreTimeout))
	}
	if s.Capacity > 0 {
		tables = append(tables, sticky.WithCapacity(s.Capacity))
	}
	switch s.Kind {
	case NotSticky:
		return nil, nil
	case SourceIP:
		var opts []sticky.SourceIPOption
		for _, o := range common {
			opts = append(opts, o)
		}
		for _, o := range tables {
			opts = append(opts, o)
		}
		if s.PrefixV4 > 0 || s.PrefixV6 > 0 { // the one not set keeps whole addresses
			opts = append(opts, sticky.WithPrefix(cmpOr(s.PrefixV4, 32), cmpOr(s.PrefixV6, 128)))
		}
		return sticky.NewSourceIP(opts...)
	case Cookie:
		var opts []sticky.CookieOption
		for _, o := range common {
			opts = append(opts, o)
		}
		if s.CookieName != "" {
			opts = append(opts, sticky.WithCookieName(s.CookieName))
		}
		if len(s.Keys) > 0 {
			opts = append(opts, sticky.WithKeys(s.Keys[0], s.Keys[1:]...))
		}
		return sticky.NewCookie(opts...)
	case AppCookie:
		var opts []sticky.AppCookieOption
		for _, o := range common {
			opts = append(opts, o)
		}
		for _, o := range tables {
			opts = append(opts, o)
		}
		return sticky.NewAppCookie(s.CookieName, opts...)
	}
	return nil, invalidf("stickiness %s is unknown", s.Kind)
}

// firstCheckWithin is how soon a new target is first checked.
const firstCheckWithin = time.Second

// buildMonitor makes a monitor for cfg's health check, with no targets
// yet, and the checker's resources to close with it.
func (g *group) buildMonitor(cfg *groupConfig) (*healthcheck.Monitor, io.Closer, error) {
	checker, closer, err := g.newChecker(cfg)
	if err != nil {
		return nil, nil, err
	}
	h := cfg.health
	opts := []healthcheck.Option{healthcheck.WithOnChange(g.healthChanged)}
	if h.Interval > 0 {
		opts = append(opts, healthcheck.WithInterval(h.Interval))
	}
	// A new target waits for its first check to take traffic: check it
	// within a second (spread over that second), not within a whole
	// interval.
	opts = append(opts, healthcheck.WithFirstCheckWithin(min(cmp.Or(h.Interval, healthcheck.DefaultInterval), firstCheckWithin)))
	if h.Timeout > 0 {
		opts = append(opts, healthcheck.WithTimeout(h.Timeout))
	}
	if h.HealthyThreshold > 0 || h.UnhealthyThreshold > 0 {
		opts = append(opts, healthcheck.WithThresholds(
			cmpOr(h.HealthyThreshold, healthcheck.DefaultHealthyThreshold),
			cmpOr(h.UnhealthyThreshold, healthcheck.DefaultUnhealthyThreshold)))
	}
	if cfg.ejectFailures != 0 {
		opts = append(opts, healthcheck.WithEjection(max(cfg.ejectFailures, 0), cfg.ejectPeriod), healthcheck.WithMaxEjectedPercent(cfg.ejectMaxPct))
	}
	mon, err := healthcheck.New(checker, opts...)
	if err != nil {
		if closer != nil {
			closer.Close()
		}
		return nil, nil, err
	}
	return mon, closer, nil
}

// installMonitor gives mon the group's targets and replaces the current
// monitor and checker with mon and closer, closing the old ones.
func (g *group) installMonitor(mon *healthcheck.Monitor, closer io.Closer) error {
	// Targets keep their health across the swap: a new monitor of new
	// settings must not send every target back to the initial state.
	g.mu.Lock()
	var up, down []healthcheck.Target
	for _, m := range g.members {
		if m.checksOff {
			continue
		}
		t := healthcheck.Target{ID: m.t.id, Addr: m.t.addr}
		if m.cond.State == healthcheck.Healthy {
			up = append(up, t)
		} else {
			down = append(down, t)
		}
	}
	g.mu.Unlock()
	for s, ts := range map[healthcheck.State][]healthcheck.Target{healthcheck.Healthy: up, healthcheck.Unhealthy: down} {
		if err := mon.AddWithState(s, ts...); err != nil {
			mon.Close()
			if closer != nil {
				closer.Close()
			}
			return err
		}
	}
	oldMon := g.monPtr.Swap(mon)
	g.mu.Lock()
	oldChecker := g.checker
	g.checker = closer
	g.mu.Unlock()
	if oldMon != nil {
		oldMon.Close()
	}
	if oldChecker != nil {
		oldChecker.Close()
	}
	return nil
}

// newChecker returns the checker for a group's health check (nil when
// checks are off) and what to close with it.
func newChecker(cfg *groupConfig) (healthcheck.Checker, io.Closer, error) {
	if cfg.noHealth {
		return nil, nil, nil
	}
	h := cfg.health
	p := cfg.healthProtocol()
	switch p {
	case TCP:
		return healthcheck.TCP{Port: h.Port}, nil, nil
	case HTTP, HTTPS:
		hc := healthcheck.HTTPConfig{Port: h.Port, Method: h.Method, Path: h.Path, Host: h.Host, Status: h.Status}
		if p == HTTPS {
			hc.TLS = h.TLS
			if hc.TLS == nil {
				hc.TLS = &tls.Config{}
			}
		}
		c, err := healthcheck.NewHTTP(hc)
		if err != nil {
			return nil, nil, err
		}
		return c, c, nil
	case UDP:
		c, err := healthcheck.NewUDP(healthcheck.UDPConfig{Port: h.Port})
		if err != nil {
			return nil, nil, err
		}
		return c, c, nil
	}
	return nil, nil, invalidf("protocol %s cannot be checked", p)
}

// healthChanged is the monitor's callback: it moves the target in or out of
// the balancer's rotation and tells the sticky policies and the user.
func (g *group) healthChanged(c healthcheck.Change) {
	id := c.Target.ID
	g.mu.Lock()
	m, ok := g.members[id]
	if ok && m.checksOff {
		ok = false // a late report from before its checks were turned off
	}
	if ok {
		m.cond = c.New
		if err := g.bal.SetHealth(id, balancer.HealthOf(c.New.Serving())); err != nil {
			g.log.Error("set health", "target", id, "err", err)
		}
		g.settlePriorityLocked()
		g.publishStatesLocked()
	}
	g.mu.Unlock()
	if !ok {
		return // removed meanwhile
	}
	level := slog.LevelInfo
	if !c.New.Serving() {
		level = slog.LevelWarn
	}
	g.log.Log(context.Background(), level, "target health changed", "target", id, "from", c.Old.String(), "to", c.New.String(), "reason", c.Reason)
	if f := g.hooks.HealthChange; f != nil {
		f(HealthEvent{Group: g.name, Target: id, Healthy: c.New.State == healthcheck.Healthy, Ejected: c.New.Ejected, Serving: c.New.Serving(), Reason: c.Reason, Time: c.Time})
	}
}

// passiveResult is the Upstream's OnResult: real traffic's outcomes, fed to
// the monitor for passive ejection. Successes reach the monitor (and its
// lock) only when they end a run of failures.
func (g *group) passiveResult(id string, err error) {
	v, _ := g.passive.Load(id)
	n, _ := v.(*atomic.Int32)
	if err == nil {
		if n == nil || n.Load() == 0 {
			return
		}
		n.Store(0)
		_ = g.mon().ReportSuccess(id)
		return
	}
	if n == nil {
		v, _ = g.passive.LoadOrStore(id, new(atomic.Int32))
		n = v.(*atomic.Int32)
	}
	n.Add(1)
	_ = g.mon().ReportFailure(id, healthcheck.Reason(err))
}

// response is the Upstream's OnResponse: a target's HTTP response, passed
// to the user's hook.
func (g *group) response(target string, status int, d time.Duration) {
	g.hooks.Response(ResponseEvent{Group: g.name, Target: target, Status: status, HeaderTime: d})
}

// close stops the group's monitor, discovery and drain timers.
func (g *group) close() {
	g.stopDiscovery()
	g.mu.Lock()
	g.closed = true
	for _, m := range g.members {
		if m.timer != nil {
			m.timer.Stop()
		}
	}
	checker := g.checker
	g.checker = nil
	g.mu.Unlock()
	if mon := g.mon(); mon != nil {
		mon.Close()
	}
	if checker != nil {
		checker.Close()
	}
}

// healthProtocol is how the group's targets are checked: the health check's
// protocol, else the group's own (HTTP, HTTPS, UDP), else TCP.
func (g *groupConfig) healthProtocol() Protocol {
	if p := g.health.Protocol; p != 0 {
		return p
	}
	switch g.proto {
	case HTTP, HTTPS, UDP:
		return g.proto
	}
	return TCP
}

// memberIDs returns the IDs of the group's targets, sorted.
func (g *group) memberIDs() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Sorted(maps.Keys(g.members))
}
