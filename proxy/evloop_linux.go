//go:build linux

package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/lbkit/lbkit/balancer"
	"github.com/lbkit/lbkit/proxy/internal/h1"
	"github.com/lbkit/lbkit/sticky"
)

// The engine's event loops (HTTP.EventLoop): one per GOMAXPROCS, each an
// epoll instance and a goroutine (parked in the runtime's poller on the
// epoll descriptor when nothing is ready), serving plain-TCP
// HTTP/1.x client connections the way nginx's workers do — non-blocking
// reads and writes, no goroutine per connection, no goroutine switch per
// request. A loop serves a request itself when it needs nothing that
// could block: a request without a body (GET, HEAD, DELETE, ...) routed
// to a group of plain-HTTP targets without stickiness, on a connection to
// the target from the loop's own keep-alive pool, or made by a
// non-blocking connect. The response is relayed whatever its framing
// (spliced when long). Everything else — a body, an upgrade, Expect, a
// head that did not arrive in one read, a malformed request, sticky or
// TLS groups, an Observer — is handed, with the bytes read so far, to the
// engine's goroutine for that connection (serveEngineWith), which serves
// it from then on: nothing is sent to a target before that decision, so
// the engine does exactly what it would have done. Both front ends share
// the parser, the checks and routing (dispatch), the attempt bookkeeping
// and retry decision (beginAttempt, retryAfter), the request and
// response heads (appendRequestHead, appendResponseHead), the counters
// and the access log (finish).
//
// Timeouts are checked every loopTick, never early: a wait ends up to
// loopTick after its timeout.

// loopTick is the resolution of the loops' timeouts.
const loopTick = 100 * time.Millisecond

// loopCommand bits, set by other goroutines, read by the loop.
const (
	cmdCloseIdle uint32 = 1 << iota // close idle connections (Shutdown)
	cmdCloseAll                     // close every connection (Close)
	cmdStop                         // free the loop and return
	cmdRetry                        // a connection slot was freed: retry the requests waiting for one
)

// evloops is a proxy's event loops.
type evloops struct {
	h     *HTTP
	loops []*evloop
	next  atomic.Uint32
	wg    sync.WaitGroup
	once  sync.Once // stop's

	dials atomic.Int64 // target connections made, for tests
}

// idleConns returns how many idle target connections the loops keep, for
// tests.
func (ls *evloops) idleConns() int64 {
	var n int64
	for _, l := range ls.loops {
		n += l.idleN.Load()
	}
	return n
}

// startLoops starts n event loops for h.
func startLoops(h *HTTP, n int) (*evloops, error) {
	ls := &evloops{h: h}
	for range n {
		l, err := newLoop(ls, n)
		if err != nil {
			ls.stop()
			return nil, err
		}
		ls.loops = append(ls.loops, l)
		ls.wg.Add(1)
		go func() {
			defer ls.wg.Done()
			l.run()
		}()
	}
	return ls, nil
}

// stop ends the loops (their connections are closed by then: see
// HTTP.finish) and waits for them.
func (ls *evloops) stop() {
	ls.once.Do(func() {
		for _, l := range ls.loops {
			l.command(cmdStop)
		}
		ls.wg.Wait()
	})
}

// closeConns asks every loop to close its idle connections, or all.
func (ls *evloops) closeConns(idleOnly bool) {
	c := cmdCloseAll
	if idleOnly {
		c = cmdCloseIdle
	}
	for _, l := range ls.loops {
		l.command(c)
	}
}

// adopt hands an accepted plain-TCP connection to a loop, reporting false
// when it cannot (the caller serves it as before). The loop takes over
// the connection's count in h.engines.
func (ls *evloops) adopt(nc net.Conn, peer netip.AddrPort, port string, tmo *Timeouts) bool {
	if _, ok := nc.(*net.TCPConn); !ok {
		return false
	}
	fd, err := dupConn(nc)
	if err != nil {
		return false
	}
	// The runtime's poller lets go of the socket; the duplicate, which
	// shares its (non-blocking) open file, is the loop's.
	nc.Close()
	l := ls.loops[ls.next.Add(1)%uint32(len(ls.loops))]
	l.mu.Lock()
	l.inbox = append(l.inbox, arrival{fd: fd, peer: peer, port: port, tmo: tmo})
	l.mu.Unlock()
	l.wakeup()
	return true // the loop runs until every adopted connection closed (see HTTP.finish)
}

// arrival is a connection on its way to a loop: a client from adopt, or
// a target connection a dialing goroutine made (t set).
type arrival struct {
	fd   int
	peer netip.AddrPort
	port string
	tmo  *Timeouts
	t    *ltarget
	err  error
}

// evloop is one event loop. Only its goroutine touches its fields but mu,
// inbox and cmds.
type evloop struct {
	h    *HTTP
	ls   *evloops
	ep   int
	wake int // an eventfd: written to wake the loop

	mu    sync.Mutex
	inbox []arrival
	shed  []*targetState // targets whose idle connections another loop's waiting requests need
	freed bool           // the loop returned: its eventfd is closed
	cmds  atomic.Uint32
	dials sync.WaitGroup // goroutines dialing targets by name

	epf      *os.File           // ep, in the runtime's poller
	rc       syscall.RawConn    // epf's
	waitFn   func(uintptr) bool // l.waitOnce, bound once
	ready    int                // events waitOnce found
	deadline time.Time          // epf's read deadline: the next sweep

	fds     []lentry // by descriptor
	clients int
	targets int
	idle    map[string][]*ltarget // idle target connections, by address, newest last
	maxIdle int
	events  []unix.EpollEvent
	now     time.Time
	swept   time.Time
	pipes   [][2]int // spare pipes for splice

	slotWaiters []waiter // requests waiting for a connection slot
	retrying    bool     // retryWaiting runs

	idleN   atomic.Int64 // len of every idle list, for tests (the loop's own: no cache line shared with the other loops)
	closing bool         // Shutdown: idle connections close
}

// lentry is what a descriptor of a loop is.
type lentry struct {
	c *lclient
	t *ltarget
}

