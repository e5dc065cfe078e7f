package lb

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/lbkit/lbkit/balancer"
	"github.com/lbkit/lbkit/flowtable"
	"github.com/lbkit/lbkit/healthcheck"
	"github.com/lbkit/lbkit/internal/acceptloop"
	"github.com/lbkit/lbkit/proxy"
)

// DefaultShutdownTimeout bounds the graceful stop Serve makes when its
// context ends.
const DefaultShutdownTimeout = 30 * time.Second

// ErrClosed is returned by methods of a LoadBalancer that was shut down or
// closed.
var ErrClosed = errors.New("lb: load balancer closed")

// LoadBalancer is a load balancer: listeners that accept clients and forward
// them to target groups. Build it with New, start it with Start (or Serve),
// change it while it runs with Reconfigure or the granular methods (AddTarget,
// SetWeight, ...), and stop it with Shutdown or Close.
//
// Every change applies to the next new connection (L4) or request (L7);
// nothing established is broken by one. All methods are safe for concurrent
// use; changes are applied one at a time.
type LoadBalancer struct {
	mu        sync.Mutex // serialises control-plane work; guards the fields below
	cfg       *config
	started   bool
	stopping  bool // Shutdown is waiting for connections to end
	stopped   bool
	flows     *proxy.FlowTable
	fds       *proxy.Descriptors // nil: no budget
	limits    limits             // worked out at Start
	groups    map[string]*group
	listeners map[string]*listener

	logPtr atomic.Pointer[slog.Logger] // read by serving goroutines, replaced by changes

	// newChecker, when set, replaces new groups' health-checker factory:
	// tests use it to make one fail.
	newChecker func(*groupConfig) (healthcheck.Checker, io.Closer, error)
	// wrapListener, when set, wraps every TCP-kind listener's socket as it
	// is bound: tests use it to inject accept errors.
	wrapListener func(net.Listener) net.Listener
	hooksPtr     atomic.Pointer[Hooks]
	flowObs      atomic.Pointer[flowObserverBox] // WithFlowObserver's
	eg           errgroup.Group                  // serving and retiring proxies
	closing      chan struct{}                   // closed when the load balancer stops: retiring proxies close
	retiring     atomic.Int32                    // proxies finishing in the background
}

// New returns a load balancer configured by opts, or an error listing every
// problem of the configuration, each naming the object and the field. It
// starts nothing: see Start.
func New(opts ...Option) (*LoadBalancer, error) {
	c := build(opts)
	if err := c.validate(); err != nil {
		return nil, err
	}
	l := &LoadBalancer{cfg: c, closing: make(chan struct{})}
	l.setLogging(c)
	return l, nil
}

func build(opts []Option) *config {
	c := &config{}
	for _, o := range opts {
		o(c)
	}
	c.spreadObserver()
	return c
}

func (l *LoadBalancer) setLogging(c *config) {
	log := c.logger
	if log == nil {
		log = slog.Default()
	}
	l.logPtr.Store(log)
	h := c.hooks
	l.hooksPtr.Store(&h)
	l.flowObs.Store(&flowObserverBox{c.flowObserver})
}

func (l *LoadBalancer) hooks() Hooks { return *l.hooksPtr.Load() }

func (l *LoadBalancer) log() *slog.Logger { return l.logPtr.Load() }

