// Package balancer holds a set of weighted targets and picks among them:
// smooth weighted round-robin, weighted least-connections, source-IP
// consistent hashing (Maglev), hashing of any key on the same table, and
// weighted random.
//
// It is the data-plane core of lbkit's proxies and is usable alone in any Go
// program: a custom proxy, a client-side balancer, a job dispatcher.
//
// # Control plane and data plane
//
// A Balancer separates the two. Changes (Add, Remove, Update, SetWeight,
// SetHealth, SetAlgorithm) are serialised and each builds a new immutable
// snapshot of the targets with the structure the current algorithm needs (a
// round-robin cycle, an alias table, a Maglev table), published atomically
// before the change returns. Pick loads the snapshot and takes no lock,
// allocates nothing and never blocks; it sees the old or the new snapshot,
// whole. Live per-target counters (active picks) are atomics shared by every
// snapshot.
//
// Only targets whose Health is Healthy and whose Weight is above 0 are
// picked. When there is none, Pick returns ErrNoTarget at once.
//
// Every successful Pick must be released with Pick.Done when the connection
// or request ends; LeastConnections balances the resulting counts and Stats
// reports them.
//
// # Consistent hashing across nodes
//
// SourceIPHash and KeyHash use a Maglev table built deterministically: targets
// sorted by ID, a frozen hash-key format on xxhash, a fixed list of prime
// table sizes. Two processes with the same target IDs and weights build
// byte-identical tables, so several load-balancer nodes send each client to
// the same target without talking to each other. An unhealthy target's
// clients move to the others; nobody else's do, and they come back when it
// recovers. Removing a target, or draining it with weight 0, moves its
// clients and at most about 1 % of the others', except when the number of
// targets crosses one of the table's size steps (655 → 656 targets with the
// default size): WithMaglevSize fixes the size for sets that live there.
//
// # Example
//
//	b, err := balancer.New(
//		balancer.WithAlgorithm(balancer.RoundRobin),
//		balancer.WithTargets(
//			balancer.Target{ID: "a", Addr: "10.0.0.1:80", Weight: 5},
//			balancer.Target{ID: "b", Addr: "10.0.0.2:80", Weight: 1},
//		),
//	)
//	if err != nil { ... }
//	p, err := b.Pick(balancer.PickInfo{})
//	if err != nil { ... } // errors.Is(err, balancer.ErrNoTarget)
//	defer p.Done()
//	conn, err := net.Dial("tcp", p.Target.Addr)
package balancer
