//go:build linux

package proxy

import (
	"net"
	"testing"
)

// BenchmarkUDPReplySend is the reply path's send step alone, from every
// core at once, each goroutine a flow of its own sending one 64-byte reply
// at a time to a sink through the one listener socket: lbkit's (sendmmsg
// under RawConn.Control, no write lock, counters per burst) beside what it
// did before (WriteToUDPAddrPort, which takes the socket's write lock, then
// the counters). Run it with -cpu 1,2,4,8: the lock serialises the
// senders, and a sender that finds it taken parks.
func BenchmarkUDPReplySend(b *testing.B) {
	sink, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
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
	to := sink.LocalAddr().(*net.UDPAddr).AddrPort()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Close()
	conn := pc.(*net.UDPConn)
	_ = conn.SetWriteBuffer(4 << 20)
	p := &UDP{}
	l := &udpListener{p: p, conn: conn}
	l.rc, _ = conn.SyscallConn()
	st := &targetState{}

	b.Run("impl=lbkit", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			f := &udpFlow{l: l, to: sockaddrOf(to)}
			f.key.Src = to
			f.replied.Store(true)
			up := &udpUpstream{f: f}
			up.choice.st = st
			up.sendReplies = up.sendBurst
			rb := new(replyBatch)
			rb.iovs[0].Base = &rb.buf[0]
			rb.iovs[0].SetLen(64)
			for pb.Next() {
				up.reply(rb, 1, 64)
			}
		})
	})
	b.Run("impl=locked", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			msg := make([]byte, 64)
			for pb.Next() {
				m, err := conn.WriteToUDPAddrPort(msg, to)
				if err != nil {
					p.stats.replyErrors.Add(1)
					continue
				}
				p.stats.datagramsOut.Add(1)
				p.stats.bytesOut.Add(uint64(m))
				st.bytesOut.Add(uint64(m))
			}
		})
	})
	if e := p.stats.replyErrors.Load(); e > 0 {
		b.Logf("%d replies refused", e)
	}
}
