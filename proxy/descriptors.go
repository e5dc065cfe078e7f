package proxy

import (
	"errors"
	"sync/atomic"
	"time"
)

// DefaultUnrepliedTimeout is the idle timeout of a UDP flow that is still
// unreplied: its target has not answered, or the flow has seen no traffic
// since 2 s after the first answer (conntrack's nf_conntrack_udp_timeout,
// 30 s). Such flows are also the first evicted when the flow table or the
// descriptor budget is full. NewFlowTable sets it; a
// flowtable.WithUnrepliedTimeout option given to it overrides it.
const DefaultUnrepliedTimeout = 30 * time.Second

// ErrDescriptors means a new connection or flow was refused because the
// descriptor budget (Descriptors) was spent and no unreplied UDP flow could
// be evicted to make room.
var ErrDescriptors = errors.New("proxy: file descriptor budget exhausted")

// What one client costs in file descriptors.
const (
	// TCPDescriptors is a TCP or TLS connection's cost: the client's
	// socket and the target's.
	TCPDescriptors = 2
	// UDPDescriptors is a UDP flow's cost: its connected socket to the
	// target (the listener's socket is shared by every flow).
	UDPDescriptors = 1
	// HTTPDescriptors is an HTTP client connection's cost: its socket.
	// Connections to targets are pooled and shared by every client and
	// are not counted one by one: the reserve left out of the budget
	// covers them.
	HTTPDescriptors = 1
)

// Descriptors is a budget of file descriptors shared by the proxies of one
// load balancer, so that flows never take the descriptors the process
// needs for anything else (listening sockets, health checks, the target
// connection pools, an admin endpoint, logs). Each proxy whose Descriptors
// field points to it takes a client's cost when it accepts the client or
// makes the flow (TCPDescriptors, UDPDescriptors, HTTPDescriptors) and gives
// it back when the connection or flow ends.
//
// When the budget is spent, an unreplied UDP flow of its flow table is
// evicted to make room, as a full flow table does; if there is none, the new
// connection or flow is refused (reset, or the datagram dropped), counted in
// the proxy's RejectedDescriptors and reported to OnRefuse with
// RefusedDescriptors. Accounting is two atomic operations per connection or
// flow and allocates nothing.
//
// A nil *Descriptors is valid and counts nothing: a proxy whose Descriptors
// field is nil has no budget.
type Descriptors struct {
	limit   atomic.Int64
	used    atomic.Int64
	refused atomic.Uint64
	evicted atomic.Uint64
	flows   *FlowTable
}

// NewDescriptors returns a budget of limit descriptors. flows, if not nil,
// is the flow table whose unreplied UDP flows are evicted when the budget is
// spent; it should be the table of the UDP proxies that share the budget.
func NewDescriptors(limit int, flows *FlowTable) *Descriptors {
	d := &Descriptors{flows: flows}
	d.limit.Store(int64(limit))
	return d
}

// SetLimit changes the budget. Descriptors already taken above a lower
// limit stay taken; new clients are refused until enough are given back.
func (d *Descriptors) SetLimit(n int) { d.limit.Store(int64(n)) }

// DescriptorStats are a budget's numbers.
type DescriptorStats struct {
	// Limit is the budget; InUse what the proxies hold of it now.
	Limit int   `json:"limit"`
	InUse int64 `json:"in_use"`
	// Refused counts connections and flows refused because the budget was
	// spent; Evicted counts unreplied UDP flows evicted to make room.
	Refused uint64 `json:"refused"`
	Evicted uint64 `json:"evicted"`
}

// Stats returns the budget's numbers; it reads atomics only. A nil budget
// returns zero.
func (d *Descriptors) Stats() DescriptorStats {
	if d == nil {
		return DescriptorStats{}
	}
	return DescriptorStats{Limit: int(d.limit.Load()), InUse: d.used.Load(), Refused: d.refused.Load(), Evicted: d.evicted.Load()}
}

// take takes n descriptors, evicting unreplied UDP flows to make room when
// the budget is spent, or counts a refusal and reports false. What is in
// use never exceeds the limit (unless SetLimit lowered it): a taker claims
// its descriptors only where they fit, so a refused or evicting one never
// shows in InUse. A descriptor an eviction gives back may go to another
// taker first; this one then evicts again, 4n times at most.
func (d *Descriptors) take(n int64) bool {
	if d == nil {
		return true
	}
	for evictions := int64(0); ; {
		used := d.used.Load()
		if used+n <= d.limit.Load() {
			if d.used.CompareAndSwap(used, used+n) {
				return true
			}
			continue
		}
		// An evicted flow gives its descriptor back before Evict returns.
		if evictions == 4*n || d.flows == nil || !d.flows.t.Evict() {
			d.refused.Add(1)
			return false
		}
		evictions++
		d.evicted.Add(1)
	}
}

// release gives n descriptors back.
func (d *Descriptors) release(n int64) {
	if d != nil {
		d.used.Add(-n)
	}
}
