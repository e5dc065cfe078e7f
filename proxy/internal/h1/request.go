package h1

import "bytes"

// Form is the form of a request-target (RFC 9112 §3.2).
type Form uint8

// The forms of a request-target.
const (
	// FormOrigin: "/path?query", the usual form.
	FormOrigin Form = iota
	// FormAbsolute: "http://host/path?query", as sent to forward
	// proxies. Only the schemes http and https are accepted.
	FormAbsolute
	// FormAuthority: "host:port", with CONNECT and only with CONNECT.
	FormAuthority
	// FormAsterisk: "*", with OPTIONS and only with OPTIONS.
	FormAsterisk
)

// maxMethod bounds the length of a method: the longest registered one
// (UPDATEREDIRECTREF) has 17 bytes.
const maxMethod = 32

// Request is a parsed request head. Its byte slices point into the buffer
// given to ParseRequest (the memory-ownership rule: they are valid while
// that buffer is, and must not be modified). A Request is reused from one
// request to the next: ParseRequest resets it, keeping the capacity of
// Headers, so that parsing allocates nothing once warm.
type Request struct {
	Method  []byte // a token, case as sent
	Target  []byte // the request-target as sent
	Form    Form   // the form of Target
	Minor   int    // the minor HTTP version: 0 or 1
	Headers []Header

	// Path is the target in origin form, what a proxy sends on: Target
	// itself in origin and asterisk form, the path and query after the
	// authority in absolute form ("/" when empty, "*" for OPTIONS), nil
	// in authority form.
	Path []byte
	// Host is the authority the request is for: the authority of an
	// absolute-form or authority-form target, else the Host field's
	// value (empty if the field is empty, nil without one, which only an
	// HTTP/1.0 request may do). A request with two Host fields, an
	// invalid one, or one that differs from the target's authority (ASCII
	// case aside) is refused.
	Host []byte

	// Framing says how the body is delimited: FramingNone,
	// FramingLength or FramingChunked (a request without
	// Content-Length or Transfer-Encoding has no body).
	Framing Framing
	// ContentLength is the Content-Length field's value, -1 without one.
	ContentLength int64
	// Chunked reports Transfer-Encoding: chunked.
	Chunked bool

	// Close reports that the connection ends after this request's
	// response: Connection: close, or HTTP/1.0 without keep-alive.
	Close bool
	// Upgrade reports an HTTP/1.1 request to switch protocols: an
	// Upgrade field and Connection: upgrade.
	Upgrade bool
	// Expect100 reports Expect: 100-continue on HTTP/1.1 (on HTTP/1.0 it
	// is ignored, RFC 9110 §10.1.1). Any other expectation is refused
	// with 417.
	Expect100 bool

	scanned int // where the search for the end of an incomplete head resumes
}

// Reset clears r for the next request, keeping the capacity of Headers. A
// parse that returns ErrIncomplete leaves r remembering how far it looked
// into the buffer: Reset r before parsing another buffer with it (another
// connection's) without first completing that head.
func (r *Request) Reset() {
	clear(r.Headers) // let go of the previous buffer
	*r = Request{Headers: r.Headers[:0]}
}

// asterisk is the Path of an absolute-form OPTIONS request without a
// path (RFC 9112 §3.2.4); slash that of any other.
var asterisk, slash = []byte("*"), []byte("/")

// ParseRequest parses the request head at the start of buf into r, and
// returns its length: the body, or the next request, starts at buf[n].
//
// It returns ErrIncomplete when buf holds the beginning of a head that may
// still be valid: call again with the same bytes and more after them (r
// remembers how far it looked, so a head that arrives a byte at a time
// costs linear time). Otherwise it returns an *Error carrying the status
// to answer with, after which the connection must be closed: what follows
// a refused head cannot be framed.
//
// What is refused, and why, is in the package documentation.
func ParseRequest(buf []byte, r *Request, lim Limits) (n int, err error) {
	lim = lim.norm()
	from := r.scanned
	r.Reset()
	win := buf
	if len(win) > lim.MaxHeaderBytes {
		win = win[:lim.MaxHeaderBytes]
	}
	if from > len(win) {
		from = 0
	}
	end, next, f := findEnd(win, from)
	if end < 0 && f == faultNone {
		if from == 0 {
			// Refuse a bad request line without waiting for the rest
			// of the head.
			_, f = r.parseRequestLine(win, &lim)
			r.Reset()
		}
		if f == faultNone || f == faultIncomplete {
			if len(buf) >= lim.MaxHeaderBytes {
				return 0, reqErrs[faultHeadTooLarge]
			}
			r.scanned = next
			return 0, ErrIncomplete
		}
	}
	if f != faultNone && f != faultBareLF {
		return 0, reqErrs[f]
	}
	bareLF := f
	n, f = r.parse(buf[:end], &lim)
	if f == faultNone {
		f = bareLF
	}
	if f != faultNone {
		if f == faultIncomplete {
			f = faultBareCR // cannot happen: b ends with a line
		}
		r.Reset()
		return 0, reqErrs[f]
	}
	return n, nil
}

