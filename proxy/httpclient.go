package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The direct client's limits.
const (
	// fastBodyLimit is the largest request body the direct client sends:
	// a body this small fits the target's socket buffer, so writing it
	// whole before reading the answer cannot deadlock with a target that
	// answers early. Larger and chunked bodies go through http.Transport,
	// which reads and writes at once.
	fastBodyLimit = 64 << 10
	// maxResponseHeaderBytes bounds a target's response header (status
	// line and fields): above it the response is malformed (502).
	maxResponseHeaderBytes = 1 << 20
	// idleConnTimeout closes a connection to a target idle this long, as
	// http.Transport's IdleConnTimeout did.
	idleConnTimeout = 90 * time.Second
	// max1xx bounds the informational responses (103 Early Hints, ...)
	// before the final one.
	max1xx = 5
)

// errStaleConn is a reused connection's failure before any byte of the
// answer: the target had closed it while it was idle.
var errStaleConn = errors.New("proxy: idle connection to the target was closed")

// h1Client is the HTTP proxy's own HTTP/1.1 client to one Upstream's
// targets, for the fast path's requests (see fastEligible): no body, or a
// small one of known length, and no upgrade or 100-continue.
//
// It exists because http.Transport hands every request to two goroutines
// per connection (a writeLoop and a readLoop) through channels and waits:
// three goroutine switches and a read that finds nothing, per request, which
// cost more than the proxying itself. h1Client writes the request and reads
// the answer on the caller's goroutine, keeps no goroutine per connection,
// and returns a connection to its pool when the response body has been
// read to the end.
//
// Without a reading goroutine nobody notices what a target sends on an idle
// connection: its close, or bytes it should not have sent (a body to a
// HEAD, more than its Content-Length), which the next request would read
// as its answer. So a connection taken from the pool is first checked with
// a non-blocking peek: anything there (data, EOF, an error) and it is
// closed and the next one taken. The peek costs a system call per request;
// skipping it would let a buggy target hand one client's answer to
// another. A target may still close a connection between the peek and the
// request: a bodiless request of an idempotent method (or one that could
// not be written at all) that fails on a reused connection before any byte
// of the answer is then sent again once on a new connection, as
// http.Transport does.
type h1Client struct {
	tmo     *Timeouts
	tls     *tls.Config // the Upstream's; nil for plain TCP
	dialer  net.Dialer
	maxIdle int
	writers sync.Pool // *bufio.Writer, used only while writing a request

	mu     sync.Mutex // guards the fields below
	hosts  map[string]*h1Host
	nidle  int         // idle connections in all hosts
	sweep  *time.Timer // closes connections idle too long; nil until first armed
	armed  bool        // sweep is pending
	closed bool        // closeIdle was called: returned connections close

	dials atomic.Int64 // connections made, for tests
}

// h1Host is one target's pool.
type h1Host struct {
	addr string
	tls  *tls.Config // with ServerName set for this target; nil for plain TCP
	idle []*h1Conn   // oldest first; guarded by h1Client.mu
}

// h1Conn is one persistent connection to a target. It is owned by one
// request at a time, from take or dial to put or close.
type h1Conn struct {
	cl     *h1Client
	host   *h1Host
	conn   net.Conn        // *net.TCPConn, or *tls.Conn over it
	raw    syscall.RawConn // the TCP connection's, for the liveness peek
	br     *bufio.Reader   // reads through the connection's limit
	limit  int64           // bytes the connection may still read
	idleAt time.Time
	alive  bool          // set by peekFn
	peekFn func(uintptr) // c.peek, bound once
	cancel func()        // sets a past deadline, bound once: aborts I/O
	pb     [1]byte       // the peek's buffer

	// What aborts the current request's I/O when its client goes away:
	// the client's plain HTTP/1 connection, or else a context.AfterFunc.
	watcher   *httpConn
	afterStop func() bool
}

func newH1Client(tmo *Timeouts, cfg *tls.Config, maxIdle int) *h1Client {
	cl := &h1Client{
		tmo:     tmo,
		dialer:  net.Dialer{Timeout: tmo.Connect, KeepAlive: 30 * time.Second},
		maxIdle: maxIdle,
		hosts:   make(map[string]*h1Host),
	}
	if cfg != nil {
		cl.tls = cfg.Clone()
		// The direct client speaks HTTP/1.1 only; http.Transport did not
		// offer HTTP/2 to targets either (a custom TLS config turns it
		// off).
		cl.tls.NextProtos = slices.DeleteFunc(slices.Clone(cl.tls.NextProtos), func(p string) bool { return p == "h2" })
	}
	cl.writers.New = func() any { return bufio.NewWriterSize(nil, 4<<10) }
	return cl
}

