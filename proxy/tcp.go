package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lbkit/lbkit/flowtable"
	"github.com/lbkit/lbkit/internal/acceptloop"
)

// Defaults of the TCP proxy, from the reference load balancers.
const (
	// DefaultConnectTimeout is how long connecting to one target may take
	// (including the TLS handshake and PROXY header to it) before the next
	// target is tried.
	DefaultConnectTimeout = 5 * time.Second
	// DefaultConnectAttempts is how many targets a new connection tries at
	// most.
	DefaultConnectAttempts = 3
	// DefaultHeaderTimeout is how long a client may take to send its PROXY
	// protocol header or complete its TLS handshake.
	DefaultHeaderTimeout = 10 * time.Second
)

// TCP is a TCP proxy, the L4 data plane of one TCP listener: it accepts
// connections, checks the ACL, admits each as a flow in the flow table,
// picks a target from its Upstream (sticky by source IP when the Upstream
// has a policy), connects (retrying other targets on refusal or timeout) and
// forwards bytes both ways until both sides are done.
//
// Bytes move with splice between the two sockets (io.Copy between
// *net.TCPConn), half-closes are propagated (a client's FIN reaches the
// target as a FIN while the response keeps flowing back), and a connection
// idle for the flow table's TCP idle timeout is reset (RST) on both sides,
// as the reference load balancer does. Idleness comes from the kernel
// (TCP_INFO), so splicing and idle timeouts coexist; the proxy disables TCP
// keepalive on its own sockets, as the peers' keepalive probes are what
// keeps an idle connection alive.
//
// Like httputil.ReverseProxy, TCP is a plain struct: its fields are start-up
// configuration, set before the first Serve and not changed afterwards; the
// zero value of each means the documented default, and Validate reports
// every problem with them. What changes while traffic flows goes through
// the Set methods (SetUpstream, SetACL, SetTrustedProxies, SetTimeouts,
// SetTLSConfig), which are safe at any time and apply to new connections.
// Serve may be called for several listeners; Shutdown or Close stops them
// all.
type TCP struct {
	// Flows is the flow table the proxy admits its connections to, shared
	// by the L4 proxies of one load balancer. Nil makes a private table
	// with the flowtable defaults, closed by Close and Shutdown.
	Flows *FlowTable

	// ConnectAttempts is how many different targets a connection tries
	// before it is closed. Zero means DefaultConnectAttempts.
	ConnectAttempts int

	// OnRefuse, if set, is called for every connection refused before it
	// reached a target. It is called from the connection's goroutine with
	// no lock held and must not block.
	OnRefuse func(Refusal)

	// OnFlowEnd, if set, is called when a connection that reached a
	// target ends, with its bytes each way, duration and why it ended
	// (a flow log). It is called from the connection's goroutine with no
	// lock held and must not block.
	OnFlowEnd func(FlowEnd)

	// Descriptors, if set, is the descriptor budget the proxy's
	// connections are counted in (TCPDescriptors each, from accept to
	// close), shared by the proxies of one load balancer: when it is spent
	// a new connection is reset and counted (RejectedDescriptors,
	// RefusedDescriptors). Nil: no budget.
	Descriptors *Descriptors

	// ErrorLog, if set, receives the accept loop's episodes of errors (a
	// warning when accepting starts failing, an info line when it
	// resumes). Nil means slog.Default().
	ErrorLog *slog.Logger

	upstream atomic.Pointer[Upstream]
	acl      atomic.Pointer[ACL]
	trusted  atomic.Pointer[ACL] // nil: no PROXY protocol
	tls      atomic.Pointer[tls.Config]
	tmo      atomic.Pointer[Timeouts] // as set, zero fields meaning defaults; nil: all defaults

	mu        sync.Mutex // guards the fields below
	listeners map[net.Listener]struct{}
	conns     map[*tcpConn]struct{}
	flows     *FlowTable // Flows, or the private table; set by the first Serve
	ownFlows  bool       // flows is private: Close closes it
	ctx       context.Context
	cancel    context.CancelFunc // cancels dials in progress, on Close
	closed    bool

	accepts acceptloop.Counters // accept errors of every Serve

	wg    sync.WaitGroup // connection goroutines
	bufs  sync.Pool      // *[]byte copy buffers for connections that cannot splice (TLS)
	small sync.Pool      // *[smallCopyBuf]byte buffers of the small phase of spliced copies
	stats tcpCounters
}

// SetUpstream sets the target group of new connections. Established
// connections keep their target. Until it is called, new connections are
// refused (RefusedNoTarget). A nil Upstream, or one without a Balancer,
// is refused with an error wrapping ErrInvalid.
func (p *TCP) SetUpstream(u *Upstream) error {
	if err := upstreamProblem("TCP", u); err != nil {
		return err
	}
	p.upstream.Store(u)
	return nil
}

