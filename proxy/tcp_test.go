package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lbkit/lbkit/balancer"
	"github.com/lbkit/lbkit/flowtable"
	proxyproto "github.com/pires/go-proxyproto"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTCPEcho(t *testing.T) {
	checkFDs(t)
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			a := startTCPTarget(t, network, "a", echoHandler)
			p := &TCP{Flows: newTestFlows(t)}
			p.SetUpstream(newTestUpstream(t, a))
			addr := startTCPProxy(t, p, network)
			c := dial(t, network, addr)
			require.Equal(t, "hello", exchangeMsg(t, c, "hello", 0))
			require.NoError(t, c.(*net.TCPConn).CloseWrite())
			require.ErrorIs(t, readErr(c), io.EOF)
			waitFor(t, "connection ended", func() bool { return p.Stats().Active == 0 })
			st := p.Stats()
			require.Equal(t, uint64(1), st.Forwarded)
			require.Equal(t, uint64(5), st.BytesIn)
			require.Equal(t, uint64(5), st.BytesOut)
			ts := p.Upstream().Stats().Targets
			require.Len(t, ts, 1)
			require.Equal(t, uint64(1), ts[0].Connections)
			require.Equal(t, uint64(5), ts[0].BytesIn)
			require.Equal(t, uint64(5), ts[0].BytesOut)
			fs := p.Flows.Stats().TCP
			require.Equal(t, uint64(1), fs.NewFlowCount)
			require.Equal(t, uint64(1), fs.DeletedFlowCount)
			require.Zero(t, fs.ActiveFlowCount)
		})
	}
}

