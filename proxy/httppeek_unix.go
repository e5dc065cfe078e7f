//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package proxy

import "syscall"

// canMerge reports that a request can be written and its answer waited
// for in one step with the poller (see exchange.sendAndWait).
const canMerge = true

// peek looks, without blocking or consuming, for anything on an idle
// connection: only "nothing yet" (EAGAIN) means the target still keeps it
// open and quiet.
func (c *tconn) peek(fd uintptr) { c.alive = peekQuiet(fd, c.pb[:]) }

// peekQuiet reports whether the socket fd has nothing to read and is open.
func peekQuiet(fd uintptr, b []byte) bool {
	_, _, err := syscall.Recvfrom(int(fd), b, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
}

// writeFD writes b[from:] to the non-blocking socket fd, returning how far
// it got; full reports that the socket's buffer filled up first.
func writeFD(fd uintptr, b []byte, from int) (n int, full bool, err error) {
	n = from
	for n < len(b) {
		m, err := syscall.Write(int(fd), b[n:])
		switch err {
		case nil:
			n += m
		case syscall.EINTR:
		case syscall.EAGAIN:
			return n, true, nil
		default:
			return n, false, err
		}
	}
	return n, false, nil
}

// readFD reads from the non-blocking socket fd; again reports that there
// is nothing to read yet.
func readFD(fd uintptr, b []byte) (n int, again bool, err error) {
	for {
		n, err = syscall.Read(int(fd), b)
		switch err {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return 0, true, nil
		}
		return max(n, 0), false, err
	}
}

// peekState looks at the socket fd without consuming: data waiting, or
// the peer gone (EOF or an error); neither means nothing yet.
func peekState(fd uintptr, b []byte) (data, gone bool) {
	n, _, err := syscall.Recvfrom(int(fd), b, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	switch {
	case err == syscall.EAGAIN || err == syscall.EINTR:
		return false, false
	case err != nil || n == 0:
		return false, true
	}
	return true, false
}
