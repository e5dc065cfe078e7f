package proxy

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lbkit/lbkit/balancer"
	"github.com/lbkit/lbkit/flowtable"
	"github.com/lbkit/lbkit/healthcheck"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// udpTarget is a loopback UDP echo server that prefixes each reply with its
// ID and remembers the sources it saw.
type udpTarget struct {
	conn *net.UDPConn
	id   string
	got  atomic.Int64

	mu      sync.Mutex // guards sources
	sources map[netip.AddrPort]int

	done chan struct{}
}

func startUDPTarget(t testing.TB, network, id string) *udpTarget {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "udp6" {
		addr = "[::1]:0"
	}
	pc, err := net.ListenPacket(network, addr)
	require.NoError(t, err)
	s := &udpTarget{conn: pc.(*net.UDPConn), id: id, sources: map[netip.AddrPort]int{}, done: make(chan struct{})}
	go s.serve()
	t.Cleanup(s.stop)
	return s
}

func (s *udpTarget) Addr() string { return s.conn.LocalAddr().String() }

func (s *udpTarget) serve() {
	defer close(s.done)
	buf := make([]byte, 70000)
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf[len(s.id):])
		if err != nil {
			if isClosedErr(err) {
				return
			}
			continue
		}
		s.got.Add(1)
		s.mu.Lock()
		s.sources[from]++
		s.mu.Unlock()
		copy(buf, s.id)
		_, _ = s.conn.WriteToUDPAddrPort(buf[:len(s.id)+n], from)
	}
}

func (s *udpTarget) stop() {
	s.conn.Close()
	<-s.done
}

func (s *udpTarget) sourceCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sources)
}

func isClosedErr(err error) bool { return err != nil && errorsIsClosed(err) }

// startUDPProxy serves p on a loopback socket and returns its address.
func startUDPProxy(t testing.TB, p *UDP, network string) string {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "udp6" {
		addr = "[::1]:0"
	}
	pc, err := net.ListenPacket(network, addr)
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() { errc <- p.Serve(pc) }()
	t.Cleanup(func() {
		require.NoError(t, p.Close())
		require.ErrorIs(t, <-errc, ErrProxyClosed)
	})
	return pc.LocalAddr().String()
}

func newUDPUpstream(t testing.TB, targets ...*udpTarget) *Upstream {
	t.Helper()
	var ts []balancer.Target
	for _, s := range targets {
		ts = append(ts, balancer.Target{ID: s.id, Addr: s.Addr(), Weight: 1})
	}
	b, err := balancer.New(balancer.WithTargets(ts...))
	require.NoError(t, err)
	return &Upstream{Name: "udp", Balancer: b}
}

