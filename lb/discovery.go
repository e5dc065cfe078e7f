package lb

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/lbkit/lbkit/balancer"
)

// Source discovers a target group's targets: a DNS name, a service
// registry, a file. The group asks it again every discovery interval and
// applies the difference as live changes. A Source that can also push its
// changes implements Watcher.
type Source interface {
	// Targets returns the targets that should be registered now. An error
	// (or an empty answer with an error) keeps the last good answer.
	Targets(ctx context.Context) ([]Discovered, error)
	// String describes the source for logs and diagnosis.
	String() string
}

// Watcher is a Source that pushes: the group calls Watch instead of
// polling Targets, and each Update applies at once, as grpc-go's resolvers
// push their state to the ClientConn. Kubernetes informers and xDS streams
// are Watchers; DNS is polled.
//
// The group calls Watch from a goroutine of its own and keeps no lock
// while it runs. Watch pushes the whole current list as soon as it has
// it, then again after every change, until ctx ends; then it returns (nil
// or ctx's error: either is taken as a stop). Watch returning early, with
// or without an error, is a disconnection: the group keeps the last list,
// reports it in Diagnose and calls Watch again after a back-off (1 s,
// doubling up to the discovery interval, which bounds it).
//
// push may be called from any goroutine, one call at a time (the order of
// calls is the order of the changes), and returns once the group has
// applied the update: a change is in the balancer before push returns.
// Calls after Watch returned are ignored.
type Watcher interface {
	Source
	Watch(ctx context.Context, push func(Update)) error
}

// Update is what a Watcher pushes: the state of the world, never a
// delta. It is a struct so that it can grow.
type Update struct {
	// Targets is every target the source knows now, serving or
	// draining; a target left out is deregistered (it drains with the
	// group's deregistration delay). Ignored when Err is set.
	Targets []Discovered
	// Err reports that the source lost its view (a watch disconnected, a
	// stream broke): the group keeps serving the last list and Diagnose
	// says since when. The next Update without Err clears it.
	Err error
}

// Discovered is one target found by a Source.
type Discovered struct {
	// Addr is "host:port"; it is also the target's ID.
	Addr string
	// Weight is the target's relative weight. Weights of 1..100 are used
	// as they are; 0 or less is taken as 1. When the largest weight of an
	// answer is above 100 (xDS weights run to 2^32-1), every weight is
	// scaled by 100/largest and rounded, with at least 1: proportions are
	// kept to within a unit of 100, and no serving target gets 0 (see
	// NormalizeWeights).
	Weight int
	// State is Serving (the zero value) or Draining. A Draining target is
	// treated exactly like one that vanished from the answer: no new
	// traffic, established connections and sticky sessions continue until
	// the group's deregistration delay ends (Kubernetes' terminating
	// endpoints, xDS DRAINING). A target that cannot serve at all is left
	// out of the answer.
	State TargetState
	// Zone is where the target runs (a Kubernetes zone, an xDS locality),
	// shown by Diagnose; it does not steer traffic.
	Zone string
	// Priority orders groups of targets: 0 is the best. The group sends
	// new traffic only to the best priority that has a serving target
	// (healthy, weight above 0, not draining), as Envoy's locality
	// priorities do without overprovisioning: when the last target of
	// priority 0 fails its checks, priority 1 takes all new traffic, and
	// gets none again once a target of priority 0 is back. Targets of a
	// priority not in use keep their health checks, their established
	// connections and their sticky sessions (they are Draining to
	// stickiness), and Diagnose marks them standby. Negative values count
	// as 0.
	Priority int
}

// TargetState is a discovered target's state.
type TargetState uint8

const (
	// Serving targets take new traffic.
	Serving TargetState = iota
	// Draining targets take no new traffic; what is established continues
	// until the group's deregistration delay ends.
	Draining
)

