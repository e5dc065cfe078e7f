package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
	"testing/iotest"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/stretchr/testify/require"
)

func TestParseProxyHeader(t *testing.T) {
	v2 := func(src, dst string) []byte {
		h := proxyproto.HeaderProxyFromAddrs(2, tcpAddr(src), tcpAddr(dst))
		b, err := h.Format()
		require.NoError(t, err)
		return b
	}
	local := []byte{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x20, 0x00, 0x00, 0x00}
	for _, tc := range []struct {
		name    string
		in      []byte
		client  string // "" for a LOCAL/UNKNOWN header
		rest    string
		wantErr bool
	}{
		{name: "v1 tcp4", in: []byte("PROXY TCP4 192.0.2.1 198.51.100.2 1234 443\r\nGET"), client: "192.0.2.1:1234", rest: "GET"},
		{name: "v1 tcp6", in: []byte("PROXY TCP6 2001:db8::1 2001:db8::2 1234 443\r\n"), client: "[2001:db8::1]:1234"},
		{name: "v1 unknown", in: []byte("PROXY UNKNOWN\r\n"), client: ""},
		{name: "v2 tcp4", in: append(v2("192.0.2.1:1234", "198.51.100.2:443"), "x"...), client: "192.0.2.1:1234", rest: "x"},
		{name: "v2 tcp6", in: v2("[2001:db8::1]:1", "[2001:db8::2]:2"), client: "[2001:db8::1]:1"},
		{name: "v2 local", in: local, client: ""},
		{name: "no header", in: []byte("GET / HTTP/1.1\r\n\r\n"), wantErr: true},
		{name: "empty", in: nil, wantErr: true},
		{name: "v1 bad port", in: []byte("PROXY TCP4 192.0.2.1 198.51.100.2 99999 443\r\n"), wantErr: true},
		{name: "v1 no CRLF", in: []byte("PROXY TCP4 192.0.2.1 198.51.100.2 1 443\n"), wantErr: true},
		{name: "v1 udp", in: []byte("PROXY UDP4 192.0.2.1 198.51.100.2 1 443\r\n"), wantErr: true},
		{name: "v1 truncated", in: []byte("PROXY TCP4 192.0.2.1 198.51.100.2 1234"), wantErr: true},
		{name: "v1 too long", in: []byte("PROXY TCP4 " + strings.Repeat("1", 120) + "\r\n"), wantErr: true},
		{name: "v2 truncated", in: v2("192.0.2.1:1234", "198.51.100.2:443")[:20], wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReaderSize(bytes.NewReader(tc.in), proxyHeaderBufSize)
			h, err := parseProxyHeader(br)
			// The same bytes one at a time (a header split across
			// segments) give the same answer.
			br1 := bufio.NewReaderSize(iotest.OneByteReader(bytes.NewReader(tc.in)), proxyHeaderBufSize)
			h1, err1 := parseProxyHeader(br1)
			require.Equal(t, err == nil, err1 == nil, "%v / %v", err, err1)
			require.Equal(t, h.client, h1.client)
			if tc.wantErr {
				require.ErrorIs(t, err, ErrBadProxyHeader)
				return
			}
			require.NoError(t, err)
			if tc.client == "" {
				require.False(t, h.client.IsValid())
			} else {
				require.Equal(t, tc.client, h.client.String())
			}
			rest := make([]byte, br.Buffered())
			_, _ = br.Read(rest)
			require.Equal(t, tc.rest, string(rest))
		})
	}
}

func TestProxySigPrefix(t *testing.T) {
	for _, tc := range []struct {
		in           string
		sig, partial bool
	}{
		{"", false, true},
		{"P", false, true},
		{"PROXY", false, true},
		{"PROXY ", true, false},
		{"PROXY TCP4", true, false},
		{"PROXIES", false, false},
		{"GET /", false, false},
		{"\r\n\r\n\x00", false, true},
		{string(proxyproto.SIGV2) + "\x21", true, false},
	} {
		sig, partial := proxySigPrefix([]byte(tc.in))
		require.Equal(t, tc.sig, sig, "%q", tc.in)
		require.Equal(t, tc.partial, partial, "%q", tc.in)
	}
}

func TestSameFamily(t *testing.T) {
	ap := netip.MustParseAddrPort
	a, b := sameFamily(ap("[::ffff:192.0.2.1]:1"), ap("198.51.100.1:2"))
	require.Equal(t, "192.0.2.1:1 198.51.100.1:2", a.String()+" "+b.String())
	a, b = sameFamily(ap("192.0.2.1:1"), ap("[2001:db8::1]:2"))
	require.Equal(t, "[::ffff:192.0.2.1]:1 [2001:db8::1]:2", a.String()+" "+b.String())
}

// FuzzProxyHeader feeds arbitrary bytes to the listener's PROXY header
// handling, as a trusted source could send them: it never panics; it
// either refuses with ErrBadProxyHeader or yields valid TCP addresses, and
// what it hands on to the target is exactly the bytes after the header,
// never the header itself.
func FuzzProxyHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.1 198.51.100.2 1234 443\r\nGET / HTTP/1.1\r\n"))
	f.Add([]byte("PROXY TCP6 2001:db8::1 2001:db8::2 1234 443\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add([]byte("PROXY TCP4 192.0.2.1 198.51.100.2 1234\r\n"))
	f.Add([]byte("PROXY " + string(bytes.Repeat([]byte("9"), 200))))
	h := proxyproto.HeaderProxyFromAddrs(2, tcpAddr("192.0.2.1:1"), tcpAddr("198.51.100.2:2"))
	b, _ := h.Format()
	f.Add(b)
	f.Add(append(b[:len(b):len(b)], "data"...))
	f.Add(b[:14])
	bad := bytes.Clone(b)
	bad[14], bad[15] = 0xff, 0xff // length beyond the data
	f.Add(bad)
	f.Add([]byte("\x16\x03\x01\x02\x00")) // a TLS ClientHello's start
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(in), proxyHeaderBufSize)
		h, err := parseProxyHeader(br)
		if err != nil {
			if !errors.Is(err, ErrBadProxyHeader) {
				t.Fatalf("error %v does not wrap ErrBadProxyHeader", err)
			}
			return
		}
		if h.client.IsValid() != h.dst.IsValid() {
			t.Fatalf("half a header: %+v", h)
		}
		rest := make([]byte, len(in))
		n, _ := io.ReadFull(br, rest)
		if !bytes.HasSuffix(in, rest[:n]) {
			t.Fatalf("forwarded %q, not a suffix of the input", rest[:n])
		}
		if n == len(in) && len(in) > 0 {
			t.Fatalf("the header itself would be forwarded")
		}
	})
}
