package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lbkit/lbkit/balancer"
	"github.com/lbkit/lbkit/flowtable"
)

// copyChunk is how many bytes a spliced copy moves between updates of the
// byte counters: coarse enough to cost nothing next to the copy, fine
// enough for stats of long transfers to move.
const copyChunk = 4 << 20

// tcpConn is one client connection and, once connected, its target
// connection.
type tcpConn struct {
	p         *TCP
	client    net.Conn     // as accepted; TLS wraps it later, see serve
	clientTCP *net.TCPConn // the client socket; nil for non-TCP listeners
	peer      netip.AddrPort
	local     netip.AddrPort
	tmo       Timeouts // the proxy's when accepted, defaults filled in (Idle 0: the table's)
	proxyOn   bool     // the listener speaks the PROXY protocol (trusted proxies set)

	ended     atomic.Int32  // directions that reached EOF, see halfClose
	why       atomic.Uint32 // the CloseReason of an end the proxy caused, or of the first EOF
	start     time.Time     // accepted at (OnFlowEnd only)
	bytesUp   uint64        // client to target, written by upload before it returns
	bytesDown uint64        // target to client

	mu      sync.Mutex // guards target and aborted
	target  net.Conn   // the target connection, once connected
	aborted bool       // abort was called: a target connected later is reset at once
}

// endBy records why the connection ends, unless a reason was recorded
// first.
func (tc *tcpConn) endBy(r CloseReason) { tc.why.CompareAndSwap(0, uint32(r)) }

// abort resets both connections; the goroutines copying between them see
// errors and end. It may be called from any goroutine, any number of times.
func (tc *tcpConn) abort() {
	tc.mu.Lock()
	tc.aborted = true
	t := tc.target
	tc.mu.Unlock()
	resetClose(tc.client)
	if t != nil {
		resetClose(t)
	}
}

// setTarget records the target connection, or reports false (and resets
// it) when the connection was aborted meanwhile.
func (tc *tcpConn) setTarget(t net.Conn) bool {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if tc.aborted {
		resetClose(t)
		return false
	}
	tc.target = t
	return true
}

// drainCloser is what Upstream's drain registry closes when the target's
// deregistration delay passes.
type drainCloser struct{ tc *tcpConn }

func (d drainCloser) Close() error {
	d.tc.p.stats.drainResets.Add(1)
	d.tc.endBy(ClosedDrain)
	d.tc.abort()
	return nil
}

