package proxy

import (
	"encoding/binary"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// udpBatchSize is how many datagrams one recvmmsg reads and one sendmmsg
// writes at most. Under load a listener reads a full batch per system call
// and, for datagrams of one flow, writes them with one more; idle, a batch
// of one costs what recvmsg would.
const udpBatchSize = 32

// mmsghdr is struct mmsghdr: a msghdr and the length the kernel moved.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

// udpBatch is a listener's state for batched reads and writes, used only by
// its Serve goroutine. 32 buffers of 64 KiB: 2 MiB per listener.
type udpBatch struct {
	rhdrs [udpBatchSize]mmsghdr
	riovs [udpBatchSize]unix.Iovec
	names [udpBatchSize]unix.RawSockaddrInet6
	bufs  [udpBatchSize][maxDatagram]byte
	n     int   // datagrams read by the last recvmmsg
	err   error // its error

	shdrs [udpBatchSize]mmsghdr
	siovs [udpBatchSize]unix.Iovec
	ns    int   // datagrams queued for the flow in sflow
	sent  int   // of which sent
	sbyte int   // bytes sent
	lost  int   // earlier datagrams the target refused (ICMP), reported by sendmmsg
	serr  error // the sendmmsg error, if any
	sflow *udpFlow
}

// serve is the Linux read loop: recvmmsg on the listening socket, and
// sendmmsg of consecutive datagrams of one flow to its target socket.
func (l *udpListener) serve() error {
	rc, err := l.conn.SyscallConn()
	if err != nil {
		return l.serveEach()
	}
	b := new(udpBatch)
	for i := range b.rhdrs {
		b.riovs[i].Base = &b.bufs[i][0]
		b.rhdrs[i].hdr.Iov = &b.riovs[i]
		b.rhdrs[i].hdr.SetIovlen(1)
		b.rhdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		b.siovs[i] = unix.Iovec{}
		b.shdrs[i].hdr.Iov = &b.siovs[i]
		b.shdrs[i].hdr.SetIovlen(1)
	}
	l.batch = b
	recv := func(fd uintptr) bool {
		for i := range b.rhdrs {
			b.riovs[i].SetLen(maxDatagram)
			b.rhdrs[i].hdr.Namelen = unix.SizeofSockaddrInet6
			b.rhdrs[i].hdr.Flags = 0
		}
		n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.rhdrs[0])), udpBatchSize, unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			b.n, b.err = int(n), nil
			return true
		case unix.EAGAIN, unix.EINTR:
			return false // wait until readable
		}
		b.n, b.err = 0, errno
		return true
	}
	for {
		if err := rc.Read(recv); err != nil {
			if done, err := l.readFailed(err); done {
				return err
			}
			continue
		}
		if b.err != nil {
			if done, err := l.readFailed(b.err); done || b.err == unix.EBADF {
				if err == nil {
					err = b.err
				}
				return err
			}
			continue
		}
		for i := range b.n {
			from, ok := sockaddrToAddrPort(&b.names[i])
			if !ok {
				continue
			}
			f := l.flowOf(from)
			if f == nil {
				continue
			}
			if f != b.sflow {
				l.flush()
				b.sflow = f
			}
			b.siovs[b.ns].Base = &b.bufs[i][0]
			b.siovs[b.ns].SetLen(int(b.rhdrs[i].n))
			b.ns++
		}
		l.flush()
	}
}

