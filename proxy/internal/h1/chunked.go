package h1

import (
	"bytes"
	"math"
)

// The chunked scanner's defaults and fixed bounds.
const (
	// DefaultMaxExtBytes bounds the chunk extensions of one body.
	DefaultMaxExtBytes = 4 << 10
	// DefaultMaxTrailerBytes bounds the trailer section of one body.
	DefaultMaxTrailerBytes = 4 << 10
	// maxChunkLine bounds a chunk-size line, CRLF included: net/http
	// refuses longer ones, reading them through a 4 KiB buffer.
	maxChunkLine = 4 << 10
	// maxChunkDigits bounds the digits of a chunk size, leading zeros
	// included, as net/http does.
	maxChunkDigits = 16
)

// The states of a Chunked.
const (
	chunkSize    uint8 = iota // at the start of a chunk-size line
	chunkData                 // in chunk data, left bytes to go
	chunkDataEnd              // at the CRLF after chunk data
	chunkTrailer              // at the start of a trailer line, or of the final CRLF
	chunkDone                 // past the final CRLF
)

// Chunked validates a chunked body (RFC 9112 §7.1) as it streams through a
// proxy, so that the raw framing can be forwarded verbatim once checked:
// nothing is copied or re-encoded. It is strict where a lenient reader
// would frame the body differently:
//
//   - a chunk size is 1 to 16 HEXDIG: no "0x", sign, whitespace, nor a
//     value above math.MaxInt64;
//   - every line ends in CRLF; a bare LF or CR is refused;
//   - chunk data is followed by exactly CRLF (data longer than its size is
//     refused);
//   - chunk extensions follow RFC 9112 §7.1.1 (";" name ["=" token or
//     quoted-string], whitespace only around ";" and "=" and never before
//     the first ";", which net/http refuses), and all those of one body
//     together are bounded (MaxExtBytes);
//   - a chunk-size line, extensions included, is at most 4 KiB;
//   - the trailer section's field lines obey the rules of a head's, and
//     the section is bounded (MaxTrailerBytes).
//
// The zero value is ready to use, with the default limits; Reset readies
// it for the next body. A Chunked is not safe for concurrent use.
type Chunked struct {
	// MaxExtBytes bounds the chunk extensions of the body, all chunks
	// together, counted from each ";" to the end of its line. 0 means
	// DefaultMaxExtBytes.
	MaxExtBytes int
	// MaxTrailerBytes bounds the trailer section: its field lines and the
	// CRLF that ends it. 0 means DefaultMaxTrailerBytes.
	MaxTrailerBytes int
	// OnTrailer, if set, is called with each trailer field, once it has
	// been checked; its slices are valid only during the call.
	OnTrailer func(Header)

	state   uint8
	left    int64 // chunk data left in the current chunk
	size    int64 // chunk data seen, all chunks together
	ext     int   // extension bytes seen
	trailer int   // trailer section bytes seen
	err     *Error
}

// Reset readies c for the next body, keeping its limits.
func (c *Chunked) Reset() {
	*c = Chunked{MaxExtBytes: c.MaxExtBytes, MaxTrailerBytes: c.MaxTrailerBytes, OnTrailer: c.OnTrailer}
}

// Size returns the chunk data seen so far, framing excluded: the body's
// decoded length, for a body size limit.
func (c *Chunked) Size() int64 { return c.size }

// DataLeft returns how many bytes of the current chunk's data are still to
// come, 0 outside chunk data: a caller may move them itself (splice) and
// say so with Skip.
func (c *Chunked) DataLeft() int64 {
	if c.state == chunkData && c.err == nil {
		return c.left
	}
	return 0
}

// Skip accounts for k bytes of chunk data the caller moved without Scan or
// Decode; k must not exceed DataLeft.
func (c *Chunked) Skip(k int64) {
	if k <= 0 || k > c.DataLeft() {
		return
	}
	c.left -= k
	c.size += k
	if c.left == 0 {
		c.state = chunkDataEnd
	}
}

// Done reports whether the body has ended.
func (c *Chunked) Done() bool { return c.state == chunkDone }

