package redisstore

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lbkit/lbkit/sticky/redisstore/redistest"
)

func TestLoadSave(t *testing.T) {
	r := redistest.Start(t)
	s := Dial(r.Addr, WithPrefix("test:"))
	defer s.Close()
	ctx := context.Background()
	_, ok, err := s.Load(ctx, "ip:192.0.2.7/32")
	require.NoError(t, err)
	assert.False(t, ok)
	require.NoError(t, s.Save(ctx, "ip:192.0.2.7/32", "b", time.Minute))
	id, ok, err := s.Load(ctx, "ip:192.0.2.7/32")
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, "b", id)

	c := redis.NewClient(ClientOptions(r.Addr))
	defer c.Close()
	ttl, err := c.TTL(ctx, "test:ip:192.0.2.7/32").Result()
	require.NoError(t, err)
	assert.InDelta(t, time.Minute.Seconds(), ttl.Seconds(), 2, "the entry expires after the duration")
}

func TestErrors(t *testing.T) {
	r := redistest.Start(t)
	s := Dial(r.Addr)
	defer s.Close()
	r.Kill()
	_, _, err := s.Load(context.Background(), "k")
	assert.Error(t, err, "a stopped server is an error, not a miss")
	var op *net.OpError
	assert.True(t, errors.As(err, &op) || strings.Contains(err.Error(), "refused"), "%v", err)
	assert.Error(t, s.Save(context.Background(), "k", "a", time.Minute))
}

func TestTimeout(t *testing.T) {
	r := redistest.Start(t)
	s := Dial(r.Addr)
	defer s.Close()
	require.NoError(t, s.Save(context.Background(), "k", "a", time.Minute)) // a connection in the pool
	r.Pause(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, _, err := s.Load(ctx, "k")
	assert.Error(t, err, "a hung server: the context's deadline ends the call")
}