// lclient is a client connection served by a loop.
type lclient struct {
	fd   int
	peer netip.AddrPort
	port string
	hs   *httpStripe
	tmo  *Timeouts

	buf       []byte // read buffer (getConnBuf); buf[r:w] is unread; nil while idle
	r, w      int
	req       h1.Request
	out       []byte // bytes for the client; out[off:] unwritten
	off       int
	ex        *exchange    // the exchange in flight
	t         *ltarget     // its target connection
	n         int          // its attempt number
	pending   bool         // its request waits for a connection slot (waitSlot)
	pendingUp *Upstream    // whose pending count it holds
	pendingSt *targetState // whose loopWaiters count it holds
	slotBy    time.Time    // until when it may wait
	first     time.Time    // its first attempt's start
	lastErr   error

	readable bool // may have bytes to read (edge-triggered)
	writable bool // may take bytes
	hup      bool // the client shut its side down
	gone     bool // the client went away (a failed write), or was closed
	keep     bool
	served   bool
	closed   bool
	since    time.Time // accepted, or the last response written
}

// ltarget is a target connection of a loop.
type ltarget struct {
	fd     int
	addr   string
	st     *targetState
	c      *lclient // the client whose request it carries; nil when idle
	buf    []byte
	r, w   int
	resp   h1.Response
	wb     []byte // the request, wb[woff:] unwritten
	woff   int
	closed bool

	readable, writable bool
	hup                bool // the target shut its side down, or the connection failed
	connecting         bool
	reused             bool // taken from the pool
	got                bool // a byte of the answer arrived
	relaying           bool // the response head was relayed: the body is on its way
	n1xx               int
	since              time.Time // idle since; or connecting since
	deadline           time.Time // zero: none

	framing  h1.Framing // the body's, as relayed
	left     int64      // FramingLength: bytes to come
	ch       h1.Chunked
	decode   bool
	pipe     [2]int // splice's, while it holds bytes; -1s otherwise
	inPipe   int
	noSplice bool // no pipe could be made: the body goes through buf
}

// newLoop makes a loop of a proxy with n loops.
func newLoop(ls *evloops, n int) (*evloop, error) {
	h := ls.h
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("proxy: event loop: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(ep)
		return nil, fmt.Errorf("proxy: event loop: %w", err)
	}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, wake, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}); err != nil {
		unix.Close(wake)
		unix.Close(ep)
		return nil, fmt.Errorf("proxy: event loop: %w", err)
	}
	maxIdle := h.MaxIdleConnsPerTarget
	if maxIdle == 0 {
		maxIdle = DefaultMaxIdleConnsPerTarget
	}
	l := &evloop{h: h, ls: ls, ep: ep, wake: wake, idle: map[string][]*ltarget{},
		maxIdle: max(1, (maxIdle+n-1)/n), events: make([]unix.EpollEvent, 256)}
	// The epoll descriptor is itself pollable: readable when events are
	// ready. Non-blocking, os.NewFile puts it in the runtime's poller.
	if err := unix.SetNonblock(ep, true); err != nil {
		unix.Close(wake)
		unix.Close(ep)
		return nil, fmt.Errorf("proxy: event loop: %w", err)
	}
	l.epf = os.NewFile(uintptr(ep), "epoll")
	rc, err := l.epf.SyscallConn()
	if err != nil {
		l.epf.Close()
		unix.Close(wake)
		return nil, fmt.Errorf("proxy: event loop: %w", err)
	}
	l.rc, l.waitFn = rc, l.waitOnce
	return l, nil
}

// command sets c and wakes the loop.
func (l *evloop) command(c uint32) {
	l.cmds.Or(c)
	l.wakeup()
}

// wakeup makes the loop's epoll_wait return, unless it returned for good.
func (l *evloop) wakeup() {
	one := [8]byte{1}
	l.mu.Lock()
	if !l.freed {
		_, _ = unix.Write(l.wake, one[:])
	}
	l.mu.Unlock()
}

// wait returns how many events l.events holds: at once when some are
// ready, else when one comes, the goroutine parked meanwhile in the
// runtime's poller on the epoll descriptor (holding no thread, so that
// the loops share the process's Ps with its other goroutines), or 0 when
// the next sweep is due.
func (l *evloop) wait() int {
	if l.clients+l.targets > 0 {
		if next := l.swept.Add(loopTick); !next.Equal(l.deadline) {
			l.deadline = next
			_ = l.epf.SetReadDeadline(next)
		}
	} else if !l.deadline.IsZero() {
		l.deadline = time.Time{}
		_ = l.epf.SetReadDeadline(time.Time{})
	}
	n := 0
	err := l.rc.Read(l.waitFn)
	if err == nil {
		n = l.ready
	}
	return n
}

// waitOnce is wait's poller callback: the events ready now, if any.
func (l *evloop) waitOnce(fd uintptr) bool {
	for {
		n, err := unix.EpollWait(int(fd), l.events, 0)
		switch {
		case n > 0:
			l.ready = n
			return true
		case err == unix.EINTR:
			continue
		case err != nil:
			panic("proxy: epoll_wait: " + err.Error()) // EBADF, EFAULT, EINVAL: cannot happen
		}
		return false
	}
}

// run serves until cmdStop.
func (l *evloop) run() {
	defer l.free()
	for {
		n := l.wait()
		l.now = time.Now()
		for i := range max(n, 0) {
			ev := &l.events[i]
			fd := int(ev.Fd)
			if fd == l.wake {
				var b [8]byte
				_, _ = unix.Read(l.wake, b[:])
				if l.woken() {
					return
				}
				continue
			}
			if fd >= len(l.fds) {
				continue
			}
			switch e := l.fds[fd]; {
			case e.c != nil:
				c := e.c
				if ev.Events&unix.EPOLLIN != 0 {
					c.readable = true
				}
				if ev.Events&unix.EPOLLOUT != 0 {
					c.writable = true
				}
				if ev.Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
					c.hup, c.readable = true, true
				}
				l.serveClient(c)
			case e.t != nil:
				t := e.t
				if ev.Events&unix.EPOLLIN != 0 {
					t.readable = true
				}
				if ev.Events&unix.EPOLLOUT != 0 {
					t.writable = true
				}
				if ev.Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
					t.readable, t.writable, t.hup = true, true, true
				}
				l.serveTarget(t)
			}
		}
		if l.now.Sub(l.swept) >= loopTick {
			l.swept = l.now
			l.sweep()
		}
	}
}

