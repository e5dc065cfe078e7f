package hostile

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lbkit/lbkit/lb"
)

// recordingTarget is an HTTP/1.1 target that records, byte for byte,
// everything the load balancer sends it, and answers every request it can
// parse with 200 "ok".
type recordingTarget struct {
	addr string
	mu   sync.Mutex // guards got
	got  bytes.Buffer
}

func newRecordingTarget(t *testing.T) *recordingTarget {
	t.Helper()
	rt := &recordingTarget{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	rt.addr = ln.Addr().String()
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			io.WriteString(w, "ok")
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          nil,
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(&recordListener{Listener: ln, rt: rt}) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return rt
}

// take returns what the target received since the last take, and forgets
// it.
func (rt *recordingTarget) take() string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	s := rt.got.String()
	rt.got.Reset()
	return s
}

type recordListener struct {
	net.Listener
	rt *recordingTarget
}

func (l *recordListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &recordConn{Conn: c, rt: l.rt}, nil
}

type recordConn struct {
	net.Conn
	rt *recordingTarget
}

func (c *recordConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.rt.mu.Lock()
	c.rt.got.Write(p[:n])
	c.rt.mu.Unlock()
	return n, err
}

// smugglingLB is a load balancer with an HTTP listener in front of rt.
func smugglingLB(t *testing.T, rt *recordingTarget, opts ...lb.ListenerOption) (*lb.LoadBalancer, string) {
	t.Helper()
	l, err := lb.New(
		lb.WithLogger(slog.New(slog.DiscardHandler)),
		lb.WithListener("web", lb.HTTP, "127.0.0.1:0", append([]lb.ListenerOption{lb.WithForwardTo("app")}, opts...)...),
		lb.WithTargetGroup("app", lb.HTTP, lb.WithTarget(rt.addr), lb.WithoutHealthCheck()),
	)
	require.NoError(t, err)
	require.NoError(t, l.Start())
	t.Cleanup(func() { l.Close() })
	a, _ := l.Addr("web")
	return l, a.String()
}

// send writes raw bytes on a new connection, half-closes it, and returns
// every response's status line, in order, until the load balancer closes
// the connection.
func send(t *testing.T, addr, raw string) []string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = io.WriteString(c, raw)
	require.NoError(t, err)
	_ = c.(*net.TCPConn).CloseWrite()
	br := bufio.NewReader(c)
	var statuses []string
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return statuses
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		statuses = append(statuses, resp.Status[:3])
	}
}

// fwd is what the target receives for a GET of path forwarded as is: the
// request line, Host, and the forwarding headers. PORT stands for the
// listener's port.
func fwd(method, path, host, extra string) string {
	return method + " " + path + " HTTP/1.1\r\nHost: " + host + "\r\n" + extra +
		"X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Port: PORT\r\nX-Forwarded-Host: " + host + "\r\n"
}

// TestHTTP1Smuggling sends the request-smuggling corpus through an HTTP
// listener: every message that two HTTP/1.1 implementations could frame
// differently is answered with its status (400, 501, ...) and the
// connection closed, the target receiving nothing of it; messages that
// are valid reach the target exactly as the case says, byte for byte, and
// nothing after a refused message does.
func TestHTTP1Smuggling(t *testing.T) {
	t.Run("goroutines", func(t *testing.T) { testHTTP1Smuggling(t) })
	// The event loops hand everything but bodiless requests to the
	// goroutines, with what they read: the answers must not change.
	t.Run("event loop", func(t *testing.T) { testHTTP1Smuggling(t, lb.WithEventLoop()) })
}

