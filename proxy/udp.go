package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lbkit/lbkit/balancer"
	"github.com/lbkit/lbkit/flowtable"
)

// maxDatagram is the listener's read buffer: larger than any UDP payload
// (65507 bytes over IPv4, 65527 over IPv6 without jumbograms), so no
// datagram is ever truncated.
const maxDatagram = 64 << 10

// UDP is a UDP proxy, the L4 data plane of one UDP listener. Each client
// address is a flow in the flow table; each flow has its own connected
// socket to its target, so the target sees one peer per client and its
// replies come back on that socket and go to the client from the listener's
// own address. IPv4 and IPv6 alike.
//
// A flow idle for the flow table's UDP idle timeout (no datagram either
// way) is removed and its socket closed; the client's next datagram makes a
// new flow. As conntrack treats UDP, a flow is unreplied until its target
// answers and it still sees traffic 2 s later: until then it idles out
// after DefaultUnrepliedTimeout (30 s) and it is the first to be evicted
// when the flow table or the descriptor budget is full, so a flood of
// spoofed one-datagram flows costs little and never pushes out a flow that
// is in use. The first reply marks the flow through its flowtable.Ref,
// without hashing its key again; later replies refresh it the same way. UDP has no connection to break, so when a flow's target turns
// unhealthy or leaves the group its next datagram goes to a newly picked
// healthy target (failover), and when a draining target's deregistration
// delay passes its flows move the same way. Datagrams are forwarded as they
// are, whatever they hold; what cannot be forwarded (ACL, full table, no
// target) is dropped and counted.
//
// The data path allocates nothing per datagram: one 64 KiB buffer per
// listener, pooled buffers for replies, no clock reading (the flow table's
// coarse clock). Serve the listener with the address clients send to (not a
// wildcard address) so that replies leave from it.
//
// As with TCP, the fields are start-up configuration, set before the first
// Serve (Validate checks them); what changes while traffic flows goes
// through the Set methods (SetUpstream, SetACL, SetTimeouts), safe at any
// time.
type UDP struct {
	// Flows is the flow table, shared by the L4 proxies of one load
	// balancer; its capacity and per-source limit bound what spoofed
	// floods can take. Nil makes a private table with the flowtable
	// defaults, closed by Close.
	Flows *FlowTable

	// OnRefuse, if set, is called for every datagram dropped because of
	// the ACL, the flow table, the descriptor budget or no target, from the
	// listener's goroutine with no lock held. It must not block; under a
	// flood it is called for every datagram.
	OnRefuse func(Refusal)

	// OnFlowEnd, if set, is called when a flow ends (idle timeout,
	// eviction, Close), with its datagrams and bytes each way and its
	// duration (a flow log). It is called from the table's sweeper or the
	// goroutine that closes the flow, with no lock held, and must not
	// block.
	OnFlowEnd func(FlowEnd)

	// Descriptors, if set, is the descriptor budget the proxy's flows are
	// counted in (UDPDescriptors each, for their target socket), shared by
	// the proxies of one load balancer. When it is spent, an unreplied
	// flow of its flow table is evicted to make room, or else the new
	// flow's datagram is dropped and counted (RejectedDescriptors,
	// RefusedDescriptors). Nil: no budget.
	Descriptors *Descriptors

	upstream    atomic.Pointer[Upstream]
	acl         atomic.Pointer[ACL]
	idleTimeout atomic.Int64 // Timeouts.Idle in nanoseconds; 0: the flow table's

	mu        sync.Mutex // guards the fields below
	listeners map[*net.UDPConn]struct{}
	flows     *FlowTable
	ownFlows  bool
	closed    bool
	stopping  bool          // Shutdown began: Serve loops stop reading
	quiet     chan struct{} // closed when Shutdown lets Serve loops return

	loops   sync.WaitGroup // Serve loops
	reading atomic.Int32   // Serve loops still reading (Shutdown waits for them)
	readers sync.WaitGroup // reply readers, one per flow's target socket
	bufs    sync.Pool      // *replyBatch: reply readers' buffers (Linux)
	stats   udpCounters
}

