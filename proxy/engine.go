package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lbkit/lbkit/proxy/internal/h1"
	"github.com/lbkit/lbkit/sticky"
)

// The HTTP/1.1 engine: lbkit's own connection loop for its HTTP and HTTPS
// listeners (HTTP/2 connections, chosen by ALPN, go to net/http's HTTP/2
// server). One goroutine per client connection reads a request head into
// the connection's buffer, parses it in place (proxy/internal/h1, strict
// RFC 9112: nothing ambiguous is forwarded), hands it to the forwarding
// core, writes the target's response head straight from the target
// connection's buffer, and streams the body: spliced between the two
// sockets when both are plain TCP and the body is long, with the chunked
// framing checked and forwarded as it is otherwise. Pipelined requests are
// served in order, one at a time: the connection reads ahead at most one
// buffer (4 KiB, or one request head of up to MaxHeaderBytes), so a client
// that pipelines without reading its responses is held back by TCP flow
// control, not by the proxy's memory.
//
// Compared with net/http's server it saves, per request, the bufio reader
// and writer pair, the header map and the http.Request, the response
// writer, the goroutine handoffs of a background read, and a copy of every
// header; a keep-alive connection waiting for its next request holds no
// buffer (its goroutine waits in the netpoller), so that idle connections
// cost little more than their goroutine.

// Engine constants.
const (
	// connBufSize is a client connection's read buffer; a head that does
	// not fit grows it, up to MaxHeaderBytes.
	connBufSize = 4 << 10
	// spliceMin is the shortest rest of a body spliced between sockets:
	// below it, a read and a write through a buffer cost less than
	// splice's pipe.
	spliceMin = 64 << 10

	// chunkDirectMin is the shortest rest of a chunk whose data a chunked
	// relay copies straight between the sockets rather than through the
	// target connection's parse buffer.
	chunkDirectMin = 16 << 10
	// inlineMax is the largest response body (already read with its head)
	// written in the same write as the head.
	inlineMax = 16 << 10
	// watchAfter is how long the engine waits for a target before it
	// starts watching the client connection for a close (a goroutine that
	// costs nothing to quick requests).
	watchAfter = 200 * time.Millisecond
	// maxDiscard is the most of an unread request body read and thrown
	// away to keep a connection after the proxy answered itself.
	maxDiscard = 256 << 10
)

// conn1 is a client connection served by the engine.
type conn1 struct {
	h    *HTTP
	hs   *httpStripe  // the proxy's counters this connection writes
	nc   net.Conn     // *net.TCPConn, or *tls.Conn over it
	tcp  *net.TCPConn // the socket; nil for other listeners
	raw  syscall.RawConn
	tls  *tls.Conn
	cs   *tls.ConnectionState
	peer netip.AddrPort
	port string
	tmo  *Timeouts // at accept: the idle and header timeouts it keeps

	buf    []byte // read buffer; buf[r:w] is unread; nil while idle
	r, w   int
	req    h1.Request
	body   clientBody1
	inl    inlineBody
	keep   bool // the connection may serve another request
	served bool // a request was read
	head   int  // where the current request's head starts in buf

	born    time.Time    // accepted at
	state   atomic.Int32 // connNew, connIdle, connActive, connClosed
	lost    atomic.Bool  // the client is gone
	waiting atomic.Bool  // waiting for a request without a buffer
	closed  atomic.Bool

	// The watcher, see watch.
	wmu      sync.Mutex // guards wtarget, wside
	wtarget  *tconn     // the target connection to abort when the client goes
	wside    []byte     // bytes the watcher read (a pipelined request)
	wrunning bool       // owned by the serving goroutine
	wdone    chan struct{}

	// The read of the first bytes of a request on a plain TCP
	// connection, see readIdle.
	readFn func(uintptr) bool
	rn     int
	rerr   error

	rdl time.Time // the read deadline set on nc (see setReadDeadline)
}

// Connection states, for Shutdown. A new connection (no request yet) is
// not idle: its client connected to send a request, which Shutdown lets it
// send and have answered, unless it waits longer than newConnGrace.
const (
	connNew int32 = iota
	connIdle
	connActive
	connClosed
)

// serveEngine serves c, an accepted plain or TLS (HTTP/1.1) connection,
// until it closes.
func (h *HTTP) serveEngine(nc net.Conn, peer netip.AddrPort, port string, tmo *Timeouts) {
	h.serveEngineWith(nc, peer, port, tmo, nil, 0, 0, false)
}

// serveEngineWith is serveEngine for a connection an event loop hands
// over: buf (from getConnBuf, or nil) holds at buf[r:w] what was read of
// the connection and not served yet, and served says whether a request
// was.
func (h *HTTP) serveEngineWith(nc net.Conn, peer netip.AddrPort, port string, tmo *Timeouts, buf []byte, r, w int, served bool) {
	c := &conn1{h: h, hs: h.stats.stripe(), nc: nc, peer: peer, port: port, tmo: tmo, keep: true, born: time.Now()}
	c.buf, c.r, c.w, c.served = buf, r, w, served
	if served && r == w {
		c.state.Store(connIdle)
	}
	c.tcp = tcpConnOf(nc)
	if tc, ok := nc.(*tls.Conn); ok {
		c.tls = tc
		cs := tc.ConnectionState()
		c.cs = &cs
	} else if c.tcp != nil && canMerge {
		c.raw, _ = c.tcp.SyscallConn()
		c.readFn = c.readIdle
	}
	if testHookEngineTrack != nil {
		testHookEngineTrack()
	}
	if !h.track(c) {
		h.endConn()
		nc.Close()
		return
	}
	defer h.untrack(c)
	c.serve()
}

// testHookEngineTrack, when set by a test, runs in a connection's
// goroutine before the connection is tracked.
var testHookEngineTrack func()

// serve runs the connection's requests one after another.
func (c *conn1) serve() {
	defer c.close()
	for n := 0; ; n++ {
		if !c.readRequest() {
			return
		}
		c.state.Store(connActive)
		c.handle()
		if !c.keep || c.h.shuttingDown() {
			return
		}
		c.state.Store(connIdle)
		if c.h.shuttingDown() {
			return // Shutdown looked while the request ran
		}
	}
}

