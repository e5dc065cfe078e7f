package redisstore

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// redisServer is a redis-server the test started on 127.0.0.1.
type redisServer struct {
	addr string
	cmd  *exec.Cmd
	out  *bytes.Buffer
	done chan struct{}
}

// startRedis starts redis-server on a free loopback port, without
// persistence, and stops it when the test ends. It skips when redis-server
// is not installed (CI installs it).
func startRedis(t *testing.T) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed (apt-get install redis-server; .ci/run installs it)")
	}
	for attempt := 0; ; attempt++ {
		// Redis binds the port itself: take one the kernel says is free,
		// release it, and try again if another process took it meanwhile.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		r := &redisServer{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), out: &bytes.Buffer{}, done: make(chan struct{})}
		r.cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning")
		r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
		require.NoError(t, r.cmd.Start())
		go func() { defer close(r.done); _ = r.cmd.Wait() }()
		if r.ready() {
			t.Cleanup(r.kill)
			return r
		}
		r.kill()
		if attempt == 4 {
			t.Fatalf("redis-server did not start on 127.0.0.1:%d:\n%s", port, r.out)
		}
	}
}

// ready waits until the server answers PING, or has exited.
func (r *redisServer) ready() bool {
	c := redis.NewClient(ClientOptions(r.addr))
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-r.done:
			return false // exited: the port was taken
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return true
		}
		select {
		case <-r.done:
			return false
		case <-time.After(10 * time.Millisecond): // between polls of a starting process
		}
	}
	return false
}

// kill stops the server (resuming it first if it was paused).
func (r *redisServer) kill() {
	_ = r.cmd.Process.Signal(syscall.SIGCONT)
	_ = r.cmd.Process.Kill()
	<-r.done
}

// pause stops the server from answering: connections are still accepted
// by the kernel, commands hang.
func (r *redisServer) pause(t *testing.T) {
	require.NoError(t, r.cmd.Process.Signal(syscall.SIGSTOP))
	t.Cleanup(func() { _ = r.cmd.Process.Signal(syscall.SIGCONT) })
}

func TestLoadSave(t *testing.T) {
	r := startRedis(t)
	s := Dial(r.addr, WithPrefix("test:"))
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

	c := redis.NewClient(ClientOptions(r.addr))
	defer c.Close()
	ttl, err := c.TTL(ctx, "test:ip:192.0.2.7/32").Result()
	require.NoError(t, err)
	assert.InDelta(t, time.Minute.Seconds(), ttl.Seconds(), 2, "the entry expires after the duration")
}

func TestErrors(t *testing.T) {
	r := startRedis(t)
	s := Dial(r.addr)
	defer s.Close()
	r.kill()
	_, _, err := s.Load(context.Background(), "k")
	assert.Error(t, err, "a stopped server is an error, not a miss")
	var op *net.OpError
	assert.True(t, errors.As(err, &op) || strings.Contains(err.Error(), "refused"), "%v", err)
	assert.Error(t, s.Save(context.Background(), "k", "a", time.Minute))
}

func TestTimeout(t *testing.T) {
	r := startRedis(t)
	s := Dial(r.addr)
	defer s.Close()
	require.NoError(t, s.Save(context.Background(), "k", "a", time.Minute)) // a connection in the pool
	r.pause(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, _, err := s.Load(ctx, "k")
	assert.Error(t, err, "a hung server: the context's deadline ends the call")
}