// SetUpstream sets the target group of new flows; established flows keep
// their group. Until it is called, datagrams of new flows are dropped
// (RefusedNoTarget). A nil Upstream, or one without a Balancer, is refused
// with an error wrapping ErrInvalid.
func (p *UDP) SetUpstream(u *Upstream) error {
	if err := upstreamProblem("UDP", u); err != nil {
		return err
	}
	p.upstream.Store(u)
	return nil
}

// Upstream returns the current target group, or nil.
func (p *UDP) Upstream() *Upstream { return p.upstream.Load() }

// SetACL sets the access control, checked on every datagram's source; nil
// admits everyone.
func (p *UDP) SetACL(a *ACL) { p.acl.Store(a) }

// ACL returns the current access control, or nil.
func (p *UDP) ACL() *ACL { return p.acl.Load() }

// SetTimeouts sets the idle timeout of new flows, Timeouts.Idle (the
// other fields are ignored); zero goes back to the flow table's UDP idle
// timeout. A negative field is refused with an error wrapping ErrInvalid,
// and nothing changes.
func (p *UDP) SetTimeouts(t Timeouts) error {
	if err := t.check("UDP"); err != nil {
		return err
	}
	p.idleTimeout.Store(int64(t.Idle))
	return nil
}

// Validate reports every problem with the proxy's start-up configuration
// (its fields) at once, as TCP.Validate does. UDP has no field that can be
// wrong today, so it returns nil; it is here so that callers treat the
// three proxies alike, and Serve calls it.
func (p *UDP) Validate() error { return nil }

// UDPStats are a UDP proxy's counters since it was made.
type UDPStats struct {
	// DatagramsIn and BytesIn count datagrams and bytes forwarded from
	// clients to targets; DatagramsOut and BytesOut from targets back to
	// clients.
	DatagramsIn  uint64 `json:"datagrams_in"`
	BytesIn      uint64 `json:"bytes_in"`
	DatagramsOut uint64 `json:"datagrams_out"`
	BytesOut     uint64 `json:"bytes_out"`
	// Flows counts flows made by this proxy; ActiveFlows is how many are
	// open now.
	Flows       uint64 `json:"flows"`
	ActiveFlows int64  `json:"active_flows"`
	// Denied counts datagrams dropped by the ACL.
	Denied uint64 `json:"denied"`
	// RejectedTableFull and RejectedSourceLimit count datagrams dropped
	// because the flow table refused a new flow; RejectedDescriptors
	// those dropped because the descriptor budget was spent.
	RejectedTableFull   uint64 `json:"rejected_table_full"`
	RejectedSourceLimit uint64 `json:"rejected_source_limit"`
	RejectedDescriptors uint64 `json:"rejected_descriptors"`
	// NoTarget counts datagrams dropped because no target could be picked
	// or reached.
	NoTarget uint64 `json:"no_target"`
	// Failovers counts flows moved to another target because theirs
	// turned unhealthy, left the group or was drained.
	Failovers uint64 `json:"failovers"`
	// SendErrors counts datagrams a target socket would not take (full
	// buffer, ICMP unreachable reported); ReplyErrors counts replies the
	// listener socket would not send.
	SendErrors  uint64 `json:"send_errors"`
	ReplyErrors uint64 `json:"reply_errors"`
	// IdleExpired counts flows the flow table removed: after their idle
	// timeout, or evicted while unreplied to make room (the flow table's
	// EvictedFlowCount tells those apart).
	IdleExpired uint64 `json:"idle_expired"`
}

type udpCounters struct {
	datagramsIn, bytesIn, datagramsOut, bytesOut, flows atomic.Uint64
	denied, tableFull, sourceLimit, noTarget, failovers atomic.Uint64
	sendErrors, replyErrors, idleExpired, descriptors   atomic.Uint64
	activeFlows                                         atomic.Int64
}