// close closes the connection once.
func (c *conn1) close() {
	if c.closed.Swap(true) {
		return
	}
	c.state.Store(connClosed)
	c.lost.Store(true)
	// Counted before the close, so that a client that sees it sees the
	// count too.
	c.h.endConn()
	c.nc.Close()
	c.h.putConnBuf(c.buf)
	c.buf = nil
}

// gone reports whether the client went away.
func (c *conn1) gone() bool { return c.lost.Load() }

// readRequest reads and parses the next request head, answering and
// reporting false when the connection is to close instead (idle timeout,
// the client closed, a malformed request).
func (c *conn1) readRequest() bool {
	h := c.h
	if c.r == c.w {
		// Nothing buffered: wait for the next request without holding a
		// buffer.
		c.r, c.w = 0, 0
		if c.buf != nil && (c.raw != nil || cap(c.buf) != connBufSize) {
			// A grown buffer is let go after its request; a usual one
			// goes back to the pool while the connection waits (TLS
			// connections keep theirs: their reads go through crypto/tls).
			h.putConnBuf(c.buf)
			c.buf = nil
		}
		// A new connection has the request timeout to start its first
		// request (as net/http's ReadHeaderTimeout); a kept-alive one its
		// idle timeout.
		wait := c.tmo.Idle
		if !c.served {
			wait = c.tmo.Request
		}
		if err := c.armWait(time.Now(), wait); err != nil {
			return false
		}
		var n int
		var err error
		if c.raw != nil {
			c.rn, c.rerr = 0, nil
			if err = c.raw.Read(c.readFn); err == nil {
				n, err = c.rn, c.rerr
			}
		} else {
			if c.buf == nil {
				c.buf = h.getConnBuf()
			}
			n, err = c.nc.Read(c.buf)
		}
		c.w = n
		if n == 0 {
			if err != nil && !isTimeout(err) && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				c.lost.Store(true)
			}
			return false // idle timeout, or the client closed
		}
	}
	if c.buf == nil {
		c.buf = h.getConnBuf()
	}
	lim := h1.Limits{MaxHeaderBytes: h.maxHeaderBytes(), MaxURILength: h.maxURILength()}
	deadline := time.Now().Add(c.tmo.Request)
	armed := false
	for {
		n, err := h1.ParseRequest(c.buf[c.r:c.w], &c.req, lim)
		if err == nil {
			if armed {
				_ = c.setReadDeadline(time.Time{})
			}
			c.head = c.r
			c.r += n
			c.served = true
			return true
		}
		var pe *h1.Error
		if errors.As(err, &pe) {
			c.refuse(pe.Status, pe.Reason)
			return false
		}
		// Incomplete: read more, within the request timeout.
		if !armed {
			armed = true
			if err := c.setReadDeadline(deadline); err != nil {
				return false
			}
		}
		if c.r > 0 {
			c.w = copy(c.buf, c.buf[c.r:c.w])
			c.r = 0
		}
		if c.w == len(c.buf) {
			c.buf = h.growConnBuf(c.buf, c.w, lim.MaxHeaderBytes)
		}
		m, err := c.nc.Read(c.buf[c.w:])
		c.w += m
		if m > 0 {
			continue
		}
		switch {
		case isTimeout(err):
			c.refuse(http.StatusRequestTimeout, "request head not received in time")
		case err != nil && !errors.Is(err, io.EOF):
			c.lost.Store(true)
		}
		return false
	}
}

// setReadDeadline sets the client connection's read deadline, which the
// connection remembers for armWait. Every change of it goes through here.
func (c *conn1) setReadDeadline(t time.Time) error {
	c.rdl = t
	return c.nc.SetReadDeadline(t)
}

// armWait sets the read deadline for the wait for a request: wait from
// now, lazily, as nginx updates its timers: the deadline is set a little
// later than asked (lazyDeadline), and left alone while it still falls
// within that margin, so that a busy keep-alive connection does not reset
// its timer at every request. The wait then ends between wait and
// wait+lazyDeadline(wait) after the last request, never earlier.
func (c *conn1) armWait(now time.Time, wait time.Duration) error {
	t := now.Add(wait)
	if !c.rdl.Before(t) && c.rdl.Sub(t) <= lazyDeadline(wait) {
		return nil
	}
	return c.setReadDeadline(t.Add(lazyDeadline(wait)))
}

// lazyDeadline is how much later than asked armWait may let a wait end:
// 1/64 of it, at most 250 ms (nginx's NGX_TIMER_LAZY_DELAY is 300 ms).
func lazyDeadline(wait time.Duration) time.Duration {
	return min(wait/64, 250*time.Millisecond)
}

// readIdle is the callback of the first read of a request on a plain TCP
// connection (through its RawConn): it takes a buffer only when there is
// something to read, so that a connection waiting for its next request
// holds none while it waits in the netpoller.
func (c *conn1) readIdle(fd uintptr) bool {
	if c.buf == nil {
		c.buf = c.h.getConnBuf()
	}
	n, again, err := readFD(fd, c.buf)
	if again {
		c.h.putConnBuf(c.buf)
		c.buf = nil
		c.waiting.Store(true)
		return false // wait until readable
	}
	c.waiting.Store(false)
	c.rn, c.rerr = n, err
	if n == 0 && err == nil {
		c.rerr = io.EOF
	}
	return true
}

// refuse answers a request the proxy could not read or parse (408, 400,
// 414, 431, 501, 505, 417), counts and logs it, and ends the connection.
func (c *conn1) refuse(code int, why string) {
	h := c.h
	h.stats.malformed.Add(1)
	if code == http.StatusRequestTimeout {
		h.stats.malformed.Add(^uint64(0)) // counted as a timeout instead
		h.stats.requestTimeouts.Add(1)
	}
	h.stats.hot[0].observe(code)
	h.logRefused(c.peer, code, why, c.cs)
	body := strconv.Itoa(code) + " " + http.StatusText(code) + "\n"
	hb := make([]byte, 0, 160)
	hb, _ = h1.AppendStatusLine(hb, code, http.StatusText(code))
	hb = append(hb, "Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"...)
	hb = h1.AppendContentLength(hb, int64(len(body)))
	hb = h1.AppendEnd(hb)
	hb = append(hb, body...)
	_ = c.nc.SetWriteDeadline(time.Now().Add(lingerTime))
	if _, err := c.nc.Write(hb); err == nil {
		c.linger()
	}
	c.keep = false
}