// parse parses the complete head b.
func (r *Request) parse(b []byte, lim *Limits) (int, fault) {
	i, f := r.parseRequestLine(b, lim)
	if f != faultNone {
		return 0, f
	}
	var fi fieldInfo
	r.Headers, i, f = parseFields(b, i, r.Headers, lim.MaxHeaders, &fi)
	if f != faultNone {
		return 0, f
	}
	if f = r.parseTarget(); f != faultNone {
		return 0, f
	}

	// Host (RFC 9112 §3.2).
	switch {
	case fi.hosts > 1:
		return 0, faultHostDup
	case fi.hosts == 0 && r.Minor == 1:
		return 0, faultHostMissing
	case fi.hosts == 1 && len(fi.host) > 0 && !validAuthority(fi.host, false):
		return 0, faultHostInvalid
	}
	if r.Form == FormAbsolute || r.Form == FormAuthority {
		if fi.hosts == 1 && !EqualFold(fi.host, r.Host) {
			return 0, faultHostMismatch
		}
	} else {
		r.Host = fi.host
	}

	// Framing (RFC 9112 §6.3).
	r.ContentLength = -1
	if fi.tes > 0 {
		switch {
		case fi.cls > 0:
			return 0, faultCLAndTE
		case r.Minor == 0:
			return 0, faultTEHTTP10
		case fi.tes > 1:
			return 0, faultTEDup
		}
		if f = parseTE(fi.te, fi.teRaw); f != faultNone {
			return 0, f
		}
		if fi.badTrailer {
			return 0, faultTrailerDecl
		}
		r.Chunked = true
		r.Framing = FramingChunked
	}
	if fi.cls > 0 {
		if fi.cls > 1 {
			return 0, faultCLDup
		}
		cl, ok := ParseContentLength(fi.cl)
		if !ok {
			return 0, faultCLInvalid
		}
		r.ContentLength = cl
		if cl > 0 {
			r.Framing = FramingLength
		}
	}

	// The connection.
	r.Close = fi.close || r.Minor == 0 && !fi.keepAlive
	r.Upgrade = r.Minor == 1 && fi.upgrade && fi.connUp
	if fi.expects > 0 {
		if !fi.expect100 {
			return 0, faultExpect
		}
		r.Expect100 = r.Minor == 1
	}
	if fi.options > 0 {
		markOptions(r.Headers)
	}
	return i, faultNone
}

// parseRequestLine parses the request line at the start of b:
// method SP request-target SP HTTP-version CRLF. It returns the offset
// past it, or faultIncomplete when b ends before it does with nothing
// wrong so far.
func (r *Request) parseRequestLine(b []byte, lim *Limits) (int, fault) {
	i := 0
	for i < len(b) && tokenChar[b[i]] {
		i++
	}
	switch {
	case i > maxMethod:
		return i, faultMethodLong
	case i == len(b):
		return i, faultIncomplete
	case i == 0 && (b[0] == '\r' || b[0] == '\n'):
		return i, faultLeadingEmptyLine
	case i == 0 || b[i] != ' ':
		return i, faultMethod
	}
	r.Method = b[:i:i]
	i++
	ts := i
	for i < len(b) && targetChar[b[i]] {
		i++
	}
	switch {
	case i-ts > lim.MaxURILength:
		return i, faultTargetLong
	case i == len(b):
		return i, faultIncomplete
	case b[i] != ' ':
		return i, faultTarget
	case i == ts:
		return i, faultTargetForm
	}
	r.Target = b[ts:i:i]
	i++
	minor, f := parseVersion(b[i:])
	if f != faultNone {
		return i, f
	}
	r.Minor = minor
	return i + len("HTTP/1.1\r\n"), faultNone
}

