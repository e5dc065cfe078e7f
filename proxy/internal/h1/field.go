package h1

import "bytes"

// Header is one field line of a head, as received: Name is the field
// name (a token, case as sent), Value the field value without the
// whitespace around it. Both are slices of the buffer that was parsed.
type Header struct {
	Name, Value []byte
	// Kind names the fields the parser knows, KindOther for the rest.
	Kind Kind
	// Hop reports a hop-by-hop field, which a proxy does not forward:
	// Connection, Keep-Alive, Proxy-Connection, TE, Trailer,
	// Transfer-Encoding, Upgrade, Proxy-Authenticate, Proxy-Authorization
	// (net/http/httputil.ReverseProxy's list), and every field the
	// Connection field names (RFC 9110 §7.6.1).
	Hop bool
}

// Kind identifies a field a load balancer handles itself, so that the
// code rewriting a head switches on it instead of comparing names.
type Kind uint8

// The fields the parser knows by name (compared case-insensitively).
const (
	KindOther Kind = iota
	KindHost
	KindContentLength
	KindTransferEncoding
	KindConnection
	KindKeepAlive
	KindProxyConnection
	KindUpgrade
	KindTE
	KindTrailer
	KindExpect
	KindProxyAuthenticate
	KindProxyAuthorization
	KindHTTP2Settings
	KindForwarded
	KindXForwardedFor
	KindXForwardedHost
	KindXForwardedProto
	KindXForwardedPort
)

// kindNames are the names of the known kinds, by kind.
var kindNames = [...]string{
	KindHost:               "Host",
	KindContentLength:      "Content-Length",
	KindTransferEncoding:   "Transfer-Encoding",
	KindConnection:         "Connection",
	KindKeepAlive:          "Keep-Alive",
	KindProxyConnection:    "Proxy-Connection",
	KindUpgrade:            "Upgrade",
	KindTE:                 "TE",
	KindTrailer:            "Trailer",
	KindExpect:             "Expect",
	KindProxyAuthenticate:  "Proxy-Authenticate",
	KindProxyAuthorization: "Proxy-Authorization",
	KindHTTP2Settings:      "HTTP2-Settings",
	KindForwarded:          "Forwarded",
	KindXForwardedFor:      "X-Forwarded-For",
	KindXForwardedHost:     "X-Forwarded-Host",
	KindXForwardedProto:    "X-Forwarded-Proto",
	KindXForwardedPort:     "X-Forwarded-Port",
}

// String returns the field name of k in its usual case, "" for KindOther.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return ""
}

// hopKind reports the kinds that are hop-by-hop whatever Connection says.
func hopKind(k Kind) bool {
	switch k {
	case KindConnection, KindKeepAlive, KindProxyConnection, KindUpgrade, KindTE,
		KindTrailer, KindTransferEncoding, KindProxyAuthenticate, KindProxyAuthorization:
		return true
	}
	return false
}

// kindOf returns the kind of a field name: a switch on the length, then
// at most two case-insensitive comparisons.
func kindOf(name []byte) Kind {
	var k Kind
	switch len(name) {
	case 2:
		k = KindTE
	case 4:
		k = KindHost
	case 6:
		k = KindExpect
	case 7:
		if EqualFold(name, "Upgrade") {
			return KindUpgrade
		}
		k = KindTrailer
	case 9:
		k = KindForwarded
	case 10:
		if EqualFold(name, "Connection") {
			return KindConnection
		}
		k = KindKeepAlive
	case 14:
		if EqualFold(name, "Content-Length") {
			return KindContentLength
		}
		k = KindHTTP2Settings
	case 15:
		k = KindXForwardedFor
	case 16:
		if EqualFold(name, "Proxy-Connection") {
			return KindProxyConnection
		}
		if EqualFold(name, "X-Forwarded-Host") {
			return KindXForwardedHost
		}
		k = KindXForwardedPort
	case 17:
		if EqualFold(name, "Transfer-Encoding") {
			return KindTransferEncoding
		}
		k = KindXForwardedProto
	case 18:
		k = KindProxyAuthenticate
	case 19:
		k = KindProxyAuthorization
	default:
		return KindOther
	}
	if EqualFold(name, kindNames[k]) {
		return k
	}
	return KindOther
}

