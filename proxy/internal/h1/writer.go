package h1

import (
	"errors"
	"strconv"
)

// The writers' errors: a head that would be malformed, or would let a
// value smuggle a field or a message in, is not written.
var (
	ErrInvalidMethod = errors.New("h1: method is not a token")
	ErrInvalidTarget = errors.New("h1: request-target is empty or holds a space, a control byte or '#'")
	ErrInvalidStatus = errors.New("h1: status code is not between 100 and 999")
	ErrInvalidName   = errors.New("h1: field name is not a token")
	ErrInvalidValue  = errors.New("h1: field value holds a control byte (CR, LF, NUL...)")
)

// The writers append to a buffer that is then sent as it is: a head is
// built by AppendRequestLine or AppendStatusLine, AppendField for each
// field, and AppendEnd. Each validates what it is given and, on error,
// returns dst unchanged. Values are written without the whitespace around
// them.

// AppendRequestLine appends "method SP target SP HTTP/1.1 CRLF".
func AppendRequestLine[M, T Text](dst []byte, method M, target T) ([]byte, error) {
	if !isToken(method) {
		return dst, ErrInvalidMethod
	}
	if len(target) == 0 {
		return dst, ErrInvalidTarget
	}
	for i := 0; i < len(target); i++ {
		if !targetChar[target[i]] {
			return dst, ErrInvalidTarget
		}
	}
	dst = append(dst, method...)
	dst = append(dst, ' ')
	dst = append(dst, target...)
	return append(dst, " HTTP/1.1\r\n"...), nil
}

// AppendStatusLine appends "HTTP/1.1 SP status SP reason CRLF".
func AppendStatusLine[R Text](dst []byte, status int, reason R) ([]byte, error) {
	if status < 100 || status > 999 {
		return dst, ErrInvalidStatus
	}
	for i := 0; i < len(reason); i++ {
		if !valueChar[reason[i]] {
			return dst, ErrInvalidValue
		}
	}
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(status), 10)
	dst = append(dst, ' ')
	dst = append(dst, reason...)
	return append(dst, "\r\n"...), nil
}

// AppendField appends "name: value CRLF". The name must be a token; the
// value may hold field-value bytes only (RFC 9110 §5.5: VCHAR, obs-text,
// SP, HTAB), so no CR, LF or NUL.
func AppendField[N, V Text](dst []byte, name N, value V) ([]byte, error) {
	if !isToken(name) {
		return dst, ErrInvalidName
	}
	s, e := 0, len(value)
	for s < e && (value[s] == ' ' || value[s] == '\t') {
		s++
	}
	for e > s && (value[e-1] == ' ' || value[e-1] == '\t') {
		e--
	}
	for i := s; i < e; i++ {
		if !valueChar[value[i]] {
			return dst, ErrInvalidValue
		}
	}
	dst = append(dst, name...)
	dst = append(dst, ": "...)
	dst = append(dst, value[s:e]...)
	return append(dst, "\r\n"...), nil
}

// AppendContentLength appends "Content-Length: n CRLF"; n must not be
// negative.
func AppendContentLength(dst []byte, n int64) []byte {
	dst = append(dst, "Content-Length: "...)
	dst = strconv.AppendInt(dst, n, 10)
	return append(dst, "\r\n"...)
}

// AppendEnd appends the CRLF that ends a head.
func AppendEnd(dst []byte) []byte {
	return append(dst, "\r\n"...)
}
