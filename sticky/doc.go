// Package sticky is session persistence for load balancers: it sends a
// session's traffic to the same target, by source IP (L4 and L7), by a
// cookie the balancer sets (L7), or by a cookie the application sets (L7).
//
// It is the stickiness of lbkit's proxies and is usable alone in any Go
// proxy. It knows nothing of balancers or health checks: the user says what
// a remembered target's state is through one function (WithTargetState),
// and the proxy holds the three kinds behind one small interface, Policy.
//
// # The protocol
//
// For each new connection (L4) or request (L7) the proxy calls Lookup. On a
// hit it forwards to the remembered target; on a miss it picks one with its
// balancer. Either way it then calls Remember with the target it used and,
// at L7, the response header before it is written: that creates the
// session, moves it after a re-pick, and refreshes it.
//
// # Safety
//
// Nothing a client sends can make it pin itself to a target it was not
// given, grow the balancer's memory, or break a request:
//
//   - A load-balancer cookie's value is encrypted and authenticated with
//     HMAC-SHA256 under keys that rotate with a grace period; it shows
//     nothing of the target (not even its ID), and a client can neither
//     forge nor alter one. Checking it takes constant time in the tag.
//   - A tampered, truncated, oversized, expired, wrong-key or garbage
//     cookie counts as no cookie: a fresh pick, a new cookie, and a counter
//     by reason in Stats.BadCookies. Never a panic, never an error page.
//   - Tables (SourceIP, AppCookie) have a capacity; when full of live
//     sessions, new ones are refused and counted, and no established session
//     is evicted to make room. AppCookie learns values only from the
//     application's responses, and keeps 64-bit hashes of them.
//   - Every lookup asks the state function about the target it remembers:
//     an Unusable target (removed, unhealthy, ejected) is a miss counted in
//     Stats.Repicks, so no client is pinned to a dead target; a Draining
//     target keeps its sessions until its drain ends (WithStopOnDrain moves
//     them at once).
//
// # Expiry without goroutines
//
// Every session of a table has the same duration, refreshed on use, so
// sessions expire in the order they were last used. Each table shard keeps
// its entries in that order and every operation drops a few expired ones
// from the old end, stopping at the first live one; a lookup also checks
// the entry it finds. There is no goroutine and no timer, so nothing needs
// closing: a policy is garbage when its user drops it.
//
// # Sharing sessions across nodes
//
// A Store (WithStore) shares the SourceIP and AppCookie tables of several
// load balancer nodes: each policy keeps its table in front as a cache,
// reads the store when it misses, writes sessions it learns or moves, and
// leaves a failing store alone for a second, so the data path never waits
// on it longer than the store timeout (WithStoreTimeout). The
// sticky/redisstore module has one for Redis. The Cookie kind needs none:
// its cookie carries the target.
//
// # Example
//
//	// At L7, stick by a balancer cookie; ask the balancer about targets.
//	p, err := sticky.NewCookie(
//		sticky.WithKeys(key), // shared by every node; at least 32 random bytes
//		sticky.WithTargetState(func(id string) sticky.TargetState {
//			t, ok := bal.Target(id)
//			switch {
//			case !ok || t.Health != balancer.Healthy:
//				return sticky.Unusable
//			case t.Weight == 0:
//				return sticky.Draining
//			}
//			return sticky.Usable
//		}),
//	)
//	if err != nil { ... }
//	r := sticky.HTTPRequest(clientIP, req)
//	id, ok := p.Lookup(r)
//	if !ok {
//		id = pick() // the balancer's choice
//	}
//	resp := forward(id, req)
//	p.Remember(r, id, sticky.Header(resp.Header)) // before the header is written
package sticky
