// Package flowtable is a connection-tracking table for layer-4 proxies: flows
// keyed by their 5-tuple (protocol, source address and port, destination
// address and port), each holding the proxy's own per-flow state, with
// per-protocol idle timeouts, a capacity, an optional per-source limit, and
// counters. It reproduces the flow table of a cloud network load balancer
// and is usable alone by anyone building a proxy.
//
// # Which flows belong in the table
//
// Established ones only. Like the reference load balancer, the table does
// not track half-open connections, connections closed normally, or
// connections reset by either side. So the TCP proxy inserts a flow (with
// LoadOrCreate) once the connection to the target is established, and
// deletes it (with Delete) when either side closes or resets it; the UDP
// proxy makes a flow on a client's first datagram, holding the upstream
// socket, and looks it up on every datagram after.
//
// # Reference behaviour
//
// The defaults and rules are those of the network load balancer lbkit
// models:
//   - the idle timeout is 350 s for TCP and 120 s for UDP, configurable per
//     protocol (WithIdleTimeout, SetIdleTimeout) and per flow
//     (SetFlowTimeout);
//   - a changed idle timeout applies to new flows only: each flow keeps the
//     timeout in force when it was made;
//   - traffic (a Lookup) resets a flow's idle time; when a flow stays idle
//     past its timeout it is removed and reported to the expiry callback
//     (WithOnExpire), where the TCP proxy closes both connections with RST
//     and the UDP proxy closes the upstream socket;
//   - the table has a capacity (WithMaxFlows, default DefaultMaxFlows), and
//     optionally a limit per source address (WithMaxFlowsPerSource), so
//     that spoofed sources cannot fill it; a new flow beyond either is
//     refused with ErrFull or ErrSourceLimit and counted, and an
//     established flow is never evicted to make room, except an unreplied
//     one (below);
//   - optionally, as conntrack treats UDP (WithUnrepliedTimeout), a new
//     flow is unreplied until its destination answered (Ref.Replied) and it
//     still saw traffic 2 s later: until then it has a short idle timeout
//     (conntrack's is 30 s) and it is the first to go when the table is full
//     (or its owner needs room, Evict); a two-way flow keeps its full
//     timeout and is never evicted for a new one, so spoofed one-packet
//     flows cannot push out real ones;
//   - Stats reports NewFlowCount, ActiveFlowCount, RejectedFlowCount,
//     RejectedSourceFlowCount, ExpiredFlowCount, DeletedFlowCount and
//     EvictedFlowCount, per protocol and in total.
//
// # Costs
//
// Lookup, which the UDP proxy calls per datagram, takes no lock, allocates
// nothing, and does not read the system clock: the table keeps a coarse
// clock, advanced once per sweep interval (default 1 s), and a lookup
// stamps the flow with it. The table is split into shards by the key's
// hash; new flows, deletions and expiry lock one shard. There is no
// goroutine or timer per flow: one sweeper goroutine per table (stopped by
// Close) visits a timing wheel each interval and touches only the flows
// that are due, plus refreshed ones about once per timeout; it locks one
// shard at a time for a bounded batch of flows and never holds a lock while
// calling the expiry callback. A flow costs under 100 bytes beyond its
// value. An owner that keeps a Ref (LoadOrCreateRef) refreshes its flow with
// Ref.Touch, without hashing the key.
//
// Expiry is exact to the interval: a flow is expired no sooner than its
// idle timeout after its last lookup and no later than one interval after
// that (timeouts are rounded up to whole intervals); see Sweep. Tests
// inject a clock (WithClock) and drive sweeps themselves (WithManualSweep,
// Sweep) to make it exact to the tick.
//
// # Example
//
// The UDP proxy's use, in outline:
//
//	flows, err := flowtable.New[*udpFlow](
//		flowtable.WithMaxFlows(100_000),
//		flowtable.WithMaxFlowsPerSource(100),
//		flowtable.WithOnExpire(func(k flowtable.Key, f *udpFlow) { f.upstream.Close() }),
//	)
//	if err != nil { ... }
//	defer flows.Close()
//	for {
//		n, client, err := listener.ReadFromUDPAddrPort(buf)
//		if err != nil { ... }
//		key := flowtable.Key{Proto: flowtable.UDP, Src: client, Dst: listenAddr}
//		f, _, err := flows.LoadOrCreate(key, func() (*udpFlow, error) { return dialUpstream(client) })
//		if err != nil { // flowtable.ErrFull, flowtable.ErrSourceLimit, or the dial's error
//			continue // drop the datagram; the refusal is counted
//		}
//		f.upstream.Write(buf[:n])
//	}
package flowtable
