package proxy

import (
	"cmp"
	"crypto/tls"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/lbkit/lbkit/balancer"
	"github.com/lbkit/lbkit/sticky"
)

// Upstream is a target group as the proxies see it: a balancer that picks
// targets, an optional session-persistence policy, live counters per target,
// and the registry of open connections that draining closes.
//
// Several listeners may share one Upstream; the lb package makes one per
// target group. Set Name, Balancer and OnResult before first use and do not
// change them afterwards. Everything that changes at run time goes through
// the Balancer (targets, weights, health, algorithm), SetSticky, Drain and
// Undrain, all safe while traffic flows.
type Upstream struct {
	// Name identifies the group in logs, stats and errors.
	Name string

	// Balancer picks targets. Required.
	Balancer *balancer.Balancer

	// TLS, if set, makes connections to targets TLS (end-to-end HTTPS, or
	// TLS to targets behind a TCP listener). An empty ServerName is filled
	// per target from the host of its address; InsecureSkipVerify is the
	// explicit opt-out of verification. Nil means plain TCP to targets.
	TLS *tls.Config

	// ProxyProtocol, if 1 or 2, makes the TCP proxy send a PROXY protocol
	// header of that version at the start of every target connection, so
	// targets learn the client's address. 0 sends none. L7 ignores it (it
	// sends X-Forwarded-For instead).
	ProxyProtocol int

	// OnResponse, if set, is called for every response a target sends the
	// HTTP proxy, with its status code and the time from sending the
	// request to receiving the response header: for users who keep their
	// own histograms. It is called on the request's goroutine, must be
	// quick and must not block.
	OnResponse func(targetID string, status int, d time.Duration)

	// OnResult, if set, receives passive health signals: the outcome of
	// every connection attempt to a target (L4 and L7) and of every request
	// (L7), nil for a success. It is called on the data path from many
	// goroutines, so it must be quick and must not block; the lb package
	// feeds it to a healthcheck.Monitor.
	OnResult func(targetID string, err error)

	sticky  atomic.Pointer[sticky.Policy] // nil: no stickiness
	targets sync.Map                      // target ID → *targetState
	lim     atomic.Pointer[Limits]        // nil: the defaults
	pending atomic.Int64                  // requests waiting for a connection (circuit breaker)

	// afterFunc is time.AfterFunc, replaced in tests to fire drain timers
	// at chosen moments.
	afterFunc func(time.Duration, func()) *time.Timer
}

// Limits are a target group's circuit breakers, as Envoy and HAProxy have
// them: they bound what the HTTP proxies ask of each target, so that a
// flood of requests (an HTTP/2 rapid reset, a slow target) cannot turn
// into a storm of connections. Zero fields take their defaults.
type Limits struct {
	// MaxConnsPerTarget bounds the connections the HTTP proxies keep open
	// to each target, idle ones included. A request that needs one more
	// waits for one to free up, up to the connect timeout, counted as
	// pending; then 503. Default: DefaultMaxConnsPerTarget. Negative: no
	// limit.
	MaxConnsPerTarget int
	// MaxPendingRequests bounds the requests of the group waiting for a
	// connection at once; more are answered 503 at once. Default:
	// DefaultMaxPendingRequests.
	MaxPendingRequests int
}

// Defaults of Limits: Envoy's.
const (
	DefaultMaxConnsPerTarget  = 1024
	DefaultMaxPendingRequests = 1024
)

func (l Limits) withDefaults() Limits {
	if l.MaxConnsPerTarget == 0 {
		l.MaxConnsPerTarget = DefaultMaxConnsPerTarget
	}
	if l.MaxPendingRequests <= 0 {
		l.MaxPendingRequests = DefaultMaxPendingRequests
	}
	return l
}

// SetLimits sets the group's circuit breakers. It applies to the next
// request.
func (u *Upstream) SetLimits(l Limits) {
	l = l.withDefaults()
	u.lim.Store(&l)
}