// udpClient is a connected client socket with a bounded read.
func udpClient(t testing.TB, network, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.Dial(network, addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c.(*net.UDPConn)
}

// roundTrip sends msg and waits for one reply, resending a few times: UDP
// on loopback does not lose datagrams unless a buffer overflows, but the
// test must not hang if one is.
func roundTrip(t testing.TB, c *net.UDPConn, msg string) string {
	t.Helper()
	buf := make([]byte, 70000)
	for range 5 {
		_, err := c.Write([]byte(msg))
		require.NoError(t, err)
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(buf)
		if err == nil {
			return string(buf[:n])
		}
	}
	t.Fatalf("no reply to %q", msg)
	return ""
}

func TestUDPEcho(t *testing.T) {
	checkFDs(t)
	for _, network := range []string{"udp4", "udp6"} {
		t.Run(network, func(t *testing.T) {
			a := startUDPTarget(t, network, "a")
			p := &UDP{Flows: newTestFlows(t)}
			p.SetUpstream(newUDPUpstream(t, a))
			addr := startUDPProxy(t, p, network)
			c := udpClient(t, network, addr)
			require.Equal(t, "ahello", roundTrip(t, c, "hello"))
			require.Equal(t, "aagain", roundTrip(t, c, "again"))
			st := p.Stats()
			require.Equal(t, uint64(1), st.Flows)
			require.Equal(t, int64(1), st.ActiveFlows)
			require.Equal(t, 1, a.sourceCount())
		})
	}
}

// startUDPTargetAt is startUDPTarget on a given loopback address.
func startUDPTargetAt(t testing.TB, addr, id string) *udpTarget {
	t.Helper()
	pc, err := net.ListenPacket("udp", addr)
	require.NoError(t, err)
	s := &udpTarget{conn: pc.(*net.UDPConn), id: id, sources: map[netip.AddrPort]int{}, done: make(chan struct{})}
	go s.serve()
	t.Cleanup(s.stop)
	return s
}

// TestUDPFailover is the reference scenario: two UDP targets whose health
// is checked over TCP on another port; when one target's health port
// stops, the next datagram of each of its flows goes to the other target.
func TestUDPFailover(t *testing.T) {
	checkFDs(t)
	// Two hosts on the loopback range, same health port on each.
	hA, err := net.Listen("tcp4", "127.0.0.2:0")
	require.NoError(t, err)
	defer hA.Close()
	_, port, _ := net.SplitHostPort(hA.Addr().String())
	hB, err := net.Listen("tcp4", "127.0.0.3:"+port)
	if err != nil {
		t.Skipf("health port %s taken on 127.0.0.3: %v", port, err)
	}
	defer hB.Close()
	healthPort, _ := strconv.Atoi(port)
	a := startUDPTargetAt(t, "127.0.0.2:0", "a")
	b := startUDPTargetAt(t, "127.0.0.3:0", "b")
	u := newUDPUpstream(t, a, b)
	for _, id := range []string{"a", "b"} {
		require.NoError(t, u.Balancer.SetHealth(id, balancer.Unhealthy))
	}
	changes := make(chan healthcheck.Change, 16)
	m, err := healthcheck.New(healthcheck.TCP{Port: healthPort},
		healthcheck.WithInterval(50*time.Millisecond),
		healthcheck.WithTimeout(50*time.Millisecond),
		healthcheck.WithThresholds(1, 1),
		healthcheck.WithOnChange(func(c healthcheck.Change) {
			h := balancer.Unhealthy
			if c.New.Serving() {
				h = balancer.Healthy
			}
			_ = u.Balancer.SetHealth(c.Target.ID, h)
			changes <- c
		}),
		healthcheck.WithTargets(
			healthcheck.Target{ID: "a", Addr: a.Addr()},
			healthcheck.Target{ID: "b", Addr: b.Addr()},
		),
	)
	require.NoError(t, err)
	defer m.Close()
	up := map[string]bool{}
	for len(up) < 2 {
		c := <-changes
		require.True(t, c.New.Serving(), "%v", c)
		up[c.Target.ID] = true
	}

	p := &UDP{Flows: newTestFlows(t)}
	p.SetUpstream(u)
	addr := startUDPProxy(t, p, "udp4")
	const clients = 6
	var cs []*net.UDPConn
	onA := 0
	for i := range clients {
		c := udpClient(t, "udp4", addr)
		cs = append(cs, c)
		r := roundTrip(t, c, fmt.Sprint("hello ", i))
		if r[0] == 'a' {
			onA++
		}
		require.Equal(t, r[:1], roundTrip(t, c, "again")[:1], "a flow keeps its target")
	}
	require.Equal(t, clients/2, onA, "round-robin spreads new flows")

	// Stop a's health port; wait for the monitor to say so.
	hA.Close()
	c := <-changes
	require.Equal(t, "a", c.Target.ID)
	require.False(t, c.New.Serving())
	t.Logf("health change: %v", c)

	for i, c := range cs {
		require.Equal(t, "bmoved", roundTrip(t, c, "moved"), "client %d", i)
	}
	require.Equal(t, uint64(onA), p.Stats().Failovers)
	require.Equal(t, clients, b.sourceCount(), "b now sees every flow")
	// Flows were not remade: the client's flow is the same, only its
	// target socket changed.
	require.Equal(t, uint64(clients), p.Flows.Stats().UDP.NewFlowCount)
}

// TestUDPIdleExpiry: a flow without a datagram either way for the idle
// timeout is removed with its target socket; the next datagram makes a new
// flow, which the target sees as a new source.
func TestUDPIdleExpiry(t *testing.T) {
	checkFDs(t)
	a := startUDPTarget(t, "udp4", "a")
	ft := newTestFlows(t, flowtable.WithIdleTimeout(flowtable.UDP, 200*time.Millisecond))
	p := &UDP{Flows: ft}
	p.SetUpstream(newUDPUpstream(t, a))
	addr := startUDPProxy(t, p, "udp4")
	c := udpClient(t, "udp4", addr)
	require.Equal(t, "a1", roundTrip(t, c, "1"))
	fds := fdCount(t)
	// The table counts the expiry before its callback has closed the
	// flow: wait for both.
	waitFor(t, "flow expired and closed", func() bool {
		return ft.Stats().UDP.ExpiredFlowCount == 1 && p.Stats().ActiveFlows == 0
	})
	require.Equal(t, uint64(1), p.Stats().IdleExpired)
	require.Zero(t, ft.Len())
	waitFor(t, "target socket closed", func() bool { return fdCount(t) == fds-1 })

	require.Equal(t, "a2", roundTrip(t, c, "2"))
	require.Equal(t, uint64(2), ft.Stats().UDP.NewFlowCount)
	require.Equal(t, 2, a.sourceCount(), "a new flow has a new socket")
}

// TestUDPLimits: the table's capacity and per-source limit bound what a
// flood of new client addresses can take; refused datagrams are dropped and
// counted, established flows keep working. With no unreplied timeout no
// flow can be evicted to make room (see TestUDPUnrepliedFlowsMakeRoom).
func TestUDPLimits(t *testing.T) {
	checkFDs(t)
	a := startUDPTarget(t, "udp4", "a")
	ft := newTestFlows(t, flowtable.WithMaxFlows(3), flowtable.WithMaxFlowsPerSource(2), flowtable.WithUnrepliedTimeout(flowtable.UDP, 0))
	var refused sync.Map
	p := &UDP{Flows: ft, OnRefuse: func(r Refusal) { refused.Store(r.Client, r.Reason) }}
	p.SetUpstream(newUDPUpstream(t, a))
	addr := startUDPProxy(t, p, "udp4")
	p6 := &UDP{Flows: ft}
	p6.SetUpstream(newUDPUpstream(t, a))
	addr6 := startUDPProxy(t, p6, "udp6")

	c1, c2 := udpClient(t, "udp4", addr), udpClient(t, "udp4", addr)
	require.Equal(t, "a1", roundTrip(t, c1, "1"))
	require.Equal(t, "a2", roundTrip(t, c2, "2"))
	// A third flow from 127.0.0.1: over the per-source limit.
	c3 := udpClient(t, "udp4", addr)
	_, err := c3.Write([]byte("3"))
	require.NoError(t, err)
	waitFor(t, "source limit", func() bool { return p.Stats().RejectedSourceLimit == 1 })
	// From ::1: a third flow in the table; a fourth is over capacity.
	c4 := udpClient(t, "udp6", addr6)
	require.Equal(t, "a4", roundTrip(t, c4, "4"))
	c5 := udpClient(t, "udp6", addr6)
	_, err = c5.Write([]byte("5"))
	require.NoError(t, err)
	waitFor(t, "table full", func() bool { return p6.Stats().RejectedTableFull == 1 })

	fs := ft.Stats().UDP
	require.Equal(t, uint64(3), fs.NewFlowCount)
	require.Equal(t, uint64(1), fs.RejectedFlowCount)
	require.Equal(t, uint64(1), fs.RejectedSourceFlowCount)
	r, ok := refused.Load(addrPortOf(c3.LocalAddr()))
	require.True(t, ok)
	require.Equal(t, RefusedSourceLimit, r)
	require.Equal(t, "a1", roundTrip(t, c1, "1"), "established flows are untouched")
}

// TestUDPDatagrams: datagrams are forwarded as they are, empty or of the
// largest size, garbage or not; the ACL drops and counts.
func TestUDPDatagrams(t *testing.T) {
	checkFDs(t)
	a := startUDPTarget(t, "udp4", "a")
	p := &UDP{Flows: newTestFlows(t)}
	p.SetUpstream(newUDPUpstream(t, a))
	addr := startUDPProxy(t, p, "udp4")
	c := udpClient(t, "udp4", addr)
	require.NoError(t, c.SetReadBuffer(1<<20))
	require.Equal(t, "a", roundTrip(t, c, ""))
	big := make([]byte, 65507-1) // the reply adds the 1-byte ID
	_, _ = rand.Read(big)
	require.Equal(t, "a"+string(big), roundTrip(t, c, string(big)))
	garbage := "\x00\xff PROXY TCP4 \r\n\x0d\x0a\x0d\x0a"
	require.Equal(t, "a"+garbage, roundTrip(t, c, garbage))

	deny, err := ParseACL(nil, []string{"127.0.0.1/32"})
	require.NoError(t, err)
	p.SetACL(deny)
	before := a.got.Load()
	_, err = c.Write([]byte("denied"))
	require.NoError(t, err)
	waitFor(t, "denied", func() bool { return p.Stats().Denied == 1 })
	require.Equal(t, before, a.got.Load())
	st := p.Stats()
	require.Equal(t, uint64(3), st.DatagramsIn)
	require.Equal(t, uint64(3), st.DatagramsOut)
	require.Equal(t, uint64(len(big)+len(garbage)), st.BytesIn)
}

// TestUDPDrain: a drained target's flows move to another target once its
// deregistration delay has passed.
func TestUDPDrain(t *testing.T) {
	checkFDs(t)
	a := startUDPTarget(t, "udp4", "a")
	b := startUDPTarget(t, "udp4", "b")
	u := newUDPUpstream(t, a, b)
	require.NoError(t, u.Balancer.SetWeight("b", 0))
	p := &UDP{Flows: newTestFlows(t)}
	p.SetUpstream(u)
	addr := startUDPProxy(t, p, "udp4")
	c := udpClient(t, "udp4", addr)
	require.Equal(t, "a1", roundTrip(t, c, "1"))
	require.NoError(t, u.Balancer.SetWeight("b", 1))
	require.NoError(t, u.Balancer.SetWeight("a", 0))
	require.Equal(t, "a2", roundTrip(t, c, "2"), "weight 0 keeps established flows")
	u.Drain("a", 0)
	require.Equal(t, "b3", roundTrip(t, c, "3"), "after the delay the flow moves")
	require.Equal(t, uint64(1), p.Stats().Failovers)
}

// TestUDPZeroAllocs: forwarding a datagram of an established flow
// allocates nothing.
func TestUDPZeroAllocs(t *testing.T) {
	checkFDs(t)
	a := startUDPTarget(t, "udp4", "a")
	p := &UDP{Flows: newTestFlows(t)}
	p.SetUpstream(newUDPUpstream(t, a))
	addr := startUDPProxy(t, p, "udp4")
	c := udpClient(t, "udp4", addr)
	require.Equal(t, "ax", roundTrip(t, c, "x"))
	l := p.listenerForTest()
	from := addrPortOf(c.LocalAddr())
	msg := []byte("payload")
	allocs := testing.AllocsPerRun(1000, func() { l.handle(msg, from) })
	require.Zero(t, allocs)
}

// TestUDPZeroAllocsEndToEnd: a datagram's whole round trip through the
// proxy over real sockets (batched read on the listener, batched send to
// the target, the reply's read and send back) allocates nothing anywhere
// in the process.
func TestUDPZeroAllocsEndToEnd(t *testing.T) {
	checkFDs(t)
	a := startUDPTarget(t, "udp4", "a")
	p := &UDP{Flows: newTestFlows(t)}
	p.SetUpstream(newUDPUpstream(t, a))
	addr := startUDPProxy(t, p, "udp4")
	c := udpClient(t, "udp4", addr)
	require.Equal(t, "ax", roundTrip(t, c, "x"))
	require.NoError(t, c.SetReadDeadline(time.Now().Add(time.Minute)))
	msg := []byte("payload")
	buf := make([]byte, 64)
	allocs := testing.AllocsPerRun(500, func() {
		_, _ = c.Write(msg)
		_, _ = c.Read(buf)
	})
	require.Zero(t, allocs)
	require.Equal(t, uint64(502), p.Stats().DatagramsIn)
}

// TestUDPRefusedTarget: datagrams to a target whose port is closed leave
// the proxy, and the ICMP port-unreachable errors the kernel reports on the
// target socket (on a later send or on the reply reader's read) are counted
// as SendErrors; none of the client's datagrams is dropped unsent.
func TestUDPRefusedTarget(t *testing.T) {
	checkFDs(t)
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	dead := pc.LocalAddr().String()
	require.NoError(t, pc.Close())
	b, err := balancer.New(balancer.WithTargets(balancer.Target{ID: "dead", Addr: dead, Weight: 1}))
	require.NoError(t, err)
	p := &UDP{Flows: newTestFlows(t)}
	p.SetUpstream(&Upstream{Name: "udp", Balancer: b})
	addr := startUDPProxy(t, p, "udp4")
	c := udpClient(t, "udp4", addr)
	const n = 200
	for i := range n {
		_, err := fmt.Fprintf(c, "d%d", i)
		require.NoError(t, err)
	}
	waitFor(t, "every datagram handled and the refusals reported", func() bool {
		st := p.Stats()
		return st.DatagramsIn == n && st.SendErrors > 0
	})
	st := p.Stats()
	require.LessOrEqual(t, st.SendErrors, uint64(n), "one error per datagram at most")
	require.Zero(t, st.NoTarget)
}

// TestUDPReplyBursts: replies read from a target socket a burst at a time
// and sent to the client with one sendmmsg arrive whole, in order, and
// counted exactly, from many flows at once, large and small, IPv4 and IPv6.
// Each client keeps a window of datagrams in flight, so that replies queue
// up on the target sockets without overflowing a socket buffer.
func TestUDPReplyBursts(t *testing.T) {
	checkFDs(t)
	for _, network := range []string{"udp4", "udp6"} {
		t.Run(network, func(t *testing.T) {
			a := startUDPTarget(t, network, "a")
			require.NoError(t, a.conn.SetReadBuffer(4<<20))
			p := &UDP{Flows: newTestFlows(t)}
			require.NoError(t, p.SetUpstream(newUDPUpstream(t, a)))
			host := "127.0.0.1"
			if network == "udp6" {
				host = "[::1]"
			}
			pc, err := net.ListenPacket(network, host+":0")
			require.NoError(t, err)
			require.NoError(t, pc.(*net.UDPConn).SetReadBuffer(4<<20))
			errc := make(chan error, 1)
			go func() { errc <- p.Serve(pc) }()
			defer func() {
				require.NoError(t, p.Close())
				require.ErrorIs(t, <-errc, ErrProxyClosed)
			}()
			const clients, per, window = 8, 64, 8
			size := func(c, i int) int {
				if i%16 == 7 {
					return 65000 - c // larger than half the reply buffer
				}
				return 1 + (c*per+i)%1400
			}
			var wg sync.WaitGroup
			var bytes atomic.Uint64
			for c := range clients {
				cl := udpClient(t, network, pc.LocalAddr().String())
				require.NoError(t, cl.SetReadBuffer(4<<20))
				wg.Go(func() {
					buf := make([]byte, 70000)
					for w := 0; w < per; w += window {
						for i := w; i < w+window; i++ {
							msg := make([]byte, size(c, i))
							msg[0] = byte(i)
							if _, err := cl.Write(msg); err != nil {
								t.Error(err)
								return
							}
							bytes.Add(uint64(1 + len(msg)))
						}
						for i := w; i < w+window; i++ {
							_ = cl.SetReadDeadline(time.Now().Add(10 * time.Second))
							n, err := cl.Read(buf)
							if err != nil {
								t.Errorf("client %d: reply %d: %v", c, i, err)
								return
							}
							if n != 1+size(c, i) || buf[0] != 'a' || buf[1] != byte(i) {
								t.Errorf("client %d: reply %d: %d bytes starting %q, want %d starting a%d", c, i, n, buf[:2], 1+size(c, i), i)
								return
							}
						}
					}
				})
			}
			wg.Wait()
			// A burst is counted once sent: the client may read it first.
			waitFor(t, "replies counted", func() bool { return p.Stats().DatagramsOut >= clients*per })
			st := p.Stats()
			assert.Equal(t, uint64(clients*per), st.DatagramsOut)
			assert.Equal(t, bytes.Load(), st.BytesOut)
			assert.Zero(t, st.ReplyErrors)
		})
	}
}

// TestUDPShutdownRelaysAwaitedReplies: Shutdown stops reading the listening
// socket at once, so that another reader of the same socket (the next
// process of a binary upgrade) gets the new datagrams, while the answer
// to a datagram already forwarded still reaches its client.
func TestUDPShutdownRelaysAwaitedReplies(t *testing.T) {
	checkFDs(t)
	// A target that answers the first datagram only when told to.
	tc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer tc.Close()
	got := make(chan netip.AddrPort, 4)
	release := make(chan struct{})
	targetDone := make(chan struct{})
	var held sync.WaitGroup
	go func() {
		defer close(targetDone)
		defer held.Wait()
		buf := make([]byte, 1500)
		for first := true; ; first = false {
			n, from, err := tc.(*net.UDPConn).ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			got <- from
			reply := append([]byte("re:"), buf[:n]...)
			if first {
				held.Add(1)
				go func() {
					defer held.Done()
					<-release
					_, _ = tc.(*net.UDPConn).WriteToUDPAddrPort(reply, from)
				}()
				continue
			}
			_, _ = tc.(*net.UDPConn).WriteToUDPAddrPort(reply, from)
		}
	}()
	var releaseOnce sync.Once
	letGo := func() { releaseOnce.Do(func() { close(release) }) }
	defer func() { letGo(); tc.Close(); <-targetDone }()
	b, err := balancer.New(balancer.WithTargets(balancer.Target{ID: "slow", Addr: tc.LocalAddr().String(), Weight: 1}))
	require.NoError(t, err)
	up := &Upstream{Name: "udp", Balancer: b}

	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	f, err := pc.(*net.UDPConn).File() // the same socket, as a successor inherits it
	require.NoError(t, err)
	pc2, err := net.FilePacketConn(f)
	require.NoError(t, err)
	f.Close()

	old := &UDP{Flows: newTestFlows(t)}
	require.NoError(t, old.SetUpstream(up))
	oldDone := make(chan error, 1)
	go func() { oldDone <- old.Serve(pc) }()

	c1 := udpClient(t, "udp4", pc.LocalAddr().String())
	_, err = c1.Write([]byte("one"))
	require.NoError(t, err)
	<-got // forwarded; its answer is held back

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- old.Shutdown(ctx) }()
	require.Eventually(t, old.isStopped, 5*time.Second, time.Millisecond)

	// The successor serves the same socket; new datagrams are its alone.
	next := &UDP{Flows: newTestFlows(t)}
	require.NoError(t, next.SetUpstream(up))
	nextDone := make(chan error, 1)
	go func() { nextDone <- next.Serve(pc2) }()
	defer func() {
		require.NoError(t, next.Close())
		require.ErrorIs(t, <-nextDone, ErrProxyClosed)
	}()
	c2 := udpClient(t, "udp4", pc.LocalAddr().String())
	assert.Equal(t, "re:two", roundTrip(t, c2, "two"))
	assert.Equal(t, uint64(1), next.Stats().Flows, "the successor took the new client")
	assert.Equal(t, uint64(1), old.Stats().Flows, "the old proxy read nothing more")

	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) while a flow waits for its answer", err)
	default:
	}
	letGo()
	require.NoError(t, c1.SetReadDeadline(time.Now().Add(5*time.Second)))
	buf := make([]byte, 100)
	n, err := c1.Read(buf)
	require.NoError(t, err, "the held answer is relayed during Shutdown")
	assert.Equal(t, "re:one", string(buf[:n]))
	require.NoError(t, <-shut)
	require.ErrorIs(t, <-oldDone, ErrProxyClosed)
}

