package proxy

import (
	"net/netip"
	"strings"
)

// maxXFFHops bounds how many X-Forwarded-For entries clientAddr looks at, so
// a header of a million commas costs no more than a short one.
const maxXFFHops = 32

// clientAddr returns the client's IP address as the proxy trusts it. The
// peer is the address the connection came from. If the peer is a trusted
// proxy, X-Forwarded-For is read from the right (the entry the peer added)
// leftwards, skipping trusted proxies: the first untrusted address is the
// client. A malformed entry stops the walk and the last trusted hop counts
// as the client, so a client cannot hide behind garbage. An untrusted peer
// is the client, whatever its headers say.
func clientAddr(xff []string, peer netip.Addr, trusted *ACL) netip.Addr {
	peer = peer.Unmap()
	if trusted == nil || !trusted.Allows(peer) || len(xff) == 0 {
		return peer
	}
	client := peer
	hops := 0
	for i := len(xff) - 1; i >= 0; i-- {
		v := xff[i]
		for v != "" {
			if hops++; hops > maxXFFHops {
				return client
			}
			var entry string
			if j := strings.LastIndexByte(v, ','); j >= 0 {
				entry, v = v[j+1:], v[:j]
			} else {
				entry, v = v, ""
			}
			entry = strings.TrimSpace(entry)
			if entry == "" {
				continue
			}
			a, ok := parseXFFEntry(entry)
			if !ok {
				return client
			}
			client = a
			if !trusted.Allows(a) {
				return a
			}
		}
	}
	return client
}

// parseXFFEntry parses one X-Forwarded-For entry: an IPv4 or IPv6 address,
// bracketed or not, with an optional port (some proxies add one).
func parseXFFEntry(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil && ap.Addr().Zone() == "" {
		return ap.Addr().Unmap(), true
	}
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil && a.Is6() && a.Zone() == "" {
			return a.Unmap(), true
		}
	}
	return netip.Addr{}, false
}

// forwardedValue returns the RFC 7239 Forwarded element this proxy adds.
func forwardedValue(peer netip.Addr, host, proto string) string {
	var b strings.Builder
	b.WriteString("for=")
	if p := peer.Unmap(); p.Is6() {
		b.WriteString(`"[` + p.String() + `]"`)
	} else {
		b.WriteString(p.String())
	}
	if host != "" && isToken(host) {
		b.WriteString(";host=" + host)
	} else if host != "" {
		b.WriteString(";host=" + quote(host))
	}
	b.WriteString(";proto=" + proto)
	return b.String()
}

func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return s != ""
}

func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			b.WriteByte('\\')
			b.WriteByte(c)
		} else if c >= 0x20 && c != 0x7f {
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
