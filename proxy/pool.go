package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lbkit/lbkit/proxy/internal/h1"
)

// The pool's limits.
const (
	// idleConnTimeout closes a connection to a target idle this long, as
	// http.Transport's IdleConnTimeout did.
	idleConnTimeout = 90 * time.Second
	// maxResponseHeaderBytes bounds a target's response head (status line
	// and fields): above it the response is malformed (502).
	maxResponseHeaderBytes = 64 << 10
	// max1xx bounds the informational responses (103 Early Hints, ...)
	// before the final one.
	max1xx = 5
	// targetBufSize is a target connection's read buffer; a head that
	// does not fit grows it up to maxResponseHeaderBytes.
	targetBufSize = 4 << 10
)

// errStaleConn is a reused connection's failure before any byte of the
// answer: the target had closed it while it was idle.
var errStaleConn = errors.New("proxy: idle connection to the target was closed")

// ErrCircuitOpen is the error of a request refused by a target group's
// circuit breaker: its target was at its connection limit and the group
// had its maximum of requests waiting for one (see Limits). The client gets
// 503.
var ErrCircuitOpen = errors.New("proxy: circuit breaker open")

// pool is the HTTP proxy's connections to one Upstream's targets: a list of
// idle connections per target address, each with its own lock, so that
// requests to different targets never wait on each other. There is no
// goroutine per connection: a connection is owned by one request at a time,
// from get to put or discard.
//
// Without a reading goroutine nobody notices what a target sends on an idle
// connection: its close, or bytes it should not have sent (a body to a
// HEAD, more than its Content-Length), which the next request would read as
// its answer. So a connection taken from the pool is first checked with a
// non-blocking peek: anything there (data, EOF, an error) and it is closed
// and the next one taken. The peek costs a system call per request;
// skipping it would let a buggy target hand one client's answer to
// another. A target may still close a connection between the peek and the
// request: a request that fails on a reused connection before any byte of
// the answer and that may be sent twice is sent again once on a new
// connection, as http.Transport does.
//
// The circuit breaker lives here too: a target has at most its Upstream's
// MaxConnsPerTarget connections open (idle ones included) across the pools
// of every proxy; a request that needs another waits for one to free up,
// and at most MaxPendingRequests requests of the group wait at once.
type pool struct {
	up      *Upstream
	tls     *tls.Config // the Upstream's, HTTP/1.1 only; nil for plain TCP
	maxIdle int

	hosts sync.Map // target address → *poolHost

	// put reads armed and closed without mu: with the sweep armed (the
	// usual case), returning a connection takes its target's lock only,
	// never a lock of the whole group (see BenchmarkPoolPut).
	mu     sync.Mutex  // guards sweep, and the changes of armed and closed
	sweep  *time.Timer // closes connections idle too long; nil until armed
	armed  atomic.Bool // the sweep will run
	closed atomic.Bool // close was called: returned connections close

	dials atomic.Int64 // connections made, for tests
}

// poolHost is the idle connections to one target address.
type poolHost struct {
	addr string
	tls  *tls.Config // with ServerName set for this target; nil for plain TCP

	mu   sync.Mutex // guards idle and dead
	idle []*tconn   // oldest first
	dead bool       // let go by the sweep: connections go to a new list
}

// tconn is one persistent connection to a target. It is owned by one
// request at a time.
type tconn struct {
	p    *pool
	host *poolHost
	st   *targetState // whose connection count it holds

	nc  net.Conn     // *net.TCPConn, or *tls.Conn over it
	tcp *net.TCPConn // the socket
	raw syscall.RawConn
	tls bool

	buf       []byte // read buffer; buf[r:w] is unread
	r, w      int
	resp      h1.Response
	idleAt    time.Time
	reused    bool      // taken from the pool (not dialed for this request)
	unchecked bool      // reused without the liveness peek: sendAndWait does it
	headAt    time.Time // the read deadline sendAndWait set for readHead

	alive  bool          // set by peekFn
	peekFn func(uintptr) // c.peek, bound once
	pb     [1]byte       // the peek's buffer
	closed atomic.Bool

	// sendAndWait's state, kept here so that its poller callback (sw,
	// bound once) allocates nothing per request.
	sw sendWait
}

// sendWait is the state of one exchange.sendAndWait.
type sendWait struct {
	fn    func(uintptr) bool // tc.sw.step, bound once
	tc    *tconn
	hb    []byte // the request to write
	first bool   // the callback has not run yet
	dead  bool   // the peek found the connection closed or not quiet
	wrote int
	werr  error
}

