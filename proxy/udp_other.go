//go:build !linux

package proxy

import (
	"errors"
	"net"
	"net/netip"
)

// udpBatch, replyBatch and sockaddr are unused off Linux.
type (
	udpBatch   struct{}
	replyBatch struct{}
	sockaddr   struct{}
)

func sockaddrOf(netip.AddrPort) sockaddr { return sockaddr{} }

// serve is the portable read loop.
func (l *udpListener) serve() error { return l.serveEach() }

// initBatch does nothing off Linux: datagrams go one by one.
func (up *udpUpstream) initBatch() {}

// replies runs the reply reader of up until its socket closes: a blocking
// read with a buffer of its own, the portable way.
func (up *udpUpstream) replies() {
	f := up.f
	l := f.l
	p := l.p
	defer p.readers.Done()
	buf := make([]byte, maxDatagram)
	for {
		n, err := up.conn.Read(buf)
		if err != nil {
			if up.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			p.stats.sendErrors.Add(1)
			continue
		}
		f.sawReply()
		m, err := l.conn.WriteToUDPAddrPort(buf[:n], f.key.Src)
		if err != nil {
			p.stats.replyErrors.Add(1)
			continue
		}
		p.stats.datagramsOut.Add(1)
		p.stats.bytesOut.Add(uint64(m))
		up.choice.st.bytesOut.Add(uint64(m))
		f.countOut(1, uint64(m))
	}
}
