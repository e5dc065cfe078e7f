package hostile

import (
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lbkit/lbkit/lb"
)

// countingTarget is a TCP target that counts the connections it accepts
// and records what each sends, echoing it back.
type countingTarget struct {
	addr  string
	conns atomic.Int64
	mu    sync.Mutex // guards got
	got   []string
}

func newCountingTarget(t *testing.T) *countingTarget {
	t.Helper()
	ct := &countingTarget{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ct.addr = ln.Addr().String()
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ct.conns.Add(1)
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				b, _ := io.ReadAll(c)
				ct.mu.Lock()
				ct.got = append(ct.got, string(b))
				ct.mu.Unlock()
			})
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ct
}

// TestProxyHeaders: on a TCP listener that trusts 127.0.0.1 to send PROXY
// headers, a header split across segments (20 ms apart) is read whole;
// truncated, malformed or late headers from the trusted source, and any
// header from an untrusted source (127.0.0.2), are refused with a reset,
// and the target sees no connection at all.
func TestProxyHeaders(t *testing.T) {
	ct := newCountingTarget(t)
	l, err := lb.New(
		lb.WithLogger(slog.New(slog.DiscardHandler)),
		lb.WithListener("tcp", lb.TCP, "127.0.0.1:0", lb.WithForwardTo("app"), lb.WithTrustedProxies("127.0.0.1/32"), lb.WithHeaderTimeout(time.Second)),
		lb.WithTargetGroup("app", lb.TCP, lb.WithTarget(ct.addr), lb.WithoutHealthCheck()),
	)
	require.NoError(t, err)
	require.NoError(t, l.Start())
	defer l.Close()
	a, _ := l.Addr("tcp")
	addr := a.String()

	// conn dials from the given local address and sends the parts, pause
	// apart, then half-closes; it returns what the load balancer did.
	conn := func(from string, pause time.Duration, parts ...string) error {
		c, err := dialer(from).Dial("tcp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.(*net.TCPConn).SetNoDelay(true)
		for i, p := range parts {
			if i > 0 {
				time.Sleep(pause) // the header split across segments, as a slow sender does
			}
			if _, err := io.WriteString(c, p); err != nil {
				return err
			}
		}
		_ = c.(*net.TCPConn).CloseWrite()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = io.ReadAll(c)
		return err
	}

	t.Run("split v1 header, trusted", func(t *testing.T) {
		before := ct.conns.Load()
		err := conn("127.0.0.1", 20*time.Millisecond, "PROXY TCP4 192.0.2.1 ", "198.51.100.1 4000 443\r\nhello")
		require.NoError(t, err, "forwarded, closed cleanly")
		require.Eventually(t, func() bool { return ct.conns.Load() == before+1 }, 5*time.Second, time.Millisecond)
	})
	refused := []struct {
		name, from string
		parts      []string
	}{
		{"untrusted source sends a header", "127.0.0.2", []string{"PROXY TCP4 192.0.2.1 198.51.100.1 4000 443\r\nhello"}},
		{"untrusted source, header split", "127.0.0.2", []string{"PRO", "XY TCP4 192.0.2.1 198.51.100.1 4000 443\r\n"}},
		{"untrusted source, v2 signature", "127.0.0.2", []string{"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c"}},
		{"trusted, truncated v1", "127.0.0.1", []string{"PROXY TCP4 192.0.2.1 198.51"}},
		{"trusted, no header", "127.0.0.1", []string{"GET / HTTP/1.1\r\n\r\n"}},
		{"trusted, v1 too long", "127.0.0.1", []string{"PROXY TCP4 " + string(make([]byte, 200))}},
		{"trusted, bad address", "127.0.0.1", []string{"PROXY TCP4 999.0.2.1 198.51.100.1 4000 443\r\n"}},
		{"trusted, UDP on a TCP listener", "127.0.0.1", []string{"PROXY UDP4 192.0.2.1 198.51.100.1 4000 443\r\n"}},
		{"trusted, silent", "127.0.0.1", nil},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			before := ct.conns.Load()
			err := conn(tc.from, 20*time.Millisecond, tc.parts...)
			assert.Error(t, err, "refused: reset")
			assert.Equal(t, before, ct.conns.Load(), "the target saw no connection")
		})
	}
	ls := l.Stats().Listeners[0]
	assert.NotZero(t, ls.TCP.ProxyHeaderBad)
	assert.NotZero(t, ls.TCP.ProxyHeaderUntrusted)
}
