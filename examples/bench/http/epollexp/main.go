//go:build linux

package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18087", "address to listen on (127.0.0.1 only)")
	target := flag.String("target", "127.0.0.1:18080", "the targets' addresses, comma-separated (loopback only)")
	flag.Parse()
	p, err := start(*listen, *target, runtime.GOMAXPROCS(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "epollexp:", err)
		os.Exit(2)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	p.stop()
}

// proxy is the running loops.
type proxy struct {
	addr  netip.AddrPort // where it listens
	loops []*loop
	wg    sync.WaitGroup
}

// start listens on listen (port 0 picks one) with n loops.
func start(listen, target string, n int) (*proxy, error) {
	la, err := netip.ParseAddrPort(listen)
	if err != nil || !la.Addr().Is4() || !la.Addr().IsLoopback() {
		return nil, errors.New("-listen must be a 127.0.0.0/8 address and port")
	}
	var targets []netip.AddrPort
	for _, s := range strings.Split(target, ",") {
		a, err := netip.ParseAddrPort(s)
		if err != nil || !a.Addr().Is4() || !a.Addr().IsLoopback() {
			return nil, fmt.Errorf("target %q: must be a 127.0.0.0/8 address and port", s)
		}
		targets = append(targets, a)
	}
	p := &proxy{addr: la}
	for i := range n {
		l, err := newLoop(p.addr, targets, i)
		if err != nil {
			p.stop()
			return nil, err
		}
		if p.addr.Port() == 0 {
			// The first loop's port, for the others to share.
			sa, err := unix.Getsockname(l.ln)
			if err != nil {
				l.free()
				p.stop()
				return nil, err
			}
			p.addr = netip.AddrPortFrom(la.Addr(), uint16(sa.(*unix.SockaddrInet4).Port))
		}
		p.loops = append(p.loops, l)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			l.run()
		}()
	}
	return p, nil
}

// stop ends the loops and closes every socket.
func (p *proxy) stop() {
	for _, l := range p.loops {
		var one [8]byte
		one[0] = 1
		_, _ = unix.Write(l.wake, one[:])
	}
	p.wg.Wait()
}

const bufSize = 4096

// conn is a client or target socket of one loop.
type conn struct {
	fd     int
	client bool
	buf    []byte
	n      int
	peer   *conn // client: its target while a request is out; target: its client
}

// loop is one event loop: its epoll instance, its listener and the
// connections it accepted or made. Only its goroutine touches it.
type loop struct {
	ep      int
	ln      int
	wake    int // an eventfd: written to stop the loop
	targets []netip.AddrPort
	next    int           // round robin
	conns   map[int]*conn // by descriptor
	idle    [][]*conn     // per target: idle keep-alive connections
	tidx    map[*conn]int // a target connection's target
	out     []byte        // the request head being written
}

// newLoop makes loop i, listening on la with SO_REUSEPORT.
func newLoop(la netip.AddrPort, targets []netip.AddrPort, i int) (*loop, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	ln, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		unix.Close(ep)
		return nil, err
	}
	_ = unix.SetsockoptInt(ln, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	_ = unix.SetsockoptInt(ln, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	if err := unix.Bind(ln, &unix.SockaddrInet4{Port: int(la.Port()), Addr: la.Addr().As4()}); err != nil {
		unix.Close(ln)
		unix.Close(ep)
		return nil, err
	}
	if err := unix.Listen(ln, 4096); err != nil {
		unix.Close(ln)
		unix.Close(ep)
		return nil, err
	}
	l := &loop{ep: ep, ln: ln, wake: -1, targets: targets, conns: map[int]*conn{}, idle: make([][]*conn, len(targets)), tidx: map[*conn]int{}}
	l.next = i
	if l.wake, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		l.free()
		return nil, err
	}
	for _, fd := range []int{ln, l.wake} {
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
			l.free()
			return nil, err
		}
	}
	return l, nil
}

// free closes the loop's sockets and descriptors.
func (l *loop) free() {
	for _, c := range l.conns {
		unix.Close(c.fd)
	}
	for _, fd := range []int{l.ln, l.wake, l.ep} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

// run serves until the wake eventfd is written to, then frees the loop.
func (l *loop) run() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer l.free()
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(l.ep, events, -1)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			fmt.Fprintln(os.Stderr, "epollexp: epoll_wait:", err)
			return
		}
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			if fd == l.wake {
				return
			}
			if fd == l.ln {
				l.accept()
				continue
			}
			if c := l.conns[fd]; c != nil {
				if c.client {
					l.clientReadable(c)
				} else {
					l.targetReadable(c)
				}
			}
		}
	}
}

