package proxy

import (
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
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

// BenchmarkUDPNewFlows makes 1 000 flows per round from distinct client
// addresses (a flood of new clients) and reports the memory each costs
// while it lives: its table entry, its target socket and its parked reply
// reader. The sockets are closed between rounds.
func BenchmarkUDPNewFlows(b *testing.B) {
	const flows = 1000
	sink, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	msg := make([]byte, 64)
	var perFlow float64
	b.ReportAllocs()
	for range b.N {
		b.StopTimer()
		p := &UDP{Flows: newTestFlows(b)}
		u := newTestUpstream(b)
		_ = u.Balancer.Add(benchTargetOf(sink.LocalAddr().String()))
		p.SetUpstream(u)
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- p.Serve(pc) }()
		var l *udpListener
		waitFor(b, "proxy serving", func() bool { l = p.listenerForTest(); return l != nil })
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		b.StartTimer()
		for i := range flows {
			l.handle(msg, netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 1, byte(i >> 8), byte(i)}), 4000))
		}
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		perFlow = float64(after.HeapInuse+after.StackInuse-before.HeapInuse-before.StackInuse) / flows
		if p.Stats().Flows != flows {
			b.Fatalf("%d flows made, want %d", p.Stats().Flows, flows)
		}
		p.Close()
		<-done
		b.StartTimer()
	}
	b.ReportMetric(perFlow, "bytes/flow")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*flows), "ns/flow")
}

// BenchmarkUDPFlows is BenchmarkUDP with one flow per parallel client
// (GOMAXPROCS of them; run it with -cpu 1,2,4,8), each with a window of 8
// datagrams in flight: the replies of many flows, each from its own
// reader, leave from the one listener socket at once. Straight to a
// target and through the proxy.
func BenchmarkUDPFlows(b *testing.B) {
	const window = 8
	target := startUDPTarget(b, "udp4", "t")
	_ = target.conn.SetReadBuffer(4 << 20)
	for _, impl := range []string{"direct", "lbkit"} {
		b.Run("impl="+impl, func(b *testing.B) {
			addr := target.Addr()
			if impl == "lbkit" {
				p := &UDP{Flows: newTestFlows(b)}
				if err := p.SetUpstream(newUDPUpstream(b, target)); err != nil {
					b.Fatal(err)
				}
				pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				_ = pc.(*net.UDPConn).SetReadBuffer(4 << 20)
				done := make(chan error, 1)
				go func() { done <- p.Serve(pc) }()
				defer func() { p.Close(); <-done }()
				addr = pc.LocalAddr().String()
			}
			var lost atomic.Int64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				c, err := net.Dial("udp4", addr)
				if err != nil {
					b.Error(err)
					return
				}
				defer c.Close()
				_ = c.(*net.UDPConn).SetReadBuffer(1 << 20)
				msg := make([]byte, 64)
				buf := make([]byte, 2048)
				for more := true; more; {
					n := 0
					for ; n < window && pb.Next(); n++ {
						if _, err := c.Write(msg); err != nil {
							b.Error(err)
							return
						}
					}
					more = n == window
					for range n {
						_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
						if _, err := c.Read(buf); err != nil {
							lost.Add(1)
						}
					}
				}
			})
			b.ReportMetric(float64(lost.Load())/float64(b.N), "lost/op")
		})
	}
}