// limits returns the group's circuit breakers.
func (u *Upstream) limits() Limits {
	if l := u.lim.Load(); l != nil {
		return *l
	}
	return Limits{}.withDefaults()
}

// SetSticky sets the session-persistence policy; nil turns stickiness off.
// It applies to the next new connection or request.
func (u *Upstream) SetSticky(p sticky.Policy) {
	if p == nil {
		u.sticky.Store(nil)
		return
	}
	u.sticky.Store(&p)
}

// Sticky returns the session-persistence policy, or nil.
func (u *Upstream) Sticky() sticky.Policy {
	if p := u.sticky.Load(); p != nil {
		return *p
	}
	return nil
}

// Choice is the target chosen for one connection or request.
type Choice struct {
	// Pick is the balancer's pick: Target, and Done to call when the
	// connection or request ends.
	balancer.Pick
	// Sticky reports that the target is the session's remembered one.
	Sticky bool
	st     *targetState
}

// Choose picks the target for a new connection or request: the session's
// remembered target when the sticky policy has one that may serve and is not
// excluded, else the balancer's pick. info.Exclude lists targets already
// tried for this connection. req is what stickiness keys on at L7 (the
// request's cookies; its Source is info.Source), nil at L4. The error wraps
// balancer.ErrNoTarget and names the group.
func (u *Upstream) Choose(info balancer.PickInfo, req *sticky.Request) (Choice, error) {
	if p := u.Sticky(); p != nil {
		if id, ok := p.Lookup(stickyRequest(info, req)); ok && !slices.Contains(info.Exclude, id) {
			if pick, ok := u.Balancer.PickTarget(id); ok {
				return Choice{Pick: pick, Sticky: true, st: u.state(id)}, nil
			}
		}
	}
	pick, err := u.Balancer.Pick(info)
	if err != nil {
		return Choice{}, fmt.Errorf("proxy: target group %q: %w", u.Name, err)
	}
	return Choice{Pick: pick, st: u.state(pick.Target.ID)}, nil
}

// Remember tells the sticky policy, if any, that the connection or request
// went to c's target. req is as for Choose; resp is the response header on
// its way to the client at L7 (where a cookie policy sets or learns its
// cookie), nil at L4.
func (u *Upstream) Remember(info balancer.PickInfo, req *sticky.Request, c Choice, resp sticky.Response) {
	if p := u.Sticky(); p != nil {
		p.Remember(stickyRequest(info, req), c.Target.ID, resp)
	}
}

// stickyRequest is what a policy sees of a connection or request.
func stickyRequest(info balancer.PickInfo, req *sticky.Request) sticky.Request {
	if req == nil {
		return sticky.Request{Source: info.Source}
	}
	r := *req
	r.Source = info.Source
	return r
}

// report passes a passive health signal to OnResult.
func (u *Upstream) report(id string, err error) {
	if u.OnResult != nil {
		u.OnResult(id, err)
	}
}

// state returns the live state of target id, creating it on first use.
func (u *Upstream) state(id string) *targetState {
	if v, ok := u.targets.Load(id); ok {
		return v.(*targetState)
	}
	v, _ := u.targets.LoadOrStore(id, &targetState{id: id, up: u, hot: make([]targetStripe, stripeCount())})
	return v.(*targetState)
}

// targetState is the live state of one target within an Upstream: counters
// updated by the proxies, and the open connections draining may close.
type targetState struct {
	id string
	up *Upstream

	activeConns   atomic.Int64  // open L4 connections
	conns         atomic.Uint64 // L4 connections forwarded
	connectErrors atomic.Uint64 // failed connection attempts (L4 and L7)
	bytesIn       atomic.Uint64 // client → target
	bytesOut      atomic.Uint64 // target → client

	hot            []targetStripe // L7 requests sent, in flight, responses by class and their times
	openConns      atomic.Int64   // HTTP connections open to the target (all pools)
	breakerRefused atomic.Uint64  // requests the circuit breaker refused
	waiting        atomic.Int32   // len(waiters), read without waitMu
	loopWaiters    atomic.Int32   // event loops' requests waiting for a connection (evloop.waitSlot)

	waitMu  sync.Mutex      // guards waiters
	waiters []chan struct{} // requests waiting for a connection, oldest first

	mu       sync.Mutex            // guards the fields below
	open     map[*tracked]struct{} // open connections and requests
	deadline time.Time             // drain deadline; zero when not draining
	timer    *time.Timer           // fires at deadline
	drained  bool                  // deadline passed: new tracks close at once
}