// Upstream returns the current target group, or nil.
func (p *TCP) Upstream() *Upstream { return p.upstream.Load() }

// SetACL sets the access control of new connections; nil admits everyone.
func (p *TCP) SetACL(a *ACL) { p.acl.Store(a) }

// ACL returns the current access control, or nil.
func (p *TCP) ACL() *ACL { return p.acl.Load() }

// SetTrustedProxies sets the sources whose PROXY protocol header (v1 and
// v2) is believed, for new connections: lbkit behind another balancer.
// Those must open with a PROXY header; the client address it carries is
// the one the ACL checks, stickiness keys on and targets are told. A
// connection from a trusted source with a missing, malformed or late
// header (Timeouts.Header), and one from anyone else that starts with a
// PROXY header, is reset and counted; no header is ever forwarded as data.
// Nil (the default) turns the PROXY protocol off: whatever clients send is
// data.
func (p *TCP) SetTrustedProxies(a *ACL) { p.trusted.Store(a) }

// SetTimeouts sets the timeouts of new connections: Connect, Idle and
// Header (see Timeouts; the others are ignored). Every field is replaced,
// a zero one taking its default: Idle's is the flow table's TCP idle
// timeout. Established connections keep theirs, as on the reference load
// balancer. A negative field is refused with an error wrapping ErrInvalid,
// and nothing changes.
func (p *TCP) SetTimeouts(t Timeouts) error {
	if err := t.check("TCP"); err != nil {
		return err
	}
	p.tmo.Store(&t)
	return nil
}

// timeouts returns the timeouts of a new connection, defaults filled in
// except Idle (0: the flow table's).
func (p *TCP) timeouts() Timeouts {
	var t Timeouts
	if s := p.tmo.Load(); s != nil {
		t = *s
	}
	if t.Connect == 0 {
		t.Connect = DefaultConnectTimeout
	}
	if t.Header == 0 {
		t.Header = DefaultHeaderTimeout
	}
	return t
}

// SetTLSConfig turns on TLS termination for new connections with cfg, or
// off with nil. Established connections keep the configuration they were
// accepted with; rotating a certificate is SetTLSConfig with a new config,
// or a GetCertificate that changes its answer. A config with no
// certificate (none of Certificates, GetCertificate, GetConfigForClient)
// is refused with an error wrapping ErrInvalid.
func (p *TCP) SetTLSConfig(cfg *tls.Config) error {
	if cfg != nil && len(cfg.Certificates) == 0 && cfg.GetCertificate == nil && cfg.GetConfigForClient == nil {
		return invalid("TCP", "SetTLSConfig", "the config has no certificate (Certificates, GetCertificate or GetConfigForClient)")
	}
	p.tls.Store(cfg)
	return nil
}

// Validate reports every problem with the proxy's start-up configuration
// (its fields) at once, joined with errors.Join, each a *ConfigError
// wrapping ErrInvalid; nil if there is none. Serve returns the same error
// before accepting. The live settings are checked by their setters.
func (p *TCP) Validate() error {
	if p.ConnectAttempts < 0 {
		return invalid("TCP", "ConnectAttempts", "%d is negative", p.ConnectAttempts)
	}
	return nil
}

// table returns the flow table, making the private one on first use.
func (p *TCP) table() (*FlowTable, context.Context, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, nil, ErrProxyClosed
	}
	if p.flows == nil {
		if p.Flows != nil {
			p.flows = p.Flows
		} else {
			ft, err := NewFlowTable()
			if err != nil {
				return nil, nil, err
			}
			p.flows, p.ownFlows = ft, true
		}
		p.ctx, p.cancel = context.WithCancel(context.Background())
	}
	return p.flows, p.ctx, nil
}

// Serve accepts connections on ln and proxies them until Shutdown or Close,
// then returns ErrProxyClosed. An accept error never ends it: out of
// descriptors (EMFILE, ENFILE), buffers or memory, a connection aborted in
// the backlog, or any other error is retried after a back-off (5 ms doubling
// to 1 s, as net/http), counted in Stats (AcceptErrors, AcceptFailingSince)
// and logged to ErrorLog once when it starts and once when accepting
// resumes. Only ln being closed by someone else ends Serve otherwise, with
// an error wrapping net.ErrClosed; an invalid configuration ends it at
// once, with Validate's error. ln is usually a *net.TCPListener; other listeners work, without
// splice for connections that are not *net.TCPConn. Serve closes ln when it
// returns.
func (p *TCP) Serve(ln net.Listener) error {
	if err := p.Validate(); err != nil {
		ln.Close()
		return err
	}
	ft, ctx, err := p.table()
	if err != nil {
		ln.Close()
		return err
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		ln.Close()
		return ErrProxyClosed
	}
	if p.listeners == nil {
		p.listeners = make(map[net.Listener]struct{})
	}
	al := acceptloop.New(ln, acceptloop.Config{Log: p.errorLog, Counters: &p.accepts})
	p.listeners[al] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.listeners, al)
		p.mu.Unlock()
		al.Close()
	}()

	for {
		c, err := al.Accept()
		if err != nil {
			// Closed: acceptloop retries every other error.
			if p.isClosed() {
				return ErrProxyClosed
			}
			return fmt.Errorf("proxy: tcp accept on %s: %w", ln.Addr(), err)
		}
		p.stats.accepted.Add(1)
		p.admit(ctx, c, ft)
	}
}

