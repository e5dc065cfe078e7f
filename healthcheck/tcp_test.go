package healthcheck

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTCPListenerComesAndGoes(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) {
			srv := newTCPServer(t, "tcp", addr)
			target := Target{ID: "a", Addr: srv.addr}
			require.NoError(t, TCP{}.Check(timeoutCtx(t, wait), target))

			srv.stop()
			err := TCP{}.Check(timeoutCtx(t, wait), target)
			require.Error(t, err)
			assert.Equal(t, "connection refused", Reason(err))
			assert.Equal(t, "connection refused", err.Error())
			assert.ErrorIs(t, err, syscall.ECONNREFUSED, "the cause is one Unwrap away")

			srv.restart()
			require.NoError(t, TCP{ResetOnClose: true}.Check(timeoutCtx(t, wait), target))
		})
	}
}

// fullBacklog returns the address of a loopback listener whose accept queue
// is full, so the kernel drops new SYNs and connecting times out.
func fullBacklog(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	rc, err := ln.(*net.TCPListener).SyscallConn()
	require.NoError(t, err)
	require.NoError(t, rc.Control(func(fd uintptr) { err = syscall.Listen(int(fd), 0) }))
	require.NoError(t, err)
	addr := ln.Addr().String()
	for range 8 { // nobody accepts: the queue fills after a connection or two
		c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err != nil {
			return addr
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Skip("could not fill a listener's accept queue on this kernel")
	return ""
}

func TestTCPTimeout(t *testing.T) {
	addr := fullBacklog(t)
	ctx, cancel := ContextWithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	err := TCP{}.Check(ctx, Target{ID: "a", Addr: addr})
	require.Error(t, err)
	assert.Equal(t, "timeout after 150ms", Reason(err))
}

func TestTCPHealthPort(t *testing.T) {
	srv := newTCPServer(t, "tcp", "127.0.0.1:0")
	target := Target{ID: "udp-dns", Addr: closedAddr(t, "tcp", "127.0.0.1:0")} // traffic port: nothing on TCP
	assert.Equal(t, "connection refused", Reason(TCP{}.Check(timeoutCtx(t, wait), target)))
	assert.NoError(t, TCP{Port: portOf(t, srv.addr)}.Check(timeoutCtx(t, wait), target))

	err := TCP{Port: 70000}.Check(timeoutCtx(t, wait), target)
	assert.ErrorIs(t, err, ErrInvalidOption)
	assert.Equal(t, "invalid health-check port 70000, want 0..65535", Reason(err))
	err = TCP{}.Check(timeoutCtx(t, wait), Target{ID: "x", Addr: "no-port"})
	assert.ErrorIs(t, err, ErrInvalidTarget)
}

func TestTCPCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := TCP{}.Check(ctx, Target{ID: "a", Addr: "127.0.0.1:1"})
	assert.Equal(t, "check canceled", Reason(err))
}
