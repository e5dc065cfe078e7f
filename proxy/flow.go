package proxy

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/lbkit/lbkit/balancer"
	"github.com/lbkit/lbkit/flowtable"
)

// Errors of the L4 proxies. Refusals reach the OnRefuse hooks wrapped with
// context; test them with errors.Is.
var (
	// ErrProxyClosed is returned by TCP.Serve and UDP.Serve after Shutdown or
	// Close, like http.ErrServerClosed.
	ErrProxyClosed = errors.New("proxy: closed")

	// ErrDenied means the listener's ACL refused the client's address.
	ErrDenied = errors.New("proxy: client address denied by the listener's ACL")

	// ErrUntrustedProxyHeader means a client outside the listener's trusted
	// proxies sent a PROXY protocol header: it tried to choose the client
	// address the targets see.
	ErrUntrustedProxyHeader = errors.New("proxy: PROXY protocol header from an untrusted source")

	// ErrBadProxyHeader means a trusted source sent a missing, malformed or
	// late PROXY protocol header.
	ErrBadProxyHeader = errors.New("proxy: missing or malformed PROXY protocol header")

	// ErrNoUpstream means the listener has no target group (SetUpstream was
	// never called, or with nil).
	ErrNoUpstream = errors.New("proxy: no target group")

	// ErrConnect means every attempt to connect to a target failed.
	ErrConnect = errors.New("proxy: could not connect to any target")
)

// RefuseReason says why an L4 proxy refused a client, a connection or a
// datagram.
type RefuseReason uint8

// The reasons for a Refusal.
const (
	// RefusedACL: the listener's ACL denied the client (ErrDenied).
	RefusedACL RefuseReason = iota + 1
	// RefusedTableFull: the flow table was full (flowtable.ErrFull).
	RefusedTableFull
	// RefusedSourceLimit: the client's address had its maximum number of
	// flows (flowtable.ErrSourceLimit).
	RefusedSourceLimit
	// RefusedNoTarget: no target could be picked (balancer.ErrNoTarget,
	// ErrNoUpstream).
	RefusedNoTarget
	// RefusedConnect: every connection attempt failed (ErrConnect).
	RefusedConnect
	// RefusedProxyHeader: a PROXY protocol header was refused
	// (ErrUntrustedProxyHeader, ErrBadProxyHeader).
	RefusedProxyHeader
	// RefusedTLS: the client's TLS handshake failed.
	RefusedTLS
	// RefusedDescriptors: the descriptor budget was spent
	// (ErrDescriptors).
	RefusedDescriptors
)

var refuseReasonNames = [...]string{
	RefusedACL:         "acl",
	RefusedTableFull:   "table_full",
	RefusedSourceLimit: "source_limit",
	RefusedNoTarget:    "no_target",
	RefusedConnect:     "connect",
	RefusedProxyHeader: "proxy_header",
	RefusedTLS:         "tls",
	RefusedDescriptors: "descriptors",
}

// String returns the reason's metric-style name, e.g. "table_full".
func (r RefuseReason) String() string {
	if int(r) < len(refuseReasonNames) && refuseReasonNames[r] != "" {
		return refuseReasonNames[r]
	}
	return fmt.Sprintf("RefuseReason(%d)", r)
}

// Refusal describes one refused client connection (TCP) or datagram (UDP),
// passed to the OnRefuse hooks.
type Refusal struct {
	// Proto is flowtable.TCP or flowtable.UDP.
	Proto flowtable.Proto
	// Client is the client's address as the socket saw it.
	Client netip.AddrPort
	// Reason classifies the refusal.
	Reason RefuseReason
	// Err says what happened, wrapping one of the sentinel errors.
	Err error
}

// flow is the value the L4 proxies keep per flow in a FlowTable: a
// *tcpFlow or a *udpFlow.
type flow interface {
	// expire closes the flow after its idle timeout; TCP resets both
	// connections. It runs on the table's sweeper and must not block.
	expire()
	// evict closes a flow evicted for a new one (unreplied UDP flows
	// only).
	evict()
	// idle reports how long ago the flow last moved data by the kernel's
	// reckoning, for flows whose traffic the table does not see (spliced
	// TCP); ok is false for flows the table sees (UDP).
	idle() (d time.Duration, ok bool)
}

// FlowTable is the flow table of the L4 proxies: every TCP connection and
// UDP client address forwarded by the proxies that share it, with idle
// timeouts, a capacity, an optional per-source limit and the reference
// counters (NewFlowCount, ActiveFlowCount, RejectedFlowCount per
// protocol).
//
// The reference load balancer has one flow table per load balancer, so the
// lb package makes one FlowTable and gives it to every TCP and UDP proxy of
// a load balancer; a proxy whose Flows field is nil makes a private one. It
// wraps a flowtable.Table whose expiry callback closes the expired flow
// (resetting TCP connections) and whose idle check asks the kernel when a
// spliced TCP connection last moved data (TCP_INFO), so that the table's
// idle timeout applies although the proxy never sees individual reads.
type FlowTable struct {
	t *flowtable.Table[flow]
}