func (p *TCP) errorLog() *slog.Logger { return p.ErrorLog }

func (p *TCP) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// admit does the accept loop's share of a new connection: the ACL, checked
// before any other work, then the connection's goroutine.
func (p *TCP) admit(ctx context.Context, c net.Conn, ft *FlowTable) {
	peer := addrPortOf(c.RemoteAddr())
	tp := p.trusted.Load()
	trusted := tp != nil && tp.Allows(peer.Addr())
	if !trusted && !p.acl.Load().Allows(peer.Addr()) {
		p.stats.denied.Add(1)
		p.refuse(peer, RefusedACL, fmt.Errorf("%w: %s", ErrDenied, peer.Addr()))
		resetClose(c)
		return
	}
	if !p.Descriptors.take(TCPDescriptors) {
		p.stats.descriptors.Add(1)
		p.refuse(peer, RefusedDescriptors, ErrDescriptors)
		resetClose(c)
		return
	}
	tc := &tcpConn{p: p, client: c, clientTCP: tcpConnOf(c), peer: peer, local: addrPortOf(c.LocalAddr()), tmo: p.timeouts(), proxyOn: tp != nil}
	if tc.clientTCP != nil {
		// The idle timeout is the flow table's; the proxy's own keepalive
		// probes (Go turns them on by default) would reset it.
		_ = tc.clientTCP.SetKeepAlive(false)
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		resetClose(c)
		p.Descriptors.release(TCPDescriptors)
		return
	}
	if p.conns == nil {
		p.conns = make(map[*tcpConn]struct{})
	}
	p.conns[tc] = struct{}{}
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		defer func() {
			p.mu.Lock()
			delete(p.conns, tc)
			p.mu.Unlock()
			p.Descriptors.release(TCPDescriptors)
		}()
		tc.serve(ctx, ft, trusted)
	}()
}

// refuse counts nothing (the caller has) and tells the hook.
func (p *TCP) refuse(client netip.AddrPort, r RefuseReason, err error) {
	if p.OnRefuse != nil {
		p.OnRefuse(Refusal{Proto: flowtable.TCP, Client: client, Reason: r, Err: err})
	}
}

// Shutdown stops accepting at once (Serve returns ErrProxyClosed), then
// waits for the open connections to end by themselves. When ctx is done
// first, it resets those still open, as Close does, and returns ctx's
// error.
func (p *TCP) Shutdown(ctx context.Context) error {
	p.stop()
	done := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		p.finish()
		return nil
	case <-ctx.Done():
		p.Close()
		<-done
		return ctx.Err()
	}
}

// Close stops accepting and resets every open connection at once (the
// reference's "deleting an L4 listener stops forwarding at once"), waits
// for their goroutines, and closes the private flow table if any. It is
// idempotent.
func (p *TCP) Close() error {
	p.stop()
	p.mu.Lock()
	for tc := range p.conns {
		tc.endBy(ClosedShutdown)
		tc.abort()
	}
	if p.cancel != nil {
		p.cancel()
	}
	p.mu.Unlock()
	p.wg.Wait()
	p.finish()
	return nil
}

// stop marks the proxy closed and closes its listeners.
func (p *TCP) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for ln := range p.listeners {
		ln.Close()
	}
}

// finish releases what outlives the connections: the dial context and the
// private flow table.
func (p *TCP) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cancel != nil {
		p.cancel()
	}
	if p.ownFlows && p.flows != nil {
		p.flows.Close()
	}
}

func (p *TCP) attempts() int {
	if p.ConnectAttempts > 0 {
		return p.ConnectAttempts
	}
	return DefaultConnectAttempts
}

