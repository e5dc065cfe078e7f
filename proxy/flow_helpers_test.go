package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lbkit/lbkit/balancer"
	"github.com/lbkit/lbkit/flowtable"
	"github.com/stretchr/testify/require"
)

// Helpers of the L4 proxy tests: loopback targets, a proxy started on a
// loopback listener, and the file-descriptor check every test runs.

// fdCount returns the number of open file descriptors of the process.
func fdCount(t testing.TB) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(es)
}

// checkFDs records the open file descriptors now and, when the test ends
// (after the cleanups registered later, which run first), waits until the
// count is back to it. Closing is synchronous in Go except for a
// descriptor another goroutine is still using, so the wait is on a
// condition, bounded.
func checkFDs(t testing.TB) {
	t.Helper()
	before := fdCount(t)
	t.Cleanup(func() {
		// Splice keeps pipes in a pool that the garbage collector
		// empties (closing them in finalizers): collect while waiting.
		waitFor(t, "file descriptors back to baseline", func() bool {
			runtime.GC()
			return fdCount(t) <= before
		})
	})
}

// waitFor polls cond until it holds, failing the test after 20 s. It
// synchronises on a condition, never on elapsed time.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// tcpTarget is a loopback TCP server run by a test.
type tcpTarget struct {
	ln       net.Listener
	id       string
	handler  func(c net.Conn)
	accepted atomic.Int64

	mu    sync.Mutex // guards conns and closed
	conns map[net.Conn]struct{}

	wg sync.WaitGroup
}

// startTCPTarget listens on network ("tcp4" or "tcp6") loopback and serves
// each connection with h; the test's cleanup stops it.
func startTCPTarget(t testing.TB, network, id string, h func(c net.Conn)) *tcpTarget {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "tcp6" {
		addr = "[::1]:0"
	}
	ln, err := net.Listen(network, addr)
	require.NoError(t, err)
	s := &tcpTarget{ln: ln, id: id, handler: h, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.kill)
	return s
}

func (s *tcpTarget) Addr() string { return s.ln.Addr().String() }

func (s *tcpTarget) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.accepted.Add(1)
		s.mu.Lock()
		if s.conns == nil { // killed
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			s.handler(c)
		}()
	}
}

// kill stops the target as a crash would: the listener closes (new
// connections are refused) and every open connection is reset.
func (s *tcpTarget) kill() {
	s.ln.Close()
	s.mu.Lock()
	conns := s.conns
	s.conns = nil
	s.mu.Unlock()
	for c := range conns {
		resetClose(c)
	}
	s.wg.Wait()
}

// open returns the number of connections the target is serving.
func (s *tcpTarget) open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// echoHandler copies what it reads back until EOF, then half-closes.
func echoHandler(c net.Conn) {
	_, _ = io.Copy(c, c)
	closeWrite(c)
}

// idEchoHandler writes id's first byte, then echoes.
func idEchoHandler(id string) func(net.Conn) {
	return func(c net.Conn) {
		if _, err := c.Write([]byte{id[0]}); err != nil {
			return
		}
		echoHandler(c)
	}
}

// newTestUpstream returns an Upstream over the targets, each of weight 1.
func newTestUpstream(t testing.TB, targets ...*tcpTarget) *Upstream {
	t.Helper()
	var ts []balancer.Target
	for _, s := range targets {
		ts = append(ts, balancer.Target{ID: s.id, Addr: s.Addr(), Weight: 1})
	}
	b, err := balancer.New(balancer.WithTargets(ts...))
	require.NoError(t, err)
	return &Upstream{Name: "test", Balancer: b}
}

// newTestFlows returns a flow table with a short sweep interval, closed at
// the end of the test.
func newTestFlows(t testing.TB, opts ...flowtable.Option) *FlowTable {
	t.Helper()
	ft, err := NewFlowTable(append([]flowtable.Option{flowtable.WithSweepInterval(20 * time.Millisecond)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { ft.Close() })
	return ft
}

// startTCPProxy serves p on a loopback listener of network and returns the
// listener's address; the test's cleanup closes p and checks that Serve
// returned ErrProxyClosed.
func startTCPProxy(t testing.TB, p *TCP, network string) string {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "tcp6" {
		addr = "[::1]:0"
	}
	ln, err := net.Listen(network, addr)
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() { errc <- p.Serve(ln) }()
	t.Cleanup(func() {
		require.NoError(t, p.Close())
		require.ErrorIs(t, <-errc, ErrProxyClosed)
	})
	return ln.Addr().String()
}

// exchangeMsg writes msg on c and reads len(msg)+extra bytes back.
func exchangeMsg(t testing.TB, c net.Conn, msg string, extra int) string {
	t.Helper()
	_, err := c.Write([]byte(msg))
	require.NoError(t, err)
	buf := make([]byte, len(msg)+extra)
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	return string(buf)
}

// isReset reports whether err is a connection reset.
func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

// readErr blocks reading c until it fails and returns the error (io.EOF
// for a clean end), bounded by a generous deadline.
func readErr(c net.Conn) error {
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 4096)
	for {
		if _, err := c.Read(buf); err != nil {
			return err
		}
	}
}

// dial connects to addr with a bounded timeout.
func dial(t testing.TB, network, addr string) net.Conn {
	t.Helper()
	var d net.Dialer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, network, addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func errorsIsClosed(err error) bool { return errors.Is(err, net.ErrClosed) }

func syscallECONNRESET() error { return syscall.ECONNRESET }

// refusedErr dials addr and returns how the connection ended: the dial's
// error when the proxy's reset beat the handshake's completion, else the
// first read's error.
func refusedErr(t testing.TB, network, addr string) error {
	t.Helper()
	c, err := net.DialTimeout(network, addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	return readErr(c)
}

// tcpAddr parses a literal "ip:port".
func tcpAddr(s string) *net.TCPAddr { return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)) }

// benchTargetOf is a balancer target for addr.
func benchTargetOf(addr string) balancer.Target {
	return balancer.Target{ID: addr, Addr: addr, Weight: 1}
}
