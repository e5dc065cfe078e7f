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

// ckey is the compact form of a Key that the table stores and compares: 40
// bytes instead of the 72 of a Key (netip.AddrPort is 32 bytes because it
// carries a zone pointer), with no pointer for the garbage collector to
// follow. It has no implicit padding and is word-aligned, so equal can
// compare it as five words (== on it calls the runtime's memequal).
type ckey struct {
	_            [0]uint64 // word alignment, for equal
	src, dst     [16]byte  // addresses in 16-byte form (IPv4 as ::ffff:a.b.c.d)
	sport, dport uint16
	proto        Proto
	flags        uint8   // flagSrc4, flagDst4: the address was IPv4, not IPv6
	_            [2]byte // always zero
}

const (
	flagSrc4 = 1 << 0
	flagDst4 = 1 << 1
)

// makeKey returns the compact form of k, or ok false if k is not valid.
func makeKey(k Key) (c ckey, ok bool) {
	sa, da := k.Src.Addr(), k.Dst.Addr()
	if protoIndex(k.Proto) < 0 || !sa.IsValid() || !da.IsValid() {
		return c, false
	}
	var f uint8
	if sa.Is4() {
		f |= flagSrc4
	}
	if da.Is4() {
		f |= flagDst4
	}
	return ckey{src: sa.As16(), dst: da.As16(), sport: k.Src.Port(), dport: k.Dst.Port(), proto: k.Proto, flags: f}, true
}

func addr16(b [16]byte, is4 bool) netip.Addr {
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
		Src:   netip.AddrPortFrom(addr16(c.src, c.flags&flagSrc4 != 0), c.sport),
		Dst:   netip.AddrPortFrom(addr16(c.dst, c.flags&flagDst4 != 0), c.dport),
	}
}

// equal reports whether c and o are the same key.
func (c *ckey) equal(o *ckey) bool {
	a, b := (*[5]uint64)(unsafe.Pointer(c)), (*[5]uint64)(unsafe.Pointer(o))
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] && a[4] == b[4]
}

// protoIdx returns the index of the key's protocol in per-protocol arrays.
func (c *ckey) protoIdx() int { return protoIndex(c.proto) }

// hash returns the hash of c under the table's seed: xxhash of three words
// that fold the key. Hashing 24 bytes instead of the key's 38 takes
// xxhash's short path, a good part of a lookup's cost. The fold is
// injective for a given destination (each source word is XORed with the
// matching destination word, and ports, protocol and flags fill the third
// word), and the destination is the proxy's own address, so clients cannot
// make keys collide beyond a pair per pair of destinations. The seed, mixed
// into the first word, keeps them from knowing the hash of a key at all.
func (c *ckey) hash(seed uint64) uint64 {
	le := binary.LittleEndian
	var b [24]byte
	le.PutUint64(b[0:], le.Uint64(c.src[0:])^le.Uint64(c.dst[0:])^seed)
	le.PutUint64(b[8:], le.Uint64(c.src[8:])^le.Uint64(c.dst[8:]))
	le.PutUint64(b[16:], uint64(c.sport)|uint64(c.dport)<<16|uint64(c.proto)<<32|uint64(c.flags)<<40)
	return xxhash.Sum64(b[:])
}

// source returns the source address in 16-byte form, the unit of the
// per-source limit.
func (c *ckey) source() [16]byte { return c.src }
