package lb

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lbkit/lbkit/internal/syncbuf"
	"github.com/lbkit/lbkit/proxy"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// failServe makes the named listener's proxy end its Serve with an error,
// as a proxy that fails while serving would (validation and Validate keep
// invalid settings out, so this reports a failure in its place), and
// waits until the listener knows.
func failServe(t *testing.T, l *LoadBalancer, name string) *listener {
	t.Helper()
	l.mu.Lock()
	li := l.listeners[name]
	l.mu.Unlock()
	require.NoError(t, l.served(li, name, errors.New("proxy: forced failure")))
	require.Eventually(t, func() bool { return li.failed.Load() != nil }, 10*time.Second, time.Millisecond)
	return li
}

// TestServeFailureRefusesClients: should a proxy's Serve fail, its
// listener's socket closes, so clients are refused at once rather than
// left waiting, and Diagnose says why.
func TestServeFailureRefusesClients(t *testing.T) {
	h := newHTTPTarget(t, "h")
	l := startLB(t,
		WithListener("web", HTTP, "127.0.0.1:0", WithForwardTo("app")),
		WithTargetGroup("app", HTTP, WithTarget(h.addr), WithoutHealthCheck()),
	)
	front := addr(t, l, "web")
	failServe(t, l, "web")
	requireRefused(t, front)
	d := l.Diagnose(Query{})
	require.Len(t, d.Listeners, 1)
	assert.False(t, d.Listeners[0].OK)
	assert.Contains(t, d.Listeners[0].Reasons[0], "not serving: ")
	assert.Contains(t, d.Listeners[0].Reasons[0], "forced failure")
}

// TestInvalidProxyIsNotServed: a listener whose proxy's Validate fails is
// refused by New and Reconfigure before anything changes, and, should one
// reach the running load balancer (forced here), it is not served: the
// error is returned and the proxy that served goes on serving.
func TestInvalidProxyIsNotServed(t *testing.T) {
	// lb checks no bound on connect attempts; the proxy refuses a negative
	// one.
	_, err := New(
		WithListener("tcp", TCP, "127.0.0.1:0", WithForwardTo("app"), WithConnectAttempts(-1)),
		WithTargetGroup("app", TCP, WithTarget("127.0.0.1:1"), WithoutHealthCheck()),
	)
	require.ErrorIs(t, err, proxy.ErrInvalid)
	assert.Contains(t, err.Error(), `listener "tcp": proxy: TCP.ConnectAttempts: -1 is negative`)

	h := newHTTPTarget(t, "h")
	opts := []Option{
		WithListener("web", HTTP, "127.0.0.1:0", WithForwardTo("app")),
		WithTargetGroup("app", HTTP, WithTarget(h.addr), WithoutHealthCheck()),
	}
	l := startLB(t, opts...)
	front := addr(t, l, "web")
	l.mu.Lock()
	li := l.listeners["web"]
	served := li.http
	bad := *li.cfg
	bad.retry.Ratio = 11 // lb's validation refuses it; forced in here
	err = l.serveListener(li, &bad)
	l.mu.Unlock()
	require.ErrorIs(t, err, proxy.ErrInvalid)
	assert.Contains(t, err.Error(), "Retry.Ratio: 11 is outside 0..10")
	assert.Same(t, served, li.http, "the proxy that served goes on")
	body, code := httpGet(t, http.DefaultClient, "http://"+front+"/")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "h", body)

	err = l.Reconfigure(
		WithListener("web", HTTP, "127.0.0.1:0", WithForwardTo("app")),
		WithListener("tcp", TCP, "127.0.0.1:0", WithForwardTo("raw"), WithConnectAttempts(-1)),
		WithTargetGroup("app", HTTP, WithTarget(h.addr), WithoutHealthCheck()),
		WithTargetGroup("raw", TCP, WithTarget(h.addr), WithoutHealthCheck()),
	)
	require.ErrorIs(t, err, proxy.ErrInvalid)
	_, ok := l.Addr("tcp")
	assert.False(t, ok, "nothing changed")
}