// Stats returns a snapshot of the proxy's counters; it reads atomics only.
func (p *UDP) Stats() UDPStats {
	s := &p.stats
	return UDPStats{
		DatagramsIn:         s.datagramsIn.Load(),
		BytesIn:             s.bytesIn.Load(),
		DatagramsOut:        s.datagramsOut.Load(),
		BytesOut:            s.bytesOut.Load(),
		Flows:               s.flows.Load(),
		ActiveFlows:         s.activeFlows.Load(),
		Denied:              s.denied.Load(),
		RejectedTableFull:   s.tableFull.Load(),
		RejectedSourceLimit: s.sourceLimit.Load(),
		RejectedDescriptors: s.descriptors.Load(),
		NoTarget:            s.noTarget.Load(),
		Failovers:           s.failovers.Load(),
		SendErrors:          s.sendErrors.Load(),
		ReplyErrors:         s.replyErrors.Load(),
		IdleExpired:         s.idleExpired.Load(),
	}
}

// udpListener is one socket served by Serve.
type udpListener struct {
	p     *UDP
	conn  *net.UDPConn
	rc    syscall.RawConn // conn's, for replies sent without its write lock (Linux)
	local netip.AddrPort
	ft    *FlowTable
	batch *udpBatch // batched reads and writes (Linux); nil for one by one
}

// Serve reads datagrams from pc, which must be a *net.UDPConn, and proxies
// them until Close, then returns ErrProxyClosed. Serve closes pc when it
// returns.
func (p *UDP) Serve(pc net.PacketConn) error {
	conn, ok := pc.(*net.UDPConn)
	if !ok {
		pc.Close()
		return fmt.Errorf("proxy: udp: Serve needs a *net.UDPConn, got %T", pc)
	}
	if err := p.Validate(); err != nil {
		pc.Close()
		return err
	}
	p.mu.Lock()
	if p.closed || p.stopping {
		p.mu.Unlock()
		conn.Close()
		return ErrProxyClosed
	}
	if p.flows == nil {
		if p.Flows != nil {
			p.flows = p.Flows
		} else {
			ft, err := NewFlowTable()
			if err != nil {
				p.mu.Unlock()
				conn.Close()
				return err
			}
			p.flows, p.ownFlows = ft, true
		}
	}
	if p.listeners == nil {
		p.listeners = make(map[*net.UDPConn]struct{})
	}
	p.listeners[conn] = struct{}{}
	p.loops.Add(1)
	p.reading.Add(1)
	l := &udpListener{p: p, conn: conn, local: addrPortOf(conn.LocalAddr()), ft: p.flows}
	l.rc, _ = conn.SyscallConn()
	p.mu.Unlock()
	defer p.loops.Done()
	defer conn.Close()

	err := l.serve()
	// The datagrams read last were forwarded: Shutdown may now tell
	// whether their replies are due.
	p.reading.Add(-1)
	p.mu.Lock()
	q := p.quiet
	p.mu.Unlock()
	if q != nil {
		// Shutdown: the socket stays open for replies to flows that
		// wait for one, until Shutdown is done with them.
		<-q
	}
	return err
}

// serveEach is the portable read loop: one datagram per system call.
func (l *udpListener) serveEach() error {
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := l.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if done, err := l.readFailed(err); done {
				return err
			}
			continue
		}
		if testHookUDPRead != nil {
			testHookUDPRead()
		}
		l.handle(buf[:n], from)
	}
}

// testHookUDPRead, when set by a test, runs in a Serve loop after each
// read, before the datagrams read are forwarded.
var testHookUDPRead func()

// readFailed decides what a read error on the listening socket means:
// the end of Serve (done) with its error, or a passing error (an ICMP
// error reported on the socket) to ignore.
func (l *udpListener) readFailed(err error) (done bool, _ error) {
	if l.p.isStopped() {
		return true, ErrProxyClosed
	}
	if errors.Is(err, net.ErrClosed) {
		return true, fmt.Errorf("proxy: udp read on %s: %w", l.local, err)
	}
	return false, nil
}

// isStopped reports whether Close or Shutdown began.
func (p *UDP) isStopped() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed || p.stopping
}

