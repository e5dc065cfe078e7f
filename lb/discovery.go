package lb

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/lbkit/lbkit/balancer"
)

// Source discovers a target group's targets: a DNS name, a service
// registry, a file. The group asks it again every discovery interval and
// applies the difference as live changes.
type Source interface {
	// Targets returns the targets that should be registered now. An error
	// (or an empty answer with an error) keeps the last good answer.
	Targets(ctx context.Context) ([]Discovered, error)
	// String describes the source for logs and diagnosis.
	String() string
}

// Discovered is one target found by a Source.
type Discovered struct {
	// Addr is "host:port"; it is also the target's ID.
	Addr string
	// Weight is the target's weight, 1..100; 0 is taken as 1. (Discovery
	// never drains a target by weight: a target that vanishes from the
	// answer is deregistered, with the group's delay.)
	Weight int
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
	cancel context.CancelFunc
	done   chan struct{}

	// Guarded by the group's mu.
	lastOK    time.Time // last good answer
	lastErr   error     // last failure, nil after a good answer
	lastErrAt time.Time
}

// discoveryTimeout bounds one question to a source.
const discoveryTimeout = 10 * time.Second

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
	d := &discovery{src: cfg.discovery, cancel: cancel, done: make(chan struct{})}
	g.mu.Lock()
	g.disco = d
	g.mu.Unlock()
	every := cfg.discoveryInterval
	if every == 0 {
		every = DefaultDiscoveryInterval
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
	now := time.Now()
	if err != nil {
		d.lastErr, d.lastErrAt = err, now
		g.log.Warn("discovery failed; keeping the last good answer", "source", d.src.String(), "err", err, "targets", len(g.lastDisc))
		return
	}
	d.lastErr, d.lastOK = nil, now
	g.lastDisc = ds
	want := make(map[string]targetConfig, len(ds))
	for _, t := range ds {
		want[t.Addr] = targetConfig{id: t.Addr, addr: t.Addr, weight: max(t.Weight, balancer.DefaultWeight)}
	}
	g.reconcileLocked(want, false)
}