// step is sendAndWait's poller callback: on its first call the liveness
// peek and the write; on the next (the socket became readable, or the
// deadline woke it) the wait is over.
func (s *sendWait) step(fd uintptr) bool {
	if !s.first {
		return true // readable (or woken by the deadline)
	}
	s.first = false
	if s.tc.unchecked && !peekQuiet(fd, s.tc.pb[:]) {
		s.dead = true
		return true
	}
	var full bool
	s.wrote, full, s.werr = writeFD(fd, s.hb, s.wrote)
	return full || s.werr != nil // else wait for the answer
}

func newPool(up *Upstream, maxIdle int) *pool {
	p := &pool{up: up, maxIdle: maxIdle}
	if up.TLS != nil {
		p.tls = up.TLS.Clone()
		// The proxy speaks HTTP/1.1 to targets.
		p.tls.NextProtos = slices.DeleteFunc(slices.Clone(p.tls.NextProtos), func(s string) bool { return s == "h2" })
	}
	return p
}

// host returns addr's idle list, making it on first use.
func (p *pool) host(addr string) *poolHost {
	if v, ok := p.hosts.Load(addr); ok {
		return v.(*poolHost)
	}
	h := &poolHost{addr: addr}
	if p.tls != nil {
		h.tls = p.tls.Clone()
		if h.tls.ServerName == "" {
			// http.Transport's rule: the target's host, which crypto/tls
			// leaves out of SNI when it is an IP address but still
			// verifies the certificate against.
			hn, _, err := net.SplitHostPort(addr)
			if err != nil {
				hn = addr
			}
			h.tls.ServerName = hn
		}
	}
	v, _ := p.hosts.LoadOrStore(addr, h)
	return v.(*poolHost)
}

// takeIdle returns the most recently used idle connection to addr that is
// still open and quiet, or nil. With lazy, the check is left to the
// caller (see exchange.sendAndWait, which does it in the same step as
// writing the request) and the connection is marked unchecked.
func (p *pool) takeIdle(h *poolHost, lazy bool) *tconn {
	for {
		h.mu.Lock()
		n := len(h.idle)
		if n == 0 {
			h.mu.Unlock()
			return nil
		}
		c := h.idle[n-1]
		h.idle[n-1] = nil
		h.idle = h.idle[:n-1]
		h.mu.Unlock()
		if lazy && canMerge && c.raw != nil && !c.tls {
			c.reused, c.unchecked = true, true
			return c
		}
		if c.usable() {
			c.reused = true
			return c
		}
		c.close()
	}
}

// closeOneIdle closes the oldest idle connection to addr, if any: an
// event loop's request waits for the connection slot it holds.
func (p *pool) closeOneIdle(addr string) {
	v, ok := p.hosts.Load(addr)
	if !ok {
		return
	}
	h := v.(*poolHost)
	h.mu.Lock()
	if len(h.idle) == 0 {
		h.mu.Unlock()
		return
	}
	c := h.idle[0]
	h.idle[0] = nil
	h.idle = h.idle[1:]
	h.mu.Unlock()
	c.close()
}

// get returns a connection to st's target at addr: an idle one, or a new
// one dialed within connect (the circuit breaker permitting, waiting for a
// free connection until the deadline if the target is at its limit). A
// failure to connect is a *dialError; a refusal by the breaker wraps
// ErrCircuitOpen. ctx bounds the wait for a free connection; a dial, once
// started, is bounded by the connect timeout and dctx only (the proxy's
// life), not by the request: a client that cancels its request (an
// HTTP/2 stream reset) then leaves a connection for the next request
// instead of a dial thrown away.
func (p *pool) get(ctx, dctx context.Context, st *targetState, addr string, connect time.Duration, lazy bool) (c *tconn, dialTime time.Duration, err error) {
	h := p.host(addr)
	if c := p.takeIdle(h, lazy); c != nil {
		return c, -1, nil
	}
	deadline := time.Now().Add(connect)
	c, err = st.reserve(ctx, deadline, func() *tconn { return p.takeIdle(h, lazy) })
	if err != nil {
		return nil, -1, err
	}
	if c != nil {
		return c, -1, nil // went idle while this request waited
	}
	c, dialTime, err = p.dial(dctx, h, deadline)
	if err != nil {
		st.unreserve()
		return nil, dialTime, err
	}
	c.st = st
	return c, dialTime, nil
}

