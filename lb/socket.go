package lb

import (
	"net"
	"sync"
)

// socket is a listening TCP socket that successive servers take turns on
// without closing it: one accept loop feeds accepted connections to whichever
// view is serving. Replacing a listener's proxy (a setting it fixes at Serve
// changed) opens a view for the new proxy before closing the old proxy's, so
// no client is ever refused and established connections carry on with the
// old proxy until they end.
type socket struct {
	ln    net.Listener
	conns chan net.Conn
	done  chan struct{} // closed when the accept loop has ended
	err   error         // why the accept loop ended; read after done
}

// newSocket starts the accept loop of ln.
func newSocket(ln net.Listener) *socket {
	s := &socket{ln: ln, conns: make(chan net.Conn), done: make(chan struct{})}
	go s.acceptLoop()
	return s
}

func (s *socket) acceptLoop() {
	defer close(s.done)
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			s.err = err
			return
		}
		s.conns <- c // a view always reads until the socket closes
	}
}

// close closes the socket and waits for the accept loop; a connection
// accepted but not yet taken by a view is closed.
func (s *socket) close() {
	s.ln.Close()
	for {
		select {
		case c := <-s.conns:
			c.Close()
		case <-s.done:
			return
		}
	}
}

// view returns a net.Listener over the socket for one server. Closing it
// stops that server's Accept without touching the socket.
func (s *socket) view() *view { return &view{s: s, closed: make(chan struct{})} }

// view is one server's net.Listener over a shared socket.
type view struct {
	s      *socket
	once   sync.Once
	closed chan struct{}
}

// Accept returns the next connection the socket accepted, or net.ErrClosed
// once the view or the socket is closed.
func (v *view) Accept() (net.Conn, error) {
	select {
	case c := <-v.s.conns:
		return c, nil
	case <-v.closed:
		return nil, net.ErrClosed
	case <-v.s.done:
		return nil, net.ErrClosed
	}
}

// Close closes the view; the socket stays open for other views.
func (v *view) Close() error {
	v.once.Do(func() { close(v.closed) })
	return nil
}

// Addr returns the socket's address.
func (v *view) Addr() net.Addr { return v.s.ln.Addr() }