// woken takes in what other goroutines sent, reporting whether the loop
// is to stop.
func (l *evloop) woken() bool {
	l.mu.Lock()
	in, shed := l.inbox, l.shed
	l.inbox, l.shed = nil, nil
	l.mu.Unlock()
	for _, st := range shed {
		l.shedIdle(st)
	}
	for _, a := range in {
		if a.t != nil {
			l.dialed(a)
			continue
		}
		c := &lclient{fd: a.fd, peer: a.peer, port: a.port, tmo: a.tmo, hs: l.h.stats.stripe(),
			keep: true, writable: true, since: l.now}
		if !l.register(a.fd, lentry{c: c}) {
			unix.Close(a.fd)
			l.h.endConn()
			l.h.engines.Done()
			continue
		}
		l.clients++
	}
	cmds := l.cmds.Swap(0)
	if cmds&cmdRetry != 0 {
		l.retryWaiting()
	}
	if cmds&(cmdCloseIdle|cmdCloseAll) != 0 {
		l.closing = true
		l.closeConns(cmds&cmdCloseAll != 0)
	}
	return cmds&cmdStop != 0
}

// register adds fd to the loop, edge-triggered.
func (l *evloop) register(fd int, e lentry) bool {
	for fd >= len(l.fds) {
		l.fds = append(l.fds, make([]lentry, len(l.fds)+64)...)
	}
	l.fds[fd] = e
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd)}
	if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		l.fds[fd] = lentry{}
		return false
	}
	return true
}

// free closes everything the loop holds.
func (l *evloop) free() {
	l.dials.Wait()
	l.woken() // targets dialed meanwhile
	l.closeConns(false)
	for _, ts := range l.idle {
		for _, t := range ts {
			l.closeTarget(t)
		}
	}
	for _, p := range l.pipes {
		unix.Close(p[0])
		unix.Close(p[1])
	}
	l.mu.Lock()
	l.freed = true
	unix.Close(l.wake)
	l.mu.Unlock()
	l.epf.Close()
}

// closeConns closes the loop's client connections: all of them (their
// exchanges cut), or those waiting for a request (a new one only after
// newConnGrace, as the engine's Shutdown does).
func (l *evloop) closeConns(all bool) {
	for _, e := range l.fds {
		c := e.c
		if c == nil {
			continue
		}
		switch {
		case all:
			if c.ex != nil {
				c.gone = true
				l.clientGone(c)
			}
			l.closeClient(c)
		case c.ex == nil && c.off == len(c.out) && c.r == c.w && (c.served || l.now.Sub(c.since) > newConnGrace):
			l.closeClient(c)
		}
	}
}

// sweep runs the timeouts.
func (l *evloop) sweep() {
	now := l.now
	l.retryWaiting()
	if l.closing {
		l.closeConns(false)
	}
	for _, e := range l.fds {
		switch {
		case e.c != nil:
			c := e.c
			if c.ex == nil && c.off == len(c.out) {
				wait := c.tmo.Idle
				if !c.served {
					wait = c.tmo.Request
				}
				if now.Sub(c.since) >= wait {
					l.closeClient(c)
				}
				continue
			}
			if c.ex != nil && c.hup && now.Sub(c.ex.start) >= watchAfter {
				// As the engine's watcher: the client shut its side
				// down while the target took its time.
				if t := c.t; t != nil && t.relaying {
					l.writeFailed(c, errClientGone)
				} else if !c.ex.started {
					l.clientGone(c)
				}
			}
		case e.t != nil:
			t := e.t
			switch {
			case t.c == nil:
				if now.Sub(t.since) >= idleConnTimeout {
					l.closeTarget(t)
				}
			case !t.deadline.IsZero() && !now.Before(t.deadline):
				l.targetTimeout(t)
			}
		}
	}
}

// serveClient does what a client connection's state calls for.
func (l *evloop) serveClient(c *lclient) {
	if c.off < len(c.out) {
		if !l.flush(c) {
			return
		}
		if c.ex == nil {
			l.responded(c)
			return
		}
	}
	if c.ex != nil {
		// The exchange goes on: a relay waiting for the client to take
		// more resumes; a hang-up is acted on by sweep.
		if t := c.t; t != nil && t.relaying && c.writable {
			l.relay(t)
		}
		return
	}
	l.nextRequest(c)
}

// flush writes out what is pending for c, reporting whether all of it
// went. A client that cannot be written to is gone.
func (l *evloop) flush(c *lclient) bool {
	for c.off < len(c.out) {
		if !c.writable {
			return false
		}
		n, err := nbWrite(c.fd, c.out[c.off:])
		if n > 0 {
			c.off += n
			continue
		}
		switch err {
		case unix.EAGAIN:
			c.writable = false
			return false
		case unix.EINTR:
			continue
		}
		if err == nil {
			err = io.ErrShortWrite
		}
		l.writeFailed(c, err)
		return false
	}
	c.out, c.off = c.out[:0], 0
	if cap(c.out) > 64<<10 {
		c.out = nil
	}
	return true
}

// writeFailed ends c after a failed write: its exchange, if any, as the
// engine's cut does (499 logged).
func (l *evloop) writeFailed(c *lclient, err error) {
	c.gone, c.keep = true, false
	c.out, c.off = c.out[:0], 0
	if ex := c.ex; ex != nil {
		ex.errText = "client went away: " + err.Error()
		if t := c.t; t != nil && t.relaying {
			ex.endAttempt()
			l.releaseTarget(t, false)
			ex.finish(StatusClientClosed)
			l.endExchange(c)
		} else {
			l.clientGone(c)
		}
	}
	l.closeClient(c)
}

// responded runs once a response was written whole: the next request, or
// the close.
func (l *evloop) responded(c *lclient) {
	if !c.keep || c.gone || l.h.shuttingDown() && c.r == c.w {
		l.closeClient(c)
		return
	}
	c.since = l.now
	l.nextRequest(c)
}