// serve runs one connection from its acceptance to its end.
func (tc *tcpConn) serve(ctx context.Context, ft *FlowTable, trusted bool) {
	p := tc.p
	client := tc.peer // the client's address as the targets see it
	dst := tc.local
	var rest []byte // bytes read along with a PROXY header, for the target
	if p.OnFlowEnd != nil {
		tc.start = time.Now()
	}
	refuse := func(r RefuseReason, err error) {
		// The hook first, so that whoever sees the reset also sees it
		// reported.
		p.refuse(tc.peer, r, err)
		tc.abort()
	}

	if trusted {
		h, err := readProxyHeader(tc.client, tc.tmo.Header)
		if err != nil {
			p.stats.headerBad.Add(1)
			refuse(RefusedProxyHeader, fmt.Errorf("from %s: %w", tc.peer, err))
			return
		}
		if h.client.IsValid() {
			client, dst = h.client, h.dst
		}
		rest = h.rest
		if !p.acl.Load().Allows(client.Addr()) {
			p.stats.denied.Add(1)
			refuse(RefusedACL, fmt.Errorf("%w: %s (via %s)", ErrDenied, client.Addr(), tc.peer))
			return
		}
	}

	untrustedCheck := tc.proxyOn && !trusted
	if untrustedCheck && p.tls.Load() == nil {
		// Look at what an untrusted client sends first before any target
		// is contacted: a PROXY header is refused here, and the target
		// never sees the connection. What was read goes to the target
		// first.
		first, sig, err := tc.sniff(tc.tmo.Header)
		switch {
		case sig:
			p.stats.headerUntrusted.Add(1)
			refuse(RefusedProxyHeader, fmt.Errorf("from %s: %w", tc.peer, ErrUntrustedProxyHeader))
			return
		case err != nil:
			tc.abort()
			return
		}
		if len(first) > 0 {
			rest, untrustedCheck = first, false
		}
	}

	conn := tc.client
	if cfg := p.tls.Load(); cfg != nil {
		if rest != nil {
			conn = &prefixConn{Conn: conn, prefix: rest}
			rest = nil
		}
		tlsConn := tls.Server(conn, cfg)
		hctx, cancel := context.WithTimeout(ctx, tc.tmo.Header)
		err := tlsConn.HandshakeContext(hctx)
		cancel()
		if err != nil {
			p.stats.tlsErrs.Add(1)
			refuse(RefusedTLS, fmt.Errorf("proxy: TLS handshake from %s: %w", client, err))
			return
		}
		conn = tlsConn
	}

	// Flow-table admission: the 5-tuple of the socket, so that every
	// connection is its own flow even behind another balancer.
	key := flowtable.Key{Proto: flowtable.TCP, Src: tc.peer, Dst: tc.local}
	f := &tcpFlow{c: tc}
	_, created, err := ft.t.LoadOrCreate(key, func() (flow, error) { return f, nil })
	if err != nil {
		if r := refuseReasonOf(err); r == RefusedSourceLimit {
			p.stats.sourceLimit.Add(1)
		} else {
			p.stats.tableFull.Add(1)
		}
		refuse(refuseReasonOf(err), fmt.Errorf("proxy: flow %s: %w", key, err))
		return
	}
	if created {
		// The kernel never has two live sockets with one 4-tuple; a flow
		// found instead of created is a closed connection's whose
		// goroutine has not deleted it yet, and stays that one's.
		defer ft.t.Delete(key)
		if d := tc.tmo.Idle; d > 0 {
			_ = ft.t.SetFlowTimeout(key, d)
		}
	}

	u := p.upstream.Load()
	if u == nil {
		p.stats.noTarget.Add(1)
		refuse(RefusedNoTarget, ErrNoUpstream)
		return
	}
	info := balancer.PickInfo{Source: client.Addr()}
	choice, target, err := tc.connect(ctx, u, info, client, dst)
	if err != nil {
		if errors.Is(err, balancer.ErrNoTarget) {
			p.stats.noTarget.Add(1)
			refuse(RefusedNoTarget, err)
		} else {
			p.stats.connectFailed.Add(1)
			refuse(RefusedConnect, err)
		}
		return
	}
	defer choice.Done()
	if !tc.setTarget(target) {
		return
	}
	u.Remember(info, nil, choice, nil)
	st := choice.st
	st.conns.Add(1)
	st.activeConns.Add(1)
	defer st.activeConns.Add(-1)
	release := st.track(drainCloser{tc})
	defer release()
	p.stats.forwarded.Add(1)
	p.stats.active.Add(1)
	defer p.stats.active.Add(-1)
	f.baseline(tc.clientTCP, tcpConnOf(target))

	err = tc.forward(conn, target, rest, untrustedCheck, st)
	if p.OnFlowEnd != nil {
		end := FlowEnd{
			Proto: flowtable.TCP, Client: client, Group: u.Name, Target: choice.Target,
			Start: tc.start, Duration: time.Since(tc.start),
			BytesIn: tc.bytesUp, BytesOut: tc.bytesDown,
			Reason: CloseReason(tc.why.Load()),
		}
		if end.Reason == 0 {
			end.Reason, end.Err = ClosedError, err
		}
		p.OnFlowEnd(end)
	}
}

// firstBytesWait is how long a connection from an untrusted client on a
// listener that speaks the PROXY protocol waits for the client's first
// bytes before a target is dialed. Clients send at once (their first
// segment follows the handshake's last ACK); a protocol in which the
// server speaks first gets its target after this wait, and what its client
// sends later is still checked before it is forwarded.
const firstBytesWait = 100 * time.Millisecond