// TestReloadRearmsAFailedListener: a listener whose Serve failed (its
// socket closed) is bound again, on the port it had, and serves after the
// next change, whatever that change is.
func TestReloadRearmsAFailedListener(t *testing.T) {
	h := newHTTPTarget(t, "h")
	opts := []Option{
		WithListener("web", HTTP, "127.0.0.1:0", WithForwardTo("app")),
		WithTargetGroup("app", HTTP, WithTarget(h.addr), WithoutHealthCheck()),
	}
	l := startLB(t, opts...)
	front := addr(t, l, "web")
	failServe(t, l, "web")
	requireRefused(t, front)

	require.NoError(t, l.Reconfigure(opts...), "the same configuration: nothing changed but the failed listener")
	assert.Equal(t, front, addr(t, l, "web"), "bound again on the port it had")
	body, code := httpGet(t, http.DefaultClient, "http://"+front+"/")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "h", body)
	d := l.Diagnose(Query{})
	assert.True(t, d.OK, "%v", d.Problems)
}

// failingListener fails its accepts with EMFILE while fail is set.
type failingListener struct {
	net.Listener
	fail atomic.Bool
}

func (f *failingListener) Accept() (net.Conn, error) {
	if f.fail.Load() {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return f.Listener.Accept()
}

// TestAcceptErrorsAreSurvivedAndDiagnosed: a listener whose accepts fail
// (as out of descriptors) keeps its accept loop, says so in Stats and
// Diagnose, logs the episode once at its start and once at its end, and
// serves again as soon as accepting works, without any change.
func TestAcceptErrorsAreSurvivedAndDiagnosed(t *testing.T) {
	e := newEchoTarget(t, "e")
	var logs syncbuf.Buffer
	var failing []*failingListener
	l, err := New(
		WithListener("raw", TCP, "127.0.0.1:0", WithForwardTo("echo")),
		WithTargetGroup("echo", TCP, WithTarget(e.addr), WithoutHealthCheck()),
		WithLogger(slog.New(slog.NewTextHandler(&logs, nil))),
	)
	require.NoError(t, err)
	l.wrapListener = func(ln net.Listener) net.Listener {
		f := &failingListener{Listener: ln}
		failing = append(failing, f)
		return f
	}
	require.NoError(t, l.Start())
	t.Cleanup(func() { l.Close() })
	front := addr(t, l, "raw")
	assert.Equal(t, "e", dialAsk(t, front))

	failing[0].fail.Store(true)
	// The accept in progress takes one more client; then accepts fail.
	c0, err := net.Dial("tcp", front)
	require.NoError(t, err)
	defer c0.Close()
	assert.Equal(t, "e", ask(t, c0, "hi"))
	require.Eventually(t, func() bool {
		st := l.Stats()
		return st.Listeners[0].AcceptErrors >= 3 && !st.Listeners[0].AcceptFailingSince.IsZero()
	}, 10*time.Second, time.Millisecond)
	// A client now waits in the backlog while the loop backs off.
	c, err := net.Dial("tcp", front)
	require.NoError(t, err)
	defer c.Close()
	d := l.Diagnose(Query{})
	assert.False(t, d.OK)
	require.NotEmpty(t, d.Problems)
	assert.Regexp(t, `^listener "raw": cannot accept: too many open files, since \d\d:\d\d:\d\d \(\d+ failed accepts so far; retrying with back-off\)$`, d.Problems[0])
	assert.Equal(t, "too many open files", d.Listeners[0].AcceptError)

	failing[0].fail.Store(false)
	assert.Equal(t, "e", ask(t, c, "hi"), "the waiting client is served once accepting works")
	require.Eventually(t, func() bool { return l.Stats().Listeners[0].AcceptFailingSince.IsZero() }, 10*time.Second, time.Millisecond)
	assert.True(t, l.Diagnose(Query{}).OK)
	out := logs.String()
	assert.Equal(t, 1, strings.Count(out, "cannot accept connections"), out)
	assert.Equal(t, 1, strings.Count(out, "accepting connections again"), out)
	assert.Contains(t, out, "listener=raw")
}
