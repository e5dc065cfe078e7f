package flowtable

import (
	"encoding/binary"
	"net/netip"
	"strconv"
)

// Proto is the transport protocol of a flow. Its values are the IANA protocol
// numbers carried in the IP header, so a Proto read off a packet needs no
// mapping.
type Proto uint8

const (
	// TCP is the Transmission Control Protocol (IP protocol 6).
	TCP Proto = 6
	// UDP is the User Datagram Protocol (IP protocol 17).
	UDP Proto = 17
)

// Slots of the protocols in per-protocol arrays (settings and counters).
const (
	tcpIndex  = 0
	udpIndex  = 1
	numProtos = 2
)

// protoIndex returns p's slot in per-protocol arrays, or -1 for a protocol
// the table does not track.
func protoIndex(p Proto) int {
	switch p {
	case TCP:
		return tcpIndex
	case UDP:
		return udpIndex
	}
	return -1
}

// String returns "tcp", "udp", or "proto(N)" for any other value.
func (p Proto) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return "proto(" + strconv.Itoa(int(p)) + ")"
}

// Key identifies a flow: the 5-tuple of protocol, source address and port,
// destination address and port. For a proxy, Src is the client and Dst the
// listener's own address, so one client port talking to two listeners makes
// two flows.
//
// IPv4 and IPv6 are both supported. An IPv4 address and the same address
// mapped into IPv6 (::ffff:a.b.c.d) are different keys, as they are different
// netip.Addr values; a dual-stack socket reports one form consistently. The
// IPv6 zone is not part of a flow's identity: keys that differ only by zone
// are the same flow, and keys the table hands back (Range, the expiry
// callback) carry no zone. Keeping zones would cost a pointer per flow for
// link-local clients that a listener on one interface never distinguishes.
//
// A Key is valid when Proto is TCP or UDP and both addresses are valid
// (non-zero netip.Addr). Ports are not checked.
type Key struct {
	Proto Proto
	Src   netip.AddrPort
	Dst   netip.AddrPort
}

// String returns the key as "tcp 192.0.2.1:40000->198.51.100.7:443".
func (k Key) String() string {
	return k.Proto.String() + " " + k.Src.String() + "->" + k.Dst.String()
}

// valid reports whether the table can hold a flow with this key.
func (k Key) valid() bool {
	return protoIndex(k.Proto) >= 0 && k.Src.Addr().IsValid() && k.Dst.Addr().IsValid()
}

// ckey is the compact form of a Key that the table stores: 38 bytes instead
// of the 72 of a Key (netip.AddrPort is 32 bytes because it carries a zone
// pointer), with no pointer for the garbage collector to follow. Layout:
//
//	[0:16]  source address, 16-byte form (IPv4 as ::ffff:a.b.c.d)
//	[16:32] destination address, 16-byte form
//	[32:34] source port, big-endian
//	[34:36] destination port, big-endian
//	[36]    protocol number
//	[37]    flags: flagSrc4, flagDst4 (the address was IPv4, not IPv6)
//
// The layout is internal: hashes are seeded per table, so nothing outside a
// table depends on it.
type ckey [ckeyLen]byte

const (
	ckeyLen  = 38
	flagSrc4 = 1 << 0
	flagDst4 = 1 << 1
)

// encodeKey writes the compact form of k into b (len(b) >= ckeyLen) and
// reports whether k is valid; for an invalid key b is left partly written.
func encodeKey(b []byte, k Key) bool {
	_ = b[ckeyLen-1]
	sa, da := k.Src.Addr(), k.Dst.Addr()
	if protoIndex(k.Proto) < 0 || !sa.IsValid() || !da.IsValid() {
		return false
	}
	s16, d16 := sa.As16(), da.As16()
	copy(b[0:16], s16[:])
	copy(b[16:32], d16[:])
	binary.BigEndian.PutUint16(b[32:34], k.Src.Port())
	binary.BigEndian.PutUint16(b[34:36], k.Dst.Port())
	b[36] = byte(k.Proto)
	var f byte
	if sa.Is4() {
		f |= flagSrc4
	}
	if da.Is4() {
		f |= flagDst4
	}
	b[37] = f
	return true
}

// key rebuilds the Key that c was encoded from, without its zones.
func (c *ckey) key() Key {
	return Key{
		Proto: Proto(c[36]),
		Src:   netip.AddrPortFrom(c.addr(0, c[37]&flagSrc4 != 0), binary.BigEndian.Uint16(c[32:34])),
		Dst:   netip.AddrPortFrom(c.addr(16, c[37]&flagDst4 != 0), binary.BigEndian.Uint16(c[34:36])),
	}
}

func (c *ckey) addr(off int, is4 bool) netip.Addr {
	a := netip.AddrFrom16([16]byte(c[off : off+16]))
	if is4 {
		return a.Unmap()
	}
	return a
}

// proto returns the index of the key's protocol in per-protocol arrays.
func (c *ckey) proto() int { return protoIndex(Proto(c[36])) }

// source returns the source address in 16-byte form, the unit of the
// per-source limit (an IPv4 client counts the same whether a socket reports
// it as IPv4 or IPv4-mapped IPv6).
func (c *ckey) source() [16]byte { return [16]byte(c[0:16]) }
