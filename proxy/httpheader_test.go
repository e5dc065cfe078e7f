package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestClientAddr(t *testing.T) {
	trusted, err := ParseACL([]string{"10.0.0.0/8", "127.0.0.1"}, nil)
	require.NoError(t, err)
	peer := netip.MustParseAddr("10.1.1.1")
	for _, c := range []struct {
		xff  []string
		peer netip.Addr
		want string
	}{
		{nil, peer, "10.1.1.1"},
		{[]string{"203.0.113.9"}, peer, "203.0.113.9"},
		{[]string{"198.51.100.1, 203.0.113.9"}, peer, "203.0.113.9"},   // rightmost untrusted
		{[]string{"198.51.100.1, 10.2.2.2"}, peer, "198.51.100.1"},     // trusted hops skipped
		{[]string{"198.51.100.1", "10.2.2.2"}, peer, "198.51.100.1"},   // several header lines
		{[]string{"garbage, 10.2.2.2"}, peer, "10.2.2.2"},              // garbage stops the walk
		{[]string{"[2001:db8::1]:443, 10.2.2.2"}, peer, "2001:db8::1"}, // bracketed with port
		{[]string{"203.0.113.9:1234"}, peer, "203.0.113.9"},
		{[]string{"::ffff:203.0.113.9"}, peer, "203.0.113.9"},
		{[]string{" , ,"}, peer, "10.1.1.1"},
		{[]string{"203.0.113.9"}, netip.MustParseAddr("192.0.2.1"), "192.0.2.1"}, // untrusted peer: ignored
		{[]string{"fe80::1%eth0"}, peer, "10.1.1.1"},
	} {
		assert.Equal(t, c.want, clientAddr(c.xff, c.peer, trusted).String(), "%q from %s", c.xff, c.peer)
	}
	assert.Equal(t, "10.1.1.1", clientAddr([]string{"203.0.113.9"}, peer, nil).String(), "nobody trusted")
	long := strings.Repeat("10.0.0.1, ", 1000) + "10.0.0.2"
	assert.Equal(t, "10.0.0.1", clientAddr([]string{"203.0.113.9, " + long}, peer, trusted).String(), "the walk is bounded")
	assert.Zero(t, testing.AllocsPerRun(100, func() { clientAddr([]string{"198.51.100.1, 10.2.2.2"}, peer, trusted) }))
}

// refClientAddr is clientAddr's rule written plainly: split everything,
// then walk from the right.
func refClientAddr(xff []string, peer netip.Addr, trusted *ACL) netip.Addr {
	peer = peer.Unmap()
	if trusted == nil || !trusted.Allows(peer) {
		return peer
	}
	var entries []string
	for _, v := range xff {
		for _, e := range strings.Split(v, ",") {
			if e = strings.TrimSpace(e); e != "" {
				entries = append(entries, e)
			}
		}
	}
	client := peer
	for i, hops := len(entries)-1, 0; i >= 0; i-- {
		if hops++; hops > maxXFFHops {
			break
		}
		a, ok := parseXFFEntry(entries[i])
		if !ok {
			break
		}
		client = a
		if !trusted.Allows(a) {
			break
		}
	}
	return client
}

// FuzzClientAddr checks the X-Forwarded-For walk against refClientAddr and
// that it never returns an address the peer did not vouch for.
func FuzzClientAddr(f *testing.F) {
	f.Add("198.51.100.1, 10.2.2.2", "10.9.9.9", "10.0.0.0/8")
	f.Add("[2001:db8::1]:443,,garbage", "10.0.0.1", "10.0.0.0/8")
	f.Add("1.2.3.4", "192.0.2.1", "10.0.0.0/8")
	f.Add(",,,::ffff:10.0.0.1", "::ffff:10.0.0.2", "::ffff:10.0.0.0/104")
	f.Fuzz(func(t *testing.T, xff, peerS, trustS string) {
		peer, err := netip.ParseAddr(peerS)
		if err != nil {
			return
		}
		trusted, err := ParseACL([]string{trustS}, nil)
		if err != nil {
			return
		}
		lines := strings.Split(xff, "\n")
		got := clientAddr(lines, peer, trusted)
		if want := refClientAddr(lines, peer, trusted); got != want {
			t.Fatalf("clientAddr(%q, %s) = %s, want %s", lines, peer, got, want)
		}
		if !trusted.Allows(peer) && got != peer.Unmap() {
			t.Fatalf("untrusted peer %s spoofed %s", peer, got)
		}
	})
}

func TestHTTPForwardedHeaders(t *testing.T) {
	for _, via := range fronts {
		t.Run(via, func(t *testing.T) { testForwardedHeaders(t, via) })
	}
}