// TestTCPTransfersWithTargetKilled moves 1 000 transfers of 1 MiB through
// the proxy to three targets, each checked end to end by SHA-256, and
// kills one target after a third of them. Transfers on the survivors never
// lose a byte; those cut on the dead target fail (they cannot do
// otherwise); every transfer started after the kill succeeds, because
// connections are retried on another target and passive health takes the
// dead one out.
func TestTCPTransfersWithTargetKilled(t *testing.T) {
	checkFDs(t)
	const (
		transfers = 1000
		size      = 1 << 20
		workers   = 8
		killAt    = transfers / 3
	)
	targets := []*tcpTarget{
		startTCPTarget(t, "tcp4", "a", idEchoHandler("a")),
		startTCPTarget(t, "tcp4", "b", idEchoHandler("b")),
		startTCPTarget(t, "tcp4", "c", idEchoHandler("c")),
	}
	u := newTestUpstream(t, targets...)
	// Passive health: a failed connection attempt takes the target out.
	u.OnResult = func(id string, err error) {
		if err != nil {
			_ = u.Balancer.SetHealth(id, balancer.Unhealthy)
		}
	}
	p := &TCP{Flows: newTestFlows(t)}
	p.SetUpstream(u)
	addr := startTCPProxy(t, p, "tcp4")

	payload := make([]byte, size)
	_, _ = rand.Read(payload)
	want := sha256.Sum256(payload)

	var (
		next      atomic.Int64
		killed    atomic.Bool
		killOnce  sync.Once
		mu        sync.Mutex // guards the results below
		okBy      = map[byte]int{}
		failed    []string
		afterKill int
	)
	transfer := func() (byte, error) {
		c, err := net.DialTimeout("tcp4", addr, 10*time.Second)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		errc := make(chan error, 1)
		go func() {
			_, err := c.Write(payload)
			if err == nil {
				err = c.(*net.TCPConn).CloseWrite()
			}
			errc <- err
		}()
		var id [1]byte
		if _, err := io.ReadFull(c, id[:]); err != nil {
			<-errc
			return 0, err
		}
		h := sha256.New()
		n, err := io.Copy(h, c)
		werr := <-errc
		switch {
		case err != nil:
			return id[0], err
		case werr != nil:
			return id[0], werr
		case n != size:
			return id[0], fmt.Errorf("got %d bytes back, want %d", n, size)
		case !bytes.Equal(h.Sum(nil), want[:]):
			return id[0], errors.New("SHA-256 mismatch")
		}
		return id[0], nil
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= transfers {
					return
				}
				if i == killAt {
					killOnce.Do(func() {
						// Mid-transfer: wait until the victim serves one.
						waitFor(t, "a transfer in flight on c", func() bool { return targets[2].open() > 0 })
						targets[2].kill()
						killed.Store(true)
					})
				}
				startedAfterKill := killed.Load()
				id, err := transfer()
				mu.Lock()
				if err == nil {
					okBy[id]++
					if startedAfterKill {
						afterKill++
					}
				} else {
					failed = append(failed, fmt.Sprintf("transfer %d (target %q, after kill %v): %v", i, id, startedAfterKill, err))
					if startedAfterKill || (id != 'c' && id != 0) {
						t.Errorf("lost: transfer %d on target %q (started after kill: %v): %v", i, id, startedAfterKill, err)
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Logf("per target: a=%d b=%d c=%d; failed (cut on the killed target): %d", okBy['a'], okBy['b'], okBy['c'], len(failed))
	require.LessOrEqual(t, len(failed), workers, "only transfers in flight on the killed target may fail: %v", failed)
	require.Equal(t, transfers, okBy['a']+okBy['b']+okBy['c']+len(failed))
	require.Greater(t, okBy['a'], 0)
	require.Greater(t, okBy['b'], 0)
	require.Greater(t, okBy['c'], 0)
	require.Greater(t, afterKill, transfers/2)
	h, _ := u.Balancer.Target("c")
	require.Equal(t, balancer.Unhealthy, h.Health, "passive health took the dead target out")
	st := p.Stats()
	require.LessOrEqual(t, st.ConnectErrors, uint64(workers), "new connections avoid the dead target")
	require.Zero(t, st.ConnectFailed)
	waitFor(t, "connections ended", func() bool { return p.Stats().Active == 0 })
}

// TestTCPHalfClose: the client's FIN reaches the target as a FIN, and the
// target's answer, written after it, still reaches the client.
func TestTCPHalfClose(t *testing.T) {
	checkFDs(t)
	a := startTCPTarget(t, "tcp4", "a", func(c net.Conn) {
		req, err := io.ReadAll(c) // until the client's FIN
		if err != nil {
			return
		}
		_, _ = c.Write(append([]byte("got "), req...))
		closeWrite(c)
	})
	p := &TCP{Flows: newTestFlows(t)}
	p.SetUpstream(newTestUpstream(t, a))
	c := dial(t, "tcp4", startTCPProxy(t, p, "tcp4"))
	_, err := c.Write([]byte("question"))
	require.NoError(t, err)
	require.NoError(t, c.(*net.TCPConn).CloseWrite())
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := io.ReadAll(c)
	require.NoError(t, err)
	require.Equal(t, "got question", string(resp))
}

// TestTCPIdleTimeout: a connection that moves no data for the idle timeout
// is reset on both sides (ECONNRESET at the client and at the target); one
// that keeps moving data through splice, which the flow table never sees,
// outlives the timeout.
func TestTCPIdleTimeout(t *testing.T) {
	checkFDs(t)
	const idle = 400 * time.Millisecond
	targetErr := make(chan error, 2)
	a := startTCPTarget(t, "tcp4", "a", func(c net.Conn) {
		buf := make([]byte, 64)
		for {
			n, err := c.Read(buf)
			if err != nil {
				targetErr <- err
				return
			}
			if _, err := c.Write(buf[:n]); err != nil {
				targetErr <- err
				return
			}
		}
	})
	ft := newTestFlows(t, flowtable.WithIdleTimeout(flowtable.TCP, idle))
	p := &TCP{Flows: ft}
	p.SetUpstream(newTestUpstream(t, a))
	addr := startTCPProxy(t, p, "tcp4")

	// A busy connection: a byte each idle/4 for three idle timeouts.
	busy := dial(t, "tcp4", addr)
	tick := time.NewTicker(idle / 4)
	defer tick.Stop()
	start := time.Now()
	for time.Since(start) < 3*idle {
		<-tick.C
		require.Equal(t, "x", exchangeMsg(t, busy, "x", 0))
	}
	require.Zero(t, p.Stats().IdleResets, "a connection moving data is not idle")

	// Then it goes quiet: both ends see a reset.
	require.ErrorIs(t, readErr(busy), syscallECONNRESET())
	require.True(t, isReset(<-targetErr))
	require.Equal(t, uint64(1), p.Stats().IdleResets)
	require.Equal(t, uint64(1), ft.Stats().TCP.ExpiredFlowCount)
}

// TestTCPTableFull: with a table of two flows, the third connection is
// refused with exact counters, and admitted again once a flow ends.
func TestTCPTableFull(t *testing.T) {
	checkFDs(t)
	a := startTCPTarget(t, "tcp4", "a", echoHandler)
	ft := newTestFlows(t, flowtable.WithMaxFlows(2))
	var refusals []Refusal
	var mu sync.Mutex
	p := &TCP{Flows: ft, OnRefuse: func(r Refusal) { mu.Lock(); refusals = append(refusals, r); mu.Unlock() }}
	p.SetUpstream(newTestUpstream(t, a))
	addr := startTCPProxy(t, p, "tcp4")

	c1 := dial(t, "tcp4", addr)
	c2 := dial(t, "tcp4", addr)
	require.Equal(t, "1", exchangeMsg(t, c1, "1", 0))
	require.Equal(t, "2", exchangeMsg(t, c2, "2", 0))
	require.True(t, isReset(refusedErr(t, "tcp4", addr)), "refused with a reset")

	st := p.Stats()
	require.Equal(t, uint64(1), st.RejectedTableFull)
	require.Equal(t, uint64(2), st.Forwarded)
	fs := ft.Stats().TCP
	require.Equal(t, uint64(1), fs.RejectedFlowCount)
	require.Equal(t, uint64(2), fs.NewFlowCount)
	require.Equal(t, uint64(2), fs.ActiveFlowCount)
	require.Equal(t, int64(2), a.accepted.Load(), "the refused connection never reached a target")
	mu.Lock()
	require.Len(t, refusals, 1)
	require.Equal(t, RefusedTableFull, refusals[0].Reason)
	require.ErrorIs(t, refusals[0].Err, flowtable.ErrFull)
	mu.Unlock()

	c1.Close()
	waitFor(t, "flow deleted", func() bool { return ft.Stats().TCP.ActiveFlowCount == 1 })
	c4 := dial(t, "tcp4", addr)
	require.Equal(t, "4", exchangeMsg(t, c4, "4", 0))
}

// TestTCPProxyProtocolToTargets: targets of a group with ProxyProtocol 1 or
// 2 read a header carrying the client's address before the data.
func TestTCPProxyProtocolToTargets(t *testing.T) {
	checkFDs(t)
	for _, v := range []int{1, 2} {
		for _, network := range []string{"tcp4", "tcp6"} {
			t.Run(fmt.Sprintf("v%d/%s", v, network), func(t *testing.T) {
				headers := make(chan *proxyproto.Header, 1)
				a := startTCPTarget(t, network, "a", func(c net.Conn) {
					br := bufio.NewReader(c)
					h, err := proxyproto.Read(br)
					if err != nil {
						headers <- nil
						return
					}
					headers <- h
					_, _ = io.Copy(c, br)
				})
				u := newTestUpstream(t, a)
				u.ProxyProtocol = v
				p := &TCP{Flows: newTestFlows(t)}
				p.SetUpstream(u)
				addr := startTCPProxy(t, p, network)
				c := dial(t, network, addr)
				require.Equal(t, "data", exchangeMsg(t, c, "data", 0))
				h := <-headers
				require.NotNil(t, h)
				require.Equal(t, byte(v), h.Version)
				src, dst, ok := h.TCPAddrs()
				require.True(t, ok)
				require.Equal(t, c.LocalAddr().String(), src.String(), "the client's address")
				require.Equal(t, addr, dst.String(), "the listener's address")
			})
		}
	}
}

// TestTCPTrustedProxyHeader: behind another balancer, a trusted source's
// header sets the client address (checked by the ACL, passed on to
// targets); a bad header from a trusted source and any header from an
// untrusted one are refused, counted and never forwarded.
func TestTCPTrustedProxyHeader(t *testing.T) {
	checkFDs(t)
	type seen struct {
		src  string
		data string
	}
	got := make(chan seen, 4)
	a := startTCPTarget(t, "tcp4", "a", func(c net.Conn) {
		br := bufio.NewReader(c)
		h, err := proxyproto.Read(br)
		if err != nil {
			got <- seen{src: "no header"}
			return
		}
		data, _ := io.ReadAll(br)
		src, _, _ := h.TCPAddrs()
		got <- seen{src: src.String(), data: string(data)}
	})
	u := newTestUpstream(t, a)
	u.ProxyProtocol = 2
	trusted, err := ParseACL([]string{"127.0.0.1"}, nil)
	require.NoError(t, err)
	acl, err := ParseACL(nil, []string{"203.0.113.0/24"})
	require.NoError(t, err)
	var refusals atomic.Int64
	p := &TCP{Flows: newTestFlows(t), OnRefuse: func(Refusal) { refusals.Add(1) }}
	p.SetTrustedProxies(trusted)
	require.NoError(t, p.SetTimeouts(Timeouts{Header: 2 * time.Second}))
	require.NoError(t, p.SetUpstream(u))
	p.SetACL(acl)
	addr4 := startTCPProxy(t, p, "tcp4")

	send := func(network, addr string, b []byte) error {
		c := dial(t, network, addr)
		if _, err := c.Write(b); err != nil {
			return err
		}
		_ = c.(*net.TCPConn).CloseWrite() // fails if the reset came first
		return readErr(c)
	}

	t.Run("trusted v1", func(t *testing.T) {
		require.ErrorIs(t, send("tcp4", addr4, []byte("PROXY TCP4 192.0.2.7 198.51.100.1 4000 443\r\nhello")), io.EOF)
		require.Equal(t, seen{src: "192.0.2.7:4000", data: "hello"}, <-got)
	})
	t.Run("trusted v2", func(t *testing.T) {
		h := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP("192.0.2.8"), Port: 5000}, &net.TCPAddr{IP: net.ParseIP("198.51.100.1"), Port: 443})
		b, err := h.Format()
		require.NoError(t, err)
		require.ErrorIs(t, send("tcp4", addr4, append(b, "hi"...)), io.EOF)
		require.Equal(t, seen{src: "192.0.2.8:5000", data: "hi"}, <-got)
	})
	t.Run("trusted, client denied by ACL", func(t *testing.T) {
		err := send("tcp4", addr4, []byte("PROXY TCP4 203.0.113.9 198.51.100.1 4000 443\r\nhello"))
		require.True(t, isReset(err), "%v", err)
		require.Equal(t, uint64(1), p.Stats().Denied)
	})
	before := a.accepted.Load()
	for _, bad := range []string{
		"hello, no header",
		"PROXY TCP4 192.0.2.7 198.51.100.1 4000\r\nhello",
		"PROXY TCP4 999.0.2.7 198.51.100.1 4000 443\r\n",
		"PROXY UDP4 192.0.2.7 198.51.100.1 4000 443\r\n",
		"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\xff",
		"PROXY " + string(bytes.Repeat([]byte("x"), 300)),
	} {
		t.Run("trusted, bad header "+fmt.Sprintf("%.20q", bad), func(t *testing.T) {
			err := send("tcp4", addr4, []byte(bad))
			require.True(t, isReset(err), "%v", err)
		})
	}
	require.Equal(t, uint64(6), p.Stats().ProxyHeaderBad)
	require.Equal(t, before, a.accepted.Load(), "refused before any target was contacted")
	require.Equal(t, int64(7), refusals.Load())

	t.Run("untrusted sends a header", func(t *testing.T) {
		q := p2(p, u, trusted)
		addr6 := startTCPProxy(t, q, "tcp6")
		before := a.accepted.Load()
		err := send("tcp6", addr6, []byte("PROXY TCP4 192.0.2.7 198.51.100.1 4000 443\r\nhello"))
		require.True(t, isReset(err), "%v", err)
		require.Equal(t, uint64(1), q.Stats().ProxyHeaderUntrusted)
		require.Equal(t, before, a.accepted.Load(), "refused before any target was contacted")
	})
	t.Run("untrusted sends a header in pieces", func(t *testing.T) {
		q := p2(p, u, trusted)
		addr6 := startTCPProxy(t, q, "tcp6")
		before := a.accepted.Load()
		c := dial(t, "tcp6", addr6)
		_, err := c.Write([]byte("PRO"))
		require.NoError(t, err)
		_, _ = c.Write([]byte("XY TCP4 192.0.2.7 198.51.100.1 4000 443\r\n"))
		require.True(t, isReset(readErr(c)))
		require.Equal(t, uint64(1), q.Stats().ProxyHeaderUntrusted)
		require.Equal(t, before, a.accepted.Load(), "refused before any target was contacted")
	})
	t.Run("trusted v1 header in two segments", func(t *testing.T) {
		c := dial(t, "tcp4", addr4)
		_ = c.(*net.TCPConn).SetNoDelay(true)
		_, err := c.Write([]byte("PROXY TCP4 192.0.2.9 198.51."))
		require.NoError(t, err)
		_, err = c.Write([]byte("100.1 4000 443\r\nsplit"))
		require.NoError(t, err)
		_ = c.(*net.TCPConn).CloseWrite()
		require.ErrorIs(t, readErr(c), io.EOF)
		require.Equal(t, seen{src: "192.0.2.9:4000", data: "split"}, <-got)
	})
	t.Run("untrusted plain client", func(t *testing.T) {
		q := p2(p, u, trusted)
		addr6 := startTCPProxy(t, q, "tcp6")
		require.ErrorIs(t, send("tcp6", addr6, []byte("PROX")), io.EOF)
		s := <-got
		require.Equal(t, "PROX", s.data)
		require.Equal(t, "[::1]", s.src[:5])
	})
}

// p2 returns a fresh proxy like p (same group and trusted sources) for
// another listener.
func p2(p *TCP, u *Upstream, trusted *ACL) *TCP {
	q := &TCP{Flows: p.Flows}
	q.SetTrustedProxies(trusted)
	_ = q.SetTimeouts(*p.tmo.Load())
	_ = q.SetUpstream(u)
	return q
}

// TestTCPACL: a denied client is reset before any other work; an allow list
// admits only its prefixes.
func TestTCPACL(t *testing.T) {
	checkFDs(t)
	a := startTCPTarget(t, "tcp4", "a", echoHandler)
	b := startTCPTarget(t, "tcp6", "b", echoHandler)
	p := &TCP{Flows: newTestFlows(t)}
	p.SetUpstream(newTestUpstream(t, a, b))
	addr4 := startTCPProxy(t, p, "tcp4")
	addr6 := startTCPProxy(t, p, "tcp6")

	deny, err := ParseACL(nil, []string{"127.0.0.0/8"})
	require.NoError(t, err)
	p.SetACL(deny)
	require.True(t, isReset(refusedErr(t, "tcp4", addr4)))
	require.Equal(t, "six", exchangeMsg(t, dial(t, "tcp6", addr6), "six", 0))

	allow, err := ParseACL([]string{"127.0.0.1/32"}, nil)
	require.NoError(t, err)
	p.SetACL(allow)
	require.True(t, isReset(refusedErr(t, "tcp6", addr6)))
	require.Equal(t, "four", exchangeMsg(t, dial(t, "tcp4", addr4), "four", 0))

	p.SetACL(nil)
	require.Equal(t, "any", exchangeMsg(t, dial(t, "tcp6", addr6), "any", 0))
	st := p.Stats()
	require.Equal(t, uint64(2), st.Denied)
	require.Equal(t, uint64(3), st.Forwarded)
	require.Zero(t, p.Flows.Stats().TCP.NewFlowCount-3, "denied clients never reach the flow table")
}

// TestTCPDrain: a target set to weight 0 and drained gets no new
// connections; its established ones keep working until the deregistration
// delay passes, then are reset.
func TestTCPDrain(t *testing.T) {
	checkFDs(t)
	a := startTCPTarget(t, "tcp4", "a", idEchoHandler("a"))
	b := startTCPTarget(t, "tcp4", "b", idEchoHandler("b"))
	u := newTestUpstream(t, a, b)
	require.NoError(t, u.Balancer.SetWeight("b", 0))
	p := &TCP{Flows: newTestFlows(t)}
	p.SetUpstream(u)
	addr := startTCPProxy(t, p, "tcp4")

	old := dial(t, "tcp4", addr)
	require.Equal(t, "a1", exchangeMsg(t, old, "1", 1))

	// Deregister a: weight 0 and a drain with a delay.
	require.NoError(t, u.Balancer.SetWeight("b", 1))
	require.NoError(t, u.Balancer.SetWeight("a", 0))
	const delay = 300 * time.Millisecond
	drainStart := time.Now()
	u.Drain("a", delay)
	for i := range 4 {
		c := dial(t, "tcp4", addr)
		require.Equal(t, "bx", exchangeMsg(t, c, "x", 1), "new connection %d avoids the draining target", i)
	}
	if time.Since(drainStart) < delay {
		require.Equal(t, "2", exchangeMsg(t, old, "2", 0), "established connection continues during the delay")
	}
	require.True(t, isReset(readErr(old)), "reset when the delay passes")
	require.GreaterOrEqual(t, time.Since(drainStart), delay)
	require.Equal(t, uint64(1), p.Stats().DrainResets)
}

// TestTCPConnectRetry: a target that refuses connections is reported to
// passive health and skipped; every client still gets through.
func TestTCPConnectRetry(t *testing.T) {
	checkFDs(t)
	a := startTCPTarget(t, "tcp4", "a", idEchoHandler("a"))
	dead := startTCPTarget(t, "tcp4", "dead", echoHandler)
	dead.kill()
	u := newTestUpstream(t, a, dead)
	var mu sync.Mutex
	results := map[string][]error{}
	u.OnResult = func(id string, err error) { mu.Lock(); results[id] = append(results[id], err); mu.Unlock() }
	p := &TCP{Flows: newTestFlows(t)}
	p.SetUpstream(u)
	addr := startTCPProxy(t, p, "tcp4")
	for range 6 {
		require.Equal(t, "aok", exchangeMsg(t, dial(t, "tcp4", addr), "ok", 1))
	}
	st := p.Stats()
	require.GreaterOrEqual(t, st.ConnectErrors, uint64(1))
	require.Zero(t, st.ConnectFailed)
	mu.Lock()
	require.Len(t, results["dead"], int(st.ConnectErrors))
	for _, err := range results["dead"] {
		require.Error(t, err)
	}
	require.Len(t, results["a"], 6)
	mu.Unlock()

	// With every target dead the connection is closed, counted once.
	a.kill()
	require.True(t, isReset(refusedErr(t, "tcp4", addr)))
	require.Equal(t, uint64(1), p.Stats().ConnectFailed)
}

// TestTCPSticky: with a source-IP policy every connection of a client goes
// to the same target.
func TestTCPSticky(t *testing.T) {
	checkFDs(t)
	a := startTCPTarget(t, "tcp4", "a", idEchoHandler("a"))
	b := startTCPTarget(t, "tcp4", "b", idEchoHandler("b"))
	u := newTestUpstream(t, a, b)
	u.SetSticky(&mapPolicy{m: map[netip.Addr]string{}})
	p := &TCP{Flows: newTestFlows(t)}
	p.SetUpstream(u)
	addr := startTCPProxy(t, p, "tcp4")
	first := exchangeMsg(t, dial(t, "tcp4", addr), "x", 1)
	for range 5 {
		require.Equal(t, first, exchangeMsg(t, dial(t, "tcp4", addr), "x", 1))
	}
}

// TestTCPCloseAndShutdown: Shutdown waits for open connections; when its
// context ends first, they are reset. Close resets at once.
func TestTCPCloseAndShutdown(t *testing.T) {
	checkFDs(t)
	a := startTCPTarget(t, "tcp4", "a", echoHandler)
	p := &TCP{}
	p.SetUpstream(newTestUpstream(t, a))
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() { errc <- p.Serve(ln) }()
	c := dial(t, "tcp4", ln.Addr().String())
	require.Equal(t, "x", exchangeMsg(t, c, "x", 0))

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, p.Shutdown(ctx), context.DeadlineExceeded)
	require.ErrorIs(t, <-errc, ErrProxyClosed)
	require.True(t, isReset(readErr(c)))
	_, err = net.DialTimeout("tcp4", ln.Addr().String(), time.Second)
	require.Error(t, err, "no longer accepting")
	require.NoError(t, p.Close())
	require.ErrorIs(t, p.Serve(ln), ErrProxyClosed)

	// A Shutdown with nothing open returns at once.
	q := &TCP{}
	q.SetUpstream(newTestUpstream(t, a))
	addr := startTCPProxy(t, q, "tcp4")
	c2 := dial(t, "tcp4", addr)
	require.Equal(t, "y", exchangeMsg(t, c2, "y", 0))
	require.NoError(t, c2.(*net.TCPConn).CloseWrite())
	require.ErrorIs(t, readErr(c2), io.EOF)
	waitFor(t, "connection ended", func() bool { return q.Stats().Active == 0 })
	require.NoError(t, q.Shutdown(context.Background()))
}