// nextRequest reads and parses c's next request and starts it, or hands
// the connection to the engine's goroutine when the loop does not serve
// it.
func (l *evloop) nextRequest(c *lclient) {
	h := l.h
	if c.r == c.w {
		c.r, c.w = 0, 0
		if !c.readable && !c.hup {
			l.dropBuf(c)
			return
		}
		if c.buf == nil {
			c.buf = h.getConnBuf()
		}
		for {
			n, err := nbRead(c.fd, c.buf)
			if n > 0 {
				c.w = n
				if n < len(c.buf) {
					c.readable = false // edge-triggered: all there was (nginx's rule)
				}
				break
			}
			if err == unix.EINTR {
				continue
			}
			if err == unix.EAGAIN {
				c.readable = false
				l.dropBuf(c)
				return
			}
			l.closeClient(c) // the client closed, or the connection failed
			return
		}
	}
	if h.Observer != nil {
		l.handoff(c)
		return
	}
	lim := h1.Limits{MaxHeaderBytes: h.maxHeaderBytes(), MaxURILength: h.maxURILength()}
	n, err := h1.ParseRequest(c.buf[c.r:c.w], &c.req, lim)
	req := &c.req
	if err != nil || req.Framing != h1.FramingNone || req.Upgrade || req.Expect100 {
		// Incomplete, malformed, with a body, or an upgrade: the
		// engine's goroutine reads, refuses or serves it.
		l.handoff(c)
		return
	}
	ex := h.getExchange()
	ex.lc, ex.hs, ex.start = c, c.hs, l.now
	ex.peer, ex.scheme, ex.port = c.peer, "http", c.port
	ex.fromRequest(req)
	var route *route
	if rt := h.router.Load(); rt != nil {
		route = rt.match(normalizeHost(ex.host), cleanPath(routingPath(ex.path)))
		if !route.loopable() {
			h.putExchange(ex)
			l.handoff(c)
			return
		}
	}
	c.r += n
	c.served = true
	c.keep = !req.Close
	ex.sreq = sticky.Request{Cookies: ex.cookies}
	c.ex, c.n, c.lastErr = ex, 0, nil
	ex.hs.requests.Add(1)
	ex.hs.active.Add(1)
	ex.rule = "-"
	ex.client = ex.peer.Addr()
	if !h.dispatch(ex, route) {
		l.endExchange(c)
		return
	}
	c.first = l.now
	l.attempt(c)
}

// loopable reports whether a loop may serve a request that takes the
// route: its groups' targets speak plain HTTP and no stickiness needs
// consulting (a store may be across the network).
func (rt *route) loopable() bool {
	ok := func(u *Upstream) bool { return u == nil || u.TLS == nil && u.Sticky() == nil }
	if !ok(rt.action.Forward) {
		return false
	}
	for _, s := range rt.action.Split {
		if !ok(s.Upstream) {
			return false
		}
	}
	return true
}

// dropBuf lets c's read buffer go while it waits.
func (l *evloop) dropBuf(c *lclient) {
	if c.buf != nil && c.r == c.w {
		l.h.putConnBuf(c.buf)
		c.buf, c.r, c.w = nil, 0, 0
	}
}

// handoff gives c to the engine's goroutine, with what was read of it.
func (l *evloop) handoff(c *lclient) {
	h := l.h
	l.forget(c.fd)
	l.clients--
	c.closed = true
	f := os.NewFile(uintptr(c.fd), "")
	nc, err := net.FileConn(f)
	if err != nil {
		// No descriptor for the goroutine's copy (EMFILE): the client
		// is answered 503 and counted, as one the budget refused.
		h.stats.rejectedDescriptors.Add(1)
		h.stats.hot[0].observe(http.StatusServiceUnavailable)
		h.logRefused(c.peer, http.StatusServiceUnavailable, "no descriptor to serve the request: "+err.Error(), nil)
		_, _ = unix.Write(c.fd, noDescriptorAnswer)
		f.Close()
		h.putConnBuf(c.buf)
		c.buf = nil
		h.endConn()
		h.engines.Done()
		return
	}
	f.Close()
	buf, r, w, served, peer, port, tmo := c.buf, c.r, c.w, c.served, c.peer, c.port, c.tmo
	c.buf = nil
	go func() {
		defer h.engines.Done()
		h.serveEngineWith(nc, peer, port, tmo, buf, r, w, served)
	}()
}

// noDescriptorAnswer is handoff's answer when it has no descriptor.
var noDescriptorAnswer = []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: 24\r\n\r\n503 Service Unavailable\n")

// forget takes fd out of the loop (it is closed or handed over next).
func (l *evloop) forget(fd int) {
	_ = unix.EpollCtl(l.ep, unix.EPOLL_CTL_DEL, fd, nil)
	l.fds[fd] = lentry{}
}

// closeClient closes c.
func (l *evloop) closeClient(c *lclient) {
	if c.closed {
		return
	}
	c.closed, c.gone = true, true
	l.forget(c.fd)
	l.clients--
	// Counted before the close, as the engine does.
	l.h.endConn()
	unix.Close(c.fd)
	if c.buf != nil {
		l.h.putConnBuf(c.buf)
		c.buf = nil
	}
	l.h.engines.Done()
}

// attempt sends c's request to a target the group chooses.
func (l *evloop) attempt(c *lclient) {
	ex := c.ex
	if c.gone && l.h.baseCtx.Err() == nil {
		ex.answer(StatusClientClosed, "client went away")
		l.endExchange(c)
		return
	}
	ch, err := ex.up.Choose(balancer.PickInfo{Source: ex.client, Exclude: ex.tried}, &ex.sreq)
	if err != nil {
		if c.lastErr == nil {
			c.lastErr = err
		}
		ex.fail(c.lastErr)
		l.endExchange(c)
		return
	}
	ex.beginAttempt(ch, c.n)
	l.send(c, true)
}

// send sends c's request on a pooled connection to the chosen target
// (when pooled is true and there is one) or a new one.
func (l *evloop) send(c *lclient, pooled bool) {
	ex := c.ex
	ch := ex.choice
	addr := ch.Target.Addr
	var t *ltarget
	if pooled {
		t = l.takeIdle(addr)
	}
	if t == nil {
		var err error
		t, err = l.dial(ch, ex.up)
		if err == errNoSlot {
			l.waitSlot(c)
			return
		}
		if err != nil {
			l.failed(c, err)
			return
		}
	}
	l.endWait(c)
	t.c, c.t = c, t
	t.got, t.relaying, t.n1xx, t.noSplice = false, false, 0, false
	hb, err := ex.appendRequestHead(ex.hbuf[:0], addr)
	ex.hbuf = hb
	if err != nil {
		l.failed(c, err)
		return
	}
	t.wb, t.woff = hb, 0
	if t.connecting {
		return // written when connected
	}
	l.write(t)
}

// errNoSlot is dial's error when the target is at its MaxConnsPerTarget.
var errNoSlot = errors.New("no connection slot")

