package handoff

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// The test binary plays the new process when started by Upgrade: see
// child.
func TestMain(m *testing.M) {
	if _, ok := os.LookupEnv(EnvSockets); ok {
		os.Exit(child())
	}
	goleak.VerifyTestMain(m)
}

// Test addresses the child is asked for, in the parent's terms.
const (
	tcpKey = "127.0.0.1:0"
	udpKey = "127.0.0.1:0"
)

// child is the new process of the tests: it takes the inherited TCP and
// UDP sockets, says it is ready, and answers "child <pid>" on both until a
// TCP client sends "quit" (or a minute passes). The mode in
// HANDOFF_TEST_CHILD makes it fail instead, to test how Upgrade reacts.
func child() int {
	switch os.Getenv("HANDOFF_TEST_CHILD") {
	case "exit":
		return 3
	case "hang":
		time.Sleep(time.Minute) // killed by the parent's timeout
		return 4
	}
	s, err := New()
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	ln, err := s.Listen("web server", "tcp", tcpKey)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	pc, err := s.ListenPacket("dns", "udp", udpKey)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	if err := s.Ready(); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	me := fmt.Sprintf("child %d", os.Getpid())
	go func() {
		buf := make([]byte, 64)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(me+" "+string(buf[:n])), from)
		}
	}()
	quit := make(chan struct{})
	go func() {
		var once sync.Once
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, _ := bufio.NewReader(c).ReadString('\n')
				if line == "quit\n" {
					once.Do(func() { close(quit) })
					return
				}
				fmt.Fprintf(c, "%s %s", me, line)
			}()
		}
	}()
	select {
	case <-quit:
	case <-time.After(time.Minute):
	}
	return 0
}

// askTCP sends a line to addr and returns the answer.
func askTCP(t *testing.T, addr, line string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = fmt.Fprintf(c, "%s\n", line)
	require.NoError(t, err)
	got, err := bufio.NewReader(c).ReadString('\n')
	if line == "quit" {
		return ""
	}
	require.NoError(t, err)
	return strings.TrimSuffix(got, "\n")
}

// askUDP sends a datagram to addr and returns the answer.
func askUDP(t *testing.T, addr, msg string) string {
	t.Helper()
	c, err := net.Dial("udp", addr)
	require.NoError(t, err)
	defer c.Close()
	buf := make([]byte, 128)
	for range 50 {
		_, err = c.Write([]byte(msg))
		require.NoError(t, err)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(200*time.Millisecond)))
		n, err := c.Read(buf)
		if err == nil {
			return string(buf[:n])
		}
	}
	t.Fatalf("no answer from %s", addr)
	return ""
}

func TestUpgradeHandsOverOpenSockets(t *testing.T) {
	s, err := New()
	require.NoError(t, err)
	assert.False(t, s.HasParent())
	ln, err := s.Listen("web server", "tcp", tcpKey)
	require.NoError(t, err)
	pc, err := s.ListenPacket("dns", "udp", udpKey)
	require.NoError(t, err)
	// A socket closed before the upgrade is not passed on.
	gone, err := s.Listen("gone", "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	goneAddr := gone.Addr().String()
	require.NoError(t, gone.Close())

	pid, err := s.Upgrade(context.Background(), 30*time.Second)
	require.NoError(t, err)
	require.NotEqual(t, os.Getpid(), pid)
	t.Cleanup(func() { askTCP(t, ln.Addr().String(), "quit") })

	// This process stops serving; the sockets stay open in the child.
	tcpAddr, udpAddr := ln.Addr().String(), pc.LocalAddr().String()
	require.NoError(t, ln.Close())
	require.NoError(t, pc.Close())
	want := fmt.Sprintf("child %d", pid)
	assert.Equal(t, want+" hello", askTCP(t, tcpAddr, "hello"), "the child serves the TCP socket")
	assert.Equal(t, want+" ping", askUDP(t, udpAddr, "ping"), "the child serves the UDP socket")
	_, err = net.DialTimeout("tcp", goneAddr, 5*time.Second)
	assert.Error(t, err, "a socket closed before the upgrade is not listening in the child")

	_, err = s.Upgrade(context.Background(), time.Second)
	assert.ErrorIs(t, err, ErrUpgrading, "an upgraded process does not upgrade again")
}

func TestUpgradeFailures(t *testing.T) {
	for _, tc := range []struct {
		mode, want string
	}{
		{"exit", "exited before it was ready"},
		{"hang", "was not ready within"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			t.Setenv("HANDOFF_TEST_CHILD", tc.mode)
			s, err := New()
			require.NoError(t, err)
			ln, err := s.Listen("web server", "tcp", tcpKey)
			require.NoError(t, err)
			defer ln.Close()
			_, err = s.Upgrade(context.Background(), time.Second)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			// A failed upgrade changes nothing: this process still serves,
			// and may try again.
			go func() {
				if c, err := ln.Accept(); err == nil {
					fmt.Fprintln(c, "parent")
					c.Close()
				}
			}()
			c, err := net.Dial("tcp", ln.Addr().String())
			require.NoError(t, err)
			got, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			assert.Equal(t, "parent\n", got)
		})
	}
}

func TestNewRefusesBadEnvironment(t *testing.T) {
	for _, spec := range []string{"v2", "v1;tcp 127.0.0.1:0", "v1;a tcp 127.0.0.1:0 x", "v1;a tcp 127.0.0.1:0 1", "v1;%zz tcp 127.0.0.1:0 5"} {
		t.Setenv(EnvSockets, spec)
		_, err := New()
		assert.Error(t, err, spec)
	}
}
