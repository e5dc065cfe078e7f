package proxy

import (
	"net"
	"testing"
	"time"
)

// BenchmarkUDP measures datagrams per second of a request/response load
// with 32 datagrams in flight, straight to a target and through the proxy.
// A lost datagram (a full socket buffer) is counted, not waited for.
func BenchmarkUDP(b *testing.B) {
	const window = 32
	target := startUDPTarget(b, "udp4", "t")
	for _, impl := range []string{"direct", "lbkit"} {
		b.Run("impl="+impl, func(b *testing.B) {
			addr := target.Addr()
			if impl == "lbkit" {
				p := &UDP{Flows: newTestFlows(b)}
				p.SetUpstream(newUDPUpstream(b, target))
				addr = startUDPProxy(b, p, "udp4")
			}
			c := udpClient(b, "udp4", addr)
			_ = c.SetReadBuffer(4 << 20)
			msg := make([]byte, 64)
			buf := make([]byte, 2048)
			lost := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += window {
				n := min(window, b.N-i)
				for range n {
					if _, err := c.Write(msg); err != nil {
						b.Fatal(err)
					}
				}
				for range n {
					_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
					if _, err := c.Read(buf); err != nil {
						lost++
					}
				}
			}
			b.ReportMetric(float64(lost)/float64(b.N), "lost/op")
		})
	}
}

// BenchmarkUDPForward is the proxy's per-datagram path alone (ACL, flow
// lookup, health check of the flow's target, send on its socket) beside
// its baseline, the send alone on a connected socket.
func BenchmarkUDPForward(b *testing.B) {
	sink, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	_ = sink.(*net.UDPConn).SetReadBuffer(1 << 20)
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		buf := make([]byte, 2048)
		for {
			if _, _, err := sink.(*net.UDPConn).ReadFromUDPAddrPort(buf); err != nil {
				return
			}
		}
	}()
	defer func() { sink.Close(); <-drained }()
	msg := make([]byte, 64)
	b.Run("impl=write", func(b *testing.B) {
		c, err := net.DialUDP("udp4", nil, sink.LocalAddr().(*net.UDPAddr))
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		b.ReportAllocs()
		for range b.N {
			_, _ = c.Write(msg)
		}
	})
	b.Run("impl=lbkit", func(b *testing.B) {
		p := &UDP{Flows: newTestFlows(b)}
		u := newTestUpstream(b)
		_ = u.Balancer.Add(benchTargetOf(sink.LocalAddr().String()))
		p.SetUpstream(u)
		acl, _ := ParseACL([]string{"127.0.0.0/8"}, []string{"192.0.2.0/24"})
		p.SetACL(acl)
		startUDPProxy(b, p, "udp4")
		var l *udpListener
		waitFor(b, "proxy serving", func() bool { l = p.listenerForTest(); return l != nil })
		from := addrPortOf(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 9), Port: 4000})
		l.handle(msg, from)
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			l.handle(msg, from)
		}
	})
}