// roundTrip sends rs's request, with body (nil for none), to the target at
// addr and reads the response header. connect is the time taken to connect
// when a new connection was made, -1 when an idle one was reused. A
// failure to connect is a *dialError.
func (cl *h1Client) roundTrip(rs *reqState, addr string, body io.Reader) (resp *http.Response, connect time.Duration, err error) {
	ctx := rs.in.Context()
	hasBody := body != nil
	connect = -1
	for try := 0; ; try++ {
		host, c := cl.take(addr)
		if c == nil {
			c, connect, err = cl.dial(ctx, host)
			if err != nil {
				return nil, connect, err
			}
			try = 1 // a new connection is not sent to again
		}
		resp, err = c.roundTrip(ctx, rs, body)
		if err == nil {
			return resp, connect, nil
		}
		// A connection the target closed while it sat idle fails before
		// any byte of the answer; a bodiless request is sent again on a
		// new one (http.Transport's rule: idempotent methods, or any
		// method when the request could not be written at all).
		var se *staleError
		if try > 0 || hasBody || !errors.As(err, &se) || rs.canceled() || !(se.unwritten || idempotent(rs.in.Method)) {
			return nil, connect, err
		}
	}
}

// staleError is a failure on a reused connection before any byte of the
// answer arrived.
type staleError struct {
	err       error
	unwritten bool // the request could not be written
}

func (e *staleError) Error() string { return errStaleConn.Error() + ": " + e.err.Error() }
func (e *staleError) Unwrap() error { return e.err }

// take returns addr's pool and its most recently used idle connection that
// is still open and quiet, or nil.
func (cl *h1Client) take(addr string) (*h1Host, *h1Conn) {
	for {
		cl.mu.Lock()
		host := cl.hostLocked(addr)
		n := len(host.idle)
		if n == 0 {
			cl.mu.Unlock()
			return host, nil
		}
		c := host.idle[n-1]
		host.idle[n-1] = nil
		host.idle = host.idle[:n-1]
		cl.nidle--
		cl.mu.Unlock()
		if c.usable() {
			return host, c
		}
		c.conn.Close()
	}
}

// hostLocked returns addr's pool, making it on first use; cl.mu is held.
func (cl *h1Client) hostLocked(addr string) *h1Host {
	h := cl.hosts[addr]
	if h == nil {
		h = &h1Host{addr: addr}
		if cl.tls != nil {
			h.tls = cl.tls.Clone()
			if h.tls.ServerName == "" {
				// http.Transport's rule: the target's host, which
				// crypto/tls leaves out of SNI when it is an IP address
				// but still verifies the certificate against.
				hn, _, err := net.SplitHostPort(addr)
				if err != nil {
					hn = addr
				}
				h.tls.ServerName = hn
			}
		}
		cl.hosts[addr] = h
	}
	return h
}

// put returns c to its pool, or closes it when the pool is full or closed.
func (cl *h1Client) put(c *h1Conn) {
	c.idleAt = time.Now()
	cl.mu.Lock()
	host := c.host
	if cl.hosts[host.addr] != host {
		// The sweep let the pool go while c was in use.
		host = cl.hostLocked(host.addr)
		c.host = host
	}
	if cl.closed || len(host.idle) >= cl.maxIdle {
		cl.mu.Unlock()
		c.conn.Close()
		return
	}
	host.idle = append(host.idle, c)
	cl.nidle++
	if !cl.armed {
		cl.armed = true
		if cl.sweep == nil {
			cl.sweep = time.AfterFunc(idleConnTimeout, cl.sweepIdle)
		} else {
			cl.sweep.Reset(idleConnTimeout)
		}
	}
	cl.mu.Unlock()
}

// sweepIdle closes the connections idle for idleConnTimeout, lets go of
// the pools left empty (targets come and go), and rearms itself while any
// connection is idle: one timer for the whole client.
func (cl *h1Client) sweepIdle() {
	now := time.Now()
	var old []*h1Conn
	cl.mu.Lock()
	next := idleConnTimeout
	for addr, h := range cl.hosts {
		i := 0
		for ; i < len(h.idle); i++ {
			c := h.idle[i]
			if d := now.Sub(c.idleAt); d < idleConnTimeout {
				next = min(next, idleConnTimeout-d)
				break
			}
			old = append(old, c)
		}
		if i > 0 {
			h.idle = slices.Delete(h.idle, 0, i)
			cl.nidle -= i
		}
		if len(h.idle) == 0 {
			delete(cl.hosts, addr)
		}
	}
	cl.armed = cl.nidle > 0 && !cl.closed
	if cl.armed {
		cl.sweep.Reset(next)
	}
	cl.mu.Unlock()
	for _, c := range old {
		c.conn.Close()
	}
}