// TCPStats are a TCP proxy's counters since it was made.
type TCPStats struct {
	// Accepted counts connections accepted.
	Accepted uint64 `json:"accepted"`
	// Active is the number of connections being forwarded now.
	Active int64 `json:"active"`
	// Forwarded counts connections that reached a target.
	Forwarded uint64 `json:"forwarded"`
	// Denied counts connections refused by the ACL.
	Denied uint64 `json:"denied"`
	// RejectedTableFull and RejectedSourceLimit count connections the flow
	// table refused: full, or the client's address at its flow limit
	// (the reference's RejectedFlowCount_TCP).
	RejectedTableFull   uint64 `json:"rejected_table_full"`
	RejectedSourceLimit uint64 `json:"rejected_source_limit"`
	// RejectedDescriptors counts connections reset at accept because the
	// descriptor budget was spent (see Descriptors).
	RejectedDescriptors uint64 `json:"rejected_descriptors"`
	// NoTarget counts connections closed because no target could be
	// picked.
	NoTarget uint64 `json:"no_target"`
	// ConnectErrors counts failed attempts to connect to a target (refused,
	// timed out, TLS or PROXY header write failed); ConnectFailed counts
	// connections closed because every attempt failed.
	ConnectErrors uint64 `json:"connect_errors"`
	ConnectFailed uint64 `json:"connect_failed"`
	// ProxyHeaderUntrusted counts connections from untrusted sources that
	// sent a PROXY header; ProxyHeaderBad counts trusted ones whose header
	// was missing, malformed or late.
	ProxyHeaderUntrusted uint64 `json:"proxy_header_untrusted"`
	ProxyHeaderBad       uint64 `json:"proxy_header_bad"`
	// TLSHandshakeErrors counts clients whose TLS handshake failed.
	TLSHandshakeErrors uint64 `json:"tls_handshake_errors"`
	// IdleResets counts connections reset after their idle timeout.
	IdleResets uint64 `json:"idle_resets"`
	// DrainResets counts connections reset when their target's
	// deregistration delay passed.
	DrainResets uint64 `json:"drain_resets"`
	// BytesIn and BytesOut count bytes from clients to targets and back.
	// They advance when a copy ends and every 4 MiB during long copies.
	BytesIn  uint64 `json:"bytes_in"`
	BytesOut uint64 `json:"bytes_out"`
	// AcceptErrors counts failed accepts (out of descriptors and the
	// like), each retried after a back-off; AcceptFailingSince is when the
	// current run of them began, zero while accepting works.
	AcceptErrors       uint64    `json:"accept_errors"`
	AcceptFailingSince time.Time `json:"accept_failing_since,omitzero"`
}

// tcpCounters are the atomics behind TCPStats.
type tcpCounters struct {
	accepted, forwarded, denied, tableFull, sourceLimit, noTarget     atomic.Uint64
	connectErrors, connectFailed, headerUntrusted, headerBad, tlsErrs atomic.Uint64
	idleResets, drainResets, bytesIn, bytesOut, descriptors           atomic.Uint64
	active                                                            atomic.Int64
}

// Stats returns a snapshot of the proxy's counters; it reads atomics only.
func (p *TCP) Stats() TCPStats {
	s := &p.stats
	as := p.accepts.Stats()
	return TCPStats{
		AcceptErrors:         as.Errors,
		AcceptFailingSince:   as.FailingSince,
		Accepted:             s.accepted.Load(),
		Active:               s.active.Load(),
		Forwarded:            s.forwarded.Load(),
		Denied:               s.denied.Load(),
		RejectedTableFull:    s.tableFull.Load(),
		RejectedSourceLimit:  s.sourceLimit.Load(),
		RejectedDescriptors:  s.descriptors.Load(),
		NoTarget:             s.noTarget.Load(),
		ConnectErrors:        s.connectErrors.Load(),
		ConnectFailed:        s.connectFailed.Load(),
		ProxyHeaderUntrusted: s.headerUntrusted.Load(),
		ProxyHeaderBad:       s.headerBad.Load(),
		TLSHandshakeErrors:   s.tlsErrs.Load(),
		IdleResets:           s.idleResets.Load(),
		DrainResets:          s.drainResets.Load(),
		BytesIn:              s.bytesIn.Load(),
		BytesOut:             s.bytesOut.Load(),
	}
}

// addrPortOf returns a TCP or UDP address as a netip.AddrPort, or the zero
// value for other kinds.
func addrPortOf(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort()
	case *net.UDPAddr:
		return a.AddrPort()
	}
	return netip.AddrPort{}
}

// tcpConnOf returns the *net.TCPConn under c (through TLS), or nil.
func tcpConnOf(c net.Conn) *net.TCPConn {
	for {
		switch x := c.(type) {
		case *net.TCPConn:
			return x
		case *tls.Conn:
			c = x.NetConn()
		case *prefixConn:
			c = x.Conn
		default:
			return nil
		}
	}
}

// resetClose closes c with a TCP reset (SO_LINGER 0) when it is TCP, so the
// peer sees ECONNRESET at once rather than a clean end of stream, and the
// proxy keeps no TIME_WAIT state.
func resetClose(c net.Conn) {
	if tc := tcpConnOf(c); tc != nil {
		_ = tc.SetLinger(0)
		_ = tc.Close()
		return
	}
	_ = c.Close()
}

// targetHost returns the host of a "host:port" address, for the TLS server
// name.
func targetHost(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return h
}
