package lb

import (
	"context"
	"fmt"
	"time"

	"github.com/lbkit/lbkit/sticky"
)

// StickyKind selects a kind of session persistence.
type StickyKind uint8

const (
	// NotSticky sends every new connection or request where the
	// algorithm says.
	NotSticky StickyKind = iota
	// SourceIP keeps each client IP on one target (L4 and L7).
	SourceIP
	// Cookie keeps each HTTP client on one target with a cookie
	// the load balancer sets: opaque, authenticated, expiring.
	Cookie
	// AppCookie follows the application's own session cookie:
	// requests carrying a value the application set go to the target that
	// set it.
	AppCookie
)

var stickyNames = [...]string{"none", "source_ip", "lb_cookie", "app_cookie"}

// String returns the kind's configuration name, e.g. "lb_cookie".
func (k StickyKind) String() string {
	if int(k) < len(stickyNames) {
		return stickyNames[k]
	}
	return fmt.Sprintf("sticky(%d)", k)
}

// ParseStickyKind returns the StickyKind named s: "none", "source_ip",
// "lb_cookie" or "app_cookie".
func ParseStickyKind(s string) (StickyKind, error) {
	for i, n := range stickyNames {
		if n == s {
			return StickyKind(i), nil
		}
	}
	return 0, invalidf("stickiness %q is not one of none, source_ip, lb_cookie, app_cookie", s)
}

// Stickiness configures a target group's session persistence. Sessions
// follow their target while it is healthy; when it turns unhealthy or is
// removed they move (and a cookie is set anew); while it drains they stay
// until the deregistration delay ends.
type Stickiness struct {
	// Kind selects the persistence; NotSticky (the zero value) turns it
	// off. Cookie kinds need an HTTP or HTTPS group.
	Kind StickyKind
	// Duration is how long a session lasts without use. Default 20 minutes.
	Duration time.Duration
	// CookieName is the load balancer's cookie (Cookie; default
	// sticky.DefaultCookieName, "LBKIT") or the application's cookie to follow (AppCookie;
	// required, e.g. "JSESSIONID").
	CookieName string
	// Keys authenticate the load balancer's cookie: the first signs, all
	// verify, so keys rotate by prepending. Several load balancers serving
	// one site must share them. Default: a random key made at start, good
	// for one process.
	Keys [][]byte
	// Capacity bounds the sessions remembered (SourceIP,
	// AppCookie); when full, new clients are balanced without
	// being remembered, and counted. Default: the sticky package's.
	Capacity int
	// PrefixV4 and PrefixV6 make SourceIP key on the client's
	// network rather than its address (e.g. 24 and 64), for clients behind
	// rotating NAT. Default: the whole address.
	PrefixV4, PrefixV6 int
	// Store shares the sessions of SourceIP and
	// AppCookie with the other load balancers that use the same
	// store (see sticky.Store; sticky/redisstore has one for Redis): a
	// client keeps its target whichever node it reaches. The group's
	// table stays in front as a cache, and a failing store leaves it to
	// serve alone. Keys are prefixed with the group's name and "/", so
	// groups of one name share sessions and others do not. Default: none.
	Store sticky.Store
	// StoreTimeout bounds each call to Store. Default
	// sticky.DefaultStoreTimeout.
	StoreTimeout time.Duration
}

// groupStore is a sticky.Store whose keys are prefixed with a group's
// name, so that one store serves several groups.
type groupStore struct {
	s      sticky.Store
	prefix string
}

func (g groupStore) Load(ctx context.Context, key string) (string, bool, error) {
	return g.s.Load(ctx, g.prefix+key)
}

func (g groupStore) Save(ctx context.Context, key, id string, ttl time.Duration) error {
	return g.s.Save(ctx, g.prefix+key, id, ttl)
}