// dial connects to h within deadline, and completes the TLS handshake
// within it too. dialTime is the time the TCP connection took (what the
// access log reports), whether or not the handshake succeeds.
func (p *pool) dial(ctx context.Context, h *poolHost, deadline time.Time) (c *tconn, dialTime time.Duration, err error) {
	p.dials.Add(1)
	start := time.Now()
	d := net.Dialer{Deadline: deadline, KeepAlive: 30 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", h.addr)
	dialTime = time.Since(start)
	if err != nil {
		return nil, dialTime, &dialError{err}
	}
	c = &tconn{p: p, host: h, nc: nc}
	c.tcp, _ = nc.(*net.TCPConn)
	if c.tcp != nil {
		c.raw, _ = c.tcp.SyscallConn()
	}
	c.peekFn = c.peek
	if h.tls != nil {
		tc := tls.Client(nc, h.tls)
		hctx, cancel := context.WithDeadline(ctx, deadline)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			nc.Close()
			return nil, dialTime, &dialError{fmt.Errorf("TLS handshake: %w", err)}
		}
		c.nc, c.tls = tc, true
	}
	return c, dialTime, nil
}

// put returns c to its pool, or closes it when the pool is full or closed.
// c's buffer must hold no unread byte.
func (p *pool) put(c *tconn) {
	c.idleAt = time.Now()
	c.unchecked = false
	c.r, c.w = 0, 0
	c.resp.Reset()
	if c.buf != nil && cap(c.buf) != targetBufSize {
		c.buf = nil // a grown buffer is not kept for an idle connection
	}
	h := c.host
	h.mu.Lock()
	for h.dead {
		// The sweep let the list go while c was in use.
		h.mu.Unlock()
		h = p.host(h.addr)
		c.host = h
		h.mu.Lock()
	}
	if len(h.idle) >= p.maxIdle {
		h.mu.Unlock()
		c.close()
		return
	}
	h.idle = append(h.idle, c)
	h.mu.Unlock()
	c.st.freed()
	if !p.armed.Load() {
		p.arm()
	}
	if p.closed.Load() {
		p.closeIdle()
	}
}

// arm sets the sweep to run unless the pool is closed.
func (p *pool) arm() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed.Load() || p.armed.Load() {
		return
	}
	p.armed.Store(true)
	if p.sweep == nil {
		p.sweep = time.AfterFunc(idleConnTimeout, p.sweepIdle)
	} else {
		p.sweep.Reset(idleConnTimeout)
	}
}

// sweepIdle closes the connections idle for idleConnTimeout and lets go of
// the lists left empty (targets come and go); it rearms itself while any
// connection is idle: one timer for the whole pool.
func (p *pool) sweepIdle() {
	// Disarmed first: a connection returned while the lists are swept
	// arms the sweep again (put's fast path reads armed), so none is left
	// idle with no sweep to come.
	p.mu.Lock()
	p.armed.Store(false)
	p.mu.Unlock()
	now := time.Now()
	next := idleConnTimeout
	var old []*tconn
	some := false
	p.hosts.Range(func(k, v any) bool {
		h := v.(*poolHost)
		h.mu.Lock()
		i := 0
		for ; i < len(h.idle); i++ {
			if d := now.Sub(h.idle[i].idleAt); d < idleConnTimeout {
				next = min(next, idleConnTimeout-d)
				break
			}
			old = append(old, h.idle[i])
		}
		if i > 0 {
			h.idle = slices.Delete(h.idle, 0, i)
		}
		if len(h.idle) == 0 {
			h.dead = true
			p.hosts.CompareAndDelete(k, v)
		} else {
			some = true
		}
		h.mu.Unlock()
		return true
	})
	p.mu.Lock()
	if some && !p.closed.Load() {
		p.armed.Store(true)
		p.sweep.Reset(next)
	}
	p.mu.Unlock()
	for _, c := range old {
		c.close()
	}
}

// closeIdle closes the idle connections and makes connections returned
// later close; connections in use close when their request ends.
func (p *pool) closeIdle() {
	p.mu.Lock()
	p.closed.Store(true)
	if p.sweep != nil {
		p.sweep.Stop()
	}
	p.armed.Store(false)
	p.mu.Unlock()
	var old []*tconn
	p.hosts.Range(func(_, v any) bool {
		h := v.(*poolHost)
		h.mu.Lock()
		old = append(old, h.idle...)
		clear(h.idle)
		h.idle = h.idle[:0]
		h.mu.Unlock()
		return true
	})
	for _, c := range old {
		c.close()
	}
}

