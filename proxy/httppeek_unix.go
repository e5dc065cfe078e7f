//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package proxy

import "syscall"

// peek looks, without blocking or consuming, for anything on an idle
// connection: only "nothing yet" (EAGAIN) means the target still keeps it
// open and quiet.
func (c *tconn) peek(fd uintptr) {
	_, _, err := syscall.Recvfrom(int(fd), c.pb[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	c.alive = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
}