// handle forwards one datagram from a client. It is the hot path: no lock
// beyond the flow table's lock-free lookup, no allocation.
func (l *udpListener) handle(b []byte, from netip.AddrPort) {
	if f := l.flowOf(from); f != nil {
		f.send(b)
	}
}

// flowOf returns the flow of a datagram from client from, making it if
// needed, or nil when the datagram is to be dropped (counted and reported).
func (l *udpListener) flowOf(from netip.AddrPort) *udpFlow {
	p := l.p
	if !p.acl.Load().Allows(from.Addr()) {
		p.stats.denied.Add(1)
		p.refuseDatagram(from, RefusedACL, ErrDenied)
		return nil
	}
	key := flowtable.Key{Proto: flowtable.UDP, Src: from, Dst: l.local}
	v, ok := l.ft.t.Lookup(key)
	if !ok {
		if v = l.newFlow(key); v == nil {
			return nil
		}
	}
	f, _ := v.(*udpFlow) // always: the key is UDP
	return f
}

// newFlow admits a new flow for key, or counts and reports why not.
func (l *udpListener) newFlow(key flowtable.Key) flow {
	p := l.p
	u := p.upstream.Load()
	if u == nil {
		p.stats.noTarget.Add(1)
		p.refuseDatagram(key.Src, RefusedNoTarget, ErrNoUpstream)
		return nil
	}
	v, created, err := l.ft.t.LoadOrCreateRef(key, func(ref flowtable.Ref[flow]) (flow, error) {
		if !p.Descriptors.take(UDPDescriptors) {
			return nil, ErrDescriptors
		}
		f := &udpFlow{l: l, key: key, u: u, ref: ref, to: sockaddrOf(key.Src)}
		if p.OnFlowEnd != nil {
			f.start = time.Now()
		}
		if _, err := f.connect(nil); err != nil {
			p.Descriptors.release(UDPDescriptors)
			return nil, err
		}
		return f, nil
	})
	if err != nil {
		switch {
		case err == ErrDescriptors:
			p.stats.descriptors.Add(1)
			p.refuseDatagram(key.Src, RefusedDescriptors, err)
		case errors.Is(err, flowtable.ErrFull):
			p.stats.tableFull.Add(1)
			p.refuseDatagram(key.Src, RefusedTableFull, err)
		case errors.Is(err, flowtable.ErrSourceLimit):
			p.stats.sourceLimit.Add(1)
			p.refuseDatagram(key.Src, RefusedSourceLimit, err)
		default:
			p.stats.noTarget.Add(1)
			p.refuseDatagram(key.Src, RefusedNoTarget, err)
		}
		return nil
	}
	if created {
		p.stats.flows.Add(1)
		p.stats.activeFlows.Add(1)
		if d := time.Duration(p.idleTimeout.Load()); d > 0 {
			_ = l.ft.t.SetFlowTimeout(key, d)
		}
	}
	return v
}

func (p *UDP) refuseDatagram(client netip.AddrPort, r RefuseReason, err error) {
	if p.OnRefuse != nil {
		p.OnRefuse(Refusal{Proto: flowtable.UDP, Client: client, Reason: r, Err: err})
	}
}

// udpReplyGrace bounds how long Shutdown relays replies to flows that
// wait for one.
const udpReplyGrace = 3 * time.Second

// Shutdown stops the proxy gracefully. Its Serve loops stop reading at
// once, leaving new datagrams to whoever else reads the socket (the next
// process of a binary upgrade, which shares it), while the datagrams
// already read are forwarded and their answers still relayed back:
// Shutdown waits until the loops have forwarded what they read and no
// flow waits for a reply, for at most 3 seconds or until ctx is done
// (then returning ctx's error), and then closes the proxy as Close does.
// Serve returns ErrProxyClosed once Shutdown is done.
func (p *UDP) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	if p.closed || p.stopping {
		p.mu.Unlock()
		return p.Close()
	}
	p.stopping = true
	p.quiet = make(chan struct{})
	for c := range p.listeners {
		// Wakes the read loops, which see stopping and end.
		_ = c.SetReadDeadline(time.Unix(1, 0))
	}
	ft := p.flows
	p.mu.Unlock()

	var err error
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	grace := time.NewTimer(udpReplyGrace)
	defer grace.Stop()