// close closes the connection and gives its slot back to the breaker.
// Idempotent.
func (c *tconn) close() {
	if c.closed.Swap(true) {
		return
	}
	c.nc.Close()
	if c.st != nil {
		c.st.unreserve()
	}
	c.buf = nil
}

// usable reports whether an idle connection is still open: nothing may
// arrive on an idle HTTP/1.1 connection, so data, EOF or an error all mean
// it must not be used.
func (c *tconn) usable() bool {
	if c.raw == nil {
		return true
	}
	c.alive = false
	if c.raw.Control(c.peekFn) != nil {
		return false
	}
	return c.alive
}

// abort makes the connection's blocked reads return at once: its request
// is abandoned. Writes are left to finish (a request head is small, and a
// body's writes have their own deadline), so that a request written whole
// leaves the connection reusable once its answer has been read (see
// drainAbandoned).
func (c *tconn) abort() { _ = c.nc.SetReadDeadline(aLongTimeAgo) }

// aLongTimeAgo is a deadline in the past: it aborts a connection's
// blocked reads and writes at once.
var aLongTimeAgo = time.Unix(1, 0)

// dialError marks a failure to connect: the request never reached the
// target, so it may always be retried.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// reserve takes one of st's connection slots for a new connection. While
// the target is at its limit (Limits.MaxConnsPerTarget), it waits until
// deadline for a slot or for an idle connection, which take fetches
// (returned instead of a slot), as long as the group has fewer than
// Limits.MaxPendingRequests requests waiting; otherwise the request is
// refused with an error wrapping ErrCircuitOpen.
func (st *targetState) reserve(ctx context.Context, deadline time.Time, take func() *tconn) (*tconn, error) {
	u := st.up
	lim := u.limits()
	if st.tryReserve(lim.MaxConnsPerTarget) {
		return nil, nil
	}
	if u.pending.Add(1) > int64(lim.MaxPendingRequests) {
		u.pending.Add(-1)
		st.breakerRefused.Add(1)
		return nil, fmt.Errorf("%w: target %s has %d connections open and group %q has %d requests waiting for one",
			ErrCircuitOpen, st.id, st.openConns.Load(), u.Name, lim.MaxPendingRequests)
	}
	defer u.pending.Add(-1)
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		ch := st.waitSlot()
		// Checked after registering, so that a slot freed in between is
		// not missed.
		if c := take(); c != nil {
			st.stopWaiting(ch)
			return c, nil
		}
		if st.tryReserve(lim.MaxConnsPerTarget) {
			st.stopWaiting(ch)
			return nil, nil
		}
		select {
		case <-ch:
		case <-timer.C:
			st.stopWaiting(ch)
			st.breakerRefused.Add(1)
			return nil, fmt.Errorf("%w: target %s stayed at its limit of %d connections", ErrCircuitOpen, st.id, lim.MaxConnsPerTarget)
		case <-ctx.Done():
			st.stopWaiting(ch)
			return nil, ctx.Err()
		}
	}
}

// tryReserve takes a connection slot if the target is under limit (0: no
// limit).
func (st *targetState) tryReserve(limit int) bool {
	for {
		n := st.openConns.Load()
		if limit > 0 && n >= int64(limit) {
			return false
		}
		if st.openConns.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// unreserve gives back a connection slot (a connection closed) and wakes
// a waiter.
func (st *targetState) unreserve() {
	st.openConns.Add(-1)
	st.freed()
}

// freed wakes one request waiting for a connection to the target, if any:
// a slot was given back or a connection went idle.
func (st *targetState) freed() {
	if st.waiting.Load() == 0 {
		return
	}
	st.waitMu.Lock()
	if len(st.waiters) > 0 {
		ch := st.waiters[0]
		st.waiters = st.waiters[1:]
		st.waiting.Add(-1)
		close(ch)
	}
	st.waitMu.Unlock()
}

// waitSlot registers a waiter and returns the channel freed closes.
func (st *targetState) waitSlot() chan struct{} {
	ch := make(chan struct{})
	st.waitMu.Lock()
	st.waiters = append(st.waiters, ch)
	st.waiting.Add(1)
	st.waitMu.Unlock()
	return ch
}

// stopWaiting removes a waiter that gave up; if freed had already woken
// it, the wake-up is passed on.
func (st *targetState) stopWaiting(ch chan struct{}) {
	st.waitMu.Lock()
	if i := slices.Index(st.waiters, ch); i >= 0 {
		st.waiters = slices.Delete(st.waiters, i, i+1)
		st.waiting.Add(-1)
		st.waitMu.Unlock()
		return
	}
	st.waitMu.Unlock()
	st.freed()
}