// waitSlot makes c's request wait for a connection to its target to free
// up, as the engine's goroutines do (targetState.reserve): within the
// connect timeout, as one of at most MaxPendingRequests of the group, else
// it is refused (503). The loop tries again when one of its own target
// connections goes idle or closes, and at every sweep for those of other
// loops and goroutines.
func (l *evloop) waitSlot(c *lclient) {
	ex := c.ex
	st := ex.choice.st
	if !c.pending {
		u := ex.up
		lim := u.limits()
		if u.pending.Add(1) > int64(lim.MaxPendingRequests) {
			u.pending.Add(-1)
			st.breakerRefused.Add(1)
			l.failed(c, fmt.Errorf("%w: target %s has %d connections open and group %q has %d requests waiting for one",
				ErrCircuitOpen, st.id, st.openConns.Load(), u.Name, lim.MaxPendingRequests))
			return
		}
		c.pending, c.pendingUp, c.pendingSt = true, u, st
		c.slotBy = l.now.Add(l.h.tmo.Load().Connect)
		// Idle connections to the target elsewhere hold slots this
		// request waits for: the other loops and the engine's pool close
		// one each, and keep none while it waits.
		st.loopWaiters.Add(1)
		l.ls.shedFor(l, st)
		if v, ok := l.h.pools.Load(u); ok {
			v.(*pool).closeOneIdle(ex.choice.Target.Addr)
		}
	}
	if !l.now.Before(c.slotBy) {
		l.endWait(c)
		st.breakerRefused.Add(1)
		l.failed(c, fmt.Errorf("%w: target %s stayed at its limit of %d connections", ErrCircuitOpen, st.id, ex.up.limits().MaxConnsPerTarget))
		return
	}
	l.slotWaiters = append(l.slotWaiters, waiter{c, ex})
}

// endWait ends c's wait for a connection slot, if it waited.
func (l *evloop) endWait(c *lclient) {
	if c.pending {
		c.pending = false
		c.pendingUp.pending.Add(-1)
		c.pendingSt.loopWaiters.Add(-1)
		c.pendingUp, c.pendingSt = nil, nil
	}
}

// retryWaiting tries the requests that wait for a connection slot again.
func (l *evloop) retryWaiting() {
	if len(l.slotWaiters) == 0 || l.retrying {
		return
	}
	l.retrying = true
	ws := l.slotWaiters
	l.slotWaiters = nil
	for i, w := range ws {
		ws[i] = waiter{}
		if w.c.closed || w.c.ex != w.ex || w.c.t != nil {
			continue // ended meanwhile
		}
		l.send(w.c, true)
	}
	if len(l.slotWaiters) == 0 {
		l.slotWaiters = ws[:0] // the array again, for the next waiters
	}
	l.retrying = false
}

// shedFor asks the loops other than l to close an idle connection to st's
// target, for a request of l waiting for a connection slot.
func (ls *evloops) shedFor(l *evloop, st *targetState) {
	for _, o := range ls.loops {
		if o == l {
			continue
		}
		o.mu.Lock()
		o.shed = append(o.shed, st)
		o.mu.Unlock()
		o.wakeup()
	}
}

// kick makes the loops other than l retry their requests waiting for a
// connection slot: l freed one.
func (ls *evloops) kick(l *evloop) {
	for _, o := range ls.loops {
		if o != l {
			o.command(cmdRetry)
		}
	}
}

// shedIdle closes one of the loop's idle connections to st's target.
func (l *evloop) shedIdle(st *targetState) {
	for _, ts := range l.idle {
		for _, t := range ts {
			if t.st == st {
				l.closeTarget(t)
				return
			}
		}
	}
}

// waiter is a request waiting for a connection slot.
type waiter struct {
	c  *lclient
	ex *exchange // the exchange that waits: c may have gone on to another
}

// dial makes a new connection to the chosen target, within its group's
// connection limit: a non-blocking connect to an IP address, or a
// goroutine's dial for a name (its arrival is the loop's).
func (l *evloop) dial(ch Choice, up *Upstream) (*ltarget, error) {
	st := ch.st
	if !st.tryReserve(up.limits().MaxConnsPerTarget) {
		return nil, errNoSlot
	}
	l.ls.dials.Add(1)
	tmo := l.h.tmo.Load()
	t := &ltarget{fd: -1, addr: ch.Target.Addr, st: st, connecting: true, since: l.now,
		deadline: l.now.Add(tmo.Connect), pipe: [2]int{-1, -1}}
	ap, err := netip.ParseAddrPort(t.addr)
	if err != nil {
		// A name: a goroutine resolves and dials it.
		l.dials.Add(1)
		go func() {
			defer l.dials.Done()
			d := net.Dialer{Timeout: tmo.Connect, KeepAlive: 30 * time.Second}
			a := arrival{t: t, fd: -1}
			nc, err := d.Dial("tcp", t.addr)
			if err == nil {
				a.fd, a.err = dupConn(nc)
				nc.Close()
			} else {
				a.err = err
			}
			l.mu.Lock()
			l.inbox = append(l.inbox, a)
			l.mu.Unlock()
			l.wakeup()
		}()
		l.targets++
		return t, nil
	}
	fd, err := connectNonblock(ap)
	if err != nil {
		st.unreserve()
		return nil, &dialError{err}
	}
	t.fd = fd
	if !l.register(fd, lentry{t: t}) {
		unix.Close(fd)
		st.unreserve()
		return nil, &dialError{errors.New("epoll_ctl failed")}
	}
	l.targets++
	return t, nil
}

// dialed takes the result of a goroutine's dial.
func (l *evloop) dialed(a arrival) {
	t := a.t
	if t.closed {
		// Given up on meanwhile (its client went).
		if a.fd >= 0 {
			unix.Close(a.fd)
		}
		return
	}
	if a.err == nil {
		t.fd = a.fd
		if !l.register(a.fd, lentry{t: t}) {
			unix.Close(a.fd)
			t.fd = -1
			a.err = errors.New("epoll_ctl failed")
		}
	}
	if a.err != nil {
		l.connectFailed(t, a.err)
		return
	}
	t.connecting = false
	t.writable = true
	l.connected(t)
}

