package redisstore

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lbkit/lbkit/sticky"
)

// DefaultPrefix starts every key a Store writes.
const DefaultPrefix = "lbkit:sticky:"

// Store is a sticky.Store on a Redis client. It is safe for concurrent
// use.
type Store struct {
	c      redis.UniversalClient
	prefix string
	owned  bool // Close closes c
}

// Option configures a Store.
type Option func(*Store)

// WithPrefix sets the prefix of every key, so that several fleets (or
// other applications) share one Redis. Default: DefaultPrefix.
func WithPrefix(p string) Option { return func(s *Store) { s.prefix = p } }

// New returns a Store on c, a client the caller configured (a single
// node, a Sentinel failover client or a cluster client). Give it short
// timeouts and ContextTimeoutEnabled, as ClientOptions does, so that the
// policy's store timeout bounds every call. Close does not close c.
func New(c redis.UniversalClient, opts ...Option) *Store {
	s := &Store{c: c, prefix: DefaultPrefix}
	for _, o := range opts {
		o(s)
	}
	return s
}

// ClientOptions returns the options of a client suited to a Store: the
// call's context bounds each command (ContextTimeoutEnabled), dials and
// reads give up after 100 ms, and a failed command is not retried (the
// policy falls back to its own table instead).
func ClientOptions(addr string) *redis.Options {
	return &redis.Options{
		Addr:                  addr,
		ContextTimeoutEnabled: true,
		DialTimeout:           100 * time.Millisecond,
		ReadTimeout:           100 * time.Millisecond,
		WriteTimeout:          100 * time.Millisecond,
		MaxRetries:            -1,
	}
}

// Dial returns a Store with its own client for the Redis at addr
// (host:port), made with ClientOptions. It does not contact Redis; Close
// closes the client.
func Dial(addr string, opts ...Option) *Store {
	s := New(redis.NewClient(ClientOptions(addr)), opts...)
	s.owned = true
	return s
}

// Load returns the target ID stored under key.
func (s *Store) Load(ctx context.Context, key string) (string, bool, error) {
	id, err := s.c.Get(ctx, s.prefix+key).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return id, true, nil
}

// Save stores id under key for ttl.
func (s *Store) Save(ctx context.Context, key, id string, ttl time.Duration) error {
	return s.c.Set(ctx, s.prefix+key, id, ttl).Err()
}

// Close closes the client if Dial made it.
func (s *Store) Close() error {
	if s.owned {
		return s.c.Close()
	}
	return nil
}

// Compile-time check that a Store is a sticky.Store.
var _ sticky.Store = (*Store)(nil)