func testForwardedHeaders(t *testing.T, via string) {
	tg := newTarget(t, "a", nil)
	h := configured(t, &HTTP{Forwarded: true}, forwardTo(t, upstreamOf(t, "web", tg)))
	addr := serveVia(t, h, via)
	_, port, _ := net.SplitHostPort(addr)

	send := func() *http.Request {
		resp := raw(t, addr, "GET /p HTTP/1.1\r\nHost: app.example\r\n"+hdr(
			"X-Forwarded-For", "6.6.6.6",
			"X-Forwarded-Proto", "https",
			"X-Forwarded-Host", "evil",
			"X-Forwarded-Port", "1",
			"Forwarded", "for=6.6.6.6",
			"Connection", "close, X-Hop",
			"X-Hop", "secret",
			"Keep-Alive", "timeout=5",
			"Proxy-Authorization", "Basic eA==",
			"X-Real-IP", "6.6.6.6",
		)+"\r\n")
		require.Equal(t, 200, resp.StatusCode)
		return tg.lastRequest()
	}

	// Untrusted peer: every forwarded header replaced.
	r := send()
	assert.Equal(t, []string{"127.0.0.1"}, r.Header["X-Forwarded-For"])
	assert.Equal(t, "http", r.Header.Get("X-Forwarded-Proto"))
	assert.Equal(t, "app.example", r.Header.Get("X-Forwarded-Host"))
	assert.Equal(t, port, r.Header.Get("X-Forwarded-Port"))
	assert.Equal(t, "for=127.0.0.1;host=app.example;proto=http", r.Header.Get("Forwarded"))
	assert.Equal(t, "app.example", r.Host)
	for _, hop := range []string{"X-Hop", "Keep-Alive", "Proxy-Authorization", "X-Real-Ip"} {
		assert.Empty(t, r.Header.Get(hop), hop)
	}

	// Trusted peer: its X-Forwarded-For and Forwarded are appended to.
	trusted, err := ParseACL([]string{"127.0.0.0/8"}, nil)
	require.NoError(t, err)
	h.SetTrustedProxies(trusted)
	r = send()
	assert.Equal(t, []string{"6.6.6.6, 127.0.0.1"}, r.Header["X-Forwarded-For"])
	assert.Equal(t, "for=6.6.6.6, for=127.0.0.1;host=app.example;proto=http", r.Header.Get("Forwarded"))
	assert.Equal(t, "6.6.6.6", r.Header.Get("X-Real-Ip"), "a trusted proxy's X-Real-IP is passed on")
}

func TestHTTPStickySourceUsesTrustedClient(t *testing.T) {
	trusted, err := ParseACL([]string{"127.0.0.0/8"}, nil)
	require.NoError(t, err)
	pol := &mapPolicy{m: map[netip.Addr]string{}}
	a, b := newTarget(t, "a", nil), newTarget(t, "b", nil)
	up := upstreamOf(t, "web", a, b)
	up.SetSticky(pol)
	var logs logBuffer
	h := configured(t, &HTTP{AccessLog: logs.logger()}, forwardTo(t, up))
	h.SetTrustedProxies(trusted)
	addr := serve(t, h)
	resp := raw(t, addr, "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n")
	body, _ := io.ReadAll(resp.Body)
	pol.mu.Lock()
	assert.Equal(t, string(body), pol.m[netip.MustParseAddr("203.0.113.7")], "the session is the trusted client's")
	pol.mu.Unlock()
	assert.Equal(t, "203.0.113.7", lastLog(t, h, &logs)["client_ip"])
}

func TestHTTPH2CUpgradeStripped(t *testing.T) {
	tg := newTarget(t, "a", nil)
	addr := serve(t, configured(t, &HTTP{}, forwardTo(t, upstreamOf(t, "web", tg))))
	resp := raw(t, addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n")
	assert.Equal(t, 200, resp.StatusCode, "answered over HTTP/1.1, not switched")
	r := tg.lastRequest()
	assert.Empty(t, r.Header.Get("Upgrade"))
	assert.Empty(t, r.Header.Get("HTTP2-Settings"))
	assert.Empty(t, r.Header.Get("Connection"))
}

func TestHTTPTransferEncodingAndContentLength(t *testing.T) {
	tg := newTarget(t, "a", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Got-CL", strconv.FormatInt(r.ContentLength, 10))
		w.Header().Set("X-Got-TE", strings.Join(r.TransferEncoding, ","))
		w.Write(b)
	})
	addr := serve(t, configured(t, &HTTP{}, forwardTo(t, upstreamOf(t, "web", tg))))
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	// Content-Length says 3 but the chunked body is 5 bytes, then a
	// smuggled request follows.
	_, err = io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	io.ReadAll(resp.Body)
	// RFC 9112 §6.1 lets a server refuse the pair, and a proxy must: it
	// is how requests are smuggled past one that frames differently.
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "Transfer-Encoding with Content-Length is refused")
	assert.True(t, resp.Close)
	_, err = br.ReadByte()
	assert.ErrorIs(t, err, io.EOF, "the connection is closed: the smuggled request is never read")
	assert.Nil(t, tg.lastRequest(), "the target received nothing")
}

func TestHTTPWebSocket(t *testing.T) {
	tg := newTarget(t, "ws", wsEcho)
	up := upstreamOf(t, "web", tg)
	addr := serve(t, configured(t, &HTTP{}, forwardTo(t, up)))
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	wsRoundTrip(t, c)
	r := tg.lastRequest()
	assert.Equal(t, "127.0.0.1", r.Header.Get("X-Forwarded-For"), "X-Forwarded-For on the handshake")
}

// wsEcho is a WebSocket-like target: it accepts the upgrade and echoes
// bytes until the client closes.
func wsEcho(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		http.Error(w, "want an upgrade", http.StatusBadRequest)
		return
	}
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer c.Close()
	io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
	io.Copy(c, brw)
}

// wsRoundTrip upgrades c and checks that bytes echo both ways.
func wsRoundTrip(t *testing.T, c net.Conn) {
	t.Helper()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	_, err := io.WriteString(c, "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	require.NoError(t, err)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	for _, msg := range []string{"ping", "hello, websocket"} {
		_, err = io.WriteString(c, msg)
		require.NoError(t, err)
		got := make([]byte, len(msg))
		_, err = io.ReadFull(br, got)
		require.NoError(t, err)
		assert.Equal(t, msg, string(got))
	}
}
