package h1

// Response is a parsed response head, from a target. Its byte slices point
// into the buffer given to ParseResponse, as for Request, and it is reused
// in the same way.
type Response struct {
	Minor   int    // the minor HTTP version: 0 or 1
	Status  int    // 100 to 599
	Reason  []byte // the reason phrase, possibly empty
	Headers []Header

	// Framing says how the body is delimited, from the status, the
	// request's method and the fields (RFC 9112 §6.3): FramingNone for
	// a 1xx other than 101, 204, 304, an answer to HEAD, or
	// Content-Length: 0; FramingTunnel for 101 and a 2xx answer to
	// CONNECT; else FramingChunked, FramingLength, or FramingUntilClose.
	// A 1xx other than 101 is interim: the final response follows.
	Framing Framing
	// ContentLength is the Content-Length field's value, -1 without one;
	// it says how long the body is only when Framing is FramingLength
	// (an answer to HEAD has the length its GET would have).
	ContentLength int64
	// Chunked reports Transfer-Encoding: chunked, which frames the body
	// only when Framing is FramingChunked.
	Chunked bool
	// Close reports that the target closes the connection after this
	// response, which therefore must not be reused: Connection: close,
	// HTTP/1.0 without keep-alive, or FramingUntilClose.
	Close bool

	scanned int // where the search for the end of an incomplete head resumes
}

// Reset clears r for the next response, keeping the capacity of Headers. A
// parse that returns ErrIncomplete leaves r remembering how far it looked
// into the buffer: Reset r before parsing another buffer with it (another
// connection's) without first completing that head.
func (r *Response) Reset() {
	clear(r.Headers)
	*r = Response{Headers: r.Headers[:0]}
}

// ParseResponse parses the response head at the start of buf into r, and
// returns its length: the body, or the next response, starts at buf[n].
// method is the method of the request it answers, which frames it (HEAD
// and CONNECT). As ParseRequest, it returns ErrIncomplete while the head
// may yet be valid; otherwise the *Error's Status is 502: the caller
// answers its client with it and closes the target connection.
//
// It holds a target to the rules ParseRequest holds a client to, and
// refuses besides: a status code outside 100-599; Transfer-Encoding, or a
// Content-Length other than 0, in a 1xx or 204 response (RFC 9110 §8.6,
// RFC 9112 §6.1). A Transfer-Encoding other than chunked is refused even
// where RFC 9112 §6.3 would read until close: that is the sign of a
// confused target, and net/http refuses it too.
func ParseResponse(buf []byte, r *Response, method []byte, lim Limits) (n int, err error) {
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
			_, f = r.parseStatusLine(win)
			r.Reset()
		}
		if f == faultNone || f == faultIncomplete {
			if len(buf) >= lim.MaxHeaderBytes {
				return 0, respErrs[faultHeadTooLarge]
			}
			r.scanned = next
			return 0, ErrIncomplete
		}
	}
	if f != faultNone && f != faultBareLF {
		return 0, respErrs[f]
	}
	bareLF := f
	n, f = r.parse(buf[:end], method, &lim)
	if f == faultNone {
		f = bareLF
	}
	if f != faultNone {
		if f == faultIncomplete {
			f = faultBareCR // cannot happen: b ends with a line
		}
		r.Reset()
		return 0, respErrs[f]
	}
	return n, nil
}

// parse parses the complete head b.
func (r *Response) parse(b, method []byte, lim *Limits) (int, fault) {
	i, f := r.parseStatusLine(b)
	if f != faultNone {
		return 0, f
	}
	var fi fieldInfo
	r.Headers, i, f = parseFields(b, i, r.Headers, lim.MaxHeaders, &fi)
	if f != faultNone {
		return 0, f
	}

	r.ContentLength = -1
	bodyless := r.Status < 200 || r.Status == 204
	if fi.tes > 0 {
		switch {
		case fi.cls > 0:
			return 0, faultCLAndTE
		case r.Minor == 0:
			return 0, faultTEHTTP10
		case bodyless:
			return 0, faultTEBodyless
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
	}
	if fi.cls > 0 {
		if fi.cls > 1 {
			return 0, faultCLDup
		}
		cl, ok := ParseContentLength(fi.cl)
		if !ok {
			return 0, faultCLInvalid
		}
		if bodyless && cl != 0 {
			return 0, faultCLBodyless
		}
		r.ContentLength = cl
	}
	r.Close = fi.close || r.Minor == 0 && !fi.keepAlive

	switch m := string(method); {
	case r.Status == 101 || m == "CONNECT" && r.Status/100 == 2:
		r.Framing = FramingTunnel
	case bodyless || r.Status == 304 || m == "HEAD":
		r.Framing = FramingNone
	case r.Chunked:
		r.Framing = FramingChunked
	case r.ContentLength > 0:
		r.Framing = FramingLength
	case r.ContentLength == 0:
		r.Framing = FramingNone
	default:
		r.Framing = FramingUntilClose
		r.Close = true
	}
	if fi.options > 0 {
		markOptions(r.Headers)
	}
	return i, faultNone
}

// parseStatusLine parses the status line at the start of b:
// HTTP-version SP 3DIGIT [SP reason-phrase] CRLF (the SP after the code
// may be missing, as net/http allows). It returns the offset past it, or
// faultIncomplete when b ends before it does with nothing wrong so far.
func (r *Response) parseStatusLine(b []byte) (int, fault) {
	const version = "HTTP/1.1 "
	n := min(len(b), len(version))
	for j := 0; j < n; j++ {
		c, p := b[j], version[j]
		switch {
		case j == 7:
			if c != '0' && c != '1' {
				if c >= '2' && c <= '9' {
					return j, faultVersionUnsupported
				}
				return j, faultVersion
			}
		case c == p:
		default:
			if j == 5 && c >= '2' && c <= '9' {
				return j, faultVersionUnsupported
			}
			return j, faultVersion
		}
	}
	if n < len(version) {
		return n, faultIncomplete
	}
	r.Minor = int(b[7] - '0')
	i := len(version)
	code := 0
	for ; i < len(b) && i < len(version)+3; i++ {
		c := b[i]
		if c < '0' || c > '9' {
			return i, faultStatusCode
		}
		code = code*10 + int(c-'0')
	}
	if i < len(version)+3 {
		return i, faultIncomplete
	}
	if code < 100 || code > 599 {
		return i, faultStatusCode
	}
	r.Status = code
	switch {
	case i == len(b):
		return i, faultIncomplete
	case b[i] == ' ':
		i++
	case b[i] != '\r':
		return i, faultStatusLine
	}
	rs := i
	for i < len(b) && valueChar[b[i]] {
		i++
	}
	switch {
	case i == len(b):
		return i, faultIncomplete
	case b[i] == '\n':
		return i, faultBareLF
	case b[i] != '\r':
		return i, faultReason
	case i+1 == len(b):
		return i, faultIncomplete
	case b[i+1] != '\n':
		return i, faultBareCR
	}
	r.Reason = b[rs:i:i]
	return i + 2, faultNone
}
