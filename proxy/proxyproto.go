package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// PROXY protocol signatures (haproxy's proxy-protocol.txt): v1 is a text
// line starting "PROXY ", v2 a binary header starting with 12 fixed bytes.
var (
	proxySigV1 = []byte("PROXY ")
	proxySigV2 = proxyproto.SIGV2
)

// proxyHeaderBufSize holds a whole v1 line (at most 107 bytes), which the
// parser needs without refilling, and the fixed part of a v2 header.
const proxyHeaderBufSize = 256

// proxyHeader is what a trusted source's PROXY header said.
type proxyHeader struct {
	// client and dst are the original connection's addresses; invalid for
	// a LOCAL header (the sender's own connection, e.g. a health check).
	client, dst netip.AddrPort
	// rest is what the sender wrote after the header, read along with it;
	// it goes to the target first.
	rest []byte
}

// readProxyHeader reads and parses the PROXY protocol header that a
// trusted source must send first, within timeout. Anything else (no header,
// garbage, a truncated or malformed header, a UDP or UNIX header on a TCP
// listener, silence) is an error wrapping ErrBadProxyHeader: the connection
// is refused and nothing it sent reaches a target.
func readProxyHeader(c net.Conn, timeout time.Duration) (proxyHeader, error) {
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return proxyHeader{}, fmt.Errorf("%w: %v", ErrBadProxyHeader, err)
	}
	br := bufio.NewReaderSize(c, proxyHeaderBufSize)
	h, err := parseProxyHeader(br)
	if err != nil {
		return proxyHeader{}, err
	}
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		return proxyHeader{}, fmt.Errorf("%w: %v", ErrBadProxyHeader, err)
	}
	if n := br.Buffered(); n > 0 {
		h.rest, _ = br.Peek(n)
		h.rest = bytes.Clone(h.rest)
	}
	return h, nil
}

// parseProxyHeader parses one PROXY header from br. It is the parser the
// fuzz target exercises: whatever br holds, it returns a header or an error
// wrapping ErrBadProxyHeader, and never panics.
func parseProxyHeader(br *bufio.Reader) (h proxyHeader, err error) {
	defer func() {
		// The parser is a dependency; a panic on hostile input must not
		// take the proxy down.
		if r := recover(); r != nil {
			h, err = proxyHeader{}, fmt.Errorf("%w: parser panic: %v", ErrBadProxyHeader, r)
		}
	}()
	if err := fillV1Line(br); err != nil {
		return proxyHeader{}, err
	}
	hdr, err := proxyproto.Read(br)
	if err != nil {
		if errors.Is(err, proxyproto.ErrNoProxyProtocol) || errors.Is(err, io.EOF) {
			return proxyHeader{}, fmt.Errorf("%w: no header", ErrBadProxyHeader)
		}
		return proxyHeader{}, fmt.Errorf("%w: %v", ErrBadProxyHeader, err)
	}
	if hdr.Command.IsLocal() || hdr.TransportProtocol.IsUnspec() {
		// LOCAL (v2) or UNKNOWN (v1): the sender's own connection; the
		// socket's addresses stand.
		return proxyHeader{}, nil
	}
	if !hdr.TransportProtocol.IsStream() || hdr.TransportProtocol.IsUnix() {
		return proxyHeader{}, fmt.Errorf("%w: transport %#x on a TCP listener", ErrBadProxyHeader, byte(hdr.TransportProtocol))
	}
	src, dst, ok := hdr.TCPAddrs()
	if !ok || src == nil || dst == nil {
		return proxyHeader{}, fmt.Errorf("%w: no TCP addresses", ErrBadProxyHeader)
	}
	h.client, h.dst = src.AddrPort(), dst.AddrPort()
	if !h.client.Addr().IsValid() || !h.dst.Addr().IsValid() {
		return proxyHeader{}, fmt.Errorf("%w: invalid addresses", ErrBadProxyHeader)
	}
	return h, nil
}

// maxV1Line is the longest PROXY v1 line, CRLF included (haproxy's
// proxy-protocol.txt, section 2.1).
const maxV1Line = 107

// fillV1Line makes sure that a v1 header's whole line is in br's buffer
// before go-proxyproto parses it: that parser refuses a line that did not
// arrive in one read, so a header split across TCP segments (a sender that
// writes it in two calls, a middlebox that splits it) would be refused.
// The line is read up to its LF, at most maxV1Line bytes, within the
// connection's deadline set by the caller. Anything that is not a v1
// header is left for the parser.
func fillV1Line(br *bufio.Reader) error {
	n := 1
	for {
		b, err := br.Peek(n) // waits for n bytes, or an error
		if len(b) < n {
			if len(b) == 0 && err == io.EOF {
				return nil // nothing at all: the parser says "no header"
			}
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("%w: truncated: %v", ErrBadProxyHeader, err)
		}
		if k := min(len(b), len(proxySigV1)); !bytes.Equal(b[:k], proxySigV1[:k]) {
			return nil // not v1: v2 (which go-proxyproto reads in full) or none
		}
		if b, _ = br.Peek(br.Buffered()); bytes.IndexByte(b, '\n') >= 0 || len(b) >= maxV1Line {
			return nil // the whole line, or too long: the parser decides
		}
		n = len(b) + 1 // wait for one byte more
	}
}

// proxySigPrefix reports whether b starts with a PROXY protocol signature
// (sig), or could still (partial: b is a proper prefix of one).
func proxySigPrefix(b []byte) (sig, partial bool) {
	for _, s := range [][]byte{proxySigV1, proxySigV2} {
		switch {
		case len(b) >= len(s) && bytes.Equal(b[:len(s)], s):
			return true, false
		case len(b) < len(s) && bytes.Equal(b, s[:len(b)]):
			partial = true
		}
	}
	return false, partial
}

// writeProxyHeader sends the PROXY protocol header of the given version (1
// or 2) for a connection from client to dst, at the start of the target
// connection.
func writeProxyHeader(w io.Writer, version int, client, dst netip.AddrPort) error {
	client, dst = sameFamily(client, dst)
	h := proxyproto.HeaderProxyFromAddrs(byte(version), net.TCPAddrFromAddrPort(client), net.TCPAddrFromAddrPort(dst))
	_, err := h.WriteTo(w)
	return err
}

// sameFamily returns a and b in one address family, as a PROXY header
// needs: both IPv4 when both are IPv4 or IPv4-mapped, else both IPv6.
func sameFamily(a, b netip.AddrPort) (netip.AddrPort, netip.AddrPort) {
	aa, ba := a.Addr().Unmap(), b.Addr().Unmap()
	if aa.Is4() && ba.Is4() {
		return netip.AddrPortFrom(aa, a.Port()), netip.AddrPortFrom(ba, b.Port())
	}
	return netip.AddrPortFrom(netip.AddrFrom16(aa.As16()), a.Port()), netip.AddrPortFrom(netip.AddrFrom16(ba.As16()), b.Port())
}
