package sticky

import (
	"strings"
)

const (
	// maxCookieParts bounds the "name=value" parts a lookup reads from a
	// request's Cookie headers; net/http's own cap on cookies per request
	// is 3000 too.
	maxCookieParts = 3000
	// maxCandidates bounds how many cookies of our name a lookup tries
	// (a browser sends several when cookies of one name were set for
	// different paths or domains), so duplicates cannot multiply its work.
	maxCandidates = 4
)

// cookieScanner returns, one at a time, the values of the cookies of one
// name in a request's Cookie header lines, in order. It reads them the way
// net/http's Request.Cookies does (parts split at ';', blanks trimmed,
// surrounding double quotes removed, values with bytes a cookie value may
// not hold skipped), but allocates nothing. The zero cookieScanner yields
// nothing.
type cookieScanner struct {
	lines []string // lines not yet started
	line  string   // rest of the current line
	name  string
	parts int // parts left to read
}

func scanCookies(lines []string, name string) cookieScanner {
	return cookieScanner{lines: lines, name: name, parts: maxCookieParts}
}

// next returns the next value, or false when there is none.
func (s *cookieScanner) next() (string, bool) {
	for {
		for s.line == "" {
			if len(s.lines) == 0 {
				return "", false
			}
			s.line, s.lines = s.lines[0], s.lines[1:]
		}
		if s.parts == 0 {
			s.lines, s.line = nil, ""
			return "", false
		}
		s.parts--
		var part string
		part, s.line, _ = strings.Cut(s.line, ";")
		name, val, _ := strings.Cut(trimSpace(part), "=")
		if trimSpace(name) != s.name {
			continue
		}
		if v, ok := cookieValue(val); ok {
			return v, true
		}
	}
}

// cookieValue strips a value's surrounding double quotes and reports
// whether every byte may appear in a cookie value (net/http's rule).
func cookieValue(v string) (string, bool) {
	if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	for i := range len(v) {
		if b := v[i]; b < 0x20 || b >= 0x7f || b == '"' || b == ';' || b == '\\' {
			return "", false
		}
	}
	return v, true
}

// trimSpace removes leading and trailing ASCII blanks (space, tab, CR, LF),
// as net/textproto.TrimString does.
func trimSpace(s string) string {
	for len(s) > 0 && isBlank(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isBlank(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

func isBlank(b byte) bool { return b == ' ' || b == '\t' || b == '\r' || b == '\n' }

// setCookieName returns the cookie name of a Set-Cookie line without
// parsing the rest, so that lines for other cookies cost nothing.
func setCookieName(line string) string {
	name, _, _ := strings.Cut(line, ";")
	name, _, _ = strings.Cut(name, "=")
	return trimSpace(name)
}

// decodeBase64URL decodes s, unpadded base64url (RFC 4648 section 5), into
// dst and returns the number of bytes written: every whole byte the
// characters hold. Leftover bits are ignored, so a value cut anywhere
// decodes to a shorter value (and reads as truncated, not as garbage);
// the cookie's tag covers the bytes, so no second spelling of a value
// gains anything. It fails on any byte outside the alphabet, or when dst is
// too short. It reads from a string so that a cookie value needs no []byte
// copy.
func decodeBase64URL(dst []byte, s string) (int, bool) {
	n := len(s) * 6 / 8
	if n > len(dst) {
		return 0, false
	}
	w := 0
	for len(s) >= 4 {
		a, b, c, d := b64(s[0]), b64(s[1]), b64(s[2]), b64(s[3])
		if a|b|c|d > 63 {
			return 0, false
		}
		v := uint32(a)<<18 | uint32(b)<<12 | uint32(c)<<6 | uint32(d)
		dst[w], dst[w+1], dst[w+2] = byte(v>>16), byte(v>>8), byte(v)
		w += 3
		s = s[4:]
	}
	var v uint32
	for i := range len(s) {
		c := b64(s[i])
		if c > 63 {
			return 0, false
		}
		v = v<<6 | uint32(c)
	}
	switch len(s) {
	case 2: // 12 bits: one byte
		dst[w] = byte(v >> 4)
		w++
	case 3: // 18 bits: two bytes
		dst[w], dst[w+1] = byte(v>>10), byte(v>>2)
		w += 2
	}
	return w, true
}

// b64 returns the value of a base64url character, or 0xff.
func b64(c byte) byte {
	switch {
	case 'A' <= c && c <= 'Z':
		return c - 'A'
	case 'a' <= c && c <= 'z':
		return c - 'a' + 26
	case '0' <= c && c <= '9':
		return c - '0' + 52
	case c == '-':
		return 62
	case c == '_':
		return 63
	}
	return 0xff
}