// sniff reads the first bytes an untrusted client sends, waiting at most
// firstBytesWait for the first of them and up to timeout for the rest of
// what could still become a PROXY signature. sig reports a signature;
// first is what was read, for the target; err is a failed read (EOF with
// nothing read included).
func (tc *tcpConn) sniff(timeout time.Duration) (first []byte, sig bool, err error) {
	c := tc.client
	start := time.Now()
	if err := c.SetReadDeadline(start.Add(firstBytesWait)); err != nil {
		return nil, false, err
	}
	var buf [16]byte // longer than either signature
	n := 0
	for {
		m, rerr := c.Read(buf[n:])
		n += m
		s, partial := proxySigPrefix(buf[:n])
		if s {
			return nil, true, nil
		}
		if rerr != nil {
			var ne net.Error
			switch {
			case errors.As(rerr, &ne) && ne.Timeout() && n == 0:
				// Nothing yet: a server-first protocol, perhaps. The
				// copy checks what comes later.
				return nil, false, c.SetReadDeadline(time.Time{})
			case rerr == io.EOF && n > 0:
				return bytes.Clone(buf[:n]), false, nil // a copy sees EOF again
			}
			return nil, false, rerr
		}
		if !partial || n == len(buf) {
			return bytes.Clone(buf[:n]), false, c.SetReadDeadline(time.Time{})
		}
		// A prefix of a signature: wait for the rest within the header
		// timeout.
		if err := c.SetReadDeadline(start.Add(timeout)); err != nil {
			return nil, false, err
		}
	}
}

// connect picks targets and dials them until one answers, at most
// ConnectAttempts different targets, reporting every outcome to the
// Upstream's passive health.
func (tc *tcpConn) connect(ctx context.Context, u *Upstream, info balancer.PickInfo, client, dst netip.AddrPort) (Choice, net.Conn, error) {
	p := tc.p
	var triedBuf [8]string
	tried := triedBuf[:0]
	var errs []error
	timeout := tc.tmo.Connect
	for range p.attempts() {
		info.Exclude = tried
		choice, err := u.Choose(info, nil)
		if err != nil {
			if len(errs) == 0 {
				return Choice{}, nil, err
			}
			break // every target tried
		}
		id := choice.Target.ID
		c, err := dialTarget(ctx, u, choice.Target.Addr, timeout, client, dst)
		if err == nil {
			u.report(id, nil)
			return choice, c, nil
		}
		choice.Done()
		p.stats.connectErrors.Add(1)
		choice.st.connectErrors.Add(1)
		u.report(id, err)
		errs = append(errs, fmt.Errorf("target %s (%s): %w", id, choice.Target.Addr, err))
		tried = append(tried, id)
		if ctx.Err() != nil {
			break
		}
	}
	return Choice{}, nil, fmt.Errorf("%w of group %q: %w", ErrConnect, u.Name, errors.Join(errs...))
}

// dialTarget connects to addr within timeout: TCP, then the PROXY header
// and TLS when the group wants them.
func dialTarget(ctx context.Context, u *Upstream, addr string, timeout time.Duration, client, dst netip.AddrPort) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// KeepAlive off: the idle timeout is the flow table's, and the
	// proxy's own probes would look like the peers' traffic.
	d := net.Dialer{KeepAlive: -1}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if v := u.ProxyProtocol; v == 1 || v == 2 {
		if dl, ok := ctx.Deadline(); ok {
			_ = c.SetWriteDeadline(dl)
		}
		if err := writeProxyHeader(c, v, client, dst); err != nil {
			resetClose(c)
			return nil, fmt.Errorf("PROXY header: %w", err)
		}
		_ = c.SetWriteDeadline(time.Time{})
	}
	if u.TLS != nil {
		cfg := u.TLS
		if cfg.ServerName == "" {
			cfg = cfg.Clone()
			cfg.ServerName = targetHost(addr)
		}
		tc := tls.Client(c, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			resetClose(c)
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		return tc, nil
	}
	return c, nil
}