// flush sends the datagrams queued for one flow with sendmmsg on its
// target socket.
func (l *udpListener) flush() {
	b := l.batch
	f := b.sflow
	n := b.ns
	b.ns, b.sflow = 0, nil
	if n == 0 || f == nil {
		return
	}
	p := l.p
	up := f.target()
	if up == nil {
		return
	}
	b.sent, b.sbyte, b.lost, b.serr = 0, 0, 0, nil
	up.sendq = n
	err := up.rc.Write(up.writeBatch)
	if (err != nil || b.serr != nil) && b.sent < n && up.closed.Load() {
		// Drained or failed over meanwhile: the rest once more on a new
		// socket.
		if up = f.target(); up != nil {
			b.serr = nil
			up.sendq = n
			err = up.rc.Write(up.writeBatch)
		}
	}
	if lost := n - b.sent + b.lost; lost > 0 {
		p.stats.sendErrors.Add(uint64(lost))
	}
	if b.sent > 0 {
		p.stats.datagramsIn.Add(uint64(b.sent))
		p.stats.bytesIn.Add(uint64(b.sbyte))
		if up != nil {
			up.choice.st.bytesIn.Add(uint64(b.sbyte))
		}
	}
}

// initBatch prepares up for batched writes from its listener and for its
// reply reader.
func (up *udpUpstream) initBatch() {
	up.read = up.readReplies
	if rc, err := up.conn.SyscallConn(); err == nil {
		up.rc = rc
	}
	up.writeBatch = func(fd uintptr) bool {
		b := up.f.l.batch
		for b.sent < up.sendq {
			n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.shdrs[b.sent])), uintptr(up.sendq-b.sent), unix.MSG_DONTWAIT, 0, 0)
			switch errno {
			case 0:
			case unix.EAGAIN:
				return false // the socket buffer is full: wait, as a blocking send would
			case unix.EINTR:
				continue
			case unix.ECONNREFUSED:
				// An ICMP error from an earlier datagram, reported now
				// instead of sending this one: that one was lost (and is
				// counted), this one is sent again, the error being
				// cleared. Bounded: a flood of errors gives up.
				if b.lost++; b.lost > up.sendq {
					b.serr = errno
					return true
				}
				continue
			default:
				b.serr = errno
				return true
			}
			for i := b.sent; i < b.sent+int(n); i++ {
				b.sbyte += int(b.siovs[i].Len)
			}
			b.sent += int(n)
		}
		return true
	}
}

// sockaddrToAddrPort converts a socket address the kernel filled in.
func sockaddrToAddrPort(sa *unix.RawSockaddrInet6) (netip.AddrPort, bool) {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa4.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port), true
	case unix.AF_INET6:
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), port), true
	}
	return netip.AddrPort{}, false
}

// replies runs the reply reader of up until its socket closes. It waits
// for readability in Go's netpoller with no buffer held, then drains the
// socket with a pooled buffer, so an idle flow costs a parked goroutine and
// no buffer.
func (up *udpUpstream) replies() {
	defer up.f.l.p.readers.Done()
	rc, err := up.conn.SyscallConn()
	if err != nil {
		return
	}
	// Read returns when the callback gives up on a failed socket, or with
	// an error once the socket is closed.
	_ = rc.Read(up.read)
}

// readReplies is the reply reader's callback: it reads every datagram
// waiting on the socket and sends each to the client from the listener's
// socket, then asks to wait (false) or to stop (true) when the socket
// failed for good.
func (up *udpUpstream) readReplies(fd uintptr) bool {
	f := up.f
	l := f.l
	p := l.p
	bp, _ := p.bufs.Get().(*[maxDatagram]byte)
	if bp == nil {
		bp = new([maxDatagram]byte)
	}
	defer p.bufs.Put(bp)
	for {
		n, err := unix.Read(int(fd), bp[:])
		switch {
		case err == unix.EAGAIN || err == unix.EINTR:
			return false
		case err == unix.ECONNREFUSED:
			// ICMP port unreachable from the target, reported on the
			// connected socket: the datagram was lost.
			p.stats.sendErrors.Add(1)
			continue
		case err != nil:
			return true
		}
		f.sawReply() // a reply is traffic too: refresh the flow, without hashing its key
		m, err := l.conn.WriteToUDPAddrPort(bp[:n], f.key.Src)
		if err != nil {
			p.stats.replyErrors.Add(1)
			continue
		}
		p.stats.datagramsOut.Add(1)
		p.stats.bytesOut.Add(uint64(m))
		up.choice.st.bytesOut.Add(uint64(m))
	}
}
