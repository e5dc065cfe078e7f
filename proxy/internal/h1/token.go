package h1

import "math"

// Text is a byte string: the helpers and writers take either a slice of
// the buffer being parsed or a string constant, without conversion.
type Text interface{ ~[]byte | ~string }

// EqualFold reports whether a and b are equal under ASCII case folding:
// field names, tokens and transfer codings compare this way. Bytes above
// 0x7f compare exactly (no Unicode folding: "K" is not the Kelvin sign).
func EqualFold[A, B Text](a A, b B) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if x, y := a[i], b[i]; x != y && lower(x) != lower(y) {
			return false
		}
	}
	return true
}

// NextToken returns the first element of a comma-separated list (RFC 9110
// §5.6.1, a Connection or Transfer-Encoding value) with its surrounding
// whitespace removed, and the rest of the list after the comma. Empty
// elements ("a, ,b") are skipped, as the RFC requires; ok is false when
// the list holds no more elements. The element is not checked to be a
// token.
//
//	for tok, rest, ok := h1.NextToken(v); ok; tok, rest, ok = h1.NextToken(rest) {
//		...
//	}
func NextToken(list []byte) (tok, rest []byte, ok bool) {
	for len(list) > 0 {
		i := 0
		for i < len(list) && list[i] != ',' {
			i++
		}
		tok = trimOWS(list[:i])
		if i < len(list) {
			rest = list[i+1:]
		} else {
			rest = list[i:]
		}
		if len(tok) > 0 {
			return tok, rest, true
		}
		list = rest
	}
	return nil, nil, false
}

// HasToken reports whether the comma-separated list holds tok, compared
// case-insensitively (net/http's rule for Connection: close).
func HasToken[T Text](list []byte, tok T) bool {
	for t, rest, ok := NextToken(list); ok; t, rest, ok = NextToken(rest) {
		if EqualFold(t, tok) {
			return true
		}
	}
	return false
}

// ParseContentLength parses a Content-Length value: 1*DIGIT, no sign,
// space, comma (list) or other byte, at most math.MaxInt64. Leading zeros
// are allowed, as by RFC 9110 and net/http. It reports false for anything
// else.
func ParseContentLength[T Text](v T) (int64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// trimOWS removes the optional whitespace (SP and HTAB) around b.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}
