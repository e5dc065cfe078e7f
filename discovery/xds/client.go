package xds

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/lbkit/lbkit/lb"
	"github.com/lbkit/lbkit/proxy"
)

// Defaults of a Client.
const (
	// DefaultBackoff and DefaultMaxBackoff bound the wait before a lost
	// stream is opened again: it starts at the first, doubles up to the
	// second, with jitter, and starts anew once a stream got a response.
	DefaultBackoff    = 100 * time.Millisecond
	DefaultMaxBackoff = 30 * time.Second
	// DefaultResourceTimeout is how long a requested endpoint or route
	// resource may stay unanswered before it is taken as not existing,
	// as gRPC's xDS client does.
	DefaultResourceTimeout = 15 * time.Second
)

// Client is an xDS client: it holds one aggregated (ADS), state-of-the-world
// stream to a control plane and turns what it learns into lbkit
// configuration. Make one with New, then Start it; Close stops it.
//
// With WithApply, every accepted listener, route and cluster change is
// built into lb options (listeners, target groups with their algorithm
// and health check, HTTP rules) and given to the apply function, normally
// a LoadBalancer's Reconfigure (see Reconfigure): lbkit's validation is
// the gate, and a configuration it refuses is NACKed with its error, the
// last good one staying in force. Endpoints never go through apply: each
// cluster's target group follows its endpoints through a Source (see
// Cluster), so an EDS change applies at once and a DRAINING endpoint
// drains.
//
// Without WithApply, a Client only serves endpoints: a group configured by
// hand follows a cluster with lb.WithDiscovery(client.Cluster("web"), 0).
type Client struct {
	boot            Bootstrap
	conn            *grpc.ClientConn
	log             *slog.Logger
	apply           func([]lb.Option) error
	drain           time.Duration
	backoff         time.Duration
	maxBackoff      time.Duration
	resourceTimeout time.Duration

	cancel context.CancelFunc
	done   chan struct{} // closed when run ends; nil before Start

	updateMu sync.Mutex // serialises changes of state (and the apply they make)
	pushMu   sync.Mutex // serialises pushes to the clusters' watches

	mu        sync.Mutex // guards the fields below
	state     *state
	versions  map[string]string // accepted version by type URL
	watches   map[string]map[*watch]bool
	linger    map[string]*time.Timer // removed clusters, until drained
	missing   map[string]*time.Timer // does-not-exist timers by type URL + " " + name
	connected bool
	discErr   error // why the stream is down; nil while it is up
	discAt    time.Time
	lastNACK  string
	applied   map[string]lb.Option // the last listener option applied, by name
	warming   bool                 // a listener waits for its clusters' endpoints
	// appliedRefs are the clusters each applied listener uses;
	// pendingRefs those of the options being applied.
	appliedRefs, pendingRefs map[string][]string
	closed                   bool
	timers                   sync.WaitGroup // timer functions running
}

// state is what the client has accepted.
type state struct {
	clusters  map[string]*cluster
	lingering map[string]*cluster        // removed from CDS, draining
	endpoints map[string][]lb.Discovered // by EDS name; a nil entry exists (known empty)
	listeners map[string]*listener
	routes    map[string]*routes
	// refs are the clusters the listeners in force send traffic to: a
	// removed cluster drains only once no listener uses it.
	refs map[string]bool
}

func (s *state) clone() *state {
	return &state{
		clusters:  maps.Clone(s.clusters),
		lingering: maps.Clone(s.lingering),
		endpoints: maps.Clone(s.endpoints),
		listeners: maps.Clone(s.listeners),
		routes:    maps.Clone(s.routes),
		refs:      maps.Clone(s.refs),
	}
}

// targets returns a cluster's endpoints and whether they are known: a
// lingering cluster's are all draining once no listener uses it.
func (s *state) targets(name string) ([]lb.Discovered, bool) {
	cl, draining := s.clusters[name], false
	if cl == nil {
		cl, draining = s.lingering[name], !s.refs[name]
	}
	if cl == nil {
		return nil, false
	}
	ds, known := cl.static, true
	if cl.eds != "" {
		ds, known = s.endpoints[cl.eds]
	}
	if draining {
		ds = slices.Clone(ds)
		for i := range ds {
			ds[i].State = lb.Draining
		}
	}
	return ds, known
}

