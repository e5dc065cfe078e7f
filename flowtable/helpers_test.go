package flowtable

import (
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// epoch0 is the fake clocks' starting time.
var epoch0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu  sync.Mutex // guards now
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: epoch0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d and returns the new time.
func (c *fakeClock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

// newManual returns a table with a fake clock and no sweeper goroutine.
func newManual[V any](t testing.TB, opts ...Option) (*Table[V], *fakeClock) {
	t.Helper()
	clk := newFakeClock()
	tb, err := New[V](append([]Option{WithClock(clk.Now), WithManualSweep()}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tb.Close() })
	return tb, clk
}

// dst is the listener address of test flows. Keys are only data: the table
// never dials an address, and these tests open no socket.
var (
	dst4 = netip.MustParseAddrPort("127.0.0.1:8080")
	dst6 = netip.MustParseAddrPort("[::1]:8080")
)

// key4 returns the i-th IPv4 test flow of protocol p: sources spread over
// 127.0.0.0/8 and the port range.
func key4(p Proto, i int) Key {
	a := netip.AddrFrom4([4]byte{127, byte(i >> 16), byte(i >> 8), byte(i)})
	return Key{Proto: p, Src: netip.AddrPortFrom(a, uint16(1024+i%60000)), Dst: dst4}
}

// key6 returns the i-th IPv6 test flow of protocol p, from the
// documentation prefix 2001:db8::/32.
func key6(p Proto, i int) Key {
	var b [16]byte
	copy(b[:], []byte{0x20, 0x01, 0x0d, 0xb8})
	b[12], b[13], b[14], b[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
	return Key{Proto: p, Src: netip.AddrPortFrom(netip.AddrFrom16(b), uint16(1024+i%60000)), Dst: dst6}
}

// value returns a create function that makes v.
func value[V any](v V) func() (V, error) { return func() (V, error) { return v, nil } }

// waitFor spins until cond holds, failing the test after a generous
// deadline. It synchronises on a condition, never on elapsed time.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtime.Gosched()
	}
}

// addr16of returns a in 16-byte form, the table's unit of per-source
// counting.
func addr16of(a netip.Addr) [16]byte { return a.As16() }