// forward copies both ways until both directions have ended, then closes
// both connections. A direction that ends with EOF half-closes its
// destination (the FIN travels on); one that fails resets both. It
// returns the first failure, if any.
func (tc *tcpConn) forward(client, target net.Conn, rest []byte, untrustedCheck bool, st *targetState) error {
	p := tc.p
	done := make(chan error, 1)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		done <- tc.upload(client, target, rest, untrustedCheck, st)
	}()
	n, errDown := copyCounted(client, target, &p.stats.bytesOut, &st.bytesOut, &p.bufs, &p.small)
	tc.bytesDown = uint64(n)
	if errDown != nil {
		tc.abort()
	} else {
		tc.halfClose(client)
	}
	errUp := <-done
	if errDown != nil || errUp != nil {
		tc.abort()
		if errDown != nil {
			return errDown
		}
		return errUp
	}
	_ = client.Close()
	_ = target.Close()
	return nil
}

// upload is the client-to-target direction: the bytes read along with a
// PROXY header first, then, on a listener that speaks the PROXY protocol,
// a look at what an untrusted client sends first (a header is refused),
// then the copy.
func (tc *tcpConn) upload(client, target net.Conn, rest []byte, untrustedCheck bool, st *targetState) error {
	p := tc.p
	if len(rest) > 0 {
		if _, err := target.Write(rest); err != nil {
			tc.abort()
			return err
		}
		tc.bytesUp += uint64(len(rest))
		p.stats.bytesIn.Add(uint64(len(rest)))
		st.bytesIn.Add(uint64(len(rest)))
	}
	if untrustedCheck {
		var buf [512]byte
		n := 0
		for {
			m, err := client.Read(buf[n:])
			n += m
			sig, partial := proxySigPrefix(buf[:n])
			if sig {
				p.stats.headerUntrusted.Add(1)
				p.refuse(tc.peer, RefusedProxyHeader, fmt.Errorf("from %s: %w", tc.peer, ErrUntrustedProxyHeader))
				tc.abort()
				return ErrUntrustedProxyHeader
			}
			if err != nil || !partial || n == len(buf) {
				if n > 0 {
					if _, werr := target.Write(buf[:n]); werr != nil {
						tc.abort()
						return werr
					}
					tc.bytesUp += uint64(n)
					p.stats.bytesIn.Add(uint64(n))
					st.bytesIn.Add(uint64(n))
				}
				if err == io.EOF {
					tc.halfClose(target)
					return nil
				}
				if err != nil {
					tc.abort()
					return err
				}
				break
			}
		}
	}
	n, err := copyCounted(target, client, &p.stats.bytesIn, &st.bytesIn, &p.bufs, &p.small)
	tc.bytesUp += uint64(n)
	if err != nil {
		tc.abort()
		return err
	}
	tc.halfClose(target)
	return nil
}

// halfClose passes an end of stream on to dst. The first direction to end
// half-closes its destination; the second needs not, as forward closes both
// connections right after it, and the close sends the FIN (both sources
// have been read to EOF, so no unread data turns it into a reset). That
// saves a system call per connection.
func (tc *tcpConn) halfClose(dst net.Conn) {
	if tc.ended.Add(1) == 1 {
		if dst == tc.target { // set before the copies started
			tc.endBy(ClosedByClient)
		} else { // the client, or the TLS connection over it
			tc.endBy(ClosedByTarget)
		}
		closeWrite(dst)
	}
}

// byteCount is one copy's byte count. The counters it feeds (the proxy's
// and the target's) are written by every connection, so the count is kept
// here and added to them every countFlush bytes and when the copy ends, not
// on every read: a chatty connection of small messages would otherwise make
// every core write the same two cache lines for each of them. countFlush is
// small enough that the counters of a long-lived connection still move.
type byteCount struct {
	a, b    *atomic.Uint64
	pending uint64
	total   uint64 // this copy's bytes
}

// add counts n bytes copied.
func (c *byteCount) add(n int) {
	c.total += uint64(n)
	if c.pending += uint64(n); c.pending >= countFlush {
		c.flush()
	}
}

// countFlush is how many bytes a copy counts locally before it adds them
// to the shared counters.
const countFlush = 64 << 10