// tracked is one open connection or request, closed if the drain deadline
// passes before it ends.
type tracked struct{ c io.Closer }

// track registers c until release is called. If the target's drain
// deadline has already passed, c is closed at once.
func (st *targetState) track(c io.Closer) (release func()) {
	t := &tracked{c: c}
	st.mu.Lock()
	if st.drained {
		st.mu.Unlock()
		c.Close()
		return func() {}
	}
	if st.open == nil {
		st.open = make(map[*tracked]struct{})
	}
	st.open[t] = struct{}{}
	st.mu.Unlock()
	return func() {
		st.mu.Lock()
		delete(st.open, t)
		st.mu.Unlock()
	}
}

// stripe returns the stripe of st's counters a request writes: the one
// matching the proxy's stripe hs, so that a connection's requests stay on
// one line of each.
func (st *targetState) stripe(hs *httpStripe) *targetStripe {
	n := len(st.hot)
	if n == 1 {
		return &st.hot[0]
	}
	return &st.hot[int(uintptr(unsafe.Pointer(hs))>>7)&(n-1)]
}

// activeRequests returns the L7 requests in flight to the target.
func (st *targetState) activeRequests() (n int64) {
	for i := range st.hot {
		n += st.hot[i].active.Load()
	}
	return n
}

// observeStatus counts one L7 response of the given status and duration.
func (st *targetState) observeStatus(ts *targetStripe, code int, d time.Duration) {
	if i := statusIndex(code); i >= 0 {
		ts.status[i].Add(1)
	}
	ts.respNanos.Add(uint64(max(d, 0)))
	ts.responses.Add(1)
	if f := st.up.OnResponse; f != nil {
		f(st.id, code, d)
	}
}

// Drain starts draining target id: after delay, every connection and
// request still open to it through this Upstream is closed, and any that
// reaches it later (a sticky session) is closed at once. New connections do
// not reach it meanwhile because the caller has set its weight to 0 or
// removed it from the Balancer, which is what makes it a drain. A delay of 0
// closes everything now. Calling Drain again moves the deadline.
func (u *Upstream) Drain(id string, delay time.Duration) {
	st := u.state(id)
	st.mu.Lock()
	defer st.mu.Unlock()
	st.stopDrainLocked()
	st.deadline = time.Now().Add(delay)
	if delay <= 0 {
		st.closeAllLocked()
		return
	}
	// st.mu is held until t is set, so the callback always sees it; a
	// timer replaced meanwhile (Drain again, Undrain) does nothing.
	after := u.afterFunc
	if after == nil {
		after = time.AfterFunc
	}
	var t *time.Timer
	t = after(delay, func() {
		st.mu.Lock()
		defer st.mu.Unlock()
		if st.timer == t {
			st.timer = nil
			st.closeAllLocked()
		}
	})
	st.timer = t
}

// Undrain cancels a drain of target id (it was registered again): open
// connections continue and new ones are kept.
func (u *Upstream) Undrain(id string) {
	st := u.state(id)
	st.mu.Lock()
	defer st.mu.Unlock()
	st.stopDrainLocked()
	st.deadline = time.Time{}
}

// stopDrainLocked cancels a pending drain; st.mu is held.
func (st *targetState) stopDrainLocked() {
	if st.timer != nil {
		st.timer.Stop()
		st.timer = nil
	}
	st.drained = false
}

// closeAllLocked closes every open connection; st.mu is held. Closers must
// not call back into release synchronously (the proxies' closers only close
// sockets; the goroutines that own the connections release them).
func (st *targetState) closeAllLocked() {
	st.drained = true
	for t := range st.open {
		t.c.Close()
	}
	clear(st.open)
}