// linger half-closes the connection and reads what the client still sends
// for a moment before it closes: a client still writing (a slow one that
// was just answered 408, one whose head was too large) would otherwise
// make the close a reset, and a reset can discard the answer before the
// client reads it. net/http does the same for its 431 answer.
func (c *conn1) linger() {
	if c.tls != nil {
		_ = c.tls.CloseWrite()
	}
	if c.tcp == nil || c.tcp.CloseWrite() != nil {
		return
	}
	_ = c.setReadDeadline(time.Now().Add(lingerTime))
	_, _ = io.Copy(io.Discard, io.LimitReader(c.nc, 64<<10))
}

// lingerTime is how long linger waits for a client's last bytes.
const lingerTime = 500 * time.Millisecond

// handle serves the parsed request c.req.
func (c *conn1) handle() {
	h := c.h
	req := &c.req
	if req.Framing != h1.FramingNone && !req.Expect100 && !c.prereadBody() {
		c.keep = false
		return
	}
	ex := h.getExchange()
	defer h.putExchange(ex)
	ex.c = c
	ex.hs = c.hs
	ex.start = time.Now()
	ex.peer = c.peer
	ex.tls = c.cs
	ex.scheme = "http"
	if c.cs != nil {
		ex.scheme = "https"
	}
	ex.port = c.port
	h2c := ex.fromRequest(req)
	// A cleartext HTTP/2 upgrade is not forwarded: a target that accepted
	// it would speak HTTP/2 on a connection relayed as HTTP/1.1.
	ex.upgrade = req.Upgrade && !h2c
	c.keep = !req.Close
	switch req.Framing {
	case h1.FramingLength:
		if max := h.maxBodyBytes(); req.ContentLength > max {
			c.keep = false
			ex.answer(http.StatusRequestEntityTooLarge, "body of "+strconv.FormatInt(req.ContentLength, 10)+" bytes is over the limit")
			return
		}
		c.body.start(c, bodyLength, req.ContentLength)
		if buffered := int64(c.w - c.r); buffered >= req.ContentLength {
			c.inl.b = c.buf[c.r : c.r+int(req.ContentLength)]
			c.body.inline(req.ContentLength)
			ex.body = reqBody{mode: bodyLength, n: req.ContentLength, src: &c.inl}
		} else {
			ex.body = reqBody{mode: bodyLength, n: req.ContentLength, src: &c.body}
		}
	case h1.FramingChunked:
		// What of the body arrived with the head is checked before any
		// target is contacted: a malformed chunk there is refused with
		// nothing sent. A body that arrived whole goes with the head.
		var pre h1.Chunked
		n, done, err := pre.Scan(c.buf[c.r:c.w])
		switch {
		case err != nil:
			c.keep = false
			var pe *h1.Error
			errors.As(err, &pe)
			h.stats.malformedBodies.Add(1)
			ex.answer(pe.Status, "request body: "+pe.Reason)
			return
		case done && pre.Size() <= h.maxBodyBytes():
			c.inl.b = c.buf[c.r : c.r+n]
			c.body.start(c, bodyChunked, -1)
			c.body.inline(int64(n))
			ex.body = reqBody{mode: bodyChunked, src: &c.inl}
		default:
			c.body.start(c, bodyChunked, -1)
			ex.body = reqBody{mode: bodyChunked, src: &c.body}
		}
	}
	if req.Expect100 && ex.body.mode != bodyNone && ex.body.src == &c.body {
		c.body.expect = true
	}
	ex.sreq = sticky.Request{Cookies: ex.cookies, TLS: c.cs != nil}
	h.serveExchange(ex)
	c.stopWatch()
	c.endBody(ex)
	if ex.upgrade && ex.upStatus == http.StatusSwitchingProtocols {
		c.keep = false // the connection was tunnelled
	}
}

// maxPreread is the most of a request body the engine reads before it
// contacts a target, as nginx's request buffering does, but bounded: a
// body that ends within it is checked whole (a malformed chunk is refused
// before any target sees the request), sent with its head in one write,
// and can be sent again on a retry. Longer bodies stream.
const maxPreread = 64 << 10

// prereadBody reads the request's body into the connection's buffer, up
// to maxPreread bytes, within the request timeout. It reports false when
// it answered the client itself (a malformed or truncated body, a
// timeout): the connection then closes.
func (c *conn1) prereadBody() bool {
	h := c.h
	req := &c.req
	limit := maxPreread
	deadlineSet := false
	for {
		buffered := c.w - c.r
		switch req.Framing {
		case h1.FramingLength:
			if req.ContentLength > h.maxBodyBytes() || int64(buffered) >= req.ContentLength || req.ContentLength > int64(limit) {
				return true
			}
		case h1.FramingChunked:
			var ch h1.Chunked
			_, done, err := ch.Scan(c.buf[c.r:c.w])
			if err != nil {
				var pe *h1.Error
				errors.As(err, &pe)
				h.stats.malformedBodies.Add(1)
				c.refuseBody(pe.Status, "request body: "+pe.Reason)
				return false
			}
			if done || buffered >= limit {
				return true
			}
		}
		if !deadlineSet {
			deadlineSet = true
			_ = c.setReadDeadline(time.Now().Add(c.tmo.Request))
		}
		if c.w == len(c.buf) {
			c.growForBody(limit)
		}
		n, err := c.nc.Read(c.buf[c.w:])
		c.w += n
		if n > 0 {
			continue
		}
		switch {
		case isTimeout(err):
			c.refuseBody(http.StatusRequestTimeout, "request body not received in time")
		case errors.Is(err, io.EOF):
			h.stats.malformedBodies.Add(1)
			c.refuseBody(http.StatusBadRequest, "request body: truncated")
		default:
			c.lost.Store(true)
		}
		return false
	}
}

