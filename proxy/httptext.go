package proxy

import (
	"net/netip"
	"net/url"
	"strings"
)

// trimOWS trims the whitespace HTTP allows around a field value (and line
// breaks), as net/http does when it writes a header.
func trimOWS(v string) string {
	for len(v) > 0 && isOWS(v[0]) {
		v = v[1:]
	}
	for len(v) > 0 && isOWS(v[len(v)-1]) {
		v = v[:len(v)-1]
	}
	return v
}

func isOWS(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// removeZone removes an IPv6 zone from a Host ("[fe80::1%en0]:80"), as
// net/http does: a zone means nothing to another host.
func removeZone(host string) string {
	if !strings.HasPrefix(host, "[") {
		return host
	}
	i := strings.LastIndex(host, "]")
	if i < 0 {
		return host
	}
	j := strings.LastIndex(host[:i], "%")
	if j < 0 {
		return host
	}
	return host[:j] + host[i:]
}

// cleanQuery drops the query parameters Go cannot parse (a semicolon, a
// bad escape), re-encoding the rest, as ReverseProxy does: a target that
// split them differently could otherwise see other parameters than the
// proxy's rules.
func cleanQuery(s string) string {
	for i := 0; i < len(s); {
		switch s[i] {
		case ';':
			v, _ := url.ParseQuery(s)
			return v.Encode()
		case '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				v, _ := url.ParseQuery(s)
				return v.Encode()
			}
			i += 3
		default:
			i++
		}
	}
	return s
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// validHeaderValue reports whether v holds no control character other
// than tab.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// unmapped returns ap with an IPv4-mapped address unmapped, as net/http
// shows RemoteAddr.
func unmapped(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