// flush adds what was counted to the shared counters.
func (c *byteCount) flush() {
	if c.pending > 0 {
		c.a.Add(c.pending)
		c.b.Add(c.pending)
		c.pending = 0
	}
}

// copyCounted copies src to dst until EOF (returning nil) or an error,
// adding the bytes to both counters every countFlush bytes and at the end.
// Between two TCP sockets io.Copy splices in the kernel; chunks of
// copyChunk bytes (io.CopyN, whose LimitedReader splice also takes) let the
// counters advance during long transfers at no cost to the copy. Other
// connections (TLS) copy through a pooled buffer.
//
// It returns how many bytes it copied.
func copyCounted(dst, src net.Conn, a, b *atomic.Uint64, bufs, small *sync.Pool) (int64, error) {
	bc := byteCount{a: a, b: b}
	err := copyInto(dst, src, &bc, bufs, small)
	bc.flush()
	return int64(bc.total), err
}

// copyInto is copyCounted's copy, counting into bc.
func copyInto(dst, src net.Conn, bc *byteCount, bufs, small *sync.Pool) error {
	_, dstTCP := dst.(*net.TCPConn)
	_, srcTCP := src.(*net.TCPConn)
	if dstTCP && srcTCP {
		// Small messages first go through a small buffer: for a short
		// request and response, read and write cost less than splice's
		// pipe. The first read that fills it means bulk data: splice.
		if done, err := copySmall(dst, src, bc, small); done {
			return err
		}
		for {
			n, err := io.CopyN(dst, src, copyChunk)
			bc.add(int(n))
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
		}
	}
	bp, _ := bufs.Get().(*[]byte)
	if bp == nil {
		b := make([]byte, 64<<10)
		bp = &b
	}
	defer bufs.Put(bp)
	buf := *bp
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
			bc.add(n)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// smallCopyBuf is the buffer of copySmall: one read that fills it ends the
// small phase.
const smallCopyBuf = 4 << 10

// copySmall copies src to dst through a pooled 4 KiB buffer while reads
// return less than its size, counting into bc. It reports done with the
// copy's outcome at EOF or an error, or not done (the buffer filled: bulk
// data) for the caller to splice the rest. Between reads, and while a read
// waits for data, it holds no buffer (smallReader): a held idle connection
// costs none.
func copySmall(dst, src net.Conn, bc *byteCount, bufs *sync.Pool) (done bool, err error) {
	r := newSmallReader(src, bufs)
	for {
		var bp *[smallCopyBuf]byte
		var n int
		var rerr error
		if r != nil {
			bp, n, rerr = r.next()
		} else {
			bp = smallBuf(bufs)
			n, rerr = src.Read(bp[:])
		}
		if n > 0 {
			_, werr := dst.Write(bp[:n])
			if werr != nil {
				bufs.Put(bp)
				return true, werr
			}
			bc.add(n)
		}
		if bp != nil {
			bufs.Put(bp)
		}
		switch {
		case rerr == io.EOF:
			return true, nil
		case rerr != nil:
			return true, rerr
		case n == smallCopyBuf:
			return false, nil
		}
	}
}

// smallBuf takes a copySmall buffer from bufs.
func smallBuf(bufs *sync.Pool) *[smallCopyBuf]byte {
	if bp, _ := bufs.Get().(*[smallCopyBuf]byte); bp != nil {
		return bp
	}
	return new([smallCopyBuf]byte)
}

// closeWrite half-closes c: a FIN for TCP, close_notify then FIN for TLS.
func closeWrite(c net.Conn) {
	switch x := c.(type) {
	case *net.TCPConn:
		_ = x.CloseWrite()
	case *tls.Conn:
		_ = x.CloseWrite()
		if tcp := tcpConnOf(x); tcp != nil {
			_ = tcp.CloseWrite()
		}
	case *prefixConn:
		closeWrite(x.Conn)
	}
}

// prefixConn is a connection whose first bytes were already read (along
// with a PROXY header); Read returns them first.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(b, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}