// TestTCPNoUpstream: without a target group connections are refused and
// counted.
func TestTCPNoUpstream(t *testing.T) {
	checkFDs(t)
	var got atomic.Value
	p := &TCP{OnRefuse: func(r Refusal) { got.Store(r) }}
	addr := startTCPProxy(t, p, "tcp4")
	require.True(t, isReset(refusedErr(t, "tcp4", addr)))
	require.Equal(t, uint64(1), p.Stats().NoTarget)
	r := got.Load().(Refusal)
	assert.Equal(t, RefusedNoTarget, r.Reason)
	assert.ErrorIs(t, r.Err, ErrNoUpstream)
	assert.Equal(t, "no_target", r.Reason.String())
}

// TestTCPKeepaliveKeepsFlow: TCP keepalive probes from a client count as
// activity, as on the reference load balancer, although they carry no data
// and the proxy forwards nothing; once they stop, the idle connection is
// reset.
func TestTCPKeepaliveKeepsFlow(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about 8 s: keepalive probes are at least a second apart")
	}
	checkFDs(t)
	const idle = 1500 * time.Millisecond
	a := startTCPTarget(t, "tcp4", "a", echoHandler)
	ft := newTestFlows(t, flowtable.WithIdleTimeout(flowtable.TCP, idle))
	p := &TCP{Flows: ft}
	p.SetUpstream(newTestUpstream(t, a))
	addr := startTCPProxy(t, p, "tcp4")
	c := dial(t, "tcp4", addr).(*net.TCPConn)
	require.NoError(t, c.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: time.Second, Interval: time.Second, Count: 9}))
	require.Equal(t, "x", exchangeMsg(t, c, "x", 0))
	// No data for more than three idle timeouts, probes only.
	_ = c.SetReadDeadline(time.Now().Add(3*idle + 500*time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	require.True(t, errors.As(err, &ne) && ne.Timeout(), "still open, only the read deadline passed: %v", err)
	require.Zero(t, p.Stats().IdleResets)

	require.NoError(t, c.SetKeepAlive(false))
	require.True(t, isReset(readErr(c)), "reset once the probes stop")
	require.Equal(t, uint64(1), p.Stats().IdleResets)
}
