package proxy

import (
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// flakyListener fails its accepts with an error of errno while it is set
// (0: accept normally). It keeps the TCP listener's deadlines, so that the
// accept loop can see an episode end without a client.
type flakyListener struct {
	*net.TCPListener
	errno atomic.Uintptr
}

func (f *flakyListener) Accept() (net.Conn, error) {
	if e := syscall.Errno(f.errno.Load()); e != 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", e)}
	}
	return f.TCPListener.Accept()
}

func newFlakyListener(t *testing.T) *flakyListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	return &flakyListener{TCPListener: ln.(*net.TCPListener)}
}

// wake connects to addr and hangs up: an accept blocked in the kernel since
// before the listener turned flaky returns, and the next one fails. If
// accepts already fail, the connection waits in the backlog, harmless.
func wake(t *testing.T, addr string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	c.Close()
}

// TestServeSurvivesAcceptErrors: the standalone TCP and HTTP proxies' Serve
// never ends on an accept error: not on EMFILE and ENFILE, which they
// backed off on before, and not on ECONNABORTED, ENOBUFS, ENOMEM or EPROTO,
// which used to end them. Each episode is counted and its start shown in
// Stats, and clients are served again once accepting works.
func TestServeSurvivesAcceptErrors(t *testing.T) {
	errnos := []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ECONNABORTED, syscall.ENOBUFS, syscall.ENOMEM, syscall.EPROTO}
	t.Run("tcp", func(t *testing.T) {
		a := startTCPTarget(t, "tcp4", "a", echoHandler)
		p := &TCP{Flows: newTestFlows(t), ErrorLog: (&logBuffer{}).logger()}
		p.SetUpstream(newTestUpstream(t, a))
		ln := newFlakyListener(t)
		errc := make(chan error, 1)
		go func() { errc <- p.Serve(ln) }()
		addr := ln.Addr().String()
		for i, e := range errnos {
			ln.errno.Store(uintptr(e))
			wake(t, addr)
			waitFor(t, "accept errors counted", func() bool {
				st := p.Stats()
				return st.AcceptErrors > uint64(i) && !st.AcceptFailingSince.IsZero()
			})
			ln.errno.Store(0)
			waitFor(t, "episode over", func() bool { return p.Stats().AcceptFailingSince.IsZero() })
			c := dial(t, "tcp4", addr)
			require.Equal(t, "hello", exchangeMsg(t, c, "hello", 0), "served after %v", e)
			c.Close()
		}
		select {
		case err := <-errc:
			t.Fatalf("Serve returned %v", err)
		default:
		}
		require.NoError(t, p.Close())
		require.ErrorIs(t, <-errc, ErrProxyClosed)
	})
	t.Run("http", func(t *testing.T) {
		tg := newTarget(t, "a", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("a")) })
		h := configured(t, &HTTP{ErrorLog: (&logBuffer{}).logger()}, forwardTo(t, upstreamOf(t, "app", tg)))
		ln := newFlakyListener(t)
		errc := make(chan error, 1)
		go func() { errc <- h.Serve(ln) }()
		c := client(t)
		for i, e := range errnos {
			ln.errno.Store(uintptr(e))
			wake(t, ln.Addr().String())
			waitFor(t, "accept errors counted", func() bool {
				st := h.Stats()
				return st.AcceptErrors > uint64(i) && !st.AcceptFailingSince.IsZero()
			})
			ln.errno.Store(0)
			waitFor(t, "episode over", func() bool { return h.Stats().AcceptFailingSince.IsZero() })
			c.CloseIdleConnections()
			code, body := get(t, c, "http://"+ln.Addr().String()+"/")
			assert.Equal(t, http.StatusOK, code, "served after %v", e)
			assert.Equal(t, "a", body)
		}
		select {
		case err := <-errc:
			t.Fatalf("Serve returned %v", err)
		default:
		}
		require.NoError(t, h.Close())
		require.ErrorIs(t, <-errc, http.ErrServerClosed)
	})
}

// TestServeEndsWhenTheListenerIsClosed: closing the listener given to
// Serve (its owner removing it) is the one error that ends Serve.
func TestServeEndsWhenTheListenerIsClosed(t *testing.T) {
	p := &TCP{Flows: newTestFlows(t)}
	ln := newFlakyListener(t)
	errc := make(chan error, 1)
	go func() { errc <- p.Serve(ln) }()
	ln.TCPListener.Close()
	select {
	case err := <-errc:
		require.ErrorIs(t, err, net.ErrClosed)
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	require.NoError(t, p.Close())
}
