package proxy

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/lbkit/lbkit/flowtable"
)

// benchTarget starts a loopback TCP target with handler h and returns its
// address and a stop function.
func benchTarget(b *testing.B, h func(net.Conn)) string {
	b.Helper()
	s := startTCPTarget(b, "tcp4", "t", h)
	return s.Addr()
}

// benchProxy starts a TCP proxy in front of addr, with every feature of
// the data path on (flow table, ACL, passive health hook, counters), and
// returns its address.
func benchProxy(b *testing.B, addr string) string {
	b.Helper()
	u := newTestUpstream(b)
	if err := u.Balancer.Add(benchTargetOf(addr)); err != nil {
		b.Fatal(err)
	}
	u.OnResult = func(string, error) {}
	acl, err := ParseACL([]string{"127.0.0.0/8"}, []string{"192.0.2.0/24"})
	if err != nil {
		b.Fatal(err)
	}
	ft, err := NewFlowTable(flowtable.WithMaxFlows(1 << 20))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ft.Close() })
	p := &TCP{Flows: ft}
	p.SetUpstream(u)
	p.SetACL(acl)
	return startTCPProxy(b, p, "tcp4")
}

// minimalProxy is the baseline proxy: io.Copy both ways between
// *net.TCPConn (so splice), a goroutine per direction, nothing else. It
// returns its address; the benchmark's cleanup stops it.
func minimalProxy(b *testing.B, target string) string {
	b.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				t, err := net.Dial("tcp4", target)
				if err != nil {
					return
				}
				defer t.Close()
				done := make(chan struct{})
				go func() {
					io.Copy(t, c)
					t.(*net.TCPConn).CloseWrite()
					close(done)
				}()
				io.Copy(c, t)
				c.(*net.TCPConn).CloseWrite()
				<-done
			}()
		}
	}()
	b.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// proxyFor returns the address to dial for impl: the target itself, the
// minimal proxy or lbkit's.
func proxyFor(b *testing.B, impl, target string) string {
	switch impl {
	case "iocopy":
		return minimalProxy(b, target)
	case "lbkit":
		return benchProxy(b, target)
	}
	return target
}

// sinkHandler reads until EOF and then writes one byte, so the sender knows
// every byte arrived.
func sinkHandler(c net.Conn) {
	_, _ = io.Copy(io.Discard, c)
	_, _ = c.Write([]byte{1})
}

// BenchmarkTCPThroughput streams b.N chunks of 256 KiB over one connection,
// straight to a target (the baseline) and through the proxy.
func BenchmarkTCPThroughput(b *testing.B) {
	const chunk = 256 << 10
	target := benchTarget(b, sinkHandler)
	for _, impl := range []string{"direct", "iocopy", "lbkit"} {
		b.Run("impl="+impl, func(b *testing.B) {
			addr := proxyFor(b, impl, target)
			c, err := net.Dial("tcp4", addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			buf := make([]byte, chunk)
			b.SetBytes(chunk)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			_ = c.(*net.TCPConn).CloseWrite()
			if _, err := io.ReadFull(c, buf[:1]); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkTCPConnect measures short connections: connect, one small
// request and response, close; straight to a target and through the
// proxy.
func BenchmarkTCPConnect(b *testing.B) {
	target := benchTarget(b, func(c net.Conn) {
		var buf [16]byte
		n, err := c.Read(buf[:])
		if err == nil {
			_, _ = c.Write(buf[:n])
		}
	})
	for _, impl := range []string{"direct", "iocopy", "lbkit"} {
		b.Run("impl="+impl, func(b *testing.B) {
			addr := proxyFor(b, impl, target)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var buf [16]byte
				for pb.Next() {
					c, err := net.Dial("tcp4", addr)
					if err != nil {
						b.Error(err)
						return
					}
					if _, err := c.Write([]byte("ping")); err != nil {
						b.Error(err)
					}
					if _, err := io.ReadFull(c, buf[:4]); err != nil {
						b.Error(err)
					}
					// Close as a load generator does: RST, no TIME_WAIT
					// piling up on the client ports.
					_ = c.(*net.TCPConn).SetLinger(0)
					c.Close()
				}
			})
		})
	}
}

// BenchmarkTCPSmall measures small messages on kept-open connections, one
// per parallel client (run it with -cpu 1,2,4,8): a 64-byte request and
// its echo per op, which the proxy copies in its small-buffer phase, a
// read and a write per message each way. Straight to a target and
// through the proxy.
func BenchmarkTCPSmall(b *testing.B) {
	target := benchTarget(b, func(c net.Conn) { _, _ = io.Copy(c, c) })
	for _, impl := range []string{"direct", "iocopy", "lbkit"} {
		b.Run("impl="+impl, func(b *testing.B) {
			addr := proxyFor(b, impl, target)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				c, err := net.Dial("tcp4", addr)
				if err != nil {
					b.Error(err)
					return
				}
				defer c.Close()
				msg := make([]byte, 64)
				buf := make([]byte, 64)
				for pb.Next() {
					if _, err := c.Write(msg); err != nil {
						b.Error(err)
						return
					}
					if _, err := io.ReadFull(c, buf); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkCopyCount is the byte counting of a copy alone, from every core
// at once (run it with -cpu 1,2,4,8), one 64-byte read per op into the
// counters every connection of a proxy shares: lbkit's byteCount (counted
// locally, added once per countFlush bytes and at the end of the copy) beside
// what copySmall did before, an atomic add to both shared counters on
// every read.
func BenchmarkCopyCount(b *testing.B) {
	var shared struct {
		a atomic.Uint64
		_ [cacheLine - 8]byte
		b atomic.Uint64
	}
	b.Run("impl=lbkit", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			bc := byteCount{a: &shared.a, b: &shared.b}
			defer bc.flush()
			for pb.Next() {
				bc.add(64)
			}
		})
	})
	b.Run("impl=shared-add", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				shared.a.Add(64)
				shared.b.Add(64)
			}
		})
	})
}