// lookalike reports a field name that is Content-Length or
// Transfer-Encoding with '_' for some '-': servers behind CGI-like
// gateways (which map both to '_') would read it as the real one, and
// frame the body differently from this parser.
func lookalike(name []byte) bool {
	var want string
	switch len(name) {
	case 14:
		want = "content-length"
	case 17:
		want = "transfer-encoding"
	default:
		return false
	}
	for i, c := range name {
		if c == '_' {
			c = '-'
		}
		if lower(c) != want[i] {
			return false
		}
	}
	return true
}

// maxConnOptions bounds the Connection options other than close,
// keep-alive and upgrade that a message may list: each costs a pass over
// the fields to mark the one it names, and real clients list none or one.
const maxConnOptions = 16

// fieldInfo is what parsing the fields of a head learnt about the fields
// that frame the message and manage the connection.
type fieldInfo struct {
	hosts     int
	host      []byte
	cls       int
	cl        []byte
	tes       int
	teRaw     []byte // the field line after the colon, whitespace and all
	te        []byte
	close     bool // Connection: close
	keepAlive bool // Connection: keep-alive
	connUp    bool // Connection: upgrade
	options   int  // other Connection options
	upgrade   bool // an Upgrade field
	expects   int
	expect100 bool // every Expect field is 100-continue
	// badTrailer: a Trailer field announces a field that frames the
	// message (Content-Length, Transfer-Encoding, Trailer), which a
	// trailer must not hold (RFC 9110 §6.5.1) and net/http refuses.
	badTrailer bool
}

// parseFields parses the field lines of a head from b[i:] to the empty
// line that ends them, appending them to hs. b must end with the CRLF
// CRLF that ends the head: the loops stop at its CR without bound checks.
// It returns the offset past the empty line.
func parseFields(b []byte, i int, hs []Header, maxFields int, fi *fieldInfo) ([]Header, int, fault) {
	if b[i] == ' ' || b[i] == '\t' {
		return hs, i, faultObsFold
	}
	for {
		if b[i] == '\r' {
			if b[i+1] != '\n' {
				return hs, i, faultBareCR
			}
			return hs, i + 2, faultNone
		}
		start := i
		for tokenChar[b[i]] {
			i++
		}
		if b[i] != ':' || i == start {
			switch {
			case b[i] == ' ' || b[i] == '\t':
				return hs, i, faultSpaceBeforeColon
			case i == start:
				if b[i] == '\n' {
					return hs, i, faultBareLF
				}
				return hs, i, faultEmptyFieldName
			case b[i] == '\n':
				return hs, i, faultBareLF
			}
			return hs, i, faultFieldName
		}
		name := b[start:i]
		i++
		raw := i
		for b[i] == ' ' || b[i] == '\t' {
			i++
		}
		vs := i
		i = skipValue(b, i)
		if b[i] != '\r' {
			if b[i] == '\n' {
				return hs, i, faultBareLF
			}
			return hs, i, faultFieldValue
		}
		if b[i+1] != '\n' {
			return hs, i, faultBareCR
		}
		ve := i
		for ve > vs && (b[ve-1] == ' ' || b[ve-1] == '\t') {
			ve--
		}
		i += 2
		if b[i] == ' ' || b[i] == '\t' {
			return hs, i, faultObsFold
		}
		if len(hs) >= maxFields {
			return hs, i, faultTooManyFields
		}
		h := Header{Name: name, Value: b[vs:ve:ve]}
		h.Kind = kindOf(name)
		if h.Kind == KindOther && lookalike(name) {
			return hs, i, faultFieldLookalike
		}
		h.Hop = hopKind(h.Kind)
		if h.Kind != KindOther {
			if f := fi.note(&h, b[raw:i-2]); f != faultNone {
				return hs, i, f
			}
		}
		hs = append(hs, h)
	}
}