// TestUDPShutdownForwardsWhatWasRead stops a proxy while its read loop
// holds a datagram it has read but not forwarded yet: Shutdown waits for
// the loop to forward it and then for its answer, which the client gets.
// (Shutdown used to look for flows awaiting answers before the loop had
// made the flow, and closed it as soon as the loop forwarded.)
func TestUDPShutdownForwardsWhatWasRead(t *testing.T) {
	checkFDs(t)
	target := startUDPTarget(t, "udp4", "re:")
	p := &UDP{Flows: newTestFlows(t)}
	require.NoError(t, p.SetUpstream(newUDPUpstream(t, target)))

	read := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	testHookUDPRead = func() {
		once.Do(func() {
			close(read)
			<-release
		})
	}
	defer func() { testHookUDPRead = nil }()

	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- p.Serve(pc) }()
	c := udpClient(t, "udp4", pc.LocalAddr().String())
	_, err = c.Write([]byte("one"))
	require.NoError(t, err)
	<-read // the loop holds the datagram

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- p.Shutdown(ctx) }()
	require.Eventually(t, p.isStopped, 5*time.Second, time.Millisecond)
	close(release)

	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	buf := make([]byte, 100)
	n, err := c.Read(buf)
	require.NoError(t, err, "the datagram read before Shutdown is forwarded and answered")
	assert.Equal(t, "re:one", string(buf[:n]))
	require.NoError(t, <-shut)
	require.ErrorIs(t, <-served, ErrProxyClosed)
}