// Start binds every listener, starts health checks and starts serving, then
// returns. If a listener cannot bind, nothing is left running and the error
// says which. Start may be called once.
func (l *LoadBalancer) Start() error {
	l.mu.Lock()
	switch {
	case l.stopped:
		l.mu.Unlock()
		return ErrClosed
	case l.started:
		l.mu.Unlock()
		return errors.New("lb: already started")
	}
	c := l.cfg
	process, _ := processFileLimit()
	lm := c.limits(process)
	flows, err := proxy.NewFlowTable(
		flowtable.WithMaxFlows(lm.maxFlows),
		flowtable.WithMaxFlowsPerSource(lm.perSource),
		flowtable.WithUnrepliedTimeout(flowtable.UDP, lm.unreplied),
	)
	if err != nil {
		l.mu.Unlock()
		return err
	}
	l.flows, l.limits = flows, lm
	if lm.budget > 0 {
		l.fds = proxy.NewDescriptors(lm.budget, flows)
	}
	l.log().Info("descriptor budget and flow limits", "process_limit", lm.process, "reserve", lm.reserve,
		"budget", lm.budget, "max_flows", lm.maxFlows, "max_flows_per_source", lm.perSource, "udp_unreplied_timeout", lm.unreplied.String())
	l.groups = map[string]*group{}
	l.listeners = map[string]*listener{}
	l.started = true
	if c.warmup > 0 {
		// Groups first, their checks running; listeners once every
		// target was checked (or the warm-up ran out).
		groupsOnly := c.clone()
		groupsOnly.listeners = nil
		if err := l.reconcile(groupsOnly); err != nil {
			l.teardown(nil)
			l.mu.Unlock()
			return err
		}
		l.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), c.warmup)
		err := l.WaitChecked(ctx)
		cancel()
		l.mu.Lock()
		if err != nil {
			l.log().Warn("warm-up ran out; listeners start with targets not checked yet", "warmup", c.warmup.String(), "err", err)
		}
		if l.stopped || l.stopping {
			l.mu.Unlock()
			return ErrClosed
		}
	}
	defer l.mu.Unlock()
	if err := l.reconcile(c); err != nil {
		l.teardown(nil)
		return err
	}
	l.log().Info("load balancer started", "listeners", len(l.listeners), "groups", len(l.groups))
	return nil
}

// Serve starts the load balancer (see Start) and runs it until ctx is done,
// then shuts it down gracefully within DefaultShutdownTimeout.
func (l *LoadBalancer) Serve(ctx context.Context) error {
	if err := l.Start(); err != nil {
		return err
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), DefaultShutdownTimeout)
	defer cancel()
	return l.Shutdown(sctx)
}

// Shutdown stops the load balancer gracefully: listeners stop accepting at
// once, idle HTTP keep-alive connections close, established TCP connections
// and HTTP requests in flight finish and UDP flows get the replies they
// wait for (proxy.UDP.Shutdown) until ctx is done, then whatever is
// left is closed. Health checks and discovery stop. It returns
// ctx's error if connections had to be cut.
func (l *LoadBalancer) Shutdown(ctx context.Context) error {
	// Stop accepting under the lock, wait without it (so Stats, Diagnose
	// and Addr still answer meanwhile), then tear down under it again.
	l.mu.Lock()
	if l.stopped || l.stopping {
		l.mu.Unlock()
		return nil
	}
	l.stopping = true
	var servers []server
	for _, li := range l.listeners {
		if li.sock != nil {
			// Stop accepting while the view still serves, so that a
			// connection accepted just now is served, not closed;
			// nobody is left waiting in a backlog.
			li.sock.stop()
		}
		if li.view != nil {
			li.view.Close()
		}
		servers = append(servers, li.server())
	}
	l.mu.Unlock()

	var eg errgroup.Group
	for _, s := range servers {
		eg.Go(func() error { return s.Shutdown(ctx) })
	}
	err := eg.Wait()

	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.stopped {
		l.teardown(err)
		l.log().Info("load balancer stopped")
	}
	return err
}

// Close stops the load balancer at once: every connection is closed.
func (l *LoadBalancer) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return nil
	}
	for _, li := range l.listeners {
		li.server().Close()
	}
	l.teardown(nil)
	return nil
}