// closeIdle closes the idle connections; connections in use close when
// their request ends.
func (cl *h1Client) closeIdle() {
	var old []*h1Conn
	cl.mu.Lock()
	cl.closed = true
	for _, h := range cl.hosts {
		old = append(old, h.idle...)
		clear(h.idle)
		h.idle = h.idle[:0]
	}
	cl.nidle = 0
	if cl.sweep != nil {
		cl.sweep.Stop()
	}
	cl.armed = false
	cl.mu.Unlock()
	for _, c := range old {
		c.conn.Close()
	}
}

// dial connects to host within the connect timeout, and completes the TLS
// handshake within it too when the Upstream has TLS. connect is the time
// the TCP connection took (what the access log reports, as for
// http.Transport's connections), whether or not the handshake succeeds.
func (cl *h1Client) dial(ctx context.Context, host *h1Host) (c *h1Conn, connect time.Duration, err error) {
	cl.dials.Add(1)
	start := time.Now()
	nc, err := cl.dialer.DialContext(ctx, "tcp", host.addr)
	connect = time.Since(start)
	if err != nil {
		return nil, connect, &dialError{err}
	}
	c = &h1Conn{cl: cl, host: host, conn: nc, limit: math.MaxInt64}
	if sc, ok := nc.(syscall.Conn); ok {
		c.raw, _ = sc.SyscallConn()
	}
	c.peekFn = c.peek
	if host.tls != nil {
		tc := tls.Client(nc, host.tls)
		hctx, cancel := context.WithTimeout(ctx, cl.tmo.Connect)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			nc.Close()
			return nil, connect, fmt.Errorf("TLS handshake: %w", err)
		}
		c.conn = tc
	}
	c.cancel = func() { _ = c.conn.SetDeadline(aLongTimeAgo) }
	c.br = bufio.NewReaderSize(c, 4<<10)
	return c, connect, nil
}

// aLongTimeAgo is a deadline in the past: it aborts a connection's
// blocked reads and writes at once.
var aLongTimeAgo = time.Unix(1, 0)

// Read reads from the connection within its limit, so that a response
// header cannot grow without bound.
func (c *h1Conn) Read(p []byte) (int, error) {
	if c.limit <= 0 {
		return 0, errors.New("response header over " + fmt.Sprint(maxResponseHeaderBytes) + " bytes")
	}
	if int64(len(p)) > c.limit {
		p = p[:c.limit]
	}
	n, err := c.conn.Read(p)
	c.limit -= int64(n)
	return n, err
}

// usable reports whether an idle connection is still open: nothing may
// arrive on an idle HTTP/1.1 connection, so data, EOF or an error all mean
// it must not be used.
func (c *h1Conn) usable() bool {
	if c.br.Buffered() > 0 {
		return false
	}
	if c.raw == nil {
		return true
	}
	c.alive = false
	if c.raw.Control(c.peekFn) != nil {
		return false
	}
	return c.alive
}

// roundTrip writes req and reads the response header on the caller's
// goroutine. The response timeout bounds the wait for the header; ctx
// aborts the connection's I/O whenever it is done, until the body ends.
func (c *h1Conn) roundTrip(ctx context.Context, rs *reqState, body io.Reader) (*http.Response, error) {
	hasBody := body != nil
	reused := !c.idleAt.IsZero()
	c.watch(rs)
	bw := c.cl.writers.Get().(*bufio.Writer)
	bw.Reset(c.conn)
	err := rs.h.writeRequest(bw, rs, c.host.addr, body)
	if err == nil {
		err = bw.Flush()
	}
	bw.Reset(nil)
	c.cl.writers.Put(bw)
	if err != nil {
		c.unwatch()
		c.conn.Close()
		if reused && !hasBody && !errors.Is(err, errBadHeader) {
			return nil, &staleError{err: err, unwritten: true}
		}
		return nil, err
	}
	// The response timeout runs from the end of the request. Writes have
	// no deadline, as in http.Transport: a request is small (see
	// fastEligible), and ctx aborts a write to a target that reads
	// nothing.
	c.setReadDeadline(ctx, time.Now().Add(c.cl.tmo.Response))
	c.limit = maxResponseHeaderBytes
	resp, err := c.readResponse(rs, reused)
	if err != nil {
		c.unwatch()
		c.conn.Close()
		return nil, err
	}
	c.limit = math.MaxInt64
	if resp.Body != http.NoBody && (resp.ContentLength < 0 || int64(c.br.Buffered()) < resp.ContentLength) {
		// The body has no deadline (a download may take its time); one
		// already read whole keeps it, as the next request sets its own.
		c.setReadDeadline(ctx, time.Time{})
	}
	if resp.Body == http.NoBody {
		c.release(!resp.Close)
		return resp, nil
	}
	// The body lives in the request's state: it outlives the
	// connection's use, and the state is recycled only once the handler
	// has returned.
	rs.fast = h1Body{c: c, src: resp.Body, keep: !resp.Close}
	resp.Body = &rs.fast
	return resp, nil
}