// edsNames returns the EDS resources the clusters need, sorted.
func (s *state) edsNames() []string {
	set := map[string]bool{}
	for _, m := range []map[string]*cluster{s.clusters, s.lingering} {
		for _, c := range m {
			if c.eds != "" {
				set[c.eds] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// rdsNames returns the RDS resources the listeners need, sorted.
func (s *state) rdsNames() []string {
	set := map[string]bool{}
	for _, l := range s.listeners {
		if l.rds != "" {
			set[l.rds] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// Option configures a Client.
type Option func(*Client)

// WithApply makes the Client build lbkit configuration from listeners,
// routes and clusters and give it to apply (see Reconfigure). An error
// from apply NACKs the update that caused it. apply is called from the
// Client's goroutine, one call at a time. Default: none; the Client then
// only serves endpoints to Cluster sources.
func WithApply(apply func([]lb.Option) error) Option { return func(c *Client) { c.apply = apply } }

// Reconfigure returns an apply function for WithApply that reconfigures l
// with base (its logger, hooks, listeners of its own...) followed by the
// control plane's options.
func Reconfigure(l *lb.LoadBalancer, base ...lb.Option) func([]lb.Option) error {
	return func(opts []lb.Option) error { return l.Reconfigure(append(slices.Clone(base), opts...)...) }
}

// WithLogger sets the logger. Default: slog.Default().
func WithLogger(l *slog.Logger) Option { return func(c *Client) { c.log = l } }

// WithDrain sets the deregistration delay of the target groups the Client
// builds, and how long a cluster removed by the control plane keeps its
// established connections (its endpoints draining) before its group goes.
// Default: lb.DefaultDeregistrationDelay.
func WithDrain(d time.Duration) Option { return func(c *Client) { c.drain = d } }

// WithBackoff sets the first and the longest wait before a lost stream is
// opened again. Default: DefaultBackoff, DefaultMaxBackoff.
func WithBackoff(first, longest time.Duration) Option {
	return func(c *Client) { c.backoff, c.maxBackoff = first, longest }
}

// WithResourceTimeout sets how long a requested endpoint or route resource
// may stay unanswered on a live stream before it is taken as not existing
// (a cluster without endpoints, a route configuration without routes).
// Default: DefaultResourceTimeout.
func WithResourceTimeout(d time.Duration) Option { return func(c *Client) { c.resourceTimeout = d } }

// New returns a Client for the bootstrap's first server. It does not
// connect until Start.
func New(b Bootstrap, opts ...Option) (*Client, error) {
	if err := b.validate(); err != nil {
		return nil, err
	}
	c := &Client{
		boot: b, log: slog.Default(), drain: lb.DefaultDeregistrationDelay,
		backoff: DefaultBackoff, maxBackoff: DefaultMaxBackoff, resourceTimeout: DefaultResourceTimeout,
		state:    &state{clusters: map[string]*cluster{}, lingering: map[string]*cluster{}, endpoints: map[string][]lb.Discovered{}, listeners: map[string]*listener{}, routes: map[string]*routes{}},
		versions: map[string]string{}, watches: map[string]map[*watch]bool{},
		linger: map[string]*time.Timer{}, missing: map[string]*time.Timer{}, applied: map[string]lb.Option{},
		discErr: errors.New("not connected yet"), discAt: time.Now(),
	}
	for _, o := range opts {
		o(c)
	}
	if c.backoff <= 0 || c.maxBackoff < c.backoff {
		return nil, fmt.Errorf("xds: back-off %v..%v is not a positive range", c.backoff, c.maxBackoff)
	}
	if c.resourceTimeout <= 0 {
		return nil, fmt.Errorf("xds: resource timeout %v is not positive", c.resourceTimeout)
	}
	dial, _ := b.Servers[0].dialOption() // checked by validate
	conn, err := grpc.NewClient(b.Servers[0].URI, dial)
	if err != nil {
		return nil, fmt.Errorf("xds: %w", err)
	}
	c.conn = conn
	c.log = c.log.With("xds_server", b.Servers[0].URI)
	return c, nil
}

// Start opens the stream in a goroutine of the Client's; it comes back by
// itself whenever it is lost, until Close.
func (c *Client) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel, c.done = cancel, make(chan struct{})
	go func() {
		defer close(c.done)
		c.run(ctx)
	}()
}

// Close stops the stream and the Client's timers, and waits for them. The
// load balancer keeps its last configuration.
func (c *Client) Close() error {
	if c.cancel != nil {
		c.cancel()
		<-c.done
	}
	c.mu.Lock()
	c.closed = true
	for _, t := range c.linger {
		t.Stop()
	}
	for _, t := range c.missing {
		t.Stop()
	}
	c.mu.Unlock()
	c.timers.Wait()
	return c.conn.Close()
}

// Status is a snapshot of what a Client knows about its stream.
type Status struct {
	// Connected reports that a stream is up and has had a response.
	Connected bool
	// Err is why the stream is down, and Since when.
	Err   error
	Since time.Time
	// Versions are the accepted versions by type: "CDS", "EDS", "LDS",
	// "RDS".
	Versions map[string]string
	// LastNACK is the error the last NACK carried, "" if none was sent.
	LastNACK string
	// Clusters, Listeners and Routes are the names accepted.
	Clusters, Listeners, Routes []string
}

// Status returns the Client's status.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := Status{Connected: c.connected, Err: c.discErr, Since: c.discAt, LastNACK: c.lastNACK, Versions: map[string]string{}}
	for t, v := range c.versions {
		st.Versions[typeName(t)] = v
	}
	st.Clusters = slices.Sorted(maps.Keys(c.state.clusters))
	st.Listeners = slices.Sorted(maps.Keys(c.state.listeners))
	st.Routes = slices.Sorted(maps.Keys(c.state.routes))
	return st
}

// run opens streams until ctx ends, backing off between failures.
func (c *Client) run(ctx context.Context) {
	wait := c.backoff
	for {
		answered, err := c.stream(ctx)
		if ctx.Err() != nil {
			return
		}
		if answered {
			wait = c.backoff
		}
		c.disconnected(err)
		// Full jitter over the upper half: streams of many nodes do not
		// come back in step after a control plane restarts.
		d := wait/2 + rand.N(wait/2+1)
		c.log.Warn("xds stream lost; opening it again", "err", err, "after", d)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, c.maxBackoff)
	}
}

// disconnected records a lost stream, stops the does-not-exist timers and
// tells the clusters' watches: their groups keep the last endpoints.
func (c *Client) disconnected(err error) {
	c.mu.Lock()
	if c.connected || c.discErr == nil {
		c.discAt = time.Now()
	}
	c.connected, c.discErr = false, err
	for k, t := range c.missing {
		t.Stop()
		delete(c.missing, k)
	}
	c.mu.Unlock()
	c.pushAll()
}

// stream is one ADS stream's state. Only the Client's run goroutine uses
// it.
type stream struct {
	c        *Client
	s        discoverypb.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	nonces   map[string]string
	names    map[string][]string // subscribed names by type (EDS, RDS)
	sentNode bool
}

// stream runs one stream until it fails. It reports whether the server
// answered at all.
func (c *Client) stream(ctx context.Context) (answered bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := discoverypb.NewAggregatedDiscoveryServiceClient(c.conn).StreamAggregatedResources(sctx)
	if err != nil {
		return false, err
	}
	st := &stream{c: c, s: s, nonces: map[string]string{}, names: map[string][]string{}}
	// A new stream asks for everything afresh (empty versions), so that
	// the server answers at once and the client learns that it is back.
	for _, typ := range []string{clusterType, listenerType} {
		if err := st.send(typ, "", nil, nil); err != nil {
			return false, err
		}
	}
	if err := st.subscribe(); err != nil {
		return false, err
	}
	for {
		resp, err := s.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the server closed the stream")
			}
			return answered, err
		}
		if !answered {
			answered = true
			c.reconnected()
		}
		if err := st.handle(resp); err != nil {
			return true, err
		}
	}
}

// reconnected records that a stream is up again and tells the watches.
func (c *Client) reconnected() {
	c.mu.Lock()
	c.connected, c.discErr, c.discAt = true, nil, time.Now()
	c.mu.Unlock()
	c.log.Info("xds stream up")
	c.pushAll()
}

// send sends a request for typ: an ACK or NACK when nonce is set.
func (st *stream) send(typ, version string, names []string, detail error) error {
	req := &discoverypb.DiscoveryRequest{
		TypeUrl:       typ,
		VersionInfo:   version,
		ResourceNames: names,
		ResponseNonce: st.nonces[typ],
	}
	if !st.sentNode {
		req.Node, st.sentNode = st.c.boot.Node.node(), true
	}
	if detail != nil {
		req.ErrorDetail = &statuspb.Status{Code: int32(codes.InvalidArgument), Message: detail.Error()}
	}
	return st.s.Send(req)
}

// subscribe asks for the endpoint and route resources the accepted
// clusters and listeners need, when they changed, and starts their
// does-not-exist timers.
func (st *stream) subscribe() error {
	c := st.c
	c.mu.Lock()
	want := map[string][]string{endpointType: c.state.edsNames(), routeType: c.state.rdsNames()}
	versions := maps.Clone(c.versions)
	c.mu.Unlock()
	for _, typ := range []string{endpointType, routeType} {
		names := want[typ]
		if slices.Equal(names, st.names[typ]) {
			continue
		}
		if len(names) == 0 && st.names[typ] == nil {
			continue // never subscribed: an empty list would mean every resource
		}
		st.names[typ] = names
		version := versions[typ]
		if st.nonces[typ] == "" {
			version = "" // the first request of its type on this stream asks afresh
		}
		if err := st.send(typ, version, names, nil); err != nil {
			return err
		}
		c.expect(typ, names)
	}
	return nil
}

// expect starts a does-not-exist timer for each name of typ not known.
func (c *Client) expect(typ string, names []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, name := range names {
		key := typ + " " + name
		known := false
		switch typ {
		case endpointType:
			_, known = c.state.endpoints[name]
		case routeType:
			_, known = c.state.routes[name]
		}
		if known || c.missing[key] != nil || c.closed {
			continue
		}
		c.missing[key] = time.AfterFunc(c.resourceTimeout, func() { c.notExisting(typ, name, key) })
	}
}

// notExisting takes a resource that never came as not existing: a cluster
// without endpoints, a route configuration without routes.
func (c *Client) notExisting(typ, name, key string) {
	c.mu.Lock()
	if c.closed || c.missing[key] == nil {
		c.mu.Unlock()
		return
	}
	delete(c.missing, key)
	c.timers.Add(1)
	c.mu.Unlock()
	defer c.timers.Done()
	c.log.Warn("xds resource does not exist", "type", typeName(typ), "name", name, "after", c.resourceTimeout)
	_ = c.update(typ == endpointType, func(next *state) error {
		switch typ {
		case endpointType:
			if _, ok := next.endpoints[name]; !ok {
				next.endpoints[name] = nil
			}
		case routeType:
			if _, ok := next.routes[name]; !ok {
				next.routes[name] = &routes{name: name}
			}
		}
		return nil
	})
}

// handle applies a response and ACKs or NACKs it.
func (st *stream) handle(resp *discoverypb.DiscoveryResponse) error {
	c := st.c
	typ := resp.GetTypeUrl()
	st.nonces[typ] = resp.GetNonce()
	var err error
	switch typ {
	case clusterType:
		err = c.onClusters(resp)
	case endpointType:
		err = c.onEndpoints(resp)
	case listenerType:
		err = c.onListeners(resp)
	case routeType:
		err = c.onRoutes(resp)
	default:
		err = fmt.Errorf("type %s was not asked for", typ)
	}
	c.mu.Lock()
	if err == nil {
		c.versions[typ] = resp.GetVersionInfo()
	} else {
		c.lastNACK = err.Error()
	}
	version := c.versions[typ]
	c.mu.Unlock()
	names := st.names[typ]
	if err != nil {
		c.log.Warn("xds update refused (NACK); the last good configuration stays", "type", typeName(typ), "version", resp.GetVersionInfo(), "err", err)
	} else {
		c.log.Info("xds update accepted", "type", typeName(typ), "version", version, "resources", len(resp.GetResources()))
	}
	if err := st.send(typ, version, names, err); err != nil {
		return err
	}
	return st.subscribe()
}

// checkType refuses a resource of another type than the response's.
func checkType(resp *discoverypb.DiscoveryResponse) error {
	for i, a := range resp.GetResources() {
		if a.GetTypeUrl() != resp.GetTypeUrl() {
			return fmt.Errorf("resources[%d] is a %s in a %s response", i, a.GetTypeUrl(), typeName(resp.GetTypeUrl()))
		}
	}
	return nil
}

// onClusters applies a CDS response: the whole set of clusters.
func (c *Client) onClusters(resp *discoverypb.DiscoveryResponse) error {
	if err := checkType(resp); err != nil {
		return err
	}
	fresh := map[string]*cluster{}
	for _, a := range resp.GetResources() {
		cl, err := decodeCluster(a)
		if err != nil {
			return err
		}
		if fresh[cl.name] != nil {
			return fmt.Errorf("cluster %q: name: listed twice", cl.name)
		}
		fresh[cl.name] = cl
	}
	return c.update(false, func(next *state) error {
		for name, cl := range next.clusters {
			if fresh[name] == nil {
				next.lingering[name] = cl // drains, then goes (see lingered)
			}
		}
		for name := range fresh {
			delete(next.lingering, name)
		}
		next.clusters = fresh
		return nil
	})
}

// onEndpoints applies an EDS response: the resources it names.
func (c *Client) onEndpoints(resp *discoverypb.DiscoveryResponse) error {
	if err := checkType(resp); err != nil {
		return err
	}
	fresh := map[string][]lb.Discovered{}
	for _, a := range resp.GetResources() {
		name, ds, err := decodeAssignment(a)
		if err != nil {
			return err
		}
		fresh[name] = ds
	}
	return c.update(true, func(next *state) error {
		maps.Copy(next.endpoints, fresh)
		return nil
	})
}

// onListeners applies an LDS response: the whole set of listeners.
func (c *Client) onListeners(resp *discoverypb.DiscoveryResponse) error {
	if err := checkType(resp); err != nil {
		return err
	}
	fresh := map[string]*listener{}
	for _, a := range resp.GetResources() {
		l, err := decodeListener(a)
		if err != nil {
			return err
		}
		if fresh[l.name] != nil {
			return fmt.Errorf("listener %q: name: listed twice", l.name)
		}
		fresh[l.name] = l
	}
	return c.update(false, func(next *state) error {
		next.listeners = fresh
		return nil
	})
}

// onRoutes applies an RDS response: the resources it names.
func (c *Client) onRoutes(resp *discoverypb.DiscoveryResponse) error {
	if err := checkType(resp); err != nil {
		return err
	}
	fresh := map[string]*routes{}
	for _, a := range resp.GetResources() {
		r, err := decodeRoutes(a)
		if err != nil {
			return err
		}
		fresh[r.name] = r
	}
	return c.update(false, func(next *state) error {
		maps.Copy(next.routes, fresh)
		return nil
	})
}

// update changes the state: change edits a copy, apply (if any) takes the
// lbkit configuration it builds, and only then is the copy kept, the
// watches told and the drains of removed clusters started. An error
// leaves the state as it was.
//
// Endpoint changes (endpointsOnly) reach the groups through their
// sources, and rebuild the configuration only while a listener waits for
// endpoints.
func (c *Client) update(endpointsOnly bool, change func(next *state) error) error {
	c.updateMu.Lock()
	defer c.updateMu.Unlock()
	c.mu.Lock()
	next := c.state.clone()
	c.mu.Unlock()
	if err := change(next); err != nil {
		return err
	}
	var listeners map[string]lb.Option
	warming := false
	c.mu.Lock()
	rebuild := c.apply != nil && (!endpointsOnly || c.warming)
	c.mu.Unlock()
	if rebuild {
		opts, ls, w, refs := c.options(next)
		// The groups get their new endpoints before listeners and routes
		// send traffic to them, and a cluster the old or the new listeners
		// use does not drain meanwhile.
		for n := range refs {
			if next.refs == nil {
				next.refs = map[string]bool{}
			}
			next.refs[n] = true
		}
		c.pushState(next)
		if err := c.apply(opts); err != nil {
			c.pushAll() // back to what stays in force
			return fmt.Errorf("lbkit refused the configuration: %w", err)
		}
		listeners, warming, next.refs = ls, w, refs
	}
	c.mu.Lock()
	c.state = next
	if rebuild {
		c.applied, c.warming, c.appliedRefs = listeners, warming, c.pendingRefs
	}
	// A removed cluster drains from when no listener uses it.
	for name := range next.lingering {
		if c.linger[name] == nil && !next.refs[name] && !c.closed {
			c.linger[name] = time.AfterFunc(c.drain, func() { c.lingered(name) })
		}
	}
	for name, t := range c.linger {
		if next.lingering[name] == nil || next.refs[name] {
			t.Stop()
			delete(c.linger, name)
		}
	}
	for key, t := range c.missing {
		typ, name, _ := cutKey(key)
		known := false
		switch typ {
		case endpointType:
			_, known = next.endpoints[name]
		case routeType:
			_, known = next.routes[name]
		}
		if known {
			t.Stop()
			delete(c.missing, key)
		}
	}
	c.mu.Unlock()
	c.pushAll()
	return nil
}

func cutKey(key string) (typ, name string, ok bool) {
	for i := range len(key) {
		if key[i] == ' ' {
			return key[:i], key[i+1:], true
		}
	}
	return key, "", false
}

// lingered removes a cluster whose drain ended, unless a listener still
// names it (then its empty group stays, answering as a cluster without
// endpoints does).
func (c *Client) lingered(name string) {
	c.mu.Lock()
	if c.closed || c.linger[name] == nil {
		c.mu.Unlock()
		return
	}
	delete(c.linger, name)
	c.timers.Add(1)
	c.mu.Unlock()
	defer c.timers.Done()
	if err := c.update(false, func(next *state) error {
		delete(next.lingering, name)
		return nil
	}); err != nil {
		c.log.Error("remove a drained cluster", "cluster", name, "err", err)
		return
	}
	c.log.Info("removed cluster drained", "cluster", name)
}

// options builds the lbkit configuration of a state: a target group per
// cluster (lingering ones too, and an empty one for a cluster a route
// names that CDS does not have, as Envoy answers 503 for it), and a
// listener per listener whose routes have arrived. A listener whose routes
// or clusters are not ready (routes not arrived; a cluster whose
// endpoints have not arrived, as Envoy warms clusters) keeps the options
// it was last applied with, or waits if it never was: the options by
// name are returned for that, and whether a listener is waiting.
func (c *Client) options(s *state) (opts []lb.Option, byName map[string]lb.Option, warming bool, refs map[string]bool) {
	protos := groupProtocols(s.listeners, s.routes)
	names := map[string]bool{}
	for n := range s.clusters {
		names[n] = true
	}
	for n := range s.lingering {
		names[n] = true
	}
	for n := range protos {
		names[n] = true
	}
	for _, name := range slices.Sorted(maps.Keys(names)) {
		cl := s.clusters[name]
		if cl == nil {
			cl = s.lingering[name]
		}
		gopts := []lb.GroupOption{lb.WithDeregistrationDelay(c.drain)}
		if cl != nil {
			gopts = append(gopts, lb.WithAlgorithm(cl.algo), lb.WithDiscovery(c.Cluster(name), 0))
			if cl.health != nil {
				gopts = append(gopts, lb.WithHealthCheck(*cl.health))
			} else {
				gopts = append(gopts, lb.WithoutHealthCheck())
			}
		} else {
			gopts = append(gopts, lb.WithoutHealthCheck())
		}
		opts = append(opts, lb.WithTargetGroup(name, cmp.Or(protos[name], lb.TCP), gopts...))
	}
	c.mu.Lock()
	applied, appliedRefs := c.applied, c.appliedRefs
	c.mu.Unlock()
	byName, refs = map[string]lb.Option{}, map[string]bool{}
	newRefs := map[string][]string{}
	for _, name := range slices.Sorted(maps.Keys(s.listeners)) {
		l := s.listeners[name]
		var o lb.Option
		var uses []string
		switch {
		case l.tcp != "":
			if !s.warm(l.tcp) {
				o, uses, warming = applied[name], appliedRefs[name], true
				break
			}
			o, uses = lb.WithListener(name, lb.TCP, l.addr, lb.WithForwardTo(l.tcp)), []string{l.tcp}
		default:
			r := l.inline
			if r == nil {
				r = s.routes[l.rds]
			}
			if r == nil || slices.ContainsFunc(r.clusters, func(c string) bool { return !s.warm(c) }) {
				o, uses, warming = applied[name], appliedRefs[name], true
				break
			}
			o = lb.WithListener(name, lb.HTTP, l.addr, lb.WithRules(r.rules...),
				lb.WithDefaultFixed(proxy.FixedResponse{Status: 404, Body: "no route\n"}))
			uses = r.clusters
		}
		if o != nil {
			byName[name] = o
			newRefs[name] = uses
			opts = append(opts, o)
			for _, u := range uses {
				refs[u] = true
			}
		}
	}
	c.mu.Lock()
	c.pendingRefs = newRefs
	c.mu.Unlock()
	return opts, byName, warming, refs
}

// warm reports whether a cluster may take traffic: its endpoints arrived
// (or were found not to exist), or it is static, or CDS does not have it
// (it answers as a cluster without endpoints, as Envoy's missing clusters
// do).
func (s *state) warm(name string) bool {
	cl := s.clusters[name]
	if cl == nil {
		cl = s.lingering[name]
	}
	if cl == nil || cl.eds == "" {
		return true
	}
	_, ok := s.endpoints[cl.eds]
	return ok
}

// Cluster returns the endpoints of the named cluster as a discovery
// source, for lb.WithDiscovery: a Watcher whose groups follow the cluster's
// endpoints as EDS sends them (DRAINING endpoints drain, UNHEALTHY and
// TIMEOUT ones are left out, localities give zones and priorities). The
// Client must know the cluster from CDS. Sources of one Client and name
// are equal, so a Reconfigure does not restart them.
func (c *Client) Cluster(name string) lb.Watcher { return &clusterSource{c: c, name: name} }

// clusterSource is a cluster's endpoints as an lb.Watcher.
type clusterSource struct {
	c    *Client
	name string
}

// watch is one running Watch of a cluster.
type watch struct {
	push    func(lb.Update)
	last    []lb.Discovered
	sent    bool // last was pushed
	errSent bool // a disconnection was pushed and not cleared
}

// Targets returns the cluster's endpoints now.
func (s *clusterSource) Targets(context.Context) ([]lb.Discovered, error) {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	ds, ok := s.c.state.targets(s.name)
	if !ok {
		return nil, fmt.Errorf("%s: no endpoints from the control plane yet", s)
	}
	return slices.Clone(ds), nil
}

// String returns e.g. "xds cluster web from xds.internal:18000".
func (s *clusterSource) String() string {
	return fmt.Sprintf("xds cluster %s from %s", s.name, s.c.boot.Servers[0].URI)
}

// Equal reports whether o follows the same cluster of the same Client.
func (s *clusterSource) Equal(o lb.Source) bool {
	x, ok := o.(*clusterSource)
	return ok && x.c == s.c && x.name == s.name
}

// Watch pushes the cluster's endpoints now and after every change, until
// ctx ends.
func (s *clusterSource) Watch(ctx context.Context, push func(lb.Update)) error {
	c := s.c
	w := &watch{push: push}
	c.pushMu.Lock()
	c.mu.Lock()
	if c.watches[s.name] == nil {
		c.watches[s.name] = map[*watch]bool{}
	}
	c.watches[s.name][w] = true
	ds, known := c.state.targets(s.name)
	down := c.discErr
	c.mu.Unlock()
	w.deliver(ds, known, down)
	c.pushMu.Unlock()

	<-ctx.Done()
	c.pushMu.Lock()
	c.mu.Lock()
	delete(c.watches[s.name], w)
	if len(c.watches[s.name]) == 0 {
		delete(c.watches, s.name)
	}
	c.mu.Unlock()
	c.pushMu.Unlock()
	return nil
}

// deliver pushes what changed for a watch: the endpoints when known and
// new (or after a disconnection), a disconnection once. pushMu is held.
func (w *watch) deliver(ds []lb.Discovered, known bool, down error) {
	if down != nil {
		if !w.errSent {
			w.errSent = true
			w.push(lb.Update{Err: fmt.Errorf("xds stream down: %w", down)})
		}
		return
	}
	if !known {
		return
	}
	if w.sent && !w.errSent && slices.Equal(ds, w.last) {
		return
	}
	w.last, w.sent, w.errSent = slices.Clone(ds), true, false
	w.push(lb.Update{Targets: slices.Clone(ds)})
}

// pushAll tells every watch what changed.
func (c *Client) pushAll() { c.pushState(nil) }

// pushState tells every watch the endpoints of st (nil: the accepted
// state).
func (c *Client) pushState(st *state) {
	c.pushMu.Lock()
	defer c.pushMu.Unlock()
	type item struct {
		w     *watch
		ds    []lb.Discovered
		known bool
	}
	c.mu.Lock()
	if st == nil {
		st = c.state
	}
	var items []item
	for name, ws := range c.watches {
		ds, known := st.targets(name)
		for w := range ws {
			items = append(items, item{w, ds, known})
		}
	}
	down := c.discErr
	c.mu.Unlock()
	for _, it := range items {
		it.w.deliver(it.ds, it.known, down)
	}
}

// Compile-time check that a cluster source is a Watcher.
var _ lb.Watcher = (*clusterSource)(nil)