// teardown closes everything after the proxies stopped; l.mu is held.
func (l *LoadBalancer) teardown(error) {
	l.stopped = true
	close(l.closing)
	for _, li := range l.listeners {
		if li.view != nil {
			li.view.Close()
		}
		li.server().Close()
		li.closeSocket()
	}
	if err := l.eg.Wait(); err != nil {
		l.log().Error("serving ended with an error", "err", err)
	}
	for _, g := range l.groups {
		g.close()
	}
	if l.flows != nil {
		l.flows.Close()
	}
}

// Addr returns the address a listener is bound to (useful with port 0).
func (l *LoadBalancer) Addr(listener string) (net.Addr, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if li, ok := l.listeners[listener]; ok {
		return li.addr, true
	}
	return nil, false
}

// Reconfigure replaces the whole configuration with the one opts build, as
// a configuration file reload does, and applies the difference live: new
// listeners start, removed ones stop (L4 at once, L7 after their keep-alive
// connections finish), changed settings apply to new connections and
// requests, targets come and go with their deregistration delay. The new
// configuration is validated first; if it is invalid, or a new listener
// cannot bind, nothing changes and the error says why.
func (l *LoadBalancer) Reconfigure(opts ...Option) error {
	return l.change(func(*config) *config { return build(opts) })
}

// change validates and applies the configuration f makes from a copy of the
// current one.
func (l *LoadBalancer) change(f func(*config) *config) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped || l.stopping {
		return ErrClosed
	}
	c := f(l.cfg.clone())
	if err := c.validate(); err != nil {
		return err
	}
	if l.started {
		if c.limits(l.limits.process) != l.limits {
			return errLimitsFixed
		}
		if err := l.reconcile(c); err != nil {
			return err
		}
	}
	l.cfg = c
	l.setLogging(c)
	return nil
}

// reconcile makes the running load balancer match c; l.mu is held. Sockets
// of new listeners are bound first, so a port in use changes nothing.
func (l *LoadBalancer) reconcile(c *config) error {
	// 1. Bind what is new (or moved to another address or protocol), and
	// again what stopped serving (its Serve failed and its socket was
	// closed): every change re-arms it.
	fresh := map[string]*listener{}
	rearmed := map[string]bool{}
	for _, lc := range c.listeners {
		prefer := ""
		if li, ok := l.listeners[lc.name]; ok && li.cfg.proto == lc.proto && li.cfg.addr == lc.addr {
			if li.failed.Load() == nil {
				continue
			}
			prefer = li.addr.String() // the port it had, if the file says 0
			rearmed[lc.name] = true
		}
		li, err := l.bind(c.sockets, lc, prefer)
		if err != nil {
			for _, f := range fresh {
				f.closeSocket()
			}
			return err
		}
		fresh[lc.name] = li
	}
	// 2. Groups: new ones start, existing ones change. What can fail (a
	// health checker's socket, a sticky policy) is made for every group
	// first, so that a failure changes nothing.
	type groupStep struct {
		g     *group
		c     *groupChange
		fresh bool
	}
	var steps []groupStep
	undo := func() {
		for _, st := range steps {
			st.c.discard()
			if st.fresh {
				st.g.close()
			}
		}
		for _, f := range fresh {
			f.closeSocket()
		}
	}
	want := map[string]bool{}
	for _, gc := range c.groups {
		want[gc.name] = true
		g, ok := l.groups[gc.name]
		if !ok {
			var err error
			if g, err = makeGroup(gc, l.log(), l.hooks()); err != nil {
				undo()
				return err
			}
			if l.newChecker != nil {
				g.newChecker = l.newChecker
			}
		}
		ch, err := g.prepare(gc)
		if err != nil {
			if !ok {
				g.close()
			}
			undo()
			return err
		}
		steps = append(steps, groupStep{g: g, c: ch, fresh: !ok})
	}
	var errs []error
	for _, st := range steps {
		if err := st.g.commit(st.c); err != nil {
			// Not expected once prepared (the configuration was
			// validated); the group keeps what it had.
			errs = append(errs, err)
			if st.fresh {
				st.g.close()
				continue
			}
		}
		if st.fresh {
			l.groups[st.g.name] = st.g
		}
	}
	// 3. Listeners: removed or moved ones stop, new ones start, the rest
	// change live.
	keep := map[string]bool{}
	for _, lc := range c.listeners {
		keep[lc.name] = true
	}
	for name, li := range l.listeners {
		if !keep[name] || fresh[name] != nil {
			l.stopListener(li)
			delete(l.listeners, name)
			l.log().Info("listener stopped", "listener", name)
		}
	}
	for _, lc := range c.listeners {
		if li := fresh[lc.name]; li != nil {
			if err := l.serveListener(li, lc); err != nil {
				li.closeSocket()
				errs = append(errs, err)
				continue
			}
			if rearmed[lc.name] {
				l.log().Info("listener was not serving; bound and started again", "listener", lc.name, "addr", li.addr.String())
			}
			l.listeners[lc.name] = li
			l.log().Info("listener started", "listener", lc.name, "protocol", lc.proto.String(), "addr", li.addr.String())
			continue
		}
		if err := l.updateListener(l.listeners[lc.name], lc); err != nil {
			errs = append(errs, err)
		}
	}
	// 4. Removed groups stop.
	for name, g := range l.groups {
		if !want[name] {
			g.close()
			delete(l.groups, name)
		}
	}
	return errors.Join(errs...)
}