// nbRead and nbWrite are read(2) and write(2) on a non-blocking
// descriptor, which never block: a raw system call, without the
// runtime's bookkeeping for one that might (entersyscall/exitsyscall,
// 2 % of a loop's CPU). Results are as unix.Read's and unix.Write's.
func nbRead(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

func nbWrite(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

// dupConn returns a duplicate of nc's descriptor.
func dupConn(nc net.Conn) (int, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return -1, errors.New("not a socket")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd, derr := -1, error(nil)
	if err := raw.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	return fd, derr
}

// connectNonblock starts a connection to ap.
func connectNonblock(ap netip.AddrPort) (int, error) {
	var sa unix.Sockaddr
	family := unix.AF_INET
	if a := ap.Addr().Unmap(); a.Is4() {
		sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}
	} else {
		family = unix.AF_INET6
		sa6 := &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
		if z := a.Zone(); z != "" {
			if ifi, err := net.InterfaceByName(z); err == nil {
				sa6.ZoneId = uint32(ifi.Index)
			} else if n, err := strconv.Atoi(z); err == nil {
				sa6.ZoneId = uint32(n)
			}
		}
		sa = sa6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 30)
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 30)
	if err := unix.Connect(fd, sa); err != nil && err != unix.EINPROGRESS {
		unix.Close(fd)
		return -1, &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(ap), Err: os.NewSyscallError("connect", err)}
	}
	return fd, nil
}

// takeIdle returns an idle connection to addr from the loop's pool.
func (l *evloop) takeIdle(addr string) *ltarget {
	ts := l.idle[addr]
	if len(ts) == 0 {
		return nil
	}
	t := ts[len(ts)-1]
	ts[len(ts)-1] = nil
	l.idle[addr] = ts[:len(ts)-1]
	l.idleN.Add(-1)
	t.reused = true
	return t
}

