package flowtable

import (
	"errors"
	"net/netip"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestKeyRoundTrip(t *testing.T) {
	for _, k := range []Key{
		{Proto: TCP, Src: netip.MustParseAddrPort("127.0.0.1:40000"), Dst: netip.MustParseAddrPort("127.0.0.1:443")},
		{Proto: UDP, Src: netip.MustParseAddrPort("[2001:db8::1]:53"), Dst: netip.MustParseAddrPort("[::1]:5353")},
		{Proto: UDP, Src: netip.MustParseAddrPort("[::ffff:127.0.0.1]:1"), Dst: netip.MustParseAddrPort("127.0.0.1:2")},
		{Proto: TCP, Src: netip.MustParseAddrPort("0.0.0.0:0"), Dst: netip.MustParseAddrPort("[::]:65535")},
		{Proto: TCP, Src: netip.MustParseAddrPort("255.255.255.255:65535"), Dst: netip.MustParseAddrPort("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:1")},
	} {
		c, ok := makeKey(k)
		require.True(t, ok, "%v", k)
		assert.Equal(t, k, c.key(), "%v", k)
	}
	// The zone is dropped.
	k := Key{Proto: TCP, Src: netip.MustParseAddrPort("[fe80::1%eth0]:1"), Dst: dst6}
	c, ok := makeKey(k)
	require.True(t, ok)
	assert.Equal(t, netip.MustParseAddrPort("[fe80::1]:1"), c.key().Src)
}

func TestKeyString(t *testing.T) {
	k := Key{Proto: TCP, Src: netip.MustParseAddrPort("127.0.0.1:40000"), Dst: netip.MustParseAddrPort("[::1]:443")}
	assert.Equal(t, "tcp 127.0.0.1:40000->[::1]:443", k.String())
	assert.Equal(t, "udp", UDP.String())
	assert.Equal(t, "proto(1)", Proto(1).String())
	assert.Equal(t, "proto(0) invalid AddrPort->invalid AddrPort", Key{}.String())
}

// FuzzKey checks, for arbitrary protocols, addresses (either family, with
// or without zone, or invalid) and ports, that encoding never panics,
// accepts exactly the valid keys, and decodes back to the key without its
// zone; and that a table answers such keys without panicking.
func FuzzKey(f *testing.F) {
	f.Add(uint8(6), []byte{127, 0, 0, 1}, uint16(1), []byte{127, 0, 0, 1}, uint16(2), "")
	f.Add(uint8(17), []byte{0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, uint16(53), []byte{}, uint16(0), "eth0")
	f.Add(uint8(1), []byte{}, uint16(0), []byte{1, 2, 3}, uint16(65535), "x")
	f.Add(uint8(17), []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1}, uint16(9), []byte{127, 0, 0, 1}, uint16(9), "")
	tb, err := New[int](WithManualSweep(), WithMaxFlows(1000), WithMaxFlowsPerSource(3))
	require.NoError(f, err)
	f.Cleanup(func() { _ = tb.Close() })
	f.Fuzz(func(t *testing.T, proto uint8, src []byte, sport uint16, dst []byte, dport uint16, zone string) {
		addr := func(b []byte) netip.Addr {
			a, _ := netip.AddrFromSlice(b) // invalid unless 4 or 16 bytes
			if a.Is6() {
				a = a.WithZone(zone)
			}
			return a
		}
		k := Key{Proto: Proto(proto), Src: netip.AddrPortFrom(addr(src), sport), Dst: netip.AddrPortFrom(addr(dst), dport)}
		c, ok := makeKey(k)
		require.Equal(t, k.valid(), ok)
		_, _, cerr := tb.LoadOrCreate(k, value(1))
		_, found := tb.Lookup(k)
		if !ok {
			require.ErrorIs(t, cerr, ErrInvalidKey)
			require.False(t, found)
			return
		}
		require.Equal(t, norm(k), c.key())
		if cerr == nil {
			require.True(t, found)
		} else {
			require.True(t, errors.Is(cerr, ErrSourceLimit) || errors.Is(cerr, ErrFull), "%v", cerr)
		}
		_ = k.String()
	})
}

func TestCompactKeyLayout(t *testing.T) {
	require.Equal(t, uintptr(40), unsafe.Sizeof(ckey{}), "equal compares five words")
	require.Equal(t, uintptr(8), unsafe.Alignof(ckey{}))
	a, _ := makeKey(key4(TCP, 1))
	b := a
	require.True(t, a.equal(&b))
	for i := range 5 {
		c := b
		(*[5]uint64)(unsafe.Pointer(&c))[i] ^= 1
		require.False(t, a.equal(&c), "word %d", i)
	}
}
