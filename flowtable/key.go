package flowtable

import (
	"encoding/binary"
	"net/netip"
	"strconv"
	"unsafe"

	"github.com/cespare/xxhash/v2"
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

// ckey is the compact form of a Key that the table stores and hashes: 40
// bytes instead of the 72 of a Key (netip.AddrPort is 32 bytes because it
// carries a zone pointer), with no pointer for the garbage collector to
// follow, and made of words so that comparing two is five word compares.
// It has no implicit padding, so its bytes are fully defined and can be
// hashed as they are.
//
// The layout is internal: hashes are seeded per table, so nothing outside a
// table depends on it.
type ckey struct {
	// src and dst are the addresses in 16-byte form (IPv4 as
	// ::ffff:a.b.c.d), each as two words loaded little-endian from the
	// big-endian bytes.
	src, dst     [2]uint64
	sport, dport uint16
	proto        Proto
	flags        uint8   // flagSrc4, flagDst4: the address was IPv4, not IPv6
	_            [2]byte // always zero
}

const (
	ckeySize = 40
	flagSrc4 = 1 << 0
	flagDst4 = 1 << 1
)

// makeKey returns the compact form of k, or ok false if k is not valid.
func makeKey(k Key) (c ckey, ok bool) {
	sa, da := k.Src.Addr(), k.Dst.Addr()
	if protoIndex(k.Proto) < 0 || !sa.IsValid() || !da.IsValid() {
		return c, false
	}
	c.src = addrWords(sa)
	c.dst = addrWords(da)
	c.sport, c.dport = k.Src.Port(), k.Dst.Port()
	c.proto = k.Proto
	if sa.Is4() {
		c.flags |= flagSrc4
	}
	if da.Is4() {
		c.flags |= flagDst4
	}
	return c, true
}

func addrWords(a netip.Addr) [2]uint64 {
	b := a.As16()
	return [2]uint64{binary.LittleEndian.Uint64(b[:8]), binary.LittleEndian.Uint64(b[8:])}
}

func wordsAddr(w [2]uint64, is4 bool) netip.Addr {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], w[0])
	binary.LittleEndian.PutUint64(b[8:], w[1])
	a := netip.AddrFrom16(b)
	if is4 {
		return a.Unmap()
	}
	return a
}

// key rebuilds the Key that c was made from, without its zones.
func (c *ckey) key() Key {
	return Key{
		Proto: c.proto,
		Src:   netip.AddrPortFrom(wordsAddr(c.src, c.flags&flagSrc4 != 0), c.sport),
		Dst:   netip.AddrPortFrom(wordsAddr(c.dst, c.flags&flagDst4 != 0), c.dport),
	}
}

// protoIdx returns the index of the key's protocol in per-protocol arrays.
func (c *ckey) protoIdx() int { return protoIndex(c.proto) }

// hash returns the hash of c under seed: xxhash of c's bytes with the seed
// mixed into two words, so that the hash of a key cannot be known without
// the table's seed and clients cannot choose keys that collide.
func (c *ckey) hash(seed uint64) uint64 {
	x := *c
	x.src[0] ^= seed
	x.dst[0] ^= seed * 0x9e3779b97f4a7c15
	return xxhash.Sum64(unsafe.Slice((*byte)(unsafe.Pointer(&x)), ckeySize))
}
