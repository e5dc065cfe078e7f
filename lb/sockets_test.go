package lb

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// handedSockets is a Sockets with sockets opened beforehand (as a new
// process inherits them), by the address asked for; it records what the
// load balancer asked for and closed.
type handedSockets struct {
	mu     sync.Mutex
	tcp    map[string]net.Listener
	udp    map[string]net.PacketConn
	asked  []string
	closed []string
}

func (s *handedSockets) Listen(name, network, addr string) (net.Listener, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.asked = append(s.asked, name+" "+network+" "+addr)
	if ln, ok := s.tcp[addr]; ok {
		delete(s.tcp, addr)
		return &closeRecorder{Listener: ln, s: s, name: network + " " + addr}, nil
	}
	return net.Listen(network, addr)
}

func (s *handedSockets) ListenPacket(name, network, addr string) (net.PacketConn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.asked = append(s.asked, name+" "+network+" "+addr)
	if pc, ok := s.udp[addr]; ok {
		delete(s.udp, addr)
		return pc, nil
	}
	return net.ListenPacket(network, addr)
}

// closeRecorder records the Close of a handed listener.
type closeRecorder struct {
	net.Listener
	s    *handedSockets
	name string
	once sync.Once
}

func (c *closeRecorder) Close() error {
	c.once.Do(func() {
		c.s.mu.Lock()
		c.s.closed = append(c.s.closed, c.name)
		c.s.mu.Unlock()
	})
	return c.Listener.Close()
}

func TestWithSocketsServesHandedSockets(t *testing.T) {
	a := newEchoTarget(t, "a")
	u := newUDPEcho(t, "u")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	// The configuration names the addresses the handed sockets have.
	tcpAddr, udpAddr := ln.Addr().String(), pc.LocalAddr().String()
	socks := &handedSockets{tcp: map[string]net.Listener{tcpAddr: ln}, udp: map[string]net.PacketConn{udpAddr: pc}}
	group := WithTargetGroup("app", TCP, WithTarget(a.addr, WithTargetID("a")), WithoutHealthCheck())
	udpGroup := WithTargetGroup("dns", UDP, WithTarget(u.addr, WithTargetID("u")), WithoutHealthCheck())
	l := startLB(t, WithSockets(socks),
		WithListener("tcp", TCP, tcpAddr, WithForwardTo("app")),
		WithListener("udp", UDP, udpAddr, WithForwardTo("dns")),
		group, udpGroup,
	)
	assert.ElementsMatch(t, []string{"tcp tcp " + tcpAddr, "udp udp " + udpAddr}, socks.asked, "the listeners' names come with their addresses")
	assert.Equal(t, "a", dialAsk(t, tcpAddr), "the handed TCP socket serves")
	c, err := net.Dial("udp", udpAddr)
	require.NoError(t, err)
	defer c.Close()
	assert.Equal(t, "u", udpAsk(t, c, "hello"), "the handed UDP socket serves")

	// A listener that a reconfiguration removes is closed for real.
	require.NoError(t, l.Reconfigure(WithSockets(socks), WithListener("udp", UDP, udpAddr, WithForwardTo("dns")), group, udpGroup))
	socks.mu.Lock()
	assert.Equal(t, []string{"tcp " + tcpAddr}, socks.closed)
	socks.mu.Unlock()
	_, err = net.DialTimeout("tcp", tcpAddr, 5*time.Second)
	assert.Error(t, err, "nothing listens on the removed listener's port")
}