wait:
	// A read loop may be forwarding the datagrams of its last read: it is
	// waited for first, or their flows would be closed before they
	// await a reply.
	for p.reading.Load() > 0 || ft != nil && p.awaitingReplies(ft) {
		select {
		case <-ctx.Done():
			err = ctx.Err()
			break wait
		case <-grace.C:
			break wait
		case <-t.C:
		}
	}
	close(p.quiet)
	p.Close()
	return err
}

// awaitingReplies reports whether a flow of this proxy forwarded a
// datagram that its target has not answered yet.
func (p *UDP) awaitingReplies(ft *FlowTable) bool {
	waiting := false
	ft.t.Range(func(_ flowtable.Key, v flow) bool {
		if f, ok := v.(*udpFlow); ok && f.l.p == p && f.awaiting.Load() {
			waiting = true
			return false
		}
		return true
	})
	return waiting
}

// Close stops every Serve loop, closes every flow of this proxy (their
// target sockets), waits for their readers and closes the private flow
// table if any. It is idempotent; it ends a Shutdown at once.
func (p *UDP) Close() error {
	p.mu.Lock()
	p.closed = true
	if p.quiet != nil {
		select {
		case <-p.quiet:
		default:
			close(p.quiet)
		}
	}
	for c := range p.listeners {
		c.Close()
	}
	ft := p.flows
	p.mu.Unlock()
	p.loops.Wait() // no new flow after this
	if ft != nil {
		ft.t.Range(func(k flowtable.Key, v flow) bool {
			if f, ok := v.(*udpFlow); ok && f.l.p == p {
				if _, ok := ft.t.Delete(k); ok {
					f.why.CompareAndSwap(0, uint32(ClosedShutdown))
					f.close()
				}
			}
			return true
		})
	}
	p.readers.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ownFlows && p.flows != nil {
		p.flows.Close()
		p.ownFlows = false
	}
	return nil
}

// udpFlow is one client address's flow.
type udpFlow struct {
	l   *udpListener
	key flowtable.Key
	u   *Upstream           // the group the flow was made in
	ref flowtable.Ref[flow] // the flow in the table: replies refresh and mark it through it
	to  sockaddr            // key.Src as the kernel takes it, made once: replies go there

	replied  atomic.Bool // a reply came: the table was told (Ref.Replied)
	awaiting atomic.Bool // the last datagram forwarded has no reply yet (Shutdown)

	// For OnFlowEnd only: when the flow began, why it ends, and its own
	// counts each way (written by the listener's and the reply reader's
	// goroutines respectively, so not shared between cores).
	start         time.Time
	why           atomic.Uint32
	in, inBytes   atomic.Uint64
	out, outBytes atomic.Uint64

	cur atomic.Pointer[udpUpstream] // the target socket; nil after close

	mu   sync.Mutex // guards dead and changes of cur (failover, close)
	dead bool       // closed or expired: nothing more is sent
}

// udpUpstream is a flow's connected socket to one target.
type udpUpstream struct {
	f        *udpFlow
	conn     *net.UDPConn
	id       string
	addr     string
	choice   Choice
	release  func()
	closed   atomic.Bool           // the socket is closed (drained, failed over, flow closed)
	finished atomic.Bool           // close has released the pick and counters
	read     func(fd uintptr) bool // the reply reader's callback, made once

	// Batched writes from the listener's Serve goroutine (Linux).
	rc         syscall.RawConn
	writeBatch func(fd uintptr) bool // made once
	sendq      int                   // datagrams of the listener's batch to send

	// Batched replies, used by the reply reader only (Linux).
	rb          *replyBatch      // the burst being sent
	rk          int              // its datagrams
	rsent       int              // of which handed to the kernel or refused
	rlost       int              // of which refused (counted ReplyErrors)
	rlostBytes  int              // their bytes
	sendReplies func(fd uintptr) // up.sendBurst, bound once
}

