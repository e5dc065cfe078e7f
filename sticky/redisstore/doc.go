// Package redisstore is a sticky.Store on Redis, so that several lbkit
// load balancers share their SourceIP and AppCookie sessions: a client
// keeps its target whichever node it reaches.
//
// It is its own Go module (github.com/lbkit/lbkit/sticky/redisstore), so
// that lbkit's core never downloads go-redis.
//
// Each node keeps its own table in front of the store (see sticky.Store):
// the store is read when a node meets a client it does not know, and
// written when a session is created, moved, or due for a refresh. Entries
// expire in Redis after the stickiness duration. When Redis fails or is
// slow, each call costs at most the policy's store timeout (50 ms by
// default), the policy leaves the store alone for a second and serves from
// its own table, and the failures are counted in sticky.Stats.StoreErrors.
//
//	store := redisstore.Dial("10.0.0.5:6379")
//	defer store.Close()
//	lb.WithTargetGroup("web", lb.HTTP,
//		lb.WithStickiness(lb.Stickiness{Kind: lb.SourceIP, Store: store}),
//		...)
//
// Keys are "lbkit:sticky:" (see WithPrefix), the target group's name and
// "/", then the sticky package's key: "ip:192.0.2.0/24" or
// "cookie:JSESSIONID:<hash of the value>". Values are target IDs.
package redisstore