// Scan validates the chunked bytes at the start of p, which continue
// those of the previous calls, and returns how many of them can be
// forwarded: p[:n] is the next part of a well-formed chunked body,
// complete framing units (a whole chunk-size line, a whole trailer line)
// and any amount of chunk data. done reports that the body ended at p[n]:
// what follows is the next message. When n < len(p) and !done, p[n:] is
// the start of a line still incomplete: call again with those bytes and
// more after them; a caller keeps room for max(4 KiB, MaxTrailerBytes)
// unconsumed bytes.
//
// An error is an *Error (status 400: the caller answers 400 to a client
// and 502 when the body comes from a target) and stays: the body cannot be
// framed, and the connection it arrives on must be closed, as must the one
// the forwarded part went to. Running out of input before done means a
// truncated body, which is for the caller to see.
func (c *Chunked) Scan(p []byte) (n int, done bool, err error) {
	for n < len(p) && c.err == nil {
		switch c.state {
		case chunkData:
			k := int(min(c.left, int64(len(p)-n)))
			n += k
			c.advance(k)
			continue
		case chunkDone:
			return n, true, nil
		}
		k := c.frame(p[n:])
		if k == 0 {
			break
		}
		n += k
	}
	if c.err != nil {
		return n, false, c.err
	}
	return n, c.state == chunkDone, nil
}

// Decode is Scan for a caller that wants the body's data rather than its
// framing: it consumes the framing at the start of p and then at most one
// piece of chunk data, which it returns as data, a slice of p[:n]. Call
// it until done, keeping p[n:] as for Scan.
func (c *Chunked) Decode(p []byte) (n int, data []byte, done bool, err error) {
	for n < len(p) && c.err == nil {
		switch c.state {
		case chunkData:
			k := int(min(c.left, int64(len(p)-n)))
			data = p[n : n+k]
			n += k
			c.advance(k)
			return n, data, false, nil
		case chunkDone:
			return n, nil, true, nil
		}
		k := c.frame(p[n:])
		if k == 0 {
			break
		}
		n += k
	}
	if c.err != nil {
		return n, nil, false, c.err
	}
	return n, nil, c.state == chunkDone, nil
}

// advance accounts for k bytes of chunk data.
func (c *Chunked) advance(k int) {
	c.left -= int64(k)
	c.size += int64(k)
	if c.left == 0 {
		c.state = chunkDataEnd
	}
}

// frame consumes one framing unit at the start of p, in a state other
// than chunkData and chunkDone, and returns its length; 0 when p holds
// only part of it, or on error (c.err set).
func (c *Chunked) frame(p []byte) int {
	switch c.state {
	case chunkDataEnd:
		if p[0] != '\r' || len(p) > 1 && p[1] != '\n' {
			c.err = reqErrs[faultChunkDataEnd]
			return 0
		}
		if len(p) < 2 {
			return 0
		}
		c.state = chunkSize
		return 2
	case chunkSize:
		line, k := c.line(p, maxChunkLine, faultChunkLineLong)
		if line == nil {
			return 0
		}
		size, ext, f := parseChunkLine(line)
		if f == faultNone {
			c.ext += ext
			if c.ext > c.maxExt() {
				f = faultChunkExtLong
			}
		}
		if f != faultNone {
			c.err = reqErrs[f]
			return 0
		}
		if size == 0 {
			c.state = chunkTrailer
		} else {
			c.state, c.left = chunkData, size
		}
		return k
	case chunkTrailer:
		line, k := c.line(p, c.maxTrailer()-c.trailer, faultTrailerLong)
		if line == nil {
			return 0
		}
		c.trailer += k
		if len(line) == 0 {
			c.state = chunkDone
			return k
		}
		if !validFieldLine(line) {
			c.err = reqErrs[faultTrailer]
			return 0
		}
		if c.OnTrailer != nil {
			name, value, _ := bytes.Cut(line, []byte(":"))
			c.OnTrailer(Header{Name: name, Value: trimOWS(value), Kind: kindOf(name)})
		}
		return k
	}
	return 0
}

