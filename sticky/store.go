package sticky

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"net/netip"
	"sync/atomic"
	"time"
)

// Store is a table of sessions shared by several load balancer nodes (a
// Redis, say; see the sticky/redisstore module), so that a client keeps
// its target whichever node it reaches. A SourceIP or AppCookie policy
// given one with WithStore keeps its own table in front as a cache:
//
//   - a Lookup that misses the local table reads the store (one call, at
//     most the store timeout) and, on a hit, fills the local table;
//   - a Remember that creates or moves a session writes it to the store
//     at once, and one that refreshes a session in use writes it again
//     once a quarter of the duration has passed since the last write, so
//     the store's copy outlives it;
//   - the time to live of every write is the stickiness duration.
//
// A store that fails or is slower than the timeout costs the data path
// the timeout once: the policy then leaves it alone for a second
// (StoreSkipped), serving from its local table, and counts the failure
// (StoreErrors). Deleted application sessions are not deleted from the
// store; their entries expire.
//
// Implementations are called concurrently from the data path's
// goroutines, with a context that carries the timeout.
type Store interface {
	// Load returns the target ID stored under key; ok is false when
	// there is none.
	Load(ctx context.Context, key string) (id string, ok bool, err error)
	// Save stores id under key for ttl, replacing what was there.
	Save(ctx context.Context, key, id string, ttl time.Duration) error
}

const (
	// DefaultStoreTimeout bounds one call to a Store.
	DefaultStoreTimeout = 50 * time.Millisecond
	// storeBackoff is how long a policy leaves a failed store alone.
	storeBackoff = time.Second
)

// WithStore makes a SourceIP or AppCookie policy share its sessions
// through s (see Store). Default: none; sessions stick on one node only.
func WithStore(s Store) TableOption {
	return func(c *config) { c.store, c.storeSet = s, true }
}

// WithStoreTimeout bounds each call to the Store, 1 ms..10 s. A Lookup that
// misses locally waits at most this long. Default: DefaultStoreTimeout.
func WithStoreTimeout(d time.Duration) TableOption {
	return func(c *config) { c.storeTimeout = d }
}

// remote is a policy's Store and what it counts. The key formats below are
// shared by every node of a fleet, of any version: they MUST NOT change.
type remote struct {
	s       Store
	timeout time.Duration
	ttl     time.Duration
	// down is the table time until which the store is left alone after a
	// failure; 0 when it did not fail.
	down                          atomic.Int64
	hits, writes, errors, skipped atomic.Uint64
}

// newRemote returns c's store as a remote, or nil for none.
func newRemote(c *config) *remote {
	if c.store == nil {
		return nil
	}
	return &remote{s: c.store, timeout: c.storeTimeout, ttl: c.duration}
}

// saveEvery is how often a table of a policy with a store writes an entry
// in use again; 0 without a store.
func saveEvery(c *config) int64 {
	if c.store == nil {
		return 0
	}
	return int64(c.duration / 4)
}

// usable reports whether the store may be called at table time now, and
// counts a skipped call.
func (r *remote) usable(now int64) bool {
	if d := r.down.Load(); d != 0 && now < d {
		r.skipped.Add(1)
		return false
	}
	return true
}

// failed records a failed call at table time now.
func (r *remote) failed(now int64) {
	r.errors.Add(1)
	r.down.Store(max(now+int64(storeBackoff), 1))
}

// load reads key from the store within the timeout.
func (r *remote) load(key string, now int64) (string, bool) {
	if !r.usable(now) {
		return "", false
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	id, ok, err := r.s.Load(ctx, key)
	cancel()
	if err != nil {
		r.failed(now)
		return "", false
	}
	if !ok || id == "" {
		return "", false
	}
	r.hits.Add(1)
	return id, true
}

// save writes key → id to the store within the timeout.
func (r *remote) save(key, id string, now int64) {
	if !r.usable(now) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	err := r.s.Save(ctx, key, id, r.ttl)
	cancel()
	if err != nil {
		r.failed(now)
		return
	}
	r.writes.Add(1)
}

// stats adds the store's counters to st.
func (r *remote) stats(st *Stats) {
	if r == nil {
		return
	}
	st.StoreHits, st.StoreWrites = r.hits.Load(), r.writes.Load()
	st.StoreErrors, st.StoreSkipped = r.errors.Load(), r.skipped.Load()
}

// sourceKey is the store key of a SourceIP table key: "ip:" and the
// client's prefix, e.g. "ip:192.0.2.0/24", "ip:2001:db8::/64",
// "ip:192.0.2.7/32". MUST NOT change.
func sourceKey(k *[16]byte, v4Bits, v6Bits int) string {
	a := netip.AddrFrom16(*k).Unmap()
	bits := v6Bits
	if a.Is4() {
		bits = v4Bits
	}
	return "ip:" + netip.PrefixFrom(a, bits).String()
}

// cookieKey is the store key of an application cookie value: "cookie:",
// the cookie's name, ":", and the first 22 characters of the base64url
// SHA-256 of the value (132 bits), so the store never holds a session
// secret and every node computes the same key. MUST NOT change.
func cookieKey(name, value string) string {
	sum := sha256.Sum256([]byte(value))
	return "cookie:" + name + ":" + base64.RawURLEncoding.EncodeToString(sum[:])[:22]
}
