package sticky

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeStore is a Store in memory that records what it was asked, and can
// fail or hang on demand.
type fakeStore struct {
	mu    sync.Mutex // guards the fields below
	m     map[string]string
	ttl   map[string]time.Duration
	saves int
	err   error // returned by every call when set
	hang  bool  // every call waits for its context
}

func newFakeStore() *fakeStore {
	return &fakeStore{m: map[string]string{}, ttl: map[string]time.Duration{}}
}

func (f *fakeStore) fail(err error, hang bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err, f.hang = err, hang
}

func (f *fakeStore) trouble(ctx context.Context) error {
	f.mu.Lock()
	err, hang := f.err, f.hang
	f.mu.Unlock()
	if hang {
		<-ctx.Done()
		return ctx.Err()
	}
	return err
}

func (f *fakeStore) Load(ctx context.Context, key string) (string, bool, error) {
	if err := f.trouble(ctx); err != nil {
		return "", false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	id, ok := f.m[key]
	return id, ok, nil
}

func (f *fakeStore) Save(ctx context.Context, key, id string, ttl time.Duration) error {
	if err := f.trouble(ctx); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m[key], f.ttl[key] = id, ttl
	f.saves++
	return nil
}

func (f *fakeStore) get(key string) (string, time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m[key], f.ttl[key]
}

func (f *fakeStore) saved() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.saves
}

var alice = Request{Source: netip.MustParseAddr("192.0.2.7")}

// TestStoreSourceIPAcrossNodes: what one node learns, another finds.
func TestStoreSourceIPAcrossNodes(t *testing.T) {
	st, clk := newFakeStore(), newFakeClock()
	node := func() *SourceIP {
		p, err := NewSourceIP(WithStore(st), WithClock(clk.Now), WithDuration(time.Minute))
		require.NoError(t, err)
		return p
	}
	n1, n2 := node(), node()
	_, ok := n1.Lookup(alice)
	require.False(t, ok)
	n1.Remember(alice, "b", nil)
	id, ttl := st.get("ip:192.0.2.7/32")
	assert.Equal(t, "b", id)
	assert.Equal(t, time.Minute, ttl, "the store's time to live is the duration")

	id, ok = n2.Lookup(alice)
	require.True(t, ok, "the other node finds the session in the store")
	assert.Equal(t, "b", id)
	n2.Remember(alice, "b", nil)
	assert.Equal(t, 1, st.saved(), "a session found in the store is not written back")
	s2 := n2.Stats()
	assert.Equal(t, Stats{Hits: 1, Entries: 1, StoreHits: 1}, s2)

	id, ok = n2.Lookup(alice)
	require.True(t, ok)
	assert.Equal(t, "b", id)
	assert.Equal(t, uint64(1), n2.Stats().StoreHits, "now served from the local table")

	n2.Remember(alice, "c", nil) // moved (a re-pick): written at once
	id, _ = st.get("ip:192.0.2.7/32")
	assert.Equal(t, "c", id)
}

// TestStoreRefresh: a session in use is written again once a quarter of
// the duration has passed since its last write, not on every request.
func TestStoreRefresh(t *testing.T) {
	st, clk := newFakeStore(), newFakeClock()
	p, err := NewSourceIP(WithStore(st), WithClock(clk.Now), WithDuration(time.Minute))
	require.NoError(t, err)
	p.Remember(alice, "a", nil)
	for range 10 {
		clk.Advance(time.Second)
		_, ok := p.Lookup(alice)
		require.True(t, ok)
		p.Remember(alice, "a", nil)
	}
	assert.Equal(t, 1, st.saved(), "10 s of a 1 min session: not written again")
	clk.Advance(5 * time.Second)
	p.Remember(alice, "a", nil)
	assert.Equal(t, 2, st.saved(), "15 s: written again")
	assert.Equal(t, uint64(2), p.Stats().StoreWrites)
}

// TestStoreUnusableTarget: a session the store names for an unusable
// target is a re-pick, not a hit.
func TestStoreUnusableTarget(t *testing.T) {
	st, ss := newFakeStore(), newStates()
	require.NoError(t, st.Save(context.Background(), "ip:192.0.2.7/32", "gone", time.Minute))
	ss.set("gone", Unusable)
	p, err := NewSourceIP(WithStore(st), WithTargetState(ss.get))
	require.NoError(t, err)
	_, ok := p.Lookup(alice)
	assert.False(t, ok)
	s := p.Stats()
	assert.Equal(t, uint64(1), s.Repicks)
	assert.Equal(t, uint64(1), s.Misses)
	assert.Equal(t, uint64(0), s.Hits)
	assert.Equal(t, 0, s.Entries)
}

