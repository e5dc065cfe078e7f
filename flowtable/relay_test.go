package flowtable

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestUDPRelay uses a Table as the UDP proxy will, over real sockets on
// 127.0.0.1: one flow per client address and port, holding a connected
// socket to the upstream; a lookup per datagram; on expiry the upstream
// socket is closed, and the client's next datagram makes a new flow.
func TestUDPRelay(t *testing.T) {
	loopback := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	var wg sync.WaitGroup
	echo, err := net.ListenUDP("udp", loopback)
	require.NoError(t, err)
	wg.Go(func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := echo.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = echo.WriteToUDPAddrPort(append([]byte("echo: "), buf[:n]...), from)
		}
	})

	front, err := net.ListenUDP("udp", loopback)
	require.NoError(t, err)
	frontAddr := front.LocalAddr().(*net.UDPAddr).AddrPort()

	type flow struct{ up *net.UDPConn }
	clk := newFakeClock()
	tb, err := New[*flow](WithClock(clk.Now), WithManualSweep(), WithIdleTimeout(UDP, 120*time.Second),
		WithOnExpire(func(_ Key, f *flow) { _ = f.up.Close() }))
	require.NoError(t, err)
	defer func() {
		// Stop the relay and the echo server, close the flows left, and
		// wait for every goroutine.
		_ = front.Close()
		_ = echo.Close()
		tb.Range(func(k Key, f *flow) bool {
			if _, ok := tb.Delete(k); ok {
				_ = f.up.Close()
			}
			return true
		})
		_ = tb.Close()
		wg.Wait()
	}()

	wg.Go(func() { // the relay: client -> upstream
		buf := make([]byte, 1500)
		for {
			n, client, err := front.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			k := Key{Proto: UDP, Src: client, Dst: frontAddr}
			f, _, err := tb.LoadOrCreate(k, func() (*flow, error) {
				up, err := net.DialUDP("udp", nil, echo.LocalAddr().(*net.UDPAddr))
				if err != nil {
					return nil, err
				}
				wg.Go(func() { // upstream -> client, until the flow's socket is closed
					b := make([]byte, 1500)
					for {
						n, err := up.Read(b)
						if err != nil {
							return
						}
						_, _ = front.WriteToUDPAddrPort(b[:n], client)
					}
				})
				return &flow{up: up}, nil
			})
			if err == nil {
				_, _ = f.up.Write(buf[:n])
			}
		}
	})

	dial := func() *net.UDPConn {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(frontAddr))
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	roundTrip := func(c *net.UDPConn, msg string) {
		t.Helper()
		_, err := c.Write([]byte(msg))
		require.NoError(t, err)
		// The deadline only bounds a failing test; success does not wait for it.
		require.NoError(t, c.SetReadDeadline(time.Now().Add(30*time.Second)))
		b := make([]byte, 1500)
		n, err := c.Read(b)
		require.NoError(t, err)
		require.Equal(t, "echo: "+msg, string(b[:n]))
	}
	c1, c2 := dial(), dial()
	roundTrip(c1, "one")
	roundTrip(c2, "two")
	roundTrip(c1, "one again") // same flow
	st := tb.Stats().UDP
	require.Equal(t, Counters{NewFlowCount: 2, ActiveFlowCount: 2}, st)
	c1Key := Key{Proto: UDP, Src: c1.LocalAddr().(*net.UDPAddr).AddrPort(), Dst: frontAddr}
	old, ok := tb.Lookup(c1Key)
	require.True(t, ok)

	require.Equal(t, 2, tb.Sweep(clk.Advance(122*time.Second)))
	_, err = old.up.Write([]byte("x"))
	require.True(t, errors.Is(err, net.ErrClosed), "the expired flow's upstream socket is closed: %v", err)

	roundTrip(c1, "after expiry") // a new flow, a new upstream socket
	now, ok := tb.Lookup(c1Key)
	require.True(t, ok)
	require.NotSame(t, old, now)
	require.Equal(t, Counters{NewFlowCount: 3, ActiveFlowCount: 1, ExpiredFlowCount: 2}, tb.Stats().UDP)
	require.Equal(t, netip.MustParseAddr("127.0.0.1"), c1Key.Src.Addr())
}