// serveTarget does what a target connection's state calls for.
func (l *evloop) serveTarget(t *ltarget) {
	switch {
	case t.c == nil:
		// Nothing may arrive on an idle connection: data, a close or an
		// error all end it. (An event may also be an edge from its last
		// exchange, delivered late: writable, or readable for bytes read
		// already; quiet tells.)
		if !t.quiet() {
			l.closeTarget(t)
		}
	case t.connecting:
		if !t.writable {
			return
		}
		if errno, err := unix.GetsockoptInt(t.fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || errno != 0 {
			if err == nil {
				err = os.NewSyscallError("connect", syscall.Errno(errno))
			}
			l.connectFailed(t, err)
			return
		}
		t.connecting = false
		l.connected(t)
	case t.woff < len(t.wb):
		l.write(t)
	case t.relaying:
		l.relay(t)
	default:
		l.readHead(t)
	}
}

// connected records the connect time and writes the request.
func (l *evloop) connected(t *ltarget) {
	ex := t.c.ex
	now := time.Now()
	ex.attempts[len(ex.attempts)-1].connect = now.Sub(t.since)
	if !now.Before(t.deadline) {
		// Connected, but later than the connect timeout allowed: a
		// timeout, as a dialer's deadline would have made it.
		l.connectFailed(t, os.ErrDeadlineExceeded)
		return
	}
	l.write(t)
}

// connectFailed ends a failed connection attempt.
func (l *evloop) connectFailed(t *ltarget, err error) {
	c := t.c
	l.closeTarget(t)
	if c != nil {
		c.t = nil
		l.failed(c, &dialError{err})
	}
}

// write writes the request to t.
func (l *evloop) write(t *ltarget) {
	for t.woff < len(t.wb) {
		if !t.writable {
			return
		}
		n, err := nbWrite(t.fd, t.wb[t.woff:])
		if n > 0 {
			t.woff += n
			continue
		}
		switch err {
		case unix.EAGAIN:
			t.writable = false
			return
		case unix.EINTR:
			continue
		}
		if err == nil {
			err = io.ErrShortWrite
		}
		unwritten := t.woff == 0
		if unwritten && t.reused {
			err = &staleError{err}
		}
		l.targetFailed(t, err, unwritten)
		return
	}
	t.wb, t.woff = nil, 0
	t.deadline = l.now.Add(l.h.tmo.Load().Response)
	l.readHead(t)
}

// readHead reads and parses the response head, passing 1xx responses on,
// then relays the response.
func (l *evloop) readHead(t *ltarget) {
	c := t.c
	ex := c.ex
	lim := h1.Limits{MaxHeaderBytes: maxResponseHeaderBytes}
	for {
		if t.buf == nil {
			t.buf = make([]byte, targetBufSize)
		}
		n, perr := h1.ParseResponse(t.buf[t.r:t.w], &t.resp, s2b(ex.method), lim)
		if perr == h1.ErrIncomplete {
			m, err := l.fill(t)
			if m > 0 {
				t.got = true
				continue
			}
			if err == unix.EAGAIN {
				return
			}
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			if !t.got && t.reused {
				err = &staleError{err}
			}
			l.targetFailed(t, err, false)
			return
		}
		if perr != nil {
			l.targetFailed(t, perr, false)
			return
		}
		t.r += n
		resp := &t.resp
		if resp.Framing == h1.FramingTunnel {
			l.targetFailed(t, errors.New("unexpected 101 Switching Protocols: no upgrade was asked for"), false)
			return
		}
		if resp.Status >= 200 {
			break
		}
		if t.n1xx++; t.n1xx > max1xx {
			l.targetFailed(t, errors.New("too many 1xx informational responses"), false)
			return
		}
		ex.forward1xx(resp)
		if c.off < len(c.out) && !l.flush(c) && c.closed {
			return
		}
	}
	ex.headArrived(&ex.attempts[len(ex.attempts)-1], &t.resp)
	ex.remember(&t.resp)
	ex.started = true
	var framing h1.Framing
	c.out, framing, t.decode = ex.appendResponseHead(c.out, &t.resp, &c.keep, c.req.Minor)
	t.framing, t.relaying = framing, true
	t.left = t.resp.ContentLength
	t.ch.Reset()
	t.deadline = l.now.Add(l.h.tmo.Load().Response)
	l.relay(t)
}

// fill reads more of the response into t's buffer, making room first.
// It returns the bytes read, or 0 and unix.EAGAIN (wait), nil (EOF) or
// the error.
func (l *evloop) fill(t *ltarget) (int, error) {
	if !t.readable && !t.hup {
		return 0, unix.EAGAIN
	}
	if t.r == t.w {
		t.r, t.w = 0, 0
	} else if t.r > 0 && t.w == len(t.buf) {
		t.w = copy(t.buf, t.buf[t.r:t.w])
		t.r = 0
	}
	if t.w == len(t.buf) {
		if !t.relaying && len(t.buf) >= maxResponseHeaderBytes {
			return 0, errors.New("response head over " + strconv.Itoa(maxResponseHeaderBytes) + " bytes")
		}
		size := 2 * len(t.buf)
		if !t.relaying {
			size = min(size, maxResponseHeaderBytes)
		}
		nb := make([]byte, size)
		t.w = copy(nb, t.buf[t.r:t.w])
		t.r = 0
		t.buf = nb
	}
	for {
		m, err := nbRead(t.fd, t.buf[t.w:])
		if m > 0 {
			if m < len(t.buf)-t.w {
				t.readable = false
			}
			t.w += m
			return m, nil
		}
		switch err {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			t.readable = false
			return 0, unix.EAGAIN
		case nil:
			return 0, nil
		}
		return 0, os.NewSyscallError("read", err)
	}
}

// relay moves the response body from t to its client, as it comes.
func (l *evloop) relay(t *ltarget) {
	c := t.c
	ex := c.ex
	for {
		if t.r < t.w {
			var perr error
			switch t.framing {
			case h1.FramingLength:
				k := int(min(t.left, int64(t.w-t.r)))
				c.out = append(c.out, t.buf[t.r:t.r+k]...)
				t.r += k
				t.left -= int64(k)
				ex.sent += int64(k)
			case h1.FramingChunked:
				// As much as the buffer holds: a call stops at each
				// chunk's end.
				for t.r < t.w && !t.ch.Done() && perr == nil {
					var n int
					if t.decode {
						var data []byte
						n, data, _, perr = t.ch.Decode(t.buf[t.r:t.w])
						c.out = append(c.out, data...)
					} else {
						n, _, perr = t.ch.Scan(t.buf[t.r:t.w])
						c.out = append(c.out, t.buf[t.r:t.r+n]...)
					}
					t.r += n
					if n == 0 {
						break
					}
				}
				ex.sent = t.ch.Size()
			case h1.FramingUntilClose:
				c.out = append(c.out, t.buf[t.r:t.w]...)
				ex.sent += int64(t.w - t.r)
				t.r = t.w
			}
			if perr != nil {
				l.cutByTarget(t, perr)
				return
			}
		}
		if t.inPipe == 0 && (t.framing == h1.FramingNone || t.framing == h1.FramingLength && t.left == 0 ||
			t.framing == h1.FramingChunked && t.ch.Done()) {
			// Read whole, and written: what splice read may still be in
			// its pipe.
			l.relayed(t, true)
			return
		}
		if c.off < len(c.out) && !l.flush(c) {
			return // resumed when the client can take more (serveClient)
		}
		if t.r == t.w && !t.noSplice && (t.inPipe > 0 || t.spliceable() >= spliceMin ||
			t.framing == h1.FramingChunked && t.spliceable() >= chunkDirectMin) {
			if done := l.splice(t); !done {
				return
			}
			continue
		}
		m, err := l.fill(t)
		if m > 0 {
			t.deadline = l.now.Add(l.h.tmo.Load().Response)
			continue
		}
		if err == unix.EAGAIN {
			return
		}
		if err == nil && t.framing == h1.FramingUntilClose {
			l.relayed(t, false)
			return
		}
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		l.cutByTarget(t, err)
		return
	}
}

// spliceChunk is the most one splice call moves, and the pipe's size.
const spliceChunk = 1 << 20

// spliceable returns how much of the body may go straight from the
// target's socket to the client's: the rest of a Content-Length body, or
// of the current chunk's data when a chunked body is passed on as it is.
func (t *ltarget) spliceable() int64 {
	switch {
	case t.framing == h1.FramingLength:
		return t.left
	case t.framing == h1.FramingChunked && !t.decode:
		return t.ch.DataLeft()
	}
	return 0
}

// splice moves the body straight from the target's socket to the
// client's through a pipe (what spliceable allows), reporting false when
// it waits for one of them (the loop resumes it), true when it can go on.
func (l *evloop) splice(t *ltarget) bool {
	c := t.c
	ex := c.ex
	if t.pipe[0] < 0 {
		if n := len(l.pipes); n > 0 {
			t.pipe = l.pipes[n-1]
			l.pipes = l.pipes[:n-1]
		} else {
			var p [2]int
			if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
				// No descriptors for a pipe: the body goes through the
				// buffer instead.
				t.noSplice = true
				return true
			}
			// As Go's own splice does: a pipe of 1 MiB, fewer calls per
			// body (the default of 64 KiB if the system refuses).
			_, _ = unix.FcntlInt(uintptr(p[0]), unix.F_SETPIPE_SZ, spliceChunk)
			t.pipe = p
		}
	}
	for t.inPipe > 0 || t.spliceable() > 0 {
		if t.inPipe > 0 {
			if !c.writable {
				return false
			}
			n, err := unix.Splice(t.pipe[0], nil, c.fd, nil, t.inPipe, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
			if n > 0 {
				t.inPipe -= int(n)
				if t.framing == h1.FramingLength {
					ex.sent += n // a chunked body's is the decoder's size (relay)
				}
				continue
			}
			if err == unix.EAGAIN {
				c.writable = false
				return false
			}
			if err == unix.EINTR {
				continue
			}
			if err == nil {
				err = io.ErrShortWrite
			}
			l.writeFailed(c, err)
			return false
		}
		if !t.readable {
			return false
		}
		n, err := unix.Splice(t.fd, nil, t.pipe[1], nil, int(min(t.spliceable(), spliceChunk)), unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		if n > 0 {
			t.inPipe += int(n)
			if t.framing == h1.FramingLength {
				t.left -= n
			} else {
				t.ch.Skip(n)
			}
			t.deadline = l.now.Add(l.h.tmo.Load().Response)
			continue
		}
		switch err {
		case unix.EAGAIN:
			t.readable = false
			return false
		case unix.EINTR:
			continue
		case nil:
			err = io.ErrUnexpectedEOF
		default:
			err = os.NewSyscallError("splice", err)
		}
		l.cutByTarget(t, err)
		return false
	}
	l.pipes = append(l.pipes, t.pipe)
	t.pipe = [2]int{-1, -1}
	return true
}

// relayed ends an exchange whose response was read whole (the target
// connection kept when reuse allows it): the client's last bytes go, and
// its next request follows.
func (l *evloop) relayed(t *ltarget, reuse bool) {
	c := t.c
	ex := c.ex
	ex.endAttempt()
	l.releaseTarget(t, reuse && t.framing != h1.FramingUntilClose)
	if t.framing == h1.FramingUntilClose {
		c.keep = false
	}
	ex.finish(ex.upStatus)
	l.endExchange(c)
}

// cutByTarget ends an exchange whose target failed mid-body: the client's
// connection closes, as the engine does.
func (l *evloop) cutByTarget(t *ltarget, err error) {
	c := t.c
	ex := c.ex
	c.keep = false
	ex.errText = "response cut: " + err.Error()
	ex.endAttempt()
	l.releaseTarget(t, false)
	ex.finish(ex.upStatus)
	l.endExchange(c)
}

// releaseTarget ends c's use of t: back to the loop's pool when reuse
// allows and the response was read exactly, closed otherwise.
func (l *evloop) releaseTarget(t *ltarget, reuse bool) {
	if c := t.c; c != nil {
		c.t = nil
	}
	t.c = nil
	t.deadline = time.Time{}
	if t.pipe[0] >= 0 {
		unix.Close(t.pipe[0])
		unix.Close(t.pipe[1])
		t.pipe = [2]int{-1, -1}
		reuse = false
	}
	if !reuse || t.resp.Close || t.r != t.w || t.closed || t.inPipe > 0 || len(l.idle[t.addr]) >= l.maxIdle || l.h.isClosed() || !t.quiet() ||
		t.st.loopWaiters.Load() > 0 || t.st.waiting.Load() > 0 {
		// Closed rather than kept idle while requests wait for a
		// connection to the target: an idle one here is no use to them.
		l.closeTarget(t)
		return
	}
	t.r, t.w = 0, 0
	t.resp.Reset()
	t.relaying = false
	t.since = l.now
	l.idle[t.addr] = append(l.idle[t.addr], t)
	l.idleN.Add(1)
	t.st.freed()
	l.retryWaiting()
}

// quiet reports whether nothing arrived on t past its response: no byte,
// no close, no error. Edge-triggered, an event that came while the
// response was relayed would not come again for an idle connection.
func (t *ltarget) quiet() bool {
	if t.hup {
		return false
	}
	if !t.readable {
		return true
	}
	var b [1]byte
	for {
		_, _, err := unix.Recvfrom(t.fd, b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			t.readable = false
			return true
		}
		return false
	}
}

// closeTarget closes t.
func (l *evloop) closeTarget(t *ltarget) {
	if t.closed {
		return
	}
	t.closed = true
	if t.c == nil {
		ts := l.idle[t.addr]
		for i, x := range ts {
			if x == t {
				l.idle[t.addr] = append(ts[:i], ts[i+1:]...)
				l.idleN.Add(-1)
				break
			}
		}
	}
	if t.pipe[0] >= 0 {
		unix.Close(t.pipe[0])
		unix.Close(t.pipe[1])
		t.pipe = [2]int{-1, -1}
	}
	if t.fd >= 0 {
		l.forget(t.fd)
		unix.Close(t.fd)
	}
	l.targets--
	t.st.unreserve()
	l.retryWaiting()
	if t.st.loopWaiters.Load() > 0 {
		l.ls.kick(l)
	}
}

// targetFailed ends an attempt that failed before the response head
// arrived: the request goes once more on a new connection when a reused
// one was found closed (http.Transport's rule), to another target when
// retries allow, or the client is answered.
func (l *evloop) targetFailed(t *ltarget, err error, unwritten bool) {
	c := t.c
	reused := t.reused
	l.releaseTarget(t, false)
	var se *staleError
	if reused && (errors.As(err, &se) || unwritten) && !c.gone && (unwritten || idempotent(c.ex.method)) {
		l.send(c, false)
		return
	}
	l.failed(c, err)
}

// targetTimeout acts on a target connection's deadline.
func (l *evloop) targetTimeout(t *ltarget) {
	switch {
	case t.connecting:
		l.connectFailed(t, os.ErrDeadlineExceeded)
	case t.relaying:
		l.cutByTarget(t, os.ErrDeadlineExceeded)
	default:
		l.targetFailed(t, os.ErrDeadlineExceeded, false)
	}
}

// failed ends a failed attempt of c's exchange: another attempt, or the
// answer.
func (l *evloop) failed(c *lclient, err error) {
	ex := c.ex
	if t := c.t; t != nil {
		l.releaseTarget(t, false)
	}
	retries := l.h.retry.Attempts > 1
	if ex.retryAfter(err, &ex.attempts[len(ex.attempts)-1], c.n, c.first, retries) {
		c.lastErr = err
		c.n++
		l.attempt(c)
		return
	}
	l.endExchange(c)
}

// clientGone abandons c's exchange: the client went away before its
// response started (499 logged, as the engine's watcher does).
func (l *evloop) clientGone(c *lclient) {
	c.gone, c.keep = true, false
	if c.ex == nil {
		return
	}
	if c.t != nil || c.ex.chosen {
		l.failed(c, errClientGone)
		return
	}
	c.ex.answer(StatusClientClosed, "client went away")
	l.endExchange(c)
}

// endExchange ends c's exchange (answered and finished): the response's
// last bytes go out, then the next request is read.
func (l *evloop) endExchange(c *lclient) {
	l.endWait(c)
	ex := c.ex
	c.ex = nil
	ex.hs.active.Add(-1)
	if ex.chosen {
		ex.release()
	}
	l.h.putExchange(ex)
	c.since = l.now
	if c.closed {
		return
	}
	if c.off < len(c.out) && !l.flush(c) {
		return // responded runs once the rest is written
	}
	if !c.closed {
		l.responded(c)
	}
}

// answer writes the proxy's own response (ex.answer's front end).
func (c *lclient) answer(ex *exchange, code int, body string) {
	c.out = ex.appendAnswer(c.out, code, body, &c.keep, c.req.Minor)
	ex.started = true
}

// respond writes a response the proxy makes (ex.respond's front end).
func (c *lclient) respond(ex *exchange, code int, fields []string, body string) {
	c.out = ex.appendRespond(c.out, code, fields, body, &c.keep, c.req.Minor)
	ex.started = true
}

// write1xx passes an informational response on (not to HTTP/1.0).
func (c *lclient) write1xx(ex *exchange, resp *h1.Response) {
	if c.req.Minor > 0 {
		c.out = append1xx(c.out, resp)
	}
}
