package lb

import (
	"net"
	"sync"
	"time"

	"github.com/lbkit/lbkit/internal/acceptloop"
)

// socket is a listening TCP socket that successive servers take turns on
// without closing it: one accept loop feeds accepted connections to whichever
// view is serving. Replacing a listener's proxy (a setting it fixes at Serve
// changed) opens a view for the new proxy before closing the old proxy's, so
// no client is ever refused and established connections carry on with the
// old proxy until they end.
//
// The accept loop ends only when the socket is closed: every accept error
// (out of descriptors, buffers or memory; a connection aborted in the
// backlog; anything else) is retried with a back-off by acceptloop, counted
// and logged once per episode, and accepting resumes by itself.
type socket struct {
	ln    *acceptloop.Listener
	conns chan net.Conn
	done  chan struct{} // closed when the accept loop has ended
}

// newSocket starts the accept loop of ln; cfg says where its accept-error
// episodes are logged.
func newSocket(ln net.Listener, cfg acceptloop.Config) *socket {
	s := &socket{ln: acceptloop.New(ln, cfg), conns: make(chan net.Conn), done: make(chan struct{})}
	go s.acceptLoop()
	return s
}

func (s *socket) acceptLoop() {
	defer close(s.done)
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return // closed: acceptloop retries everything else
		}
		s.conns <- c // a view always reads until the socket closes
	}
}

// acceptStats returns the socket's accept errors and the start of the
// current episode, if any.
func (s *socket) acceptStats() acceptloop.Stats { return s.ln.Stats() }

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

// stop closes the socket for a graceful stop: a connection the accept loop
// took from the kernel meanwhile goes to the view still serving, whose
// server answers it, rather than being closed (its client connected just
// before, as in a binary upgrade, whose next process shares the socket and
// takes the ones after). If no view takes it within stopWait, close.
func (s *socket) stop() {
	s.ln.Close()
	t := time.NewTimer(stopWait)
	defer t.Stop()
	select {
	case <-s.done:
	case <-t.C:
		s.close()
	}
}

// stopWait bounds how long stop waits for a serving view to take a
// connection accepted as the socket closed.
const stopWait = time.Second

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
