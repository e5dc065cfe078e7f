// Package h1 parses and writes HTTP/1.1 message heads for lbkit's own
// HTTP/1.1 engine: the request heads clients send, the response heads
// targets send, chunked bodies as they stream through, and the heads the
// proxy sends on. It is the part of a load balancer that must never be
// desynchronised from what is behind it, so it refuses, never guesses:
// whatever another HTTP implementation could frame differently is an
// error, answered with the status the Error carries, after which the
// connection is closed.
//
// # Use
//
// A connection loop reads into a buffer and calls ParseRequest on it. On
// ErrIncomplete it reads more, appends, and calls again with the same
// Request (which remembers how far it looked, so a head arriving a byte at
// a time costs linear time). A buffer of Limits.MaxHeaderBytes is enough:
// a head that does not fit is refused (431), never ErrIncomplete, so "need
// more" and "too large" are told apart at the limit. On success the body,
// framed as Request.Framing says, starts at buf[n]: FramingLength bodies
// are copied by count, FramingChunked ones through a Chunked, whose Scan
// says how many raw bytes are safe to forward verbatim. The response
// comes back through ParseResponse, given the request's method. The head
// sent on is built with AppendRequestLine or AppendStatusLine,
// AppendField and AppendEnd, straight into the buffer that is written.
//
// # Memory
//
// Parsing allocates nothing once a Request or Response has grown to its
// largest head: every []byte it holds (Method, Target, Host, the Name and
// Value of each Header...) is a slice of the buffer given to the parse
// function, valid as long as that buffer is not overwritten, and must not
// be modified. A caller that moves or reuses the buffer copies what it
// keeps first. Errors are shared values: refusing allocates nothing either.
//
// # What is refused, and why
//
// The rules are RFC 9112's and RFC 9110's, held strictly where a lenient
// reader would frame a message differently (request smuggling, response
// splitting). net/http is the reference: this package never accepts a
// message that net/http's ReadRequest or ReadResponse refuses or frames
// differently (differential fuzzing checks it), and refuses more:
//
//   - Framing. Transfer-Encoding with Content-Length (400; RFC 9112 §6.3
//     lets a server drop the Content-Length, which net/http does; we
//     refuse). Transfer-Encoding other than one field holding exactly
//     "chunked" (any case, spaces only before it): a coding list ending in
//     chunked ("gzip, chunked") is 501, a list not ending in chunked, or
//     chunked twice, or odd whitespace (HTAB, trailing space), or two
//     fields, is 400. Transfer-Encoding in an HTTP/1.0 message (net/http
//     ignores it; we refuse). More than one Content-Length field, even
//     with identical values (RFC 9110 §8.6 and net/http allow identical
//     ones; nginx refuses them; nothing legitimate sends them), a list
//     value ("5, 5"), or anything but 1*DIGIT up to 2^63-1 (leading zeros
//     are fine, as in net/http). A field named Content_Length or
//     Transfer_Encoding, which gateways mapping '-' and '_' alike would
//     read as the real one. A chunked message whose Trailer field
//     announces Content-Length, Transfer-Encoding or Trailer (net/http
//     refuses it too).
//   - Lines. Every line ends in CRLF: a bare LF (which RFC 9112 §2.2 and
//     net/http accept) or a bare CR is 400. No obsolete line folding (a
//     line starting with SP or HTAB; net/http unfolds it). No whitespace
//     between a field name and its colon (net/http's reader keeps such a
//     field under another name). Field names are tokens; field values hold
//     VCHAR, obs-text, SP and HTAB only (no NUL, CR, LF, DEL or other
//     control bytes). Empty lines before the request line are refused, as
//     by net/http.ReadRequest; SkipEmptyLines lets a connection loop
//     ignore up to two of them between requests, as net/http's server
//     does after a POST.
//   - The request line: method SP request-target SP HTTP-version, single
//     spaces. The method is a token of at most 32 bytes. The target holds
//     VCHAR but '#', its path well-formed percent-encoding, at most
//     MaxURILength bytes (414). The version is HTTP/1.0 or HTTP/1.1;
//     another well-formed HTTP version is 505 (including HTTP/1.2 and the
//     HTTP/2 preface, which net/http accepts), anything else 400. Origin
//     form; absolute form with http or https, no userinfo and a path or
//     nothing after the authority; authority form (host:port) with
//     CONNECT and only there; asterisk form with OPTIONS and only there.
//   - Host: required on HTTP/1.1 (even with CONNECT, which net/http
//     exempts), at most one, a valid uri-host [":" port] (or empty), equal
//     (ASCII case aside) to an absolute-form or authority-form target's
//     authority, which is then Request.Host.
//   - Expect other than 100-continue: 417 (net/http's server does the
//     same). More than 16 Connection options other than close, keep-alive
//     and upgrade: 400 (each costs a pass over the fields).
//   - Limits: the head (start line, fields, final CRLF) above
//     MaxHeaderBytes, or more than MaxHeaders fields: 431. Both exact.
//   - Responses: the same rules (a refusal is 502), plus: a status code
//     outside 100-599 or not exactly three digits followed by SP or CRLF;
//     a version other than HTTP/1.0 and HTTP/1.1; Transfer-Encoding, or
//     Content-Length other than 0, in a 1xx or 204 response. Without
//     Content-Length or chunked, a response with a body is read until the
//     target closes (FramingUntilClose); a Transfer-Encoding other than
//     chunked is refused rather than read that way.
//   - Chunked bodies: see Chunked. Sizes are 1 to 16 HEXDIG, no
//     whitespace, sign or prefix (net/http accepts trailing whitespace; we
//     refuse); extensions follow the RFC grammar and are bounded; data is
//     followed by exactly CRLF; trailer fields obey the head's rules.
//
// # Proxying
//
// Header.Hop marks hop-by-hop fields (the fixed list and those Connection
// names); Header.Kind the fields a proxy handles itself. A proxy drops the
// hop-by-hop fields and writes the framing (Content-Length or
// Transfer-Encoding) and Host itself from the parsed values, so that no
// field it forwards can frame the message differently for the target.
package h1