// growForBody gives the buffer room for a body of up to limit bytes after
// the current head, moving the head to its start and parsing it again (the
// request's fields point into the buffer).
func (c *conn1) growForBody(limit int) {
	headLen := c.r - c.head
	nb := make([]byte, min(2*len(c.buf), headLen+limit+connBufSize))
	c.w = copy(nb, c.buf[c.head:c.w])
	c.r, c.head = headLen, 0
	c.h.putConnBuf(c.buf)
	c.buf = nb
	lim := h1.Limits{MaxHeaderBytes: c.h.maxHeaderBytes(), MaxURILength: c.h.maxURILength()}
	if _, err := h1.ParseRequest(c.buf[:headLen], &c.req, lim); err != nil {
		panic("proxy: a parsed head failed to parse again: " + err.Error()) // cannot happen: the same bytes
	}
}

// refuseBody answers a request whose body the proxy refused before any
// target saw it, counts and logs it, and ends the connection.
func (c *conn1) refuseBody(code int, why string) {
	ex := c.h.getExchange()
	defer c.h.putExchange(ex)
	ex.c, ex.hs, ex.start, ex.peer, ex.tls = c, c.hs, time.Now(), c.peer, c.cs
	ex.method, ex.host, ex.path, ex.proto = b2s(c.req.Method), b2s(c.req.Host), b2s(c.req.Path), "HTTP/1.1"
	ex.rule = "-"
	ex.client = c.peer.Addr()
	c.keep = false
	ex.answer(code, why)
	c.linger()
}

// endBody makes sure the request's body was read to its end before the
// next request is read: what is left of it is read and thrown away when
// short, else the connection closes. It also takes back what the body
// reader read past the end of a chunked body: the next request.
func (c *conn1) endBody(ex *exchange) {
	b := &c.body
	if c.inl.b != nil {
		c.inl.b = nil
		c.r += int(b.total)
		b.reset()
		return
	}
	if b.mode == bodyNone {
		return
	}
	if b.err != nil || !c.keep {
		c.keep = false
		b.reset()
		return
	}
	if !b.done {
		if b.expect && !b.continued {
			// The client waits for 100 Continue before it sends the
			// body, and will not get it: the connection cannot be reused.
			c.keep = false
		} else if _, err := io.Copy(io.Discard, io.LimitReader(b, maxDiscard)); err != nil || !b.done {
			c.keep = false
		}
	}
	if c.keep && b.ns < b.ne {
		// Bytes past the chunked body: the start of the next request.
		rest := b.scratch[b.ns:b.ne]
		tail := c.buf[c.r:c.w]
		nb := c.buf
		if len(rest)+len(tail) > cap(nb) {
			nb = make([]byte, len(rest)+len(tail))
		}
		nb = nb[:cap(nb)]
		copy(nb[len(rest):], tail)
		copy(nb, rest)
		c.buf, c.r, c.w = nb, 0, len(rest)+len(tail)
	}
	b.reset()
}

// inlineBody is a request body that arrived whole with its head: it is
// sent with the request head in one write, and again on a retry.
type inlineBody struct{ b []byte }

func (ib *inlineBody) Read(p []byte) (int, error) { return 0, io.EOF } // never read: send writes ib.b

// clientBody1 reads a request body from an engine connection: from the
// connection's buffer, then from the socket, within the request timeout
// (from when the head arrived) and MaxBodyBytes. A chunked body's framing
// is checked as it streams and passed on as it is (the target gets exactly
// the client's chunks, trailer included); it ends at the chunked body's
// end.
type clientBody1 struct {
	c     *conn1
	mode  bodyMode
	left  int64 // bodyLength: bytes still to read
	total int64 // bytes of body (framing excluded) read so far
	limit int64
	ch    h1.Chunked

	// bodyChunked: raw bytes read and not yet passed on.
	scratch []byte
	ns, ne  int

	expect    bool // the client waits for 100 Continue
	continued bool // 100 Continue was sent
	armed     bool // the read deadline is set
	done      bool
	err       error
}

// start readies b for a request body.
func (b *clientBody1) start(c *conn1, mode bodyMode, n int64) {
	*b = clientBody1{c: c, mode: mode, left: n, limit: c.h.maxBodyBytes(), scratch: b.scratch}
}

// inline records a body read whole from the buffer.
func (b *clientBody1) inline(n int64) {
	b.total, b.left, b.done = n, 0, true
}

// reset clears b after the request.
func (b *clientBody1) reset() {
	if b.armed {
		_ = b.c.setReadDeadline(time.Time{})
	}
	if b.scratch != nil && b.c != nil {
		b.c.h.putCopyBuf((*[copyBufferSize]byte)(b.scratch[:copyBufferSize]))
	}
	*b = clientBody1{}
}

// cont sends 100 Continue to a client that waits for it.
func (b *clientBody1) cont() error {
	if b.expect && !b.continued {
		b.continued = true
		if _, err := io.WriteString(b.c.nc, "HTTP/1.1 100 Continue\r\n\r\n"); err != nil {
			b.c.lost.Store(true)
			return err
		}
	}
	return nil
}

// arm sets the body's read deadline: the request timeout from the head's
// arrival.
func (b *clientBody1) arm() {
	if !b.armed {
		b.armed = true
		_ = b.c.setReadDeadline(time.Now().Add(b.c.h.tmo.Load().Request))
	}
}

func (b *clientBody1) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.done {
		return 0, io.EOF
	}
	if err := b.cont(); err != nil {
		b.err = err
		return 0, err
	}
	var n int
	var err error
	if b.mode == bodyLength {
		n, err = b.readLength(p)
	} else {
		n, err = b.readChunked(p)
	}
	if err != nil && err != io.EOF {
		b.fail(err)
		return n, b.err
	}
	return n, err
}

// fail records why the body could not be read: the client's doing.
func (b *clientBody1) fail(err error) {
	if b.err != nil {
		return
	}
	switch {
	case err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF):
		// The body ended short of its framing. The client may have only
		// half-closed (a truncated body sent by nc, say): it is answered
		// 400 if it still reads.
		err = fmt.Errorf("%w: truncated: %w", errMalformedBody, io.ErrUnexpectedEOF)
	case isTimeout(err), errors.Is(err, errBodyTooLarge):
	default:
		var pe *h1.Error
		if !errors.As(err, &pe) {
			b.c.lost.Store(true) // reset, or an error reading the socket
		}
	}
	b.err = err
}