// readResponse reads the final response header, forwarding informational
// ones (103 Early Hints) to the client as ReverseProxy does.
func (c *h1Conn) readResponse(rs *reqState, reused bool) (*http.Response, error) {
	if reused {
		if _, err := c.br.Peek(1); err != nil {
			if isTimeout(err) {
				return nil, err
			}
			return nil, &staleError{err: err}
		}
	}
	for n := 0; ; n++ {
		resp, err := http.ReadResponse(c.br, rs.in)
		if err != nil {
			return nil, err
		}
		code := resp.StatusCode
		switch {
		case code == http.StatusSwitchingProtocols:
			return nil, errors.New("unexpected 101 Switching Protocols: no upgrade was asked for")
		case code >= 200:
			return resp, nil
		case n >= max1xx:
			return nil, errors.New("too many 1xx informational responses")
		}
		rs.got1xx(code, resp.Header)
	}
}

// watch arranges for the request's I/O on c to be aborted (a past
// deadline) when rs's client goes away or the proxy closes. On a plain
// HTTP/1 client connection that is the connection's business: net/http's
// server reads it in the background during the request, and a failed read
// (the client gone) or its close aborts c, for free. Elsewhere (TLS, whose
// close_notify the raw connection cannot see; HTTP/2 streams; another
// server calling ServeHTTP) a context.AfterFunc on the request's context
// does it, at a few allocations.
func (c *h1Conn) watch(rs *reqState) {
	if hc := rs.hc; hc != nil && !rs.tls && rs.in.ProtoMajor == 1 {
		c.watcher = hc
		hc.watch(c)
		return
	}
	c.afterStop = context.AfterFunc(rs.in.Context(), c.cancel)
}

// unwatch ends watch, reporting whether the request was not aborted (and
// will not be).
func (c *h1Conn) unwatch() bool {
	if hc := c.watcher; hc != nil {
		c.watcher = nil
		return hc.unwatch(c)
	}
	stop := c.afterStop
	c.afterStop = nil
	return stop()
}

// setReadDeadline sets the connection's read deadline without undoing an
// abort: one that came while the deadline was being set is done again.
func (c *h1Conn) setReadDeadline(ctx context.Context, t time.Time) {
	_ = c.conn.SetReadDeadline(t)
	if c.aborted(ctx) {
		c.cancel()
	}
}

// aborted reports whether the watched request was aborted.
func (c *h1Conn) aborted(ctx context.Context) bool {
	if hc := c.watcher; hc != nil {
		return hc.gone.Load()
	}
	return ctx.Err() != nil
}

// release ends the connection's request: back to the pool when keep and
// the answer was read exactly (and it was not aborted), closed otherwise.
func (c *h1Conn) release(keep bool) {
	if c.unwatch() && keep && c.br.Buffered() == 0 {
		c.cl.put(c)
		return
	}
	c.conn.Close()
}

// h1Body is a response body from the direct client: it releases the
// connection when read to the end, and closes it when closed before.
type h1Body struct {
	c    *h1Conn // nil once released
	src  io.ReadCloser
	keep bool // the response allows reuse
	err  error
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.c == nil {
		if b.err != nil {
			return 0, b.err
		}
		return 0, io.EOF
	}
	n, err := b.src.Read(p)
	if err != nil {
		c := b.c
		b.c = nil
		if err == io.EOF {
			c.release(b.keep)
		} else {
			b.err = err
			c.release(false)
		}
	}
	return n, err
}

// Close closes the connection unless the body was read to the end: the
// rest of an unread answer would otherwise be read as the next one.
func (b *h1Body) Close() error {
	if c := b.c; c != nil {
		b.c = nil
		b.err = net.ErrClosed
		c.release(false)
	}
	return nil
}