// udpReadBuffer is the receive buffer asked for a UDP listener's socket.
const udpReadBuffer = 4 << 20

// netSockets opens sockets with the net package; keepAlive is the TCP
// keepalive period of accepted connections (-1: off).
type netSockets struct{ keepAlive time.Duration }

func (s netSockets) Listen(_, network, addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: s.keepAlive}
	return lc.Listen(context.Background(), network, addr)
}

func (s netSockets) ListenPacket(_, network, addr string) (net.PacketConn, error) {
	var lc net.ListenConfig
	return lc.ListenPacket(context.Background(), network, addr)
}

// bind opens a listener's socket with socks (nil: the net package).
// prefer, if set, is the address a listener being bound again had: tried
// first when the configured port is 0, so that clients find it where it was.
func (l *LoadBalancer) bind(socks Sockets, cfg *listenerConfig, prefer string) (*listener, error) {
	li := &listener{cfg: cfg}
	if cfg.proto.tls() {
		li.certs = new(proxy.Certificates)
	}
	addr := cfg.addr
	if _, port, err := net.SplitHostPort(cfg.addr); err == nil && port == "0" && prefer != "" {
		addr = prefer
	}
	if socks == nil {
		socks = netSockets{}
	}
	if cfg.proto == UDP {
		pc, err := socks.ListenPacket(cfg.name, "udp", addr)
		if err != nil && addr != cfg.addr {
			pc, err = socks.ListenPacket(cfg.name, "udp", cfg.addr)
		}
		if err != nil {
			return nil, fmt.Errorf("listener %q: %w", cfg.name, err)
		}
		if uc, ok := pc.(*net.UDPConn); ok {
			// A deep queue absorbs bursts (a flood of new flows, a pause
			// of the serving goroutine) instead of dropping clients'
			// datagrams; the kernel caps it at net.core.rmem_max.
			_ = uc.SetReadBuffer(udpReadBuffer)
		}
		li.pc, li.addr = pc, pc.LocalAddr()
		return li, nil
	}
	// L4 proxies turn TCP keepalive off on their sockets (the peers'
	// probes are what keeps an idle flow alive); not turning it on for
	// every accepted connection in the first place saves four system calls
	// per connection. HTTP keeps Go's default.
	if ns, ok := socks.(netSockets); ok && !cfg.proto.l7() {
		ns.keepAlive = -1
		socks = ns
	}
	ln, err := socks.Listen(cfg.name, "tcp", addr)
	if err != nil && addr != cfg.addr {
		ln, err = socks.Listen(cfg.name, "tcp", cfg.addr)
	}
	if err != nil {
		return nil, fmt.Errorf("listener %q: %w", cfg.name, err)
	}
	if l.wrapListener != nil {
		ln = l.wrapListener(ln)
	}
	li.sock = newSocket(ln, acceptloop.Config{Log: l.log, Attrs: []any{"listener", cfg.name}})
	li.addr = ln.Addr()
	return li, nil
}

