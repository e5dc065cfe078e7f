//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package proxy

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// smallReader reads a TCP connection for copySmall into a pooled buffer that
// it takes only when there is something to read: it reads in the
// connection's RawConn callback, and when the read would block it gives the
// buffer back before Go's netpoller waits. So an idle connection holds no
// buffer, for the same system calls as a plain Read.
type smallReader struct {
	rc   syscall.RawConn
	bufs *sync.Pool
	bp   *[smallCopyBuf]byte
	n    int
	err  error
	fn   func(fd uintptr) bool // r.read, bound once
}

// newSmallReader returns a smallReader for c, or nil when c is not a TCP
// connection (copySmall then reads as usual).
func newSmallReader(c net.Conn, bufs *sync.Pool) *smallReader {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	r := &smallReader{rc: rc, bufs: bufs}
	r.fn = r.read
	return r
}

// next reads once: the buffer read into (the caller gives it back to the
// pool), the bytes read and the read's error (io.EOF at the end).
func (r *smallReader) next() (*[smallCopyBuf]byte, int, error) {
	if err := r.rc.Read(r.fn); err != nil {
		if r.bp != nil {
			r.bufs.Put(r.bp)
			r.bp = nil
		}
		return nil, 0, err
	}
	bp := r.bp
	r.bp = nil
	return bp, r.n, r.err
}

// read is the RawConn callback: false to wait for readability, having given
// the buffer back.
func (r *smallReader) read(fd uintptr) bool {
	if r.bp == nil {
		r.bp = smallBuf(r.bufs)
	}
	for {
		n, err := syscall.Read(int(fd), r.bp[:])
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK:
			r.bufs.Put(r.bp)
			r.bp = nil
			return false
		case err != nil:
			r.n, r.err = 0, os.NewSyscallError("read", err)
		case n == 0:
			r.n, r.err = 0, io.EOF
		default:
			r.n, r.err = n, nil
		}
		return true
	}
}
