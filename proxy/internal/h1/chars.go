package h1

import "encoding/binary"

// Byte classes, as 256-entry tables: a table lookup per byte is what the
// scanning loops cost, and the tables are read-only.

// tokenChar holds RFC 9110 §5.6.2's tchar: the bytes of a token (method,
// field name, transfer coding, chunk-extension name).
var tokenChar = [256]bool{
	'!': true, '#': true, '$': true, '%': true, '&': true, '\'': true, '*': true,
	'+': true, '-': true, '.': true, '^': true, '_': true, '`': true, '|': true, '~': true,
	'0': true, '1': true, '2': true, '3': true, '4': true, '5': true, '6': true, '7': true, '8': true, '9': true,
	'A': true, 'B': true, 'C': true, 'D': true, 'E': true, 'F': true, 'G': true, 'H': true, 'I': true,
	'J': true, 'K': true, 'L': true, 'M': true, 'N': true, 'O': true, 'P': true, 'Q': true, 'R': true,
	'S': true, 'T': true, 'U': true, 'V': true, 'W': true, 'X': true, 'Y': true, 'Z': true,
	'a': true, 'b': true, 'c': true, 'd': true, 'e': true, 'f': true, 'g': true, 'h': true, 'i': true,
	'j': true, 'k': true, 'l': true, 'm': true, 'n': true, 'o': true, 'p': true, 'q': true, 'r': true,
	's': true, 't': true, 'u': true, 'v': true, 'w': true, 'x': true, 'y': true, 'z': true,
}

// valueChar holds the bytes of a field value (RFC 9110 §5.5): VCHAR,
// obs-text, SP and HTAB. Every other control byte (CR, LF, NUL, DEL...)
// is out.
var valueChar = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = true
	}
	for c := 0x80; c < 0x100; c++ {
		t[c] = true
	}
	t['\t'] = true
	return t
}()

// targetChar holds the bytes a request-target may hold: VCHAR but '#'
// (a fragment is never sent). Space and control bytes end or break the
// request line; bytes above 0x7e are not URI characters (clients
// percent-encode them).
var targetChar = func() (t [256]bool) {
	for c := 0x21; c < 0x7f; c++ {
		t[c] = true
	}
	t['#'] = false
	return t
}()

// hostChar holds the bytes of an RFC 3986 reg-name without
// percent-encoding (unreserved and sub-delims): the host of a Host field
// or of an absolute-form or authority-form target. IP literals are
// checked apart.
var hostChar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range []byte("-._~!$&'()*+,;=") {
		t[c] = true
	}
	return t
}()

// isHex reports whether c is a HEXDIG.
func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// unhex returns the value of the HEXDIG c.
func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// lower returns the ASCII lower case of c.
func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// isToken reports whether b is a non-empty token.
func isToken[T Text](b T) bool {
	if len(b) == 0 {
		return false
	}
	for i := 0; i < len(b); i++ {
		if !tokenChar[b[i]] {
			return false
		}
	}
	return true
}

// SWAR ("SIMD within a register") constants: a byte repeated in each of
// the eight bytes of a word.
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// skipValue returns the offset of the first byte of b at or after i that
// is not a valueChar. It checks eight bytes at a time while none of them
// is a control byte (below 0x20, or 0x7f): (x - 0x20 per byte) &^ x has a
// high bit set exactly when some byte of x is below 0x20 (no byte borrows
// otherwise, and a byte of 0x80 or more has its high bit cleared by &^ x),
// and likewise for the bytes of x ^ 0x7f that are zero. A word holding
// one (the CR that ends the line, an HTAB) is finished a byte at a time.
// b must hold a non-valueChar byte at or after i.
func skipValue(b []byte, i int) int {
	for i+8 <= len(b) {
		x := binary.LittleEndian.Uint64(b[i:])
		y := x ^ 0x7f*ones
		if ((x-0x20*ones)&^x|(y-ones)&^y)&highs != 0 {
			break
		}
		i += 8
	}
	for valueChar[b[i]] {
		i++
	}
	return i
}