// modifyGroup applies f to a copy of the named group's configuration.
func (l *LoadBalancer) modifyGroup(name string, f func(*groupConfig) error) error {
	return l.changeErr(func(c *config) error {
		for _, g := range c.groups {
			if g.name == name {
				return f(g)
			}
		}
		return notFound(Object{Kind: KindTargetGroup, Name: name}, Object{})
	})
}

// modifyListener applies f to a copy of the named listener's configuration.
func (l *LoadBalancer) modifyListener(name string, f func(*listenerConfig) error) error {
	return l.changeErr(func(c *config) error {
		for _, li := range c.listeners {
			if li.name == name {
				return f(li)
			}
		}
		return notFound(Object{Kind: KindListener, Name: name}, Object{})
	})
}

// changeErr is change for edits that may fail before validation.
func (l *LoadBalancer) changeErr(f func(*config) error) error {
	var ferr error
	err := l.change(func(c *config) *config {
		ferr = f(c)
		return c
	})
	if ferr != nil {
		return ferr
	}
	return err
}

// AddListener adds a listener and, if the load balancer runs, starts it.
func (l *LoadBalancer) AddListener(name string, proto Protocol, addr string, opts ...ListenerOption) error {
	return l.changeErr(func(c *config) error {
		WithListener(name, proto, addr, opts...)(c)
		return nil
	})
}

// RemoveListener removes a listener: an L4 (TCP, UDP, TLS) listener stops
// forwarding at once; an L7 (HTTP, HTTPS) one stops accepting and lets its
// keep-alive connections finish their requests.
func (l *LoadBalancer) RemoveListener(name string) error {
	return l.changeErr(func(c *config) error {
		i := slices.IndexFunc(c.listeners, func(li *listenerConfig) bool { return li.name == name })
		if i < 0 {
			return notFound(Object{Kind: KindListener, Name: name}, Object{})
		}
		c.listeners = slices.Delete(c.listeners, i, i+1)
		return nil
	})
}

// AddTargetGroup adds a target group.
func (l *LoadBalancer) AddTargetGroup(name string, proto Protocol, opts ...GroupOption) error {
	return l.changeErr(func(c *config) error {
		WithTargetGroup(name, proto, opts...)(c)
		return nil
	})
}

// RemoveTargetGroup removes a target group that no listener forwards to.
func (l *LoadBalancer) RemoveTargetGroup(name string) error {
	return l.changeErr(func(c *config) error {
		i := slices.IndexFunc(c.groups, func(g *groupConfig) bool { return g.name == name })
		if i < 0 {
			return notFound(Object{Kind: KindTargetGroup, Name: name}, Object{})
		}
		c.groups = slices.Delete(c.groups, i, i+1)
		return nil
	})
}

// AddTarget registers a target with a group (see Target for the options).
// It gets traffic once its first health check passes.
func (l *LoadBalancer) AddTarget(group, addr string, opts ...TargetOption) error {
	return l.modifyGroup(group, func(g *groupConfig) error {
		WithTarget(addr, opts...)(g)
		return nil
	})
}

// RemoveTarget deregisters a target: it gets no new connections at once, and
// its established connections and sticky sessions continue until the
// group's deregistration delay passes.
func (l *LoadBalancer) RemoveTarget(group, id string) error {
	return l.modifyGroup(group, func(g *groupConfig) error {
		i := slices.IndexFunc(g.targets, func(t targetConfig) bool { return t.id == id })
		if i < 0 {
			return notFound(Object{Kind: KindTarget, Name: id}, Object{Kind: KindTargetGroup, Name: group})
		}
		g.targets = slices.Delete(g.targets, i, i+1)
		delete(g.overrides, id)
		return nil
	})
}