// String returns "serving" or "draining".
func (s TargetState) String() string {
	switch s {
	case Serving:
		return "serving"
	case Draining:
		return "draining"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// NormalizeWeights maps the weights of a discovery answer into lbkit's
// 1..100, in place: 0 or less becomes 1; when the largest weight is above
// 100, each weight w becomes max(1, round(w*100/largest)). Groups call it
// on every answer; sources may call it to show what a group will use.
func NormalizeWeights(ds []Discovered) {
	largest := 0
	for i := range ds {
		ds[i].Weight = max(ds[i].Weight, 1)
		largest = max(largest, ds[i].Weight)
	}
	if largest <= balancer.MaxWeight {
		return
	}
	for i := range ds {
		w := math.Round(float64(ds[i].Weight) * balancer.MaxWeight / float64(largest))
		ds[i].Weight = max(int(w), 1)
	}
}

// DNS discovers targets from a name's A and AAAA records: every address
// becomes a target at Port. Consul and Kubernetes headless services answer
// such queries, so this is how a group follows a cluster.
type DNS struct {
	// Name is the name to resolve, e.g. "app.service.consul".
	Name string
	// Port is the targets' traffic port.
	Port int
	// Network restricts the answer: "ip" (default) for both families,
	// "ip4" or "ip6".
	Network string
	// Resolver resolves the name. Nil means net.DefaultResolver.
	Resolver *net.Resolver
}

// Targets resolves the name.
func (d *DNS) Targets(ctx context.Context) ([]Discovered, error) {
	network := cmp.Or(d.Network, "ip")
	addrs, err := resolver(d.Resolver).LookupNetIP(ctx, network, d.Name)
	if err != nil {
		return nil, fmt.Errorf("dns %s: %w", d.Name, err)
	}
	out := make([]Discovered, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, Discovered{Addr: netip.AddrPortFrom(a.Unmap(), uint16(d.Port)).String(), Weight: balancer.DefaultWeight})
	}
	return dedupe(out), nil
}

// String returns e.g. "dns A/AAAA app.internal port 8080".
func (d *DNS) String() string { return fmt.Sprintf("dns A/AAAA %s port %d", d.Name, d.Port) }

// DNSSRV discovers targets from SRV records, _Service._Proto.Name: each
// record's target name is resolved to addresses, with the record's port and
// its weight (clamped to 1..100). Only the records of the lowest priority
// value are used, as SRV prescribes.
type DNSSRV struct {
	// Service, Proto and Name form the query _Service._Proto.Name, e.g.
	// "http", "tcp", "app.service.consul". With Service and Proto empty,
	// Name is queried as it is.
	Service, Proto, Name string
	// Resolver resolves the records. Nil means net.DefaultResolver.
	Resolver *net.Resolver
}

// Targets resolves the SRV records and their target names.
func (d *DNSSRV) Targets(ctx context.Context) ([]Discovered, error) {
	r := resolver(d.Resolver)
	_, srvs, err := r.LookupSRV(ctx, d.Service, d.Proto, d.Name)
	if err != nil && len(srvs) == 0 {
		return nil, fmt.Errorf("dns srv %s: %w", d, err)
	}
	if len(srvs) == 0 {
		return nil, fmt.Errorf("dns srv %s: no records", d)
	}
	best := srvs[0].Priority
	for _, s := range srvs {
		best = min(best, s.Priority)
	}
	var out []Discovered
	var errs []error
	for _, s := range srvs {
		if s.Priority != best {
			continue
		}
		addrs, err := r.LookupNetIP(ctx, "ip", s.Target)
		if err != nil {
			errs = append(errs, fmt.Errorf("dns srv %s: target %s: %w", d, s.Target, err))
			continue
		}
		w := min(max(int(s.Weight), 1), balancer.MaxWeight)
		for _, a := range addrs {
			out = append(out, Discovered{Addr: netip.AddrPortFrom(a.Unmap(), s.Port).String(), Weight: w})
		}
	}
	if len(out) == 0 {
		return nil, errors.Join(errs...)
	}
	// Some targets resolved: use them; the names that failed are reported
	// by the next answer that still fails.
	return dedupe(out), nil
}

// String returns the query, e.g. "_http._tcp.app.service.consul".
func (d *DNSSRV) String() string {
	if d.Service == "" && d.Proto == "" {
		return d.Name
	}
	return "_" + d.Service + "._" + d.Proto + "." + d.Name
}

func resolver(r *net.Resolver) *net.Resolver {
	if r == nil {
		return net.DefaultResolver
	}
	return r
}

// dedupe sorts by address and keeps the first of each (the highest weight
// wins when a name appears twice).
func dedupe(ds []Discovered) []Discovered {
	slices.SortStableFunc(ds, func(a, b Discovered) int {
		if c := cmp.Compare(a.Addr, b.Addr); c != 0 {
			return c
		}
		return cmp.Compare(b.Weight, a.Weight)
	})
	return slices.CompactFunc(ds, func(a, b Discovered) bool { return a.Addr == b.Addr })
}

// discovery is a group's running discovery loop and what it last saw.
type discovery struct {
	src    Source
	watch  bool // src is a Watcher
	cancel context.CancelFunc
	done   chan struct{}

	// Guarded by the group's mu.
	lastOK    time.Time // last good answer
	lastErr   error     // last failure, nil after a good answer
	lastErrAt time.Time // when the failures began
	answers   uint64    // good answers applied
}

const (
	// discoveryTimeout bounds one question to a source.
	discoveryTimeout = 10 * time.Second
	// watchBackoff is the first wait before a Watch that ended early is
	// started again; it doubles up to the discovery interval.
	watchBackoff = time.Second
)

// restartDiscovery stops the group's discovery loop and starts one for cfg,
// or, without a source, deregisters what discovery had registered.
func (g *group) restartDiscovery(cfg *groupConfig) {
	g.stopDiscovery()
	if cfg.discovery == nil {
		g.mu.Lock()
		g.lastDisc = nil
		g.reconcileLocked(map[string]targetConfig{}, false)
		g.mu.Unlock()
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	w, watch := cfg.discovery.(Watcher)
	d := &discovery{src: cfg.discovery, watch: watch, cancel: cancel, done: make(chan struct{})}
	g.mu.Lock()
	g.disco = d
	g.mu.Unlock()
	every := cfg.discoveryInterval
	if every == 0 {
		every = DefaultDiscoveryInterval
	}
	if watch {
		go func() {
			defer close(d.done)
			g.watch(ctx, d, w, every)
		}()
		return
	}
	go func() {
		defer close(d.done)
		g.discoverOnce(ctx, d)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				g.discoverOnce(ctx, d)
			}
		}
	}()
}