// parseTarget finds the form of r.Target and checks it.
func (r *Request) parseTarget() fault {
	t := r.Target
	connect := string(r.Method) == "CONNECT"
	switch {
	case t[0] == '/':
		if connect {
			return faultConnectForm
		}
		r.Form, r.Path = FormOrigin, t
		return checkPath(t)
	case len(t) == 1 && t[0] == '*':
		if string(r.Method) != "OPTIONS" {
			return faultAsterisk
		}
		r.Form, r.Path = FormAsterisk, t
		return faultNone
	case connect:
		if !validAuthority(t, true) {
			return faultAuthority
		}
		r.Form, r.Host = FormAuthority, t
		return faultNone
	}
	var rest []byte
	switch {
	case len(t) >= 7 && EqualFold(t[:7], "http://"):
		rest = t[7:]
	case len(t) >= 8 && EqualFold(t[:8], "https://"):
		rest = t[8:]
	default:
		return faultTargetForm
	}
	j := 0
	for j < len(rest) && rest[j] != '/' && rest[j] != '?' {
		j++
	}
	auth, path := rest[:j:j], rest[j:]
	if !validAuthority(auth, false) {
		return faultAuthority
	}
	switch {
	case len(path) == 0 && string(r.Method) == "OPTIONS":
		path = asterisk
	case len(path) == 0:
		path = slash
	case path[0] == '?':
		// Its origin form "/?query" is not in the buffer; no client
		// sends this.
		return faultTargetForm
	}
	r.Form, r.Host, r.Path = FormAbsolute, auth, path
	return checkPath(path)
}

// checkPath checks the percent-encoding of the path of an origin-form
// target (up to its query, which net/http does not check either): a
// router and a target that decoded "%zz" differently could disagree on
// the path.
func checkPath(p []byte) fault {
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '?':
			return faultNone
		case '%':
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return faultTargetEscape
			}
			i += 2
		}
	}
	return faultNone
}

// validAuthority reports whether a is uri-host [":" port] (RFC 3986): a
// reg-name without percent-encoding, or a bracketed IPv6 address without
// a zone, then an optional port of digits, required when requirePort
// (authority-form). Userinfo ("user@host") is refused.
func validAuthority(a []byte, requirePort bool) bool {
	if len(a) == 0 {
		return false
	}
	var port []byte
	hasPort := false
	if a[0] == '[' {
		j := bytes.IndexByte(a, ']')
		if j < 0 {
			return false
		}
		if !validIPv6(a[1:j]) {
			return false
		}
		rest := a[j+1:]
		if len(rest) > 0 {
			if rest[0] != ':' {
				return false
			}
			port, hasPort = rest[1:], true
		}
	} else {
		host := a
		if j := bytes.IndexByte(a, ':'); j >= 0 {
			host, port, hasPort = a[:j], a[j+1:], true
		}
		if len(host) == 0 {
			return false
		}
		for _, c := range host {
			if !hostChar[c] {
				return false
			}
		}
	}
	if requirePort && len(port) == 0 {
		return false
	}
	if !hasPort {
		return true
	}
	for _, c := range port {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// validIPv6 reports whether s is an RFC 3986 IPv6address (no zone): up to
// eight groups of 1 to 4 HEXDIG, at most one "::" standing for at least
// one group, the last two groups possibly an IPv4 address.
func validIPv6(s []byte) bool {
	groups, ellipsis, i := 0, false, 0
	if len(s) >= 2 && s[0] == ':' && s[1] == ':' {
		ellipsis, i = true, 2
	}
	for i < len(s) {
		j := i
		for j < len(s) && j-i < 5 && isHex(s[j]) {
			j++
		}
		if j < len(s) && s[j] == '.' {
			if !validIPv4(s[i:]) {
				return false
			}
			groups += 2
			break
		}
		if j == i || j-i > 4 {
			return false
		}
		groups++
		if i = j; i == len(s) {
			break
		}
		if s[i] != ':' {
			return false
		}
		if i++; i == len(s) {
			return false
		}
		if s[i] == ':' {
			if ellipsis {
				return false
			}
			ellipsis = true
			i++
		}
	}
	if ellipsis {
		return groups <= 7
	}
	return groups == 8
}

// validIPv4 reports whether s is a dotted-decimal IPv4 address: four
// decimal octets up to 255, without leading zeros.
func validIPv4(s []byte) bool {
	for part := 0; part < 4; part++ {
		if part > 0 {
			if len(s) == 0 || s[0] != '.' {
				return false
			}
			s = s[1:]
		}
		n, j := 0, 0
		for j < len(s) && j < 4 && '0' <= s[j] && s[j] <= '9' {
			n = n*10 + int(s[j]-'0')
			j++
		}
		if j == 0 || j > 3 || n > 255 || j > 1 && s[0] == '0' {
			return false
		}
		s = s[j:]
	}
	return len(s) == 0
}

// SkipEmptyLines returns how many bytes of empty lines (CRLF, at most
// two) start buf. RFC 9112 §2.2 lets a server ignore empty lines before a
// request line, which old clients send after a POST body; ParseRequest
// refuses them (as net/http.ReadRequest does), and net/http's server skips
// up to four bytes of them after a POST only. A connection loop may call
// SkipEmptyLines between two requests on a connection, after one with a
// body, and discard what it returns.
func SkipEmptyLines(buf []byte) int {
	n := 0
	for n < 4 && len(buf) >= n+2 && buf[n] == '\r' && buf[n+1] == '\n' {
		n += 2
	}
	return n
}