func testHTTP1Smuggling(t *testing.T, opts ...lb.ListenerOption) {
	rt := newRecordingTarget(t)
	_, addr := smugglingLB(t, rt, opts...)
	_, port, _ := net.SplitHostPort(addr)
	const next = "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
	cases := []struct {
		name, req string
		want      []string // the statuses the client gets, in order
		target    string   // what the target receives, "" for nothing
	}{
		// Framing: Content-Length and Transfer-Encoding.
		{"CL.TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + next, []string{"400"}, ""},
		{"TE.CL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n", []string{"400"}, ""},
		{"TE.TE tab", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n", []string{"400"}, ""},
		{"TE xchunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + next, []string{"400"}, ""},
		{"TE chunked, identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", []string{"400"}, ""},
		{"TE chunked twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", []string{"400"}, ""},
		{"TE two fields", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", []string{"400"}, ""},
		{"TE trailing space", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked \r\n\r\n0\r\n\r\n", []string{"400"}, ""},
		{"TE unknown coding", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", []string{"501"}, ""},
		{"TE on HTTP/1.0", "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", []string{"400"}, ""},
		{"TE underscore", "POST / HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc", []string{"400"}, ""},
		{"CL differing", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nhello", []string{"400"}, ""},
		{"CL list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 5\r\n\r\nhello", []string{"400"}, ""},
		{"CL plus", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc", []string{"400"}, ""},
		{"CL minus", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -3\r\n\r\nabc", []string{"400"}, ""},
		{"CL hex", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x3\r\n\r\nabc", []string{"400"}, ""},
		{"CL overflow", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\nabc", []string{"400"}, ""},
		{"CL space inside", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\nabc", []string{"400"}, ""},
		// Field syntax.
		{"space before colon", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 3\r\n\r\nabc", []string{"400"}, ""},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n Transfer-Encoding: chunked\r\n\r\n", []string{"400"}, ""},
		{"bare LF", "GET / HTTP/1.1\nHost: a\n\n", []string{"400"}, ""},
		{"bare CR", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\rX-B: 2\r\n\r\n", []string{"400"}, ""},
		{"NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n", []string{"400"}, ""},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", []string{"400"}, ""},
		{"no Host on 1.1", "GET / HTTP/1.1\r\nX-A: 1\r\n\r\n", []string{"400"}, ""},
		{"absolute form, other Host", "GET http://b/ HTTP/1.1\r\nHost: a\r\n\r\n", []string{"400"}, ""},
		{"space in target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", []string{"400"}, ""},
		{"HTTP/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", []string{"505"}, ""},
		{"expectation other than 100-continue", "GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", []string{"417"}, ""},
		// Chunk syntax, with the whole body arriving with the head: the
		// target receives nothing.
		{"chunk size 0x", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", []string{"400"}, ""},
		{"chunk size signed", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n", []string{"400"}, ""},
		{"chunk size space", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n", []string{"400"}, ""},
		{"chunk size overflow", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\nhello\r\n0\r\n\r\n", []string{"400"}, ""},
		{"chunk data longer than size", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n" + next, []string{"400"}, ""},
		{"chunk extension too long", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;x=" + strings.Repeat("y", 5000) + "\r\na\r\n0\r\n\r\n", []string{"400"}, ""},
		{"chunk line bare LF", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", []string{"400"}, ""},
		// Valid messages: forwarded exactly, and the next message on the
		// connection after them.
		{"valid GET then GET", "GET /one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\nHost: a\r\n\r\n", []string{"200", "200"},
			fwd("GET", "/one", "a", "") + "\r\n" + fwd("GET", "/two", "a", "") + "\r\n"},
		{"valid chunked, pipelined", "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /after HTTP/1.1\r\nHost: a\r\n\r\n", []string{"200", "200"},
			fwd("POST", "/c", "a", "") + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + fwd("GET", "/after", "a", "") + "\r\n"},
		{"valid length, hop-by-hop removed", "POST /l HTTP/1.1\r\nHost: a\r\nConnection: X-Secret\r\nX-Secret: s\r\nKeep-Alive: 1\r\nContent-Length: 3\r\n\r\nabc", []string{"200"},
			fwd("POST", "/l", "a", "") + "Content-Length: 3\r\n\r\nabc"},
		{"refused after a valid one", "GET /ok HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + next, []string{"200", "400"},
			fwd("GET", "/ok", "a", "") + "\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rt.take()
			got := send(t, addr, tc.req)
			assert.Equal(t, tc.want, got, "the answers")
			want := strings.ReplaceAll(tc.target, "PORT", port)
			// Wait for what the target should get (it may be mid-read);
			// for "nothing", the answers above came after the proxy had
			// decided, so anything forwarded would already be there.
			deadline := time.Now().Add(5 * time.Second)
			var received string
			for {
				received += rt.take()
				if len(received) >= len(want) || time.Now().After(deadline) {
					break
				}
				time.Sleep(time.Millisecond)
			}
			assert.Equal(t, want, received, "what the target received")
		})
	}
}

// TestHTTPSRefusalsAnswered: on an HTTPS listener, plain HTTP gets 400 and a
// malformed request inside TLS is answered as on plain HTTP, the target
// receiving nothing.
func TestHTTPSRefusalsAnswered(t *testing.T) {
	rt := newRecordingTarget(t)
	certPEM, keyPEM := selfSigned(t)
	cert, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	require.NoError(t, err)
	l, err := lb.New(
		lb.WithLogger(slog.New(slog.DiscardHandler)),
		lb.WithListener("web", lb.HTTPS, "127.0.0.1:0", lb.WithForwardTo("app"), lb.WithCertificates(cert)),
		lb.WithTargetGroup("app", lb.HTTP, lb.WithTarget(rt.addr), lb.WithoutHealthCheck()),
	)
	require.NoError(t, err)
	require.NoError(t, l.Start())
	defer l.Close()
	a, _ := l.Addr("web")
	assert.Equal(t, []string{"400"}, send(t, a.String(), "GET / HTTP/1.1\r\nHost: a\r\n\r\n"), "plain HTTP to the TLS port")
	c, err := tls.Dial("tcp", a.String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	assert.Equal(t, 400, resp.StatusCode)
	assert.Empty(t, rt.take(), "the target received nothing")
}
