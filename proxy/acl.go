package proxy

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// ACL is a listener's access control: allow and deny lists of CIDR
// prefixes, checked on the client's address before any other work.
//
// A deny match refuses the client. Otherwise, an empty allow list admits
// everyone and a non-empty one admits only its matches. IPv4-mapped IPv6
// clients (::ffff:192.0.2.1, as a dual-stack socket reports them) are
// checked as IPv4. A nil *ACL admits everyone.
//
// The lists are compiled into sorted, merged address ranges, so a check is a
// binary search whatever their length, and allocates nothing.
type ACL struct {
	allow, deny ranges
	hasAllow    bool
	src         string // for String
}

// NewACL returns an ACL from allow and deny prefixes. Host bits set in a
// prefix are an error (192.0.2.1/24 is ambiguous: a typo or a host?).
func NewACL(allow, deny []netip.Prefix) (*ACL, error) {
	var errs []error
	check := func(list string, ps []netip.Prefix) {
		for i, p := range ps {
			switch {
			case !p.IsValid():
				errs = append(errs, fmt.Errorf("acl: %s[%d]: invalid prefix", list, i))
			case p.Masked() != p:
				errs = append(errs, fmt.Errorf("acl: %s[%d]: %s has host bits set; did you mean %s?", list, i, p, p.Masked()))
			}
		}
	}
	check("allow", allow)
	check("deny", deny)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	a := &ACL{allow: compile(allow), deny: compile(deny), hasAllow: len(allow) > 0}
	var b strings.Builder
	for _, p := range allow {
		fmt.Fprintf(&b, "allow %s; ", p)
	}
	for _, p := range deny {
		fmt.Fprintf(&b, "deny %s; ", p)
	}
	a.src = strings.TrimSuffix(b.String(), "; ")
	return a, nil
}

// ParseACL is NewACL from text: each entry a CIDR prefix ("10.0.0.0/8",
// "2001:db8::/32") or a single address ("192.0.2.7", taken as /32 or /128).
// The error lists every entry that does not parse, by list and position.
func ParseACL(allow, deny []string) (*ACL, error) {
	var errs []error
	parse := func(list string, ss []string) []netip.Prefix {
		out := make([]netip.Prefix, 0, len(ss))
		for i, s := range ss {
			p, err := parsePrefix(s)
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("acl: %s[%d]: %w", list, i, err))
			case p.Masked() != p:
				errs = append(errs, fmt.Errorf("acl: %s[%d]: %s has host bits set; did you mean %s?", list, i, p, p.Masked()))
			default:
				out = append(out, p)
			}
		}
		return out
	}
	a, d := parse("allow", allow), parse("deny", deny)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return NewACL(a, d)
}

// parsePrefix parses a CIDR prefix or a bare address.
func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR prefix", s)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR prefix", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Allows reports whether the client address may connect.
func (a *ACL) Allows(addr netip.Addr) bool {
	if a == nil {
		return true
	}
	k := key128(addr)
	if a.deny.contains(k) {
		return false
	}
	return !a.hasAllow || a.allow.contains(k)
}

// String describes the ACL, e.g. "allow 10.0.0.0/8; deny 10.1.0.0/16", or
// "allow all".
func (a *ACL) String() string {
	if a == nil || a.src == "" {
		return "allow all"
	}
	return a.src
}

// u128 is an address in the 16-byte form, IPv4 as IPv4-mapped IPv6, so one
// ordered space holds both families.
type u128 struct{ hi, lo uint64 }

func (x u128) cmp(y u128) int {
	if c := cmp.Compare(x.hi, y.hi); c != 0 {
		return c
	}
	return cmp.Compare(x.lo, y.lo)
}

func key128(a netip.Addr) u128 {
	b := a.Unmap().WithZone("").As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// next returns x+1 (wrapping at the top, where merging needs no next).
func (x u128) next() u128 {
	x.lo++
	if x.lo == 0 {
		x.hi++
	}
	return x
}

// ranges are closed, disjoint, sorted address ranges.
type ranges []struct{ first, last u128 }

func compile(ps []netip.Prefix) ranges {
	var rs ranges
	for _, p := range ps {
		p = p.Masked()
		bits := p.Bits()
		if p.Addr().Is4() {
			bits += 96
		}
		first := key128(p.Addr())
		last := first
		// Set the host bits of last. A Go shift by 64 gives 0, so
		// 1<<64 - 1 is all ones, as wanted for a full word.
		if h := uint(128 - bits); h >= 64 {
			last.lo = ^uint64(0)
			last.hi |= uint64(1)<<(h-64) - 1
		} else {
			last.lo |= uint64(1)<<h - 1
		}
		rs = append(rs, struct{ first, last u128 }{first, last})
	}
	slices.SortFunc(rs, func(x, y struct{ first, last u128 }) int { return x.first.cmp(y.first) })
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 && (r.first.cmp(out[n-1].last) <= 0 || r.first == out[n-1].last.next()) {
			if r.last.cmp(out[n-1].last) > 0 {
				out[n-1].last = r.last
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

func (rs ranges) contains(k u128) bool {
	// The first range that starts after k; the one before it may hold k.
	i, _ := slices.BinarySearchFunc(rs, k, func(r struct{ first, last u128 }, k u128) int {
		if r.first.cmp(k) <= 0 {
			return -1
		}
		return 1
	})
	return i > 0 && k.cmp(rs[i-1].last) <= 0
}