// watch runs a Watcher until ctx ends, starting it again with a back-off
// whenever it returns early. The back-off starts anew once a watch has
// delivered an answer.
func (g *group) watch(ctx context.Context, d *discovery, w Watcher, maxWait time.Duration) {
	wait := min(watchBackoff, maxWait)
	for {
		g.mu.Lock()
		before := d.answers
		g.mu.Unlock()
		err := w.Watch(ctx, func(u Update) { g.pushed(ctx, d, u) })
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("watch ended")
		}
		g.mu.Lock()
		if d.answers != before {
			wait = min(watchBackoff, maxWait)
		}
		g.failedLocked(d, fmt.Errorf("watch disconnected: %w", err))
		g.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, maxWait)
	}
}

// pushed applies a Watcher's update.
func (g *group) pushed(ctx context.Context, d *discovery, u Update) {
	if ctx.Err() != nil {
		return // stopping; the watch's late calls are ignored
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed || g.disco != d {
		return
	}
	if u.Err != nil {
		g.failedLocked(d, u.Err)
		return
	}
	g.applyDiscoveredLocked(d, u.Targets)
}

// stopDiscovery stops the discovery loop, if any, and waits for it.
func (g *group) stopDiscovery() {
	g.mu.Lock()
	d := g.disco
	g.disco = nil
	g.mu.Unlock()
	if d != nil {
		d.cancel()
		<-d.done
	}
}

// discoverOnce asks the source once and applies its answer; a failure keeps
// the last good answer.
func (g *group) discoverOnce(ctx context.Context, d *discovery) {
	qctx, cancel := context.WithTimeout(ctx, discoveryTimeout)
	ds, err := d.src.Targets(qctx)
	cancel()
	if ctx.Err() != nil {
		return // stopping
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed || g.disco != d {
		return
	}
	if err != nil {
		g.failedLocked(d, err)
		return
	}
	g.applyDiscoveredLocked(d, ds)
}

// failedLocked records that the source failed or disconnected; the last
// good answer stays. g.mu is held.
func (g *group) failedLocked(d *discovery, err error) {
	if d.lastErr == nil {
		d.lastErrAt = time.Now()
	}
	d.lastErr = err
	g.log.Warn("discovery failed; keeping the last good answer", "source", d.src.String(), "err", err, "targets", len(g.lastDisc))
}

// applyDiscoveredLocked makes the discovered targets match an answer: its
// weights normalised, its draining targets deregistered like vanished
// ones, its priorities applied. g.mu is held.
func (g *group) applyDiscoveredLocked(d *discovery, answer []Discovered) {
	ds := slices.Clone(answer) // the source may reuse its slice
	NormalizeWeights(ds)
	d.lastErr, d.lastOK = nil, time.Now()
	d.answers++
	g.lastDisc = ds
	want := make(map[string]targetConfig, len(ds))
	for _, t := range ds {
		if t.State == Draining {
			continue // drains like a removed target
		}
		want[t.Addr] = targetConfig{id: t.Addr, addr: t.Addr, weight: t.Weight, zone: t.Zone, priority: max(t.Priority, 0)}
	}
	g.reconcileLocked(want, false)
}