// NewFlowTable returns a flow table configured by opts (capacity, per-source
// limit, idle timeouts per protocol, sweep interval, clock), or an error
// listing every invalid option. The expiry callback and idle check are the
// proxies' own; passing flowtable.WithOnExpire or flowtable.WithIdleCheck
// has no effect. UDP flows are unreplied until their target answers, as
// conntrack treats them: DefaultUnrepliedTimeout unless opts say otherwise
// (flowtable.WithUnrepliedTimeout; 0 turns it off), and the first evicted
// when the table or the descriptor budget is full. Close it after the
// proxies that use it.
func NewFlowTable(opts ...flowtable.Option) (*FlowTable, error) {
	opts = append([]flowtable.Option{flowtable.WithUnrepliedTimeout(flowtable.UDP, DefaultUnrepliedTimeout)}, opts...)
	opts = append(opts,
		flowtable.WithOnExpire(func(_ flowtable.Key, f flow) { f.expire() }),
		flowtable.WithOnEvict(func(_ flowtable.Key, f flow) { f.evict() }),
		flowtable.WithIdleCheck(func(_ flowtable.Key, f flow) (time.Duration, bool) { return f.idle() }),
	)
	t, err := flowtable.New[flow](opts...)
	if err != nil {
		return nil, fmt.Errorf("proxy: flow table: %w", err)
	}
	return &FlowTable{t: t}, nil
}

// Stats returns the table's counters per protocol.
func (ft *FlowTable) Stats() flowtable.Stats { return ft.t.Stats() }

// Len returns the number of flows in the table.
func (ft *FlowTable) Len() int { return ft.t.Len() }

// SetIdleTimeout sets the idle timeout of protocol p's new flows; flows
// already in the table keep theirs.
func (ft *FlowTable) SetIdleTimeout(p flowtable.Proto, d time.Duration) error {
	return ft.t.SetIdleTimeout(p, d)
}

// IdleTimeout returns the idle timeout of protocol p's new flows.
func (ft *FlowTable) IdleTimeout(p flowtable.Proto) time.Duration { return ft.t.IdleTimeout(p) }

// Sweep expires the flows that are due at now; it is for tables made with
// flowtable.WithManualSweep (tests, or a program driving several tables
// from its own loop). It returns how many flows expired.
func (ft *FlowTable) Sweep(now time.Time) int { return ft.t.Sweep(now) }

// Close stops the table's sweeper. Close the proxies first: afterwards no
// flow expires and no new flow is admitted.
func (ft *FlowTable) Close() error { return ft.t.Close() }

// refuseReasonOf classifies a flow-table admission error.
func refuseReasonOf(err error) RefuseReason {
	switch {
	case errors.Is(err, flowtable.ErrSourceLimit):
		return RefusedSourceLimit
	default:
		return RefusedTableFull
	}
}

// CloseReason says why an L4 flow ended.
type CloseReason uint8

// The reasons a flow ends.
const (
	// ClosedByClient: the client closed its side first (TCP; the target
	// then finished its answer and closed too).
	ClosedByClient CloseReason = iota + 1
	// ClosedByTarget: the target closed its side first (TCP).
	ClosedByTarget
	// ClosedIdle: the flow saw no traffic for its idle timeout: a TCP
	// connection is reset both ways, a UDP flow forgotten.
	ClosedIdle
	// ClosedDrain: the target's deregistration delay passed while the
	// flow was open (lb's RemoveTarget, DrainTarget).
	ClosedDrain
	// ClosedShutdown: the proxy was closed, or its Shutdown ran out of
	// time, with the flow open.
	ClosedShutdown
	// ClosedEvicted: the flow table evicted the flow for a new one (an
	// unreplied UDP flow, under pressure on the table or the descriptor
	// budget).
	ClosedEvicted
	// ClosedError: a read or write failed on either side (a reset by the
	// client or the target, say); FlowEnd.Err says which.
	ClosedError
)

var closeReasonNames = [...]string{
	ClosedByClient: "client_close",
	ClosedByTarget: "target_close",
	ClosedIdle:     "idle_timeout",
	ClosedDrain:    "drain",
	ClosedShutdown: "shutdown",
	ClosedEvicted:  "evicted",
	ClosedError:    "error",
}

// String returns the reason's log name, e.g. "idle_timeout".
func (r CloseReason) String() string {
	if int(r) < len(closeReasonNames) && closeReasonNames[r] != "" {
		return closeReasonNames[r]
	}
	return fmt.Sprintf("CloseReason(%d)", r)
}

// FlowEnd describes one L4 flow when it ends, passed to the OnFlowEnd
// hooks: a TCP connection that reached a target, or a UDP client address's
// flow. Refused connections and datagrams go to OnRefuse instead.
type FlowEnd struct {
	// Proto is flowtable.TCP or flowtable.UDP.
	Proto flowtable.Proto
	// Client is the client's address as the targets see it (a trusted
	// PROXY header's source, else the socket's peer).
	Client netip.AddrPort
	// Group is the name of the target group (Upstream.Name) the flow was
	// made in.
	Group string
	// Target is the target the flow went to last (a UDP flow may have
	// failed over from another).
	Target balancer.Target
	// Start is when the connection was accepted or the flow's first
	// datagram arrived; Duration runs from Start to the end.
	Start    time.Time
	Duration time.Duration
	// BytesIn counts the bytes from the client to the target, BytesOut
	// those back (payload only).
	BytesIn, BytesOut uint64
	// DatagramsIn and DatagramsOut count UDP datagrams each way.
	DatagramsIn, DatagramsOut uint64
	// Reason says why the flow ended.
	Reason CloseReason
	// Err is the failure, for ClosedError.
	Err error
}