// send forwards b to the flow's target, moving the flow to another target
// first when its own may no longer serve.
func (f *udpFlow) send(b []byte) {
	p := f.l.p
	up := f.target()
	if up == nil {
		return
	}
	f.forwarding()
	n, err := up.conn.Write(b)
	if err != nil && up.closed.Load() {
		// Drained or failed over meanwhile: once more on a new socket.
		if up, err = f.failover(up); err == nil {
			n, err = up.conn.Write(b)
		}
	}
	if err != nil {
		p.stats.sendErrors.Add(1)
		return
	}
	p.stats.datagramsIn.Add(1)
	p.stats.bytesIn.Add(uint64(n))
	up.choice.st.bytesIn.Add(uint64(n))
	f.countIn(1, n)
}

// countIn counts datagrams forwarded to the target, for OnFlowEnd.
func (f *udpFlow) countIn(datagrams, bytes int) {
	if f.l.p.OnFlowEnd != nil {
		f.in.Add(uint64(datagrams))
		f.inBytes.Add(uint64(bytes))
	}
}

// countOut counts replies relayed to the client, for OnFlowEnd.
func (f *udpFlow) countOut(datagrams int, bytes uint64) {
	if f.l.p.OnFlowEnd != nil {
		f.out.Add(uint64(datagrams))
		f.outBytes.Add(bytes)
	}
}

// target returns the flow's target socket, after moving the flow to
// another target if its own may no longer serve, or nil (counted and
// reported) when there is none.
func (f *udpFlow) target() *udpUpstream {
	up := f.cur.Load()
	if up != nil && f.usable(up) {
		return up
	}
	up, err := f.failover(up)
	if err != nil {
		p := f.l.p
		p.stats.noTarget.Add(1)
		p.refuseDatagram(f.key.Src, RefusedNoTarget, err)
		return nil
	}
	return up
}

// usable reports whether up's target may still take the flow's datagrams:
// still in the group, healthy, at the same address, and its socket open.
// A weight-0 (draining) target keeps its flows. It takes no lock and
// allocates nothing.
func (f *udpFlow) usable(up *udpUpstream) bool {
	if up.closed.Load() {
		return false
	}
	pk, ok := f.u.Balancer.PickTarget(up.id)
	if !ok {
		return false
	}
	pk.Done()
	return pk.Target.Health == balancer.Healthy && pk.Target.Addr == up.addr
}

// failover replaces old (nil for a new flow) by a socket to a newly picked
// target, or returns the one another caller already put in its place.
func (f *udpFlow) failover(old *udpUpstream) (*udpUpstream, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dead {
		return nil, fmt.Errorf("proxy: udp flow %s closed", f.key)
	}
	if cur := f.cur.Load(); cur != old && cur != nil && !cur.closed.Load() {
		return cur, nil
	}
	up, err := f.connect(old)
	if err != nil {
		return nil, err
	}
	if old != nil {
		f.l.p.stats.failovers.Add(1)
	}
	return up, nil
}

// connect opens a socket to a target picked for the flow, excluding old's,
// makes it the flow's current one, closes old and starts the reply reader.
// f.mu is held, or f is not yet published.
func (f *udpFlow) connect(old *udpUpstream) (*udpUpstream, error) {
	p := f.l.p
	info := balancer.PickInfo{Source: f.key.Src.Addr()}
	var excl [1]string
	if old != nil {
		excl[0] = old.id
		info.Exclude = excl[:]
	}
	var errs []error
	for range DefaultConnectAttempts {
		choice, err := f.u.Choose(info, nil)
		if err != nil && old != nil && len(info.Exclude) > 0 && len(errs) == 0 {
			// The old target was the only one: let it have the flow
			// back if it may serve again.
			info.Exclude = nil
			choice, err = f.u.Choose(info, nil)
		}
		if err != nil {
			errs = append(errs, err)
			break
		}
		raddr, err := net.ResolveUDPAddr("udp", choice.Target.Addr)
		var conn *net.UDPConn
		if err == nil {
			conn, err = net.DialUDP("udp", nil, raddr)
		}
		if err != nil {
			choice.Done()
			choice.st.connectErrors.Add(1)
			f.u.report(choice.Target.ID, err)
			errs = append(errs, fmt.Errorf("target %s (%s): %w", choice.Target.ID, choice.Target.Addr, err))
			info.Exclude = append(info.Exclude[:len(info.Exclude):len(info.Exclude)], choice.Target.ID)
			continue
		}
		up := &udpUpstream{f: f, conn: conn, id: choice.Target.ID, addr: choice.Target.Addr, choice: choice}
		up.initBatch()
		st := choice.st
		st.conns.Add(1)
		st.activeConns.Add(1)
		f.u.Remember(info, nil, choice, nil)
		p.readers.Add(1)
		go up.replies()
		up.release = st.track(udpDrainCloser{up})
		f.cur.Store(up)
		if old != nil {
			old.close()
		}
		return up, nil
	}
	return nil, fmt.Errorf("proxy: udp flow %s: %w", f.key, errors.Join(errs...))
}