// accept takes the new connections of the loop's listener.
func (l *loop) accept() {
	for {
		fd, _, err := unix.Accept4(l.ln, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			return
		}
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		c := &conn{fd: fd, client: true, buf: make([]byte, bufSize)}
		l.conns[fd] = c
		_ = unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)})
	}
}

// close closes c and, if an exchange was under way, its peer: a client
// without its answer, or a target connection with a request out, which
// cannot be reused.
func (l *loop) close(c *conn) {
	delete(l.conns, c.fd)
	unix.Close(c.fd)
	if !c.client {
		i := l.tidx[c]
		delete(l.tidx, c)
		for j, t := range l.idle[i] {
			if t == c {
				l.idle[i] = append(l.idle[i][:j], l.idle[i][j+1:]...)
				break
			}
		}
	}
	if p := c.peer; p != nil {
		c.peer, p.peer = nil, nil
		l.close(p)
	}
}

var headEnd = []byte("\r\n\r\n")

// clientReadable reads a request and sends it to a target.
func (l *loop) clientReadable(c *conn) {
	if c.peer != nil {
		// A request while one is out (pipelining) is not supported.
		l.close(c)
		return
	}
	m, err := unix.Read(c.fd, c.buf[c.n:])
	if m <= 0 || err != nil {
		if err == unix.EAGAIN {
			return
		}
		l.close(c)
		return
	}
	c.n += m
	end := bytes.Index(c.buf[:c.n], headEnd)
	if end < 0 {
		if c.n == len(c.buf) {
			l.close(c)
		}
		return
	}
	end += 4
	// The request head, with X-Forwarded-For added, to the target.
	l.out = append(l.out[:0], c.buf[:end-2]...)
	l.out = append(l.out, "X-Forwarded-For: 127.0.0.1\r\n\r\n"...)
	c.n = copy(c.buf, c.buf[end:c.n])
	t := l.target()
	if t == nil {
		l.close(c)
		return
	}
	if w, err := unix.Write(t.fd, l.out); err != nil || w != len(l.out) {
		l.close(t)
		l.close(c)
		return
	}
	t.peer, c.peer = c, t
}

// target returns a connection to the next target, round robin: an idle
// one, or a new one.
func (l *loop) target() *conn {
	i := l.next % len(l.targets)
	l.next++
	if n := len(l.idle[i]); n > 0 {
		t := l.idle[i][n-1]
		l.idle[i] = l.idle[i][:n-1]
		return t
	}
	// A blocking connect: new target connections are made during the
	// warm-up only, and the measurement is of the steady state.
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	a := l.targets[i]
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: int(a.Port()), Addr: a.Addr().As4()}); err != nil {
		unix.Close(fd)
		return nil
	}
	_ = unix.SetNonblock(fd, true)
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	t := &conn{fd: fd, buf: make([]byte, bufSize)}
	l.conns[fd] = t
	l.tidx[t] = i
	_ = unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)})
	return t
}

var clHeader = []byte("\r\nContent-Length: ")

// targetReadable reads a response and, once it is whole, writes it to
// its client.
func (l *loop) targetReadable(t *conn) {
	c := t.peer
	if c == nil {
		l.close(t) // an idle target connection closed or sent something
		return
	}
	m, err := unix.Read(t.fd, t.buf[t.n:])
	if m <= 0 || err != nil {
		if err == unix.EAGAIN {
			return
		}
		l.close(t)
		return
	}
	t.n += m
	end := bytes.Index(t.buf[:t.n], headEnd)
	if end < 0 {
		return
	}
	end += 4
	i := bytes.Index(t.buf[:end], clHeader)
	if i < 0 {
		l.close(t)
		return
	}
	j := i + len(clHeader)
	k := bytes.IndexByte(t.buf[j:end], '\r')
	size, err := strconv.Atoi(string(t.buf[j : j+k]))
	if err != nil || end+size > len(t.buf) {
		l.close(t)
		return
	}
	if t.n < end+size {
		return
	}
	if w, err := unix.Write(c.fd, t.buf[:end+size]); err != nil || w != end+size {
		l.close(t)
		return
	}
	t.n = copy(t.buf, t.buf[end+size:t.n])
	t.peer, c.peer = nil, nil
	ti := l.tidx[t]
	l.idle[ti] = append(l.idle[ti], t)
}