// TargetStats are one target's live counters within an Upstream.
type TargetStats struct {
	// ID is the target's ID.
	ID string `json:"id"`
	// ActiveConnections is the number of open L4 connections.
	ActiveConnections int64 `json:"active_connections"`
	// Connections counts L4 connections forwarded to the target.
	Connections uint64 `json:"connections"`
	// ConnectErrors counts failed connection attempts (refused, timed out).
	ConnectErrors uint64 `json:"connect_errors"`
	// BytesIn and BytesOut count bytes from clients to the target and
	// back.
	BytesIn  uint64 `json:"bytes_in"`
	BytesOut uint64 `json:"bytes_out"`
	// ActiveRequests is the number of L7 requests in flight.
	ActiveRequests int64 `json:"active_requests"`
	// TargetConnections is the number of connections the HTTP proxies
	// have open to the target, idle ones included (bounded by
	// Limits.MaxConnsPerTarget).
	TargetConnections int64 `json:"target_connections"`
	// BreakerRefused counts requests the circuit breaker refused (503):
	// the target was at its connection limit and no connection freed up
	// in time, or too many requests waited.
	BreakerRefused uint64 `json:"breaker_refused"`
	// Requests counts L7 requests sent to the target.
	Requests uint64 `json:"requests"`
	// Status counts L7 responses from the target by class:
	// Status[0] is 1xx ... Status[4] is 5xx.
	Status StatusClasses `json:"status"`
	// AvgResponseTime is the mean time from sending a request to receiving
	// the response header, over all L7 responses; 0 before the first.
	AvgResponseTime time.Duration `json:"avg_response_time_ns"`
	// DrainDeadline is when open connections are closed, if the target is
	// draining; zero otherwise.
	DrainDeadline time.Time `json:"drain_deadline,omitzero"`
}

// UpstreamStats is a snapshot of an Upstream's per-target counters.
type UpstreamStats struct {
	// Name is the Upstream's name.
	Name string `json:"name"`
	// Targets lists every target that saw traffic or is draining, sorted by
	// ID.
	Targets []TargetStats `json:"targets"`
}

// Stats returns a snapshot of the per-target counters. Targets that left
// the Balancer and have nothing open and no drain pending are forgotten here,
// so a group whose targets churn does not grow without bound.
func (u *Upstream) Stats() UpstreamStats {
	out := UpstreamStats{Name: u.Name}
	u.targets.Range(func(k, v any) bool {
		st := v.(*targetState)
		ts := TargetStats{
			ID:                st.id,
			ActiveConnections: st.activeConns.Load(),
			Connections:       st.conns.Load(),
			ConnectErrors:     st.connectErrors.Load(),
			BytesIn:           st.bytesIn.Load(),
			BytesOut:          st.bytesOut.Load(),
			ActiveRequests:    st.activeRequests(),
			TargetConnections: st.openConns.Load(),
			BreakerRefused:    st.breakerRefused.Load(),
		}
		var nanos, n uint64
		for i := range st.hot {
			s := &st.hot[i]
			ts.Requests += s.requests.Load()
			for k := range ts.Status {
				ts.Status[k] += s.status[k].Load()
			}
			nanos += s.respNanos.Load()
			n += s.responses.Load()
		}
		if n > 0 {
			ts.AvgResponseTime = time.Duration(nanos / n)
		}
		st.mu.Lock()
		ts.DrainDeadline = st.deadline
		idle := len(st.open) == 0 && st.timer == nil
		st.mu.Unlock()
		if _, held := u.Balancer.Target(st.id); !held && idle && ts.ActiveConnections == 0 && ts.ActiveRequests == 0 && ts.TargetConnections == 0 {
			u.targets.CompareAndDelete(k, v)
		}
		out.Targets = append(out.Targets, ts)
		return true
	})
	slices.SortFunc(out.Targets, func(a, b TargetStats) int { return cmp.Compare(a.ID, b.ID) })
	return out
}