// TestStoreFailureServesLocally: a failing store is counted and left alone
// for a second; the local table keeps serving.
func TestStoreFailureServesLocally(t *testing.T) {
	st, clk := newFakeStore(), newFakeClock()
	p, err := NewSourceIP(WithStore(st), WithClock(clk.Now))
	require.NoError(t, err)
	p.Remember(alice, "a", nil)
	st.fail(errors.New("connection refused"), false)

	bob := Request{Source: netip.MustParseAddr("192.0.2.8")}
	_, ok := p.Lookup(bob)
	assert.False(t, ok)
	p.Remember(bob, "b", nil) // skipped: the store failed within the second
	id, ok := p.Lookup(alice)
	assert.True(t, ok, "the local table serves")
	assert.Equal(t, "a", id)
	s := p.Stats()
	assert.Equal(t, uint64(1), s.StoreErrors)
	assert.Equal(t, uint64(1), s.StoreSkipped)

	clk.Advance(storeBackoff)
	st.fail(nil, false)
	carol := Request{Source: netip.MustParseAddr("192.0.2.9")}
	p.Remember(carol, "c", nil)
	id, _ = st.get("ip:192.0.2.9/32")
	assert.Equal(t, "c", id, "used again after the back-off")
}

// TestStoreTimeout: a store that hangs costs a lookup the timeout, once.
func TestStoreTimeout(t *testing.T) {
	st, clk := newFakeStore(), newFakeClock()
	p, err := NewSourceIP(WithStore(st), WithStoreTimeout(5*time.Millisecond), WithClock(clk.Now))
	require.NoError(t, err)
	st.fail(nil, true)
	_, ok := p.Lookup(alice) // returns once the timeout passes
	assert.False(t, ok)
	_, ok = p.Lookup(alice) // does not wait at all
	assert.False(t, ok)
	s := p.Stats()
	assert.Equal(t, uint64(1), s.StoreErrors)
	assert.Equal(t, uint64(1), s.StoreSkipped)
}

// TestStoreAppCookieAcrossNodes: a value learned from the application's
// Set-Cookie on one node routes on another; moves are shared too.
func TestStoreAppCookieAcrossNodes(t *testing.T) {
	st := newFakeStore()
	node := func() *AppCookie {
		p, err := NewAppCookie("JSESSIONID", WithStore(st))
		require.NoError(t, err)
		return p
	}
	n1, n2 := node(), node()
	req := Request{Cookies: []string{"JSESSIONID=s3cr3t"}}
	n1.Remember(Request{}, "a", Header{"Set-Cookie": {"JSESSIONID=s3cr3t; Path=/"}})
	key := cookieKey("JSESSIONID", "s3cr3t")
	id, _ := st.get(key)
	assert.Equal(t, "a", id)
	assert.NotContains(t, key, "s3cr3t", "the store never holds the session value")

	id, ok := n2.Lookup(req)
	require.True(t, ok)
	assert.Equal(t, "a", id)
	assert.Equal(t, uint64(1), n2.Stats().StoreHits)
	assert.Equal(t, uint64(1), n2.Stats().Hits)

	n2.Remember(req, "b", Header{}) // moved without a new Set-Cookie
	id, _ = st.get(key)
	assert.Equal(t, "b", id)
}

// TestStoreKeysAreFrozen: nodes of every version share the store, so its
// keys never change. If this fails, restore the format instead of
// updating the test.
func TestStoreKeysAreFrozen(t *testing.T) {
	for _, tc := range []struct {
		addr   string
		v4, v6 int
		want   string
	}{
		{"192.0.2.7", 32, 128, "ip:192.0.2.7/32"},
		{"192.0.2.7", 24, 128, "ip:192.0.2.0/24"},
		{"::ffff:192.0.2.7", 24, 64, "ip:192.0.2.0/24"},
		{"2001:db8::1", 32, 128, "ip:2001:db8::1/128"},
		{"2001:db8:1:2:3::1", 32, 64, "ip:2001:db8:1:2::/64"},
	} {
		p, err := NewSourceIP(WithPrefix(tc.v4, tc.v6))
		require.NoError(t, err)
		k, ok := p.key(netip.MustParseAddr(tc.addr))
		require.True(t, ok)
		assert.Equal(t, tc.want, sourceKey(&k, tc.v4, tc.v6))
	}
	// SHA-256("hello") is 2cf24dba…: base64url "LPJNul…".
	assert.Equal(t, "cookie:JSESSIONID:LPJNul-wow4m6Dsqxbninh", cookieKey("JSESSIONID", "hello"))
}

func TestStoreOptions(t *testing.T) {
	// NewCookie(WithStore(s)) does not compile: the cookie carries its
	// target, it needs no store.
	_, err := NewSourceIP(WithStore(nil))
	assert.ErrorContains(t, err, "store is nil")
	_, err = NewAppCookie("s", WithStoreTimeout(0))
	assert.ErrorContains(t, err, "store timeout 0s is out of range 1ms..10s")
	_, err = NewSourceIP(WithStoreTimeout(time.Second))
	assert.NoError(t, err, "a timeout without a store is harmless")
}
