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
		if testHookUDPRead != nil {
			testHookUDPRead()
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
	f.forwarding()
	b.sent, b.sbyte, b.lost, b.serr = 0, 0, 0, nil
	up.sendq = n
	err := up.rc.Write(up.writeBatch)
	if err != nil {
		b.serr = err // the socket was closed
	}
	if b.serr != nil && b.sent < n && up.closed.Load() {
		// Drained or failed over meanwhile: the rest once more on a new
		// socket, what was sent counted to the old target.
		up.choice.st.bytesIn.Add(uint64(b.sbyte))
		counted := b.sbyte
		if up = f.target(); up != nil {
			b.serr = nil
			up.sendq = n
			if err := up.rc.Write(up.writeBatch); err != nil {
				b.serr = err // closed at once too: the rest is lost, counted below
			}
			up.choice.st.bytesIn.Add(uint64(b.sbyte - counted))
		}
	} else if up != nil {
		up.choice.st.bytesIn.Add(uint64(b.sbyte))
	}
	if lost := n - b.sent + b.lost; lost > 0 {
		p.stats.sendErrors.Add(uint64(lost))
	}
	if b.sent > 0 {
		p.stats.datagramsIn.Add(uint64(b.sent))
		p.stats.bytesIn.Add(uint64(b.sbyte))
		f.countIn(b.sent, b.sbyte)
	}
}

// initBatch prepares up for batched writes from its listener and for its
// reply reader.
func (up *udpUpstream) initBatch() {
	up.read = up.readReplies
	up.sendReplies = up.sendBurst
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

// sockaddr is a client's address as sendmmsg takes it.
type sockaddr struct {
	sa unix.RawSockaddrInet6 // or a RawSockaddrInet4 at its start
	n  uint32                // its length
}

// sockaddrOf converts a client address as the listener reported it (4
// bytes from an IPv4 socket, 16 from an IPv6 one) to the socket address of
// the same family.
func sockaddrOf(a netip.AddrPort) sockaddr {
	var s sockaddr
	if a.Addr().Is4() {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&s.sa))
		sa4.Family = unix.AF_INET
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa4.Port))[:], a.Port())
		sa4.Addr = a.Addr().As4()
		s.n = unix.SizeofSockaddrInet4
		return s
	}
	s.sa.Family = unix.AF_INET6
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&s.sa.Port))[:], a.Port())
	s.sa.Addr = a.Addr().As16()
	s.n = unix.SizeofSockaddrInet6
	return s
}

// replyBatch is a reply reader's buffer, pooled and held only while it
// reads: the replies waiting on a target socket, read one after another
// into buf while a whole datagram still fits, and the headers that send
// them all to the client with one sendmmsg. 128 KiB: at least one largest
// datagram, and 40 or so of a usual size.
type replyBatch struct {
	buf  [2 * maxDatagram]byte
	hdrs [udpBatchSize]mmsghdr
	iovs [udpBatchSize]unix.Iovec
}

// readReplies is the reply reader's callback: it reads the datagrams
// waiting on the socket, a burst at a time, and sends each burst to the
// client from the listener's socket, then asks to wait (false) or to stop
// (true) when the socket failed for good.
//
// A burst is one system call to send and one refresh of the flow instead
// of one each per reply; and it is sent without the listener socket's
// write lock (see sendBurst), which every flow's reader would otherwise
// take in turn for every reply.
func (up *udpUpstream) readReplies(fd uintptr) bool {
	p := up.f.l.p
	rb, _ := p.bufs.Get().(*replyBatch)
	if rb == nil {
		rb = new(replyBatch)
	}
	defer p.bufs.Put(rb)
	for {
		k, off, refused := 0, 0, 0
		var err error
		for k < udpBatchSize && len(rb.buf)-off >= maxDatagram {
			var n int
			n, err = unix.Read(int(fd), rb.buf[off:off+maxDatagram])
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.ECONNREFUSED:
				// ICMP port unreachable from the target, reported on
				// the connected socket: a datagram was lost.
				refused++
				continue
			case err != nil:
			default:
				rb.iovs[k].Base = &rb.buf[off]
				rb.iovs[k].SetLen(n)
				k++
				off += n
				continue
			}
			break
		}
		if refused > 0 {
			p.stats.sendErrors.Add(uint64(refused))
		}
		if k > 0 {
			up.reply(rb, k, off)
		}
		switch err {
		case nil:
			// The batch filled up: read on.
		case unix.EAGAIN:
			return false
		default:
			return true
		}
	}
}

// reply sends the burst of k replies (bytes in all) in rb to the flow's
// client, and counts it.
func (up *udpUpstream) reply(rb *replyBatch, k, bytes int) {
	f := up.f
	l := f.l
	p := l.p
	f.sawReply() // replies are traffic too: refresh the flow, without hashing its key
	for i := range k {
		h := &rb.hdrs[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&f.to.sa))
		h.Namelen = f.to.n
		h.Iov = &rb.iovs[i]
		h.SetIovlen(1)
	}
	up.rb, up.rk, up.rsent, up.rlost, up.rlostBytes = rb, k, 0, 0, 0
	if l.rc == nil || l.rc.Control(up.sendReplies) != nil {
		up.rlost, up.rlostBytes, up.rsent = k, bytes, k // the listener is closed
	}
	for i := up.rsent; i < k; i++ {
		// The socket's send buffer is full: the rest one by one, each
		// waiting for room as a blocking send does.
		if _, err := l.conn.WriteToUDPAddrPort(unsafe.Slice(rb.iovs[i].Base, rb.iovs[i].Len), f.key.Src); err != nil {
			up.rlost++
			up.rlostBytes += int(rb.iovs[i].Len)
		}
	}
	for i := range k {
		rb.hdrs[i].hdr.Name = nil // keep no flow alive from the pool
	}
	up.rb = nil
	if up.rlost > 0 {
		p.stats.replyErrors.Add(uint64(up.rlost))
	}
	if sent := k - up.rlost; sent > 0 {
		n := uint64(bytes - up.rlostBytes)
		p.stats.datagramsOut.Add(uint64(sent))
		p.stats.bytesOut.Add(n)
		up.choice.st.bytesOut.Add(n)
		f.countOut(sent, n)
	}
}

// sendBurst is the callback of the listener's RawConn.Control: sendmmsg of
// the burst in up.rb, without waiting. Control holds a reference to the
// socket (so it cannot be closed and its descriptor reused meanwhile) but
// not its write lock: every flow's reader sends at once, and the kernel
// keeps each datagram whole. It stops at a full send buffer (EAGAIN),
// leaving the rest to reply; a datagram the kernel refuses is counted lost
// and the next one sent.
func (up *udpUpstream) sendBurst(fd uintptr) {
	rb := up.rb
	for up.rsent < up.rk {
		n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&rb.hdrs[up.rsent])), uintptr(up.rk-up.rsent), unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			up.rsent += int(n)
		case unix.EINTR:
		case unix.EAGAIN:
			return
		default:
			up.rlost++
			up.rlostBytes += int(rb.iovs[up.rsent].Len)
			up.rsent++
		}
	}
}
