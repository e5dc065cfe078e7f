package proxy

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lbkit/lbkit/flowtable"
)

// listener is the HTTP proxy's accept side: it refuses clients the ACL
// denies before any byte is read, counts connections, and wraps each in an
// httpConn (under TLS when the listener is HTTPS, so net/http still sees a
// *tls.Conn and offers HTTP/2).
type listener struct {
	net.Listener
	h   *HTTP
	tls *tls.Config
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		peer := addrPortOf(c.RemoteAddr())
		if !l.h.acl.Load().Allows(peer.Addr()) {
			l.h.stats.refusedConns.Add(1)
			if l.h.OnRefuse != nil {
				l.h.OnRefuse(Refusal{Proto: flowtable.TCP, Client: peer, Reason: RefusedACL, Err: ErrDenied})
			}
			c.Close()
			continue
		}
		if !l.h.Descriptors.take(HTTPDescriptors) {
			l.h.stats.rejectedDescriptors.Add(1)
			if l.h.OnRefuse != nil {
				l.h.OnRefuse(Refusal{Proto: flowtable.TCP, Client: peer, Reason: RefusedDescriptors, Err: ErrDescriptors})
			}
			resetClose(c)
			continue
		}
		l.h.stats.conns.Add(1)
		l.h.stats.activeConns.Add(1)
		hc := &httpConn{Conn: c, h: l.h, peer: peer,
			xff:   []string{peer.Addr().Unmap().String()},
			proto: []string{"http"},
		}
		if la, ok := c.LocalAddr().(*net.TCPAddr); ok {
			hc.port = []string{strconv.Itoa(la.Port)}
		}
		if l.tls != nil {
			hc.proto = []string{"https"}
			return tls.Server(hc, l.tls), nil
		}
		return hc, nil
	}
}

// httpConn is a client connection as the proxy sees it, under TLS if any.
// It exists for what net/http does not offer: a 408 answer when a request's
// headers time out (net/http closes silently), and counting the errors
// net/http answers by itself (400, 431, 501, 505) before any handler runs.
type httpConn struct {
	net.Conn
	h    *HTTP
	peer netip.AddrPort

	// Header values computed once per connection and shared, read-only,
	// by its requests' outgoing headers: the peer alone as
	// X-Forwarded-For, X-Forwarded-Port, X-Forwarded-Proto.
	xff, port, proto []string

	timedOut atomic.Bool // a read hit its deadline
	served   atomic.Bool // a handler ran for the current request
	closed   atomic.Bool

	// gone is set when a read fails other than by a deadline, or the
	// connection is closed: the client is gone and every request on it is
	// over (net/http cancels their contexts a moment later).
	gone atomic.Bool
	mu   sync.Mutex // guards cur
	cur  *h1Conn    // the target connection of the request in flight, if watched
}

// watch makes c's I/O abort when the client goes away, until unwatch.
func (hc *httpConn) watch(c *h1Conn) {
	hc.mu.Lock()
	hc.cur = c
	hc.mu.Unlock()
	if hc.gone.Load() {
		c.cancel()
	}
}

// unwatch ends watch, reporting whether the client is still there (so c
// was not aborted).
func (hc *httpConn) unwatch(c *h1Conn) bool {
	hc.mu.Lock()
	if hc.cur == c {
		hc.cur = nil
	}
	hc.mu.Unlock()
	return !hc.gone.Load()
}

// lost records that the client is gone and aborts the watched request's
// I/O with its target.
func (hc *httpConn) lost() {
	if hc.gone.Swap(true) {
		return
	}
	hc.mu.Lock()
	if c := hc.cur; c != nil {
		c.cancel()
	}
	hc.mu.Unlock()
}

func (c *httpConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		// A type assertion, not errors.As: net's errors are net.Errors
		// themselves, and this runs once per request (net/http's
		// background read ends in a deadline).
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			c.timedOut.Store(true)
		} else {
			c.lost()
		}
	}
	return n, err
}

// Write sees what net/http writes on a plain connection. A response written
// while no handler ran for the current request is one net/http made itself
// for a request it could not parse: its status is counted and logged.
func (c *httpConn) Write(p []byte) (int, error) {
	if !c.served.Load() && len(p) >= 12 && string(p[:9]) == "HTTP/1.1 " {
		if code := atoi3(p[9:12]); code >= 400 {
			c.h.stats.malformed.Add(1)
			c.h.stats.observe(code)
			c.h.logMalformed(c.peer, code)
		}
	}
	return c.Conn.Write(p)
}

func atoi3(b []byte) int {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int(c-'0')
	}
	return n
}

func (c *httpConn) Close() error {
	c.lost()
	if c.closed.CompareAndSwap(false, true) {
		c.h.stats.activeConns.Add(-1)
		c.h.Descriptors.release(HTTPDescriptors)
	}
	return c.Conn.Close()
}

// lingerTime is how long linger waits for a client's last bytes.
const lingerTime = 500 * time.Millisecond

// linger half-closes the connection and reads what the client still sends
// for a moment, before net/http closes it: a client still writing (a slow
// one that was just answered 408) would otherwise make the close a reset,
// and a reset can discard the answer before the client reads it. net/http
// does the same for its 431 answer.
func (c *httpConn) linger() {
	tc, ok := c.Conn.(*net.TCPConn)
	if !ok {
		return
	}
	if tc.CloseWrite() != nil {
		return
	}
	_ = tc.SetReadDeadline(time.Now().Add(lingerTime))
	_, _ = io.Copy(io.Discard, io.LimitReader(tc, 64<<10))
}

// rawConn returns the httpConn under c (a *tls.Conn or the httpConn
// itself), or nil for connections the proxy did not accept.
func rawConn(c net.Conn) *httpConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	hc, _ := c.(*httpConn)
	return hc
}

// request408 is the answer to a request whose headers did not arrive in
// time.
const request408 = "HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: 20\r\n\r\n408 Request Timeout\n"

// connState follows net/http's connection states. net/http reports
// StateActive right after it stops reading a request's headers, on the
// connection's goroutine, before it acts on an error: when that read ended
// in a timeout with bytes of a request received, the client gets its 408
// here, through TLS if any, before net/http closes the connection.
func (h *HTTP) connState(c net.Conn, s http.ConnState) {
	hc := rawConn(c)
	if hc == nil {
		return
	}
	switch s {
	case http.StateActive:
		if hc.timedOut.Load() && !hc.served.Load() {
			if tc, ok := c.(*tls.Conn); ok && tc.ConnectionState().NegotiatedProtocol == "h2" {
				return
			}
			hc.served.Store(true) // the 408 is not net/http's error answer
			h.stats.observe(http.StatusRequestTimeout)
			h.stats.requestTimeouts.Add(1)
			h.logMalformed(hc.peer, http.StatusRequestTimeout)
			_, _ = c.Write([]byte(request408))
			hc.linger()
		}
	case http.StateIdle:
		hc.served.Store(false)
		hc.timedOut.Store(false)
	case http.StateClosed, http.StateHijacked:
		if s == http.StateClosed {
			hc.Close()
		}
	}
}