// SetWeight sets a target's weight (0..100). 0 stops new traffic to it;
// established connections continue.
func (l *LoadBalancer) SetWeight(group, id string, weight int) error {
	return l.modifyGroup(group, func(g *groupConfig) error {
		i := slices.IndexFunc(g.targets, func(t targetConfig) bool { return t.id == id })
		if i < 0 {
			return notFound(Object{Kind: KindTarget, Name: id}, Object{Kind: KindTargetGroup, Name: group})
		}
		g.targets[i].weight = weight
		return nil
	})
}

// SetAlgorithm changes a group's algorithm; established connections keep
// their targets.
func (l *LoadBalancer) SetAlgorithm(group string, a balancer.Algorithm) error {
	return l.modifyGroup(group, func(g *groupConfig) error {
		g.algo = a
		return nil
	})
}

// SetStickiness changes a group's session persistence. Sessions remembered
// under the old setting are forgotten.
func (l *LoadBalancer) SetStickiness(group string, s Stickiness) error {
	return l.modifyGroup(group, func(g *groupConfig) error {
		g.stickiness = s
		return nil
	})
}

// SetCertificates replaces a TLS or HTTPS listener's certificates: new
// handshakes get them at once, established connections keep theirs.
func (l *LoadBalancer) SetCertificates(listener string, certs ...tls.Certificate) error {
	return l.modifyListener(listener, func(li *listenerConfig) error {
		li.certs = slices.Clone(certs)
		return nil
	})
}

// SetIdleTimeout changes a listener's idle timeout (see IdleTimeout). It
// applies to new connections only.
func (l *LoadBalancer) SetIdleTimeout(listener string, d time.Duration) error {
	return l.modifyListener(listener, func(li *listenerConfig) error {
		li.idle = d
		return nil
	})
}

// SetACL replaces a listener's access control (see Allow and Deny).
func (l *LoadBalancer) SetACL(listener string, allow, deny []string) error {
	return l.modifyListener(listener, func(li *listenerConfig) error {
		li.allow, li.deny = slices.Clone(allow), slices.Clone(deny)
		return nil
	})
}

// clone copies a configuration deeply enough that editing the copy never
// changes the original.
func (c *config) clone() *config {
	d := *c
	d.listeners = make([]*listenerConfig, len(c.listeners))
	for i, li := range c.listeners {
		x := *li
		x.allow, x.deny, x.trusted = slices.Clone(li.allow), slices.Clone(li.deny), slices.Clone(li.trusted)
		x.certs, x.rules, x.ciphers, x.clientHosts = slices.Clone(li.certs), slices.Clone(li.rules), slices.Clone(li.ciphers), slices.Clone(li.clientHosts)
		d.listeners[i] = &x
	}
	d.groups = make([]*groupConfig, len(c.groups))
	for i, g := range c.groups {
		x := *g
		x.targets = slices.Clone(g.targets)
		x.overrides = maps.Clone(g.overrides)
		d.groups[i] = &x
	}
	return &d
}

func cmpOr(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// FlowRejectedEvent is a client connection (TCP, TLS), datagram (UDP) or
// HTTP client refused before it reached a target.
type FlowRejectedEvent struct {
	// Listener names the listener.
	Listener string
	// Proto is TCP or UDP (HTTP clients are TCP).
	Proto Protocol
	// Client is the client's address.
	Client netip.AddrPort
	// Reason classifies the refusal: "acl", "table_full", "source_limit",
	// "descriptors" (the descriptor budget was spent), "no_target",
	// "connect", "proxy_header", "tls".
	Reason string
	// Err says what happened.
	Err error
}