// note records what a known field means for framing and the connection.
// raw is the field line after the colon.
func (fi *fieldInfo) note(h *Header, raw []byte) fault {
	switch h.Kind {
	case KindHost:
		fi.hosts++
		fi.host = h.Value
	case KindContentLength:
		fi.cls++
		fi.cl = h.Value
	case KindTransferEncoding:
		fi.tes++
		fi.te = h.Value
		fi.teRaw = raw
	case KindConnection:
		for t, rest, ok := NextToken(h.Value); ok; t, rest, ok = NextToken(rest) {
			switch {
			case EqualFold(t, "close"):
				fi.close = true
			case EqualFold(t, "keep-alive"):
				fi.keepAlive = true
			case EqualFold(t, "upgrade"):
				fi.connUp = true
			default:
				if fi.options++; fi.options > maxConnOptions {
					return faultConnOptions
				}
			}
		}
	case KindUpgrade:
		fi.upgrade = true
	case KindTrailer:
		for t, rest, ok := NextToken(h.Value); ok; t, rest, ok = NextToken(rest) {
			switch kindOf(t) {
			case KindContentLength, KindTransferEncoding, KindTrailer:
				fi.badTrailer = true
			}
		}
	case KindExpect:
		if len(h.Value) > 0 {
			fi.expects++
			if fi.expects == 1 {
				fi.expect100 = true
			}
			fi.expect100 = fi.expect100 && EqualFold(h.Value, "100-continue")
		}
	}
	return faultNone
}

// markOptions marks as hop-by-hop the fields that a Connection field
// names (other than the kinds hop-by-hop anyway).
func markOptions(hs []Header) {
	for _, c := range hs {
		if c.Kind != KindConnection {
			continue
		}
		for t, rest, ok := NextToken(c.Value); ok; t, rest, ok = NextToken(rest) {
			for i := range hs {
				if !hs[i].Hop && EqualFold(hs[i].Name, t) {
					hs[i].Hop = true
				}
			}
		}
	}
}

// parseTE checks a Transfer-Encoding field, the only one of its message,
// and reports the fault for anything but a lone "chunked" (any case, with
// at most spaces between the colon and it, and nothing after it): a
// coding list ending in chunked is 501 (codings this proxy does not
// implement), a list not ending in chunked, or chunked twice, is 400
// (RFC 9112 §6.3: the length cannot be determined), odd whitespace is
// 400.
func parseTE(te, raw []byte) fault {
	r := raw
	for len(r) > 0 && r[0] == ' ' {
		r = r[1:]
	}
	if EqualFold(r, "chunked") {
		return faultNone
	}
	// Something else: tell an unsupported coding list from garbage.
	if len(te) == 0 {
		return faultTEMalformed
	}
	codings, chunked, last := 0, 0, false
	for t, rest, ok := NextToken(te); ok; t, rest, ok = NextToken(rest) {
		codings++
		// transfer-coding = token *( OWS ";" OWS transfer-parameter )
		name := t
		if j := bytes.IndexByte(t, ';'); j >= 0 {
			name = trimOWS(t[:j])
		}
		if !isToken(name) {
			return faultTEMalformed
		}
		last = EqualFold(name, "chunked")
		if last {
			if !EqualFold(t, "chunked") {
				return faultTEMalformed // chunked takes no parameter
			}
			chunked++
		}
	}
	switch {
	case chunked == 1 && last && codings > 1:
		return faultTEUnknown
	case codings == 1 && last:
		return faultTEMalformed // chunked with odd whitespace or commas
	}
	return faultTENotFinal
}
