package proxy

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestACL(t *testing.T) {
	a, err := ParseACL([]string{"10.0.0.0/8", "192.0.2.7", "2001:db8::/32"}, []string{"10.1.0.0/16", "2001:db8:bad::/48"})
	require.NoError(t, err)
	for addr, want := range map[string]bool{
		"10.0.0.1":           true,
		"10.255.255.255":     true,
		"10.1.2.3":           false, // deny wins
		"10.2.0.0":           true,
		"11.0.0.0":           false, // not allowed
		"9.255.255.255":      false,
		"192.0.2.7":          true,
		"192.0.2.8":          false,
		"::ffff:10.0.0.1":    true, // dual-stack form of an IPv4 client
		"::ffff:10.1.0.1":    false,
		"2001:db8::1":        true,
		"2001:db8:bad::1":    false,
		"2001:db9::1":        false,
		"fe80::1%eth0":       false,
		"2001:db8:ffff::1%x": true,
	} {
		assert.Equal(t, want, a.Allows(netip.MustParseAddr(addr)), addr)
	}
	assert.Equal(t, "allow 10.0.0.0/8; allow 192.0.2.7/32; allow 2001:db8::/32; deny 10.1.0.0/16; deny 2001:db8:bad::/48", a.String())
}

func TestACLDefaults(t *testing.T) {
	var nilACL *ACL
	assert.True(t, nilACL.Allows(netip.MustParseAddr("192.0.2.1")))
	assert.Equal(t, "allow all", nilACL.String())

	denyOnly, err := ParseACL(nil, []string{"192.0.2.0/24"})
	require.NoError(t, err)
	assert.False(t, denyOnly.Allows(netip.MustParseAddr("192.0.2.200")))
	assert.True(t, denyOnly.Allows(netip.MustParseAddr("198.51.100.1")))
	assert.True(t, denyOnly.Allows(netip.MustParseAddr("::1")))

	all, err := ParseACL([]string{"0.0.0.0/0"}, nil)
	require.NoError(t, err)
	assert.True(t, all.Allows(netip.MustParseAddr("255.255.255.255")))
	assert.False(t, all.Allows(netip.MustParseAddr("::1")), "0.0.0.0/0 covers IPv4 only")
	all6, err := ParseACL([]string{"::/0"}, nil)
	require.NoError(t, err)
	assert.True(t, all6.Allows(netip.MustParseAddr("::1")))
	assert.True(t, all6.Allows(netip.MustParseAddr("1.2.3.4")), "::/0 covers the IPv4-mapped space too")
}

func TestACLOverlappingRangesMerge(t *testing.T) {
	a, err := ParseACL([]string{"10.0.0.0/24", "10.0.0.0/8", "10.0.1.0/24", "11.0.0.0/8"}, nil)
	require.NoError(t, err)
	assert.Len(t, a.allow, 1, "10/8 swallows the /24s and 11/8 is adjacent: one range")
	assert.True(t, a.Allows(netip.MustParseAddr("11.255.0.1")))
	assert.False(t, a.Allows(netip.MustParseAddr("12.0.0.0")))
	assert.Zero(t, testing.AllocsPerRun(100, func() { a.Allows(netip.MustParseAddr("10.9.9.9")) }))
}

func TestACLErrors(t *testing.T) {
	_, err := ParseACL([]string{"10.0.0.0/33", "nonsense", "192.0.2.1/24"}, []string{"fe80::1%eth0"})
	require.Error(t, err)
	msg := err.Error()
	assert.Contains(t, msg, `acl: allow[0]: "10.0.0.0/33" is not a CIDR prefix`)
	assert.Contains(t, msg, `acl: allow[1]: "nonsense" is not an address or CIDR prefix`)
	assert.Contains(t, msg, `acl: deny[0]: "fe80::1%eth0" is not an address or CIDR prefix`)
	_, err = ParseACL([]string{"192.0.2.1/24"}, nil)
	assert.EqualError(t, err, "acl: allow[0]: 192.0.2.1/24 has host bits set; did you mean 192.0.2.0/24?")
	_, err = NewACL([]netip.Prefix{{}}, nil)
	assert.EqualError(t, err, "acl: allow[0]: invalid prefix")
}

// FuzzACL checks the compiled ranges against a plain scan of the prefixes.
func FuzzACL(f *testing.F) {
	f.Add("10.0.0.0/8", "10.1.0.0/16", "10.1.2.3")
	f.Add("2001:db8::/32", "", "2001:db8::1")
	f.Add("::/0", "0.0.0.0/0", "::ffff:1.2.3.4")
	f.Add("192.0.2.7", "garbage", "192.0.2.7")
	f.Add("::ffff:0:0/96", "::ffff:10.0.0.0/104", "10.0.0.1")
	f.Fuzz(func(t *testing.T, allow, deny, addr string) {
		a, err := ParseACL([]string{allow}, []string{deny})
		if err != nil {
			return
		}
		ip, err := netip.ParseAddr(addr)
		if err != nil {
			return
		}
		pa, _ := parsePrefix(allow)
		pd, _ := parsePrefix(deny)
		u := ip.Unmap().WithZone("")
		in := func(p netip.Prefix) bool {
			if p.Addr().Is4() {
				return u.Is4() && p.Contains(u)
			}
			return p.Contains(netip.AddrFrom16(u.As16())) // IPv4 clients in their mapped form
		}
		want := !in(pd) && in(pa)
		if got := a.Allows(ip); got != want {
			t.Fatalf("allow %q deny %q: Allows(%s) = %v, want %v", allow, deny, ip, got, want)
		}
	})
}