// line returns the line at the start of p without its CRLF, and its
// length with it; a nil line when p holds no whole line, or on error
// (c.err set): a bare LF, or a line of more than max bytes (fault f).
func (c *Chunked) line(p []byte, max int, f fault) ([]byte, int) {
	q := p
	if len(q) > max {
		q = q[:max]
	}
	j := bytes.IndexByte(q, '\n')
	if j < 0 {
		if len(p) >= max {
			c.err = reqErrs[f]
		}
		return nil, 0
	}
	if j == 0 || q[j-1] != '\r' {
		c.err = reqErrs[faultBareLF]
		return nil, 0
	}
	return q[: j-1 : j-1], j + 1
}

func (c *Chunked) maxExt() int {
	if c.MaxExtBytes > 0 {
		return c.MaxExtBytes
	}
	return DefaultMaxExtBytes
}

func (c *Chunked) maxTrailer() int {
	if c.MaxTrailerBytes > 0 {
		return c.MaxTrailerBytes
	}
	return DefaultMaxTrailerBytes
}

// parseChunkLine parses chunk-size [chunk-ext], a chunk-size line without
// its CRLF, returning the size and the length of the extensions.
func parseChunkLine(line []byte) (size int64, ext int, f fault) {
	i := 0
	var n uint64
	for i < len(line) && isHex(line[i]) {
		n = n<<4 | uint64(unhex(line[i]))
		i++
		if i > maxChunkDigits {
			return 0, 0, faultChunkSizeLong
		}
	}
	switch {
	case i == 0:
		return 0, 0, faultChunkSize
	case n > math.MaxInt64:
		return 0, 0, faultChunkSizeLong
	case i == len(line):
		return int64(n), 0, faultNone
	case line[i] != ';':
		return 0, 0, faultChunkSize
	}
	if !validChunkExt(line[i:]) {
		return 0, 0, faultChunkExt
	}
	return int64(n), len(line) - i, faultNone
}

// validChunkExt reports whether e is a chunk-ext (RFC 9112 §7.1.1) that
// starts with its ";":
//
//	chunk-ext     = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//	chunk-ext-val = token / quoted-string
func validChunkExt(e []byte) bool {
	i := 0
	ws := func() {
		for i < len(e) && (e[i] == ' ' || e[i] == '\t') {
			i++
		}
	}
	for i < len(e) {
		if e[i] != ';' {
			return false
		}
		i++
		ws()
		s := i
		for i < len(e) && tokenChar[e[i]] {
			i++
		}
		if i == s {
			return false
		}
		ws()
		if i < len(e) && e[i] == '=' {
			i++
			ws()
			if i < len(e) && e[i] == '"' {
				k := quotedString(e[i:])
				if k == 0 {
					return false
				}
				i += k
			} else {
				s := i
				for i < len(e) && tokenChar[e[i]] {
					i++
				}
				if i == s {
					return false
				}
			}
			ws()
		}
		if i < len(e) && e[i] != ';' {
			return false
		}
	}
	// Whitespace at the end of the line is not BWS: nothing follows it.
	return e[len(e)-1] != ' ' && e[len(e)-1] != '\t'
}

// quotedString returns the length of the quoted-string at the start of q
// (RFC 9110 §5.6.4), 0 if there is none.
func quotedString(q []byte) int {
	for i := 1; i < len(q); i++ {
		switch c := q[i]; {
		case c == '"':
			return i + 1
		case c == '\\':
			i++
			if i == len(q) || q[i] != '\t' && (q[i] < 0x20 || q[i] == 0x7f) {
				return 0
			}
		case c != '\t' && (c < 0x20 || c == 0x7f):
			return 0
		}
	}
	return 0
}

// validFieldLine reports whether line (without its CRLF) is a field line
// by the rules of a head: a token, a colon, a value of field-value bytes,
// no line folding.
func validFieldLine(line []byte) bool {
	i := 0
	for i < len(line) && tokenChar[line[i]] {
		i++
	}
	if i == 0 || i == len(line) || line[i] != ':' {
		return false
	}
	for _, c := range line[i+1:] {
		if !valueChar[c] {
			return false
		}
	}
	return true
}
