package redistest

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a redis-server a test started on 127.0.0.1.
type Server struct {
	// Addr is its address, host:port.
	Addr string

	cmd  *exec.Cmd
	out  *bytes.Buffer
	done chan struct{}
}

// Start starts redis-server on a free loopback port and stops it when the
// test ends. It skips the test when redis-server is not installed (CI
// installs it: Debian's redis-server package).
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed (apt-get install redis-server; .ci/run installs it)")
	}
	for attempt := 0; ; attempt++ {
		// Redis binds the port itself: take one the kernel says is free,
		// release it, and try again if another process took it meanwhile.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), out: &bytes.Buffer{}, done: make(chan struct{})}
		s.cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning")
		s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
		if err := s.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { defer close(s.done); _ = s.cmd.Wait() }()
		if s.ready() {
			t.Cleanup(s.Kill)
			return s
		}
		s.Kill()
		if attempt == 4 {
			t.Fatalf("redis-server did not start on 127.0.0.1:%d:\n%s", port, s.out)
		}
	}
}

// ready waits until the server answers PING, or has exited.
func (s *Server) ready() bool {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return true
		}
		select {
		case <-s.done:
			return false // exited: the port was taken
		case <-time.After(10 * time.Millisecond): // between polls of a starting process
		}
	}
	return false
}

// Kill stops the server (resuming it first if it was paused). It may be
// called more than once.
func (s *Server) Kill() {
	_ = s.cmd.Process.Signal(syscall.SIGCONT)
	_ = s.cmd.Process.Kill()
	<-s.done
}

// Pause stops the server from answering until the test ends: connections
// are still accepted by the kernel, commands hang.
func (s *Server) Pause(t testing.TB) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.cmd.Process.Signal(syscall.SIGCONT) })
}
