package lb

import (
	"context"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/lbkit/lbkit/sticky"
)

// mapStore is a sticky.Store in memory.
type mapStore struct {
	mu sync.Mutex // guards m
	m  map[string]string
}

func (s *mapStore) Load(_ context.Context, key string) (string, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.m[key]
	return id, ok, nil
}

func (s *mapStore) Save(_ context.Context, key, id string, _ time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[key] = id
	return nil
}

func (s *mapStore) snapshot() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.m)
}

// TestStickyStoreAcrossLoadBalancers: two load balancers sharing a store
// send a client to one target whichever it reaches.
func TestStickyStoreAcrossLoadBalancers(t *testing.T) {
	names := []string{"a", "b", "c"}
	var targets []GroupOption
	for _, n := range names {
		targets = append(targets, WithTarget(newEchoTarget(t, n).addr, WithTargetID(n)))
	}
	store := &mapStore{m: map[string]string{}}
	node := func() *LoadBalancer {
		return startLB(t,
			WithListener("front", TCP, "127.0.0.1:0", WithForwardTo("web")),
			WithTargetGroup("web", TCP, append(targets, WithoutHealthCheck(),
				WithStickiness(Stickiness{Kind: SourceIP, Store: store}))...))
	}
	n1, n2 := node(), node()
	first := dialAsk(t, addr(t, n1, "front"))
	assert.Equal(t, map[string]string{"web/ip:127.0.0.1/32": first}, store.snapshot(), "keyed by group and client")
	for range 6 {
		assert.Equal(t, first, dialAsk(t, addr(t, n2, "front")), "the other node follows the session")
	}
	st := n2.Stats().Groups[0].Sticky
	assert.Equal(t, uint64(1), st.StoreHits)
}

func TestStickyStoreValidation(t *testing.T) {
	_, err := New(WithTargetGroup("web", HTTP, WithStickiness(Stickiness{Store: &mapStore{}})))
	assert.ErrorContains(t, err, "a sticky store is set without stickiness")
	_, err = New(WithTargetGroup("web", HTTP, WithStickiness(Stickiness{Kind: Cookie, Store: &mapStore{}})))
	assert.ErrorContains(t, err, "a sticky store is for source_ip and app_cookie stickiness")
	_, err = New(WithTargetGroup("web", HTTP, WithStickiness(Stickiness{Kind: SourceIP, Store: &mapStore{}, StoreTimeout: time.Hour})))
	assert.ErrorContains(t, err, "store timeout 1h0m0s is out of range")
	var _ sticky.Store = &mapStore{}
}
