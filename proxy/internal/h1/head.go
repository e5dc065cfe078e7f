package h1

import "bytes"

// Limits bounds a head. The zero value means the defaults.
type Limits struct {
	// MaxHeaderBytes bounds the whole head: the start line, the field
	// lines and the empty line that ends them, CRLFs included. A head
	// of exactly MaxHeaderBytes bytes is accepted; when buf holds
	// MaxHeaderBytes bytes or more and no complete head, the parse fails
	// (431 for a request) instead of asking for more. 0 means
	// DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// MaxURILength bounds a request-target (414 above it). 0 means
	// DefaultMaxURILength.
	MaxURILength int
	// MaxHeaders bounds the number of field lines (431 above it). 0
	// means DefaultMaxHeaders.
	MaxHeaders int
}

// The default limits.
const (
	DefaultMaxHeaderBytes = 64 << 10
	DefaultMaxURILength   = 8 << 10
	DefaultMaxHeaders     = 100
)

func (l Limits) norm() Limits {
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if l.MaxURILength <= 0 {
		l.MaxURILength = DefaultMaxURILength
	}
	if l.MaxHeaders <= 0 {
		l.MaxHeaders = DefaultMaxHeaders
	}
	return l
}

// Framing says how the body of a message is delimited (RFC 9112 §6.3).
type Framing uint8

const (
	// FramingNone: no body follows the head; the next message does.
	FramingNone Framing = iota
	// FramingLength: exactly ContentLength (> 0) bytes of body follow.
	FramingLength
	// FramingChunked: a chunked body follows; run it through a Chunked.
	FramingChunked
	// FramingUntilClose (responses only): the body is everything the
	// target sends until it closes the connection, which then cannot be
	// reused. Close is set.
	FramingUntilClose
	// FramingTunnel (responses only): a 101 Switching Protocols, or a 2xx
	// answer to CONNECT. The head has no body; what follows on both
	// connections is another protocol, to be relayed both ways as it is
	// (if the request asked for it) or refused.
	FramingTunnel
)

func (f Framing) String() string {
	switch f {
	case FramingNone:
		return "none"
	case FramingLength:
		return "length"
	case FramingChunked:
		return "chunked"
	case FramingUntilClose:
		return "until-close"
	case FramingTunnel:
		return "tunnel"
	}
	return "invalid"
}

var crlfcrlf = []byte("\r\n\r\n")

// findEnd looks for the end of a head in b, resuming at from, the start
// of a line a previous call did not see the end of. It returns an offset
// just past an empty line (not always the first one: the parse finds that),
// or -1 and the start of the line still
// incomplete. A line ending in a bare LF ends the search at once (such a
// head could never complete) with faultBareLF and end just past that LF:
// the caller parses b[:end] to report the first fault in it, the one a
// parse of the whole head at once reports.
func findEnd(b []byte, from int) (end, next int, f fault) {
	if from == 0 {
		// Usually b holds one head and nothing after it. Any CRLF CRLF
		// will do as the end: parsing stops at the first empty line,
		// and needs only one after it to run without bound checks.
		if bytes.HasSuffix(b, crlfcrlf) {
			return len(b), 0, faultNone
		}
		if i := bytes.Index(b, crlfcrlf); i >= 0 {
			return i + 4, 0, faultNone
		}
	}
	i := from
	for {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1, i, faultNone
		}
		j += i
		if j == 0 || b[j-1] != '\r' {
			return j + 1, 0, faultBareLF
		}
		if j == i+1 {
			return j + 1, 0, faultNone
		}
		i = j + 1
	}
}

// parseVersion parses "HTTP/1.1" or "HTTP/1.0" and the CRLF after it at
// the start of v, returning the minor version. Another HTTP-version
// (HTTP/2.0, HTTP/1.2) is faultVersionUnsupported, anything else
// faultVersion; a v too short to tell is faultIncomplete.
func parseVersion(v []byte) (minor int, f fault) {
	const pattern = "HTTP/d.d\r\n"
	n := min(len(v), len(pattern))
	for j := 0; j < n; j++ {
		c, p := v[j], pattern[j]
		switch {
		case p == 'd':
			if c < '0' || c > '9' {
				return 0, faultVersion
			}
		case c == p:
		case j == 8 && c == '\n':
			return 0, faultBareLF
		case j == 9:
			return 0, faultBareCR
		default:
			return 0, faultVersion
		}
	}
	if n < len(pattern) {
		return 0, faultIncomplete
	}
	if v[5] != '1' || v[7] > '1' {
		return 0, faultVersionUnsupported
	}
	return int(v[7] - '0'), faultNone
}
