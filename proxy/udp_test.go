package proxy

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lbkit/lbkit/balancer"
	"github.com/stretchr/testify/require"
)

// udpTarget is a loopback UDP echo server that prefixes each reply with its
// ID and remembers the sources it saw.
type udpTarget struct {
	conn *net.UDPConn
	id   string
	got  atomic.Int64

	mu      sync.Mutex // guards sources
	sources map[string]int

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
	s := &udpTarget{conn: pc.(*net.UDPConn), id: id, sources: map[string]int{}, done: make(chan struct{})}
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
		s.sources[from.String()]++
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