// udpDrainCloser is what the drain registry closes when the target's
// deregistration delay passes: the socket, so that the next datagram fails
// over.
type udpDrainCloser struct{ up *udpUpstream }

func (d udpDrainCloser) Close() error {
	_ = d.up.conn.Close()
	d.up.closed.Store(true)
	return nil
}

// close releases up: its socket (which ends its reader), its drain
// registration, its pick and its counters. Idempotent. Not called with the
// target's drain lock held (the drain closer only closes the socket).
func (up *udpUpstream) close() {
	up.closed.Store(true)
	_ = up.conn.Close()
	if up.finished.Swap(true) {
		return
	}
	if up.release != nil {
		up.release()
	}
	up.choice.Done()
	up.choice.st.activeConns.Add(-1)
}

// expire implements flow: the idle timeout passed.
func (f *udpFlow) expire() {
	f.l.p.stats.idleExpired.Add(1)
	f.why.CompareAndSwap(0, uint32(ClosedIdle))
	f.close()
}

// evict implements flow: the table evicted the unreplied flow for a new
// one.
func (f *udpFlow) evict() {
	f.why.CompareAndSwap(0, uint32(ClosedEvicted))
	f.close()
}

// close ends the flow and its target socket.
func (f *udpFlow) close() {
	f.mu.Lock()
	if f.dead {
		f.mu.Unlock()
		return
	}
	f.dead = true
	up := f.cur.Swap(nil)
	f.mu.Unlock()
	if up != nil {
		up.close()
	}
	p := f.l.p
	p.stats.activeFlows.Add(-1)
	p.Descriptors.release(UDPDescriptors)
	if p.OnFlowEnd != nil {
		end := FlowEnd{
			Proto: flowtable.UDP, Client: f.key.Src, Group: f.u.Name,
			Start: f.start, Duration: time.Since(f.start),
			BytesIn: f.inBytes.Load(), BytesOut: f.outBytes.Load(),
			DatagramsIn: f.in.Load(), DatagramsOut: f.out.Load(),
			Reason: CloseReason(f.why.Load()),
		}
		if up != nil {
			end.Target = up.choice.Target
		}
		if end.Reason == 0 {
			end.Reason = ClosedShutdown
		}
		p.OnFlowEnd(end)
	}
}

// forwarding marks the flow as waiting for a reply, before its datagrams
// go to the target. It writes the flow's own line only when that changes.
func (f *udpFlow) forwarding() {
	if !f.awaiting.Load() {
		f.awaiting.Store(true)
	}
}

// sawReply refreshes the flow for a reply from its target, and on the
// first one tells the table the flow is replied.
func (f *udpFlow) sawReply() {
	if f.awaiting.Load() {
		f.awaiting.Store(false)
	}
	if f.replied.Load() || !f.replied.CompareAndSwap(false, true) {
		f.ref.Touch()
		return
	}
	f.ref.Replied()
}

// idle implements flow: the table sees every datagram of a UDP flow.
func (f *udpFlow) idle() (time.Duration, bool) { return 0, false }