func (b *clientBody1) readLength(p []byte) (int, error) {
	c := b.c
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	var n int
	if c.r < c.w {
		n = copy(p, c.buf[c.r:c.w])
		c.r += n
	} else {
		b.arm()
		var err error
		n, err = c.nc.Read(p)
		if n == 0 {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
	}
	b.left -= int64(n)
	b.total += int64(n)
	if b.left == 0 {
		b.done = true
	}
	return n, nil
}

// spliceTo copies the rest of a Content-Length body to tc, splicing when
// it is long and both connections are plain TCP. done is false when it
// cannot (the caller copies).
func (b *clientBody1) spliceTo(tc *tconn, tmo *Timeouts) (done bool, err error) {
	c := b.c
	if b.mode != bodyLength || c.tls != nil || c.tcp == nil || tc.tls || tc.tcp == nil || b.done {
		return false, nil
	}
	if err := b.cont(); err != nil {
		return true, err
	}
	if c.r < c.w {
		k := int(min(int64(c.w-c.r), b.left))
		if _, err := tc.nc.Write(c.buf[c.r : c.r+k]); err != nil {
			return true, err
		}
		c.r += k
		b.left -= int64(k)
		b.total += int64(k)
	}
	if b.left < spliceMin {
		if b.left == 0 {
			b.done = true
			return true, nil
		}
		return false, nil
	}
	b.arm()
	for b.left > 0 {
		step := min(b.left, copyChunk)
		n, err := tc.tcp.ReadFrom(io.LimitReader(c.tcp, step))
		b.left -= n
		b.total += n
		if err != nil {
			b.fail(err)
			return true, b.err
		}
		if n < step {
			b.fail(io.ErrUnexpectedEOF)
			return true, b.err
		}
		_ = tc.nc.SetWriteDeadline(time.Now().Add(tmo.Response))
	}
	b.done = true
	return true, nil
}

// readChunked returns the next validated bytes of a chunked body, framing
// included; EOF after the body's last CRLF.
func (b *clientBody1) readChunked(p []byte) (int, error) {
	c := b.c
	if b.scratch == nil {
		b.scratch = c.h.copyBuf()[:]
	}
	for {
		if b.ns < b.ne {
			k, done, err := b.ch.Scan(b.scratch[b.ns:min(b.ne, b.ns+len(p))])
			if err != nil {
				return 0, err
			}
			if b.total = b.ch.Size(); b.total > b.limit {
				return 0, errBodyTooLarge
			}
			if k > 0 || done {
				copy(p, b.scratch[b.ns:b.ns+k])
				b.ns += k
				if done {
					b.done = true
					if k == 0 {
						return 0, io.EOF
					}
				}
				return k, nil
			}
		}
		// Need more: keep the partial line at the start of scratch.
		if b.ns > 0 {
			b.ne = copy(b.scratch, b.scratch[b.ns:b.ne])
			b.ns = 0
		}
		if b.ne == len(b.scratch) {
			return 0, &h1.Error{Status: http.StatusBadRequest, Reason: "chunk line too long"}
		}
		if c.r < c.w {
			k := copy(b.scratch[b.ne:], c.buf[c.r:c.w])
			c.r += k
			b.ne += k
			continue
		}
		b.arm()
		n, err := c.nc.Read(b.scratch[b.ne:])
		b.ne += n
		if n == 0 {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
	}
}

// answer writes the proxy's own response.
func (c *conn1) answer(ex *exchange, code int, body string) {
	if ex.body.mode != bodyNone && !c.body.done && c.body.expect && !c.body.continued {
		c.keep = false // the client's body never comes
	}
	c.write(ex, ex.appendAnswer(ex.hbuf[:0], code, body, &c.keep, c.req.Minor))
}

// respond writes a response the proxy makes (a redirect, a fixed
// response): status, extra fields as name, value pairs, body.
func (c *conn1) respond(ex *exchange, code int, fields []string, body string) {
	c.write(ex, ex.appendRespond(ex.hbuf[:0], code, fields, body, &c.keep, c.req.Minor))
}

// write writes a response the proxy made, hb, to the client.
func (c *conn1) write(ex *exchange, hb []byte) {
	ex.hbuf = hb
	ex.started = true
	if _, err := c.nc.Write(hb); err != nil {
		c.lost.Store(true)
		c.keep = false
	}
}

// appendAnswer appends the proxy's own response (a plain-text body saying
// code's status) for a client speaking HTTP/1.minor, clearing keep when
// the connection is to close after it.
func (ex *exchange) appendAnswer(hb []byte, code int, body string, keep *bool, minor int) []byte {
	hb, _ = h1.AppendStatusLine(hb, code, http.StatusText(code))
	hb = append(hb, "Content-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n"...)
	hb = h1.AppendContentLength(hb, int64(len(body)))
	switch code {
	case http.StatusRequestTimeout, http.StatusRequestEntityTooLarge, http.StatusBadRequest:
		*keep = false
	}
	hb = ex.h.appendConnection(hb, keep, minor)
	hb = h1.AppendEnd(hb)
	if !ex.head {
		hb = append(hb, body...)
		ex.sent = int64(len(body))
	}
	return hb
}

// appendRespond appends a response the proxy makes (a redirect, a fixed
// response): status, extra fields as name, value pairs, body; keep and
// minor as for appendAnswer.
func (ex *exchange) appendRespond(hb []byte, code int, fields []string, body string, keep *bool, minor int) []byte {
	hb, _ = h1.AppendStatusLine(hb, code, http.StatusText(code))
	for i := 0; i+1 < len(fields); i += 2 {
		hb, _ = h1.AppendField(hb, fields[i], fields[i+1])
	}
	hb = h1.AppendContentLength(hb, int64(len(body)))
	hb = ex.h.appendConnection(hb, keep, minor)
	hb = h1.AppendEnd(hb)
	if !ex.head {
		hb = append(hb, body...)
		ex.sent = int64(len(body))
	}
	return hb
}

// appendConnection appends the Connection field the client needs: close
// when the connection ends after this response (keep false, or the proxy
// stopping: keep is then cleared), keep-alive for an HTTP/1.0 client that
// keeps it.
func (h *HTTP) appendConnection(hb []byte, keep *bool, minor int) []byte {
	switch {
	case !*keep || h.shuttingDown():
		*keep = false
		return append(hb, "Connection: close\r\n"...)
	case minor == 0:
		return append(hb, "Connection: keep-alive\r\n"...)
	}
	return hb
}

// write1xx passes an informational response (103 Early Hints) on.
func (c *conn1) write1xx(ex *exchange, resp *h1.Response) {
	if c.req.Minor == 0 {
		return // HTTP/1.0 has no 1xx
	}
	ex.hbuf = append1xx(ex.hbuf[:0], resp)
	if _, err := c.nc.Write(ex.hbuf); err != nil {
		c.lost.Store(true)
	}
}

// append1xx appends an informational response as passed on.
func append1xx(hb []byte, resp *h1.Response) []byte {
	hb, _ = h1.AppendStatusLine(hb, resp.Status, resp.Reason)
	for i := range resp.Headers {
		if f := &resp.Headers[i]; !f.Hop {
			hb = appendRaw(hb, f)
		}
	}
	return h1.AppendEnd(hb)
}

// appendRaw appends a parsed field as it was received.
func appendRaw(hb []byte, f *h1.Header) []byte {
	hb = append(hb, f.Name...)
	hb = append(hb, ": "...)
	hb = append(hb, f.Value...)
	return append(hb, "\r\n"...)
}

// relay writes the target's response to the client: the head from the
// target connection's buffer without its hop-by-hop fields, with the
// sticky policy's cookie and the client's framing; the body as it comes,
// spliced when long and both connections are plain TCP.
func (c *conn1) relay(ex *exchange) {
	tc := ex.tc
	resp := &tc.resp
	ex.started = true
	hb, framing, decode := ex.appendResponseHead(ex.hbuf[:0], resp, &c.keep, c.req.Minor)

	// A short body already read with the head goes in the same write.
	if framing == h1.FramingLength && int64(tc.w-tc.r) >= resp.ContentLength && resp.ContentLength <= inlineMax {
		hb = append(hb, tc.buf[tc.r:tc.r+int(resp.ContentLength)]...)
		tc.r += int(resp.ContentLength)
		ex.sent = resp.ContentLength
		ex.hbuf = hb
		// The target connection goes back to the pool first: the answer
		// is in hand.
		ex.endAttempt()
		ex.releaseTarget(true)
		if _, err := c.nc.Write(hb); err != nil {
			c.cut(ex, err, true)
			return
		}
		ex.finish(ex.upStatus)
		return
	}
	ex.hbuf = hb
	if framing == h1.FramingNone {
		// Nothing more to read: the target connection goes back first.
		ex.endAttempt()
		ex.releaseTarget(true)
	}
	if _, err := c.nc.Write(hb); err != nil {
		c.cut(ex, err, framing == h1.FramingNone)
		return
	}
	var err error
	fromTarget := false
	switch framing {
	case h1.FramingNone:
	case h1.FramingLength:
		fromTarget, err = c.copyLength(ex, resp.ContentLength)
	case h1.FramingChunked:
		fromTarget, err = c.copyChunked(ex, decode)
	case h1.FramingUntilClose:
		fromTarget, err = c.copyUntilClose(ex)
	case h1.FramingTunnel:
		c.tunnel(ex)
		return
	}
	if err != nil {
		if fromTarget {
			c.keep = false
			ex.errText = "response cut: " + err.Error()
			ex.endAttempt()
			ex.releaseTarget(false)
			ex.finish(ex.upStatus)
			return
		}
		c.cut(ex, err, false)
		return
	}
	ex.endAttempt()
	ex.releaseTarget(framing != h1.FramingUntilClose)
	ex.finish(ex.upStatus)
}

// appendResponseHead appends the head of the target's response resp as
// relayed to a client speaking HTTP/1.minor: without its hop-by-hop
// fields, with the sticky policy's cookies and the client's framing. It
// returns the framing of the body as relayed, whether a chunked body is to
// be decoded (an HTTP/1.0 client), and clears keep when the connection is
// to close after the response.
func (ex *exchange) appendResponseHead(hb []byte, resp *h1.Response, keep *bool, minor int) ([]byte, h1.Framing, bool) {
	hb, _ = h1.AppendStatusLine(hb, resp.Status, resp.Reason)
	framing := resp.Framing
	if ex.head && framing != h1.FramingTunnel {
		framing = h1.FramingNone
	}
	for i := range resp.Headers {
		f := &resp.Headers[i]
		if f.Hop && !(f.Kind == h1.KindTrailer && framing == h1.FramingChunked && minor > 0) || f.Kind == h1.KindContentLength {
			// Trailer is hop-by-hop, but a chunked body passed on as it
			// is keeps its trailer section, which it announces.
			continue
		}
		hb = appendRaw(hb, f)
	}
	for _, v := range ex.addCookies {
		hb = append(hb, "Set-Cookie: "...)
		hb = append(hb, v...)
		hb = append(hb, "\r\n"...)
	}
	decode := false
	switch framing {
	case h1.FramingLength:
		hb = h1.AppendContentLength(hb, resp.ContentLength)
	case h1.FramingNone:
		if resp.ContentLength >= 0 && resp.Status != http.StatusNoContent && resp.Status >= 200 {
			hb = h1.AppendContentLength(hb, resp.ContentLength) // HEAD, 304
		}
	case h1.FramingChunked:
		if minor == 0 {
			decode = true // HTTP/1.0 has no chunked: the end is the close
			*keep = false
		} else {
			hb = append(hb, "Transfer-Encoding: chunked\r\n"...)
		}
	case h1.FramingUntilClose:
		*keep = false
	case h1.FramingTunnel:
		hb = append(hb, "Connection: Upgrade\r\n"...)
		for i := range resp.Headers {
			if f := &resp.Headers[i]; f.Kind == h1.KindUpgrade {
				hb = appendRaw(hb, f)
			}
		}
	}
	if framing != h1.FramingTunnel {
		hb = ex.h.appendConnection(hb, keep, minor)
	}
	hb = h1.AppendEnd(hb)
	return hb, framing, decode
}

// cut ends an exchange whose client could not be written to: the client is
// gone (499 logged). The target connection is kept when its response was
// read whole.
func (c *conn1) cut(ex *exchange, err error, whole bool) {
	c.lost.Store(true)
	c.keep = false
	ex.errText = "client went away: " + err.Error()
	ex.endAttempt()
	ex.releaseTarget(whole)
	ex.finish(StatusClientClosed)
}

// readTarget reads from the target connection into p, within the response
// timeout per read, watching the client connection when the target takes
// its time.
func (c *conn1) readTarget(ex *exchange, p []byte) (int, error) {
	tc := ex.tc
	tmo := c.h.tmo.Load()
	now := time.Now()
	end := now.Add(tmo.Response)
	first := now.Add(watchAfter)
	if end.Before(first) {
		first = end
	}
	_ = tc.nc.SetReadDeadline(first)
	n, err := tc.nc.Read(p)
	if n == 0 && isTimeout(err) && first.Before(end) && !c.gone() {
		c.watch(tc)
		_ = tc.nc.SetReadDeadline(end)
		n, err = tc.nc.Read(p)
	}
	if n == 0 && err == nil {
		err = io.ErrNoProgress
	}
	if c.gone() && err != nil {
		err = errClientGone
	}
	return n, err
}

// errClientGone is a target read aborted because the client went away.
var errClientGone = errors.New("client went away")

// copyLength copies n bytes of body from the target to the client.
// fromTarget reports an error on the target's side.
func (c *conn1) copyLength(ex *exchange, n int64) (fromTarget bool, err error) {
	tc := ex.tc
	if k := int(min(int64(tc.w-tc.r), n)); k > 0 {
		if _, err := c.nc.Write(tc.buf[tc.r : tc.r+k]); err != nil {
			return false, err
		}
		tc.r += k
		n -= int64(k)
		ex.sent += int64(k)
	}
	if n == 0 {
		return false, nil
	}
	tc.r, tc.w = 0, 0
	_, fromTarget, err = c.copyBody(ex, n)
	return fromTarget, err
}

// copyBody copies n bytes of body from the target to the client, the
// target connection's buffer being empty: spliced when n is long and both
// connections are plain TCP, else through a pooled buffer. It returns how
// many bytes it copied; fromTarget tells whose side failed.
func (c *conn1) copyBody(ex *exchange, n int64) (copied int64, fromTarget bool, err error) {
	tc := ex.tc
	start := n
	defer func() { copied = start - n }()
	if n >= spliceMin && c.tls == nil && c.tcp != nil && !tc.tls && tc.tcp != nil {
		tmo := c.h.tmo.Load()
		for n > 0 {
			step := min(n, copyChunk)
			_ = tc.nc.SetReadDeadline(time.Now().Add(tmo.Response))
			m, err := c.tcp.ReadFrom(io.LimitReader(tc.tcp, step))
			n -= m
			ex.sent += m
			if err != nil {
				// ReadFrom does not say which side failed: the client is
				// gone if it cannot be written to.
				if c.gone() || isClientWriteErr(err) {
					return 0, false, err
				}
				return 0, true, err
			}
			if m < step {
				return 0, true, io.ErrUnexpectedEOF
			}
		}
		return 0, false, nil
	}
	bp := c.h.copyBuf()
	defer c.h.putCopyBuf(bp)
	for n > 0 {
		m, rerr := c.readTarget(ex, bp[:min(int64(len(bp)), n)])
		if m > 0 {
			if _, err := c.nc.Write(bp[:m]); err != nil {
				return 0, false, err
			}
			n -= int64(m)
			ex.sent += int64(m)
		}
		if rerr != nil && n > 0 {
			if rerr == errClientGone {
				return 0, false, rerr
			}
			if rerr == io.EOF {
				rerr = io.ErrUnexpectedEOF
			}
			return 0, true, rerr
		}
	}
	return 0, false, nil
}

// isClientWriteErr reports an error from writing to the client in a
// splice (EPIPE, ECONNRESET on the client socket).
func isClientWriteErr(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "write"
}

// copyChunked passes a chunked body from the target to the client: its
// framing checked and forwarded as it is, or decoded for an HTTP/1.0
// client.
func (c *conn1) copyChunked(ex *exchange, decode bool) (fromTarget bool, err error) {
	tc := ex.tc
	var ch h1.Chunked
	for {
		if tc.r < tc.w {
			var n int
			var done bool
			var perr error
			var out []byte
			if decode {
				var data []byte
				n, data, done, perr = ch.Decode(tc.buf[tc.r:tc.w])
				out = data
			} else {
				n, done, perr = ch.Scan(tc.buf[tc.r:tc.w])
				out = tc.buf[tc.r : tc.r+n]
			}
			if perr != nil {
				return true, perr
			}
			if len(out) > 0 {
				if _, err := c.nc.Write(out); err != nil {
					return false, err
				}
			}
			tc.r += n
			ex.sent = ch.Size()
			if done {
				return false, nil
			}
			if n > 0 {
				continue
			}
		}
		if left := ch.DataLeft(); tc.r == tc.w && left >= chunkDirectMin {
			// Inside a long chunk with nothing buffered: its data goes
			// straight from the target to the client (spliced when it
			// can), not 4 KiB at a time through the parse buffer.
			tc.r, tc.w = 0, 0
			k, fromTarget, err := c.copyBody(ex, left)
			ch.Skip(k)
			ex.sent = ch.Size()
			if err != nil {
				return fromTarget, err
			}
			continue
		}
		if tc.r > 0 {
			tc.w = copy(tc.buf, tc.buf[tc.r:tc.w])
			tc.r = 0
		}
		if tc.w == len(tc.buf) {
			nb := make([]byte, 2*len(tc.buf))
			tc.w = copy(nb, tc.buf[:tc.w])
			tc.buf = nb
		}
		m, rerr := c.readTarget(ex, tc.buf[tc.w:])
		tc.w += m
		if m == 0 {
			if rerr == errClientGone {
				return false, rerr
			}
			if rerr == nil || rerr == io.EOF {
				rerr = io.ErrUnexpectedEOF
			}
			return true, rerr
		}
	}
}

// copyUntilClose copies a body delimited by the target's close.
func (c *conn1) copyUntilClose(ex *exchange) (fromTarget bool, err error) {
	tc := ex.tc
	if tc.r < tc.w {
		if _, err := c.nc.Write(tc.buf[tc.r:tc.w]); err != nil {
			return false, err
		}
		ex.sent += int64(tc.w - tc.r)
		tc.r, tc.w = 0, 0
	}
	for {
		m, rerr := c.readTarget(ex, tc.buf)
		if m > 0 {
			if _, err := c.nc.Write(tc.buf[:m]); err != nil {
				return false, err
			}
			ex.sent += int64(m)
		}
		if rerr == io.EOF {
			return false, nil
		}
		if rerr != nil {
			return rerr != errClientGone, rerr
		}
	}
}

// tunnel relays bytes both ways after a 101 Switching Protocols (a
// WebSocket) until both sides are done. The tunnel is registered with the
// target's drain, which closes it when the deregistration delay passes.
func (c *conn1) tunnel(ex *exchange) {
	tc := ex.tc
	ex.tc = nil
	ex.finish(http.StatusSwitchingProtocols)
	c.keep = false
	untrack := ex.choice.st.track(tc.nc)
	defer untrack()
	defer tc.close()
	// What each side sent past the switch goes first.
	if tc.r < tc.w {
		if _, err := c.nc.Write(tc.buf[tc.r:tc.w]); err != nil {
			return
		}
		tc.r, tc.w = 0, 0
	}
	if c.r < c.w {
		if _, err := tc.nc.Write(c.buf[c.r:c.w]); err != nil {
			return
		}
		c.r = c.w
	}
	_ = c.nc.SetWriteDeadline(time.Time{})
	_ = c.setReadDeadline(time.Time{})
	_ = tc.nc.SetDeadline(time.Time{})
	h := c.h
	h.handlers.add()
	defer h.handlers.done()
	errc := make(chan error, 1)
	go func() {
		_, err := io.Copy(tc.nc, c.nc)
		closeWrite(tc.nc)
		errc <- err
	}()
	_, err := io.Copy(c.nc, tc.nc)
	closeWrite(c.nc)
	if err != nil {
		c.nc.Close()
		tc.nc.Close()
	}
	<-errc
}

// watch starts watching the client connection while a target takes its
// time: a goroutine waits for the client to send something or go away;
// when it goes, the target connection's I/O is aborted so that the
// request ends (499) at once rather than at the response timeout. What the
// client sends meanwhile (a pipelined request) is kept for later.
func (c *conn1) watch(tc *tconn) {
	c.wmu.Lock()
	c.wtarget = tc
	c.wmu.Unlock()
	if c.wrunning {
		return
	}
	c.wrunning = true
	c.wdone = make(chan struct{})
	go c.watcher()
}

func (c *conn1) watcher() {
	defer close(c.wdone)
	if c.tls == nil && c.raw != nil {
		// Look without reading: data means a pipelined request, which
		// stays in the socket; EOF or an error means the client is gone.
		var pb [1]byte
		gone := false
		err := c.raw.Read(func(fd uintptr) bool {
			data, closed := peekState(fd, pb[:])
			gone = closed
			return data || closed
		})
		if gone {
			c.clientGone()
		}
		_ = err
		return
	}
	// TLS: read; what arrives is kept.
	var b [512]byte
	n, err := c.nc.Read(b[:])
	if n > 0 {
		c.wmu.Lock()
		c.wside = append(c.wside, b[:n]...)
		c.wmu.Unlock()
		return
	}
	if err != nil && !isTimeout(err) {
		c.clientGone()
	}
}

// clientGone records that the client went away and aborts the target
// connection being waited on.
func (c *conn1) clientGone() {
	c.lost.Store(true)
	c.wmu.Lock()
	if tc := c.wtarget; tc != nil {
		tc.abort()
	}
	c.wmu.Unlock()
}

// stopWatch stops the watcher, if running, and takes back what it read.
func (c *conn1) stopWatch() {
	if !c.wrunning {
		return
	}
	c.wrunning = false
	_ = c.setReadDeadline(aLongTimeAgo)
	<-c.wdone
	_ = c.setReadDeadline(time.Time{})
	c.wmu.Lock()
	c.wtarget = nil
	side := c.wside
	c.wside = nil
	c.wmu.Unlock()
	if len(side) > 0 {
		if c.w+len(side) > len(c.buf) {
			nb := make([]byte, c.w-c.r+len(side)+connBufSize)
			c.w = copy(nb, c.buf[c.r:c.w])
			c.r = 0
			c.buf = nb
		}
		c.w += copy(c.buf[c.w:], side)
	}
}

// growConnBuf returns a buffer twice as large as b (up to max) holding
// b[:n].
func (h *HTTP) growConnBuf(b []byte, n, max int) []byte {
	size := min(2*len(b), max)
	if size <= len(b) {
		size = len(b) + 1 // the parser refuses the head at max
	}
	nb := make([]byte, size)
	copy(nb, b[:n])
	h.putConnBuf(b)
	return nb
}

// getConnBuf returns a connection read buffer.
func (h *HTTP) getConnBuf() []byte {
	if bp, ok := h.connBufs.Get().(*[connBufSize]byte); ok {
		return bp[:]
	}
	return make([]byte, connBufSize)
}

// putConnBuf returns a connection read buffer of the usual size to the
// pool; others are left to the garbage collector.
func (h *HTTP) putConnBuf(b []byte) {
	if cap(b) == connBufSize {
		h.connBufs.Put((*[connBufSize]byte)(b[:connBufSize]))
	}
}

// copyBuf returns a pooled copy buffer.
func (h *HTTP) copyBuf() *[copyBufferSize]byte {
	if bp, ok := h.bufs.Get().(*[copyBufferSize]byte); ok {
		return bp
	}
	return new([copyBufferSize]byte)
}

// putCopyBuf returns a copy buffer to the pool.
func (h *HTTP) putCopyBuf(bp *[copyBufferSize]byte) { h.bufs.Put(bp) }

// copyBufferSize is the size of the body copy buffers.
const copyBufferSize = 32 << 10
