package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lbkit/lbkit/flowtable"
	"github.com/lbkit/lbkit/internal/acceptloop"
)

// listener is one net.Listener served by Serve.
type listener struct {
	net.Listener
}

// generation is an http.Server with one set of connection timeouts (idle,
// header), serving the HTTP/2 connections accepted while those were
// current. net/http reads a server's timeouts for every connection and does
// not let them change, so SetTimeouts changing either starts a new
// generation for new connections while older ones keep serving theirs: a
// changed timeout applies to new connections only, as the reference load
// balancers do. (The engine's HTTP/1.1 connections keep the timeouts they
// were accepted with by themselves.)
type generation struct {
	srv          *http.Server
	ln           *chanListener
	idle, header time.Duration
	conns        atomic.Int64          // open connections
	failed       atomic.Pointer[error] // why its server stopped serving by itself
}

// chanListener hands a generation's server the connections Serve accepted
// for it.
type chanListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{} }

// generation returns the HTTP/2 generation for a new connection, starting
// one when the timeouts changed; h.mu must not be held.
func (h *HTTP) generation(t *Timeouts) (*generation, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, http.ErrServerClosed
	}
	if n := len(h.gens); n > 0 {
		if g := h.gens[n-1]; g.idle == t.Idle && g.header == t.Request {
			return g, nil
		}
		// Superseded: its server stops accepting (its connections live
		// on), and earlier ones with no connection left are let go.
		h.gens[n-1].ln.Close()
		keep := h.gens[:0]
		for i, g := range h.gens {
			if i == n-1 || g.conns.Load() > 0 {
				keep = append(keep, g)
			} else {
				g.srv.Close()
			}
		}
		h.gens = keep
	}
	g := h.newGeneration(t)
	h.gens = append(h.gens, g)
	h.serving.Add(1)
	go func() {
		defer h.serving.Done()
		// Serve returns when the generation is superseded or closed, or
		// at once when net/http refuses the server's settings.
		if err := g.srv.Serve(g.ln); !errors.Is(err, http.ErrServerClosed) {
			// net/http refused the server's settings: Serve ends with
			// the reason, as no HTTPS connection could be served right.
			g.failed.Store(&err)
			g.ln.Close()
			h.failed.Store(&err)
			h.mu.Lock()
			lns := h.listeners
			h.mu.Unlock()
			for _, l := range lns {
				l.Close()
			}
		}
	}()
	return g, nil
}

// newGeneration builds a generation's server.
func (h *HTTP) newGeneration(t *Timeouts) *generation {
	g := &generation{idle: t.Idle, header: t.Request,
		ln: &chanListener{ch: make(chan net.Conn), done: make(chan struct{})}}
	g.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: t.Request,
		IdleTimeout:       t.Idle,
		MaxHeaderBytes:    h.maxHeaderBytes(),
		ErrorLog:          log.New(&serverLog{h: h}, "", 0),
		ConnState: func(c net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				g.conns.Add(1)
				h.h2conns.Add(1)
			case http.StateClosed, http.StateHijacked:
				g.conns.Add(-1)
				h.h2conns.Done()
				h.endConn()
			}
		},
		BaseContext: func(net.Listener) context.Context { return h.baseCtx },
		TLSConfig:   h.tls.cfg,
		// RFC 9113's default frame size, announced and enforced: a
		// client's larger frame is a FRAME_SIZE_ERROR (net/http would
		// accept 1 MiB frames), and no stream needs more to be fast.
		HTTP2: &http.HTTP2Config{MaxReadFrameSize: 16 << 10},
	}
	return g
}

// serverLog receives net/http's error log (its HTTP/2 server's): it passes
// the lines to ErrorLog.
type serverLog struct{ h *HTTP }

func (l *serverLog) Write(p []byte) (int, error) {
	if l.h.ErrorLog != nil {
		l.h.ErrorLog.Warn(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// Serve accepts connections on ln and serves them, over TLS when h.TLS is
// set, until Shutdown or Close; it then returns http.ErrServerClosed. It may
// be called for several listeners. It returns at once with an error when the
// configuration is invalid. HTTP/1.1 connections are served by lbkit's
// engine; HTTPS connections that negotiate HTTP/2 by net/http's HTTP/2
// server.
//
// An accept error never ends it: out of descriptors (EMFILE, ENFILE),
// buffers or memory, a connection aborted in the backlog, or any other error
// is retried after a back-off (5 ms doubling to 1 s, as net/http), counted
// in Stats (AcceptErrors, AcceptFailingSince) and logged to ErrorLog
// (slog.Default() if nil) once when it starts and once when accepting
// resumes. Only ln being closed by someone else ends Serve otherwise.
func (h *HTTP) Serve(ln net.Listener) error {
	if err := h.setup(); err != nil {
		ln.Close()
		return err
	}
	l := &listener{Listener: acceptloop.New(ln, acceptloop.Config{Log: func() *slog.Logger { return h.ErrorLog }, Counters: &h.stats.accepts})}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	h.listeners = append(h.listeners, l)
	h.mu.Unlock()

	for {
		// Each connection's goroutine is counted in h.engines before it
		// is accepted, under the lock that Shutdown and Close take to
		// stop the proxy: a connection accepted as the proxy stops is
		// then served (Shutdown waits for it), never left unwaited.
		if !h.reserve() {
			return http.ErrServerClosed
		}
		c, err := l.Accept()
		if err != nil {
			h.engines.Done()
			// Closed: acceptloop retries every other error.
			if f := h.failed.Load(); f != nil {
				return fmt.Errorf("proxy: HTTP server stopped: %w", *f)
			}
			if h.isClosed() {
				return http.ErrServerClosed
			}
			return err
		}
		if err := h.admit(c); err != nil {
			return err
		}
	}
}

// reserve counts a connection about to be accepted in h.engines, unless
// the proxy was stopped.
func (h *HTTP) reserve() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.engines.Add(1)
	return true
}

// admit does the accept loop's share of a new connection: the ACL, checked
// before any byte is read, then the connection's goroutine, which takes
// over the connection's count in h.engines (see reserve).
func (h *HTTP) admit(c net.Conn) error {
	admitted := false
	defer func() {
		if !admitted {
			h.engines.Done()
		}
	}()
	peer := addrPortOf(c.RemoteAddr())
	if !h.acl.Load().Allows(peer.Addr()) {
		h.stats.refusedConns.Add(1)
		if h.OnRefuse != nil {
			h.OnRefuse(Refusal{Proto: flowtable.TCP, Client: peer, Reason: RefusedACL, Err: ErrDenied})
		}
		c.Close()
		return nil
	}
	if !h.Descriptors.take(HTTPDescriptors) {
		h.stats.rejectedDescriptors.Add(1)
		if h.OnRefuse != nil {
			h.OnRefuse(Refusal{Proto: flowtable.TCP, Client: peer, Reason: RefusedDescriptors, Err: ErrDescriptors})
		}
		resetClose(c)
		return nil
	}
	if tc := tcpConnOf(c); tc != nil {
		// The proxy's keepalive probes keep dead clients from holding a
		// connection for ever; net/http's server turns them on too.
		_ = tc.SetKeepAlive(true)
	}
	h.stats.conns.Add(1)
	h.stats.activeConns.Add(1)
	port := ""
	if la, ok := c.LocalAddr().(*net.TCPAddr); ok {
		port = strconv.Itoa(la.Port)
	}
	tmo := h.tmo.Load()
	if h.tls == nil {
		admitted = true
		if ls := h.eventLoops(); ls != nil && ls.adopt(c, unmapped(peer), port, tmo) {
			return nil
		}
		go func() {
			defer h.engines.Done()
			h.serveEngine(c, unmapped(peer), port, tmo)
		}()
		return nil
	}
	g, err := h.generation(tmo)
	if err != nil {
		c.Close()
		h.endConn()
		return err
	}
	admitted = true
	go func() {
		defer h.engines.Done()
		h.serveTLS(c, g, unmapped(peer), port, tmo)
	}()
	return nil
}

// serveTLS completes an HTTPS connection's handshake within the request
// timeout and serves it: HTTP/2 by its generation's server, HTTP/1.1 by the
// engine. A client speaking plain HTTP to the port is answered 400 and
// logged, as net/http does.
func (h *HTTP) serveTLS(c net.Conn, g *generation, peer netip.AddrPort, port string, tmo *Timeouts) {
	tc := tls.Server(c, h.tls.cfg)
	_ = c.SetDeadline(time.Now().Add(tmo.Request))
	err := tc.HandshakeContext(h.baseCtx)
	if err != nil {
		h.stats.tlsErrors.Add(1)
		var rhe tls.RecordHeaderError
		if errors.As(err, &rhe) && rhe.Conn != nil && looksLikeHTTP(rhe.RecordHeader[:]) {
			_, _ = io.WriteString(rhe.Conn, "HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
			h.stats.malformed.Add(1)
			h.stats.hot[0].observe(http.StatusBadRequest)
			h.logRefused(peer, http.StatusBadRequest, "plain HTTP request to an HTTPS listener", nil)
		} else if h.ErrorLog != nil {
			h.ErrorLog.Warn(fmt.Sprintf("http: TLS handshake error from %s: %v", c.RemoteAddr(), err))
		}
		c.Close()
		h.endConn()
		return
	}
	_ = c.SetDeadline(time.Time{})
	if tc.ConnectionState().NegotiatedProtocol == "h2" {
		select {
		case g.ln.ch <- tc:
			return // the generation's server owns it now
		case <-g.ln.done:
			// Superseded or closed meanwhile: the next one.
			if g2, err := h.generation(tmo); err == nil && g2 != g {
				select {
				case g2.ln.ch <- tc:
					return
				case <-g2.ln.done:
				}
			}
			tc.Close()
			h.endConn()
			return
		}
	}
	h.serveEngine(tc, peer, port, tmo)
}

// endConn accounts for a client connection's end.
func (h *HTTP) endConn() {
	h.stats.activeConns.Add(-1)
	h.Descriptors.release(HTTPDescriptors)
}

// looksLikeHTTP reports whether the first bytes of a connection are an
// HTTP request's.
func looksLikeHTTP(b []byte) bool {
	for _, m := range []string{"GET /", "HEAD ", "POST ", "PUT /", "OPTIO", "DELET", "PATCH", "CONNE", "TRACE"} {
		if string(b) == m[:len(b)] {
			return true
		}
	}
	return false
}

func (h *HTTP) isClosed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closed
}

// shuttingDown reports whether Shutdown or Close was called: connections
// close after their current request.
func (h *HTTP) shuttingDown() bool { return h.stopping.Load() }

// track registers an engine connection, or reports false when the
// proxy's connections were cut (Close, or Shutdown's deadline).
func (h *HTTP) track(c *conn1) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	// A connection accepted before Shutdown is served (Shutdown waits for
	// it, see closeEngineConns); once Close or Shutdown's deadline cut the
	// connections (h.cancel, then closeEngineConns under h.mu), one that
	// comes late is refused instead of missed.
	if h.baseCtx.Err() != nil {
		return false
	}
	if h.conns == nil {
		h.conns = make(map[*conn1]struct{})
	}
	h.conns[c] = struct{}{}
	return true
}

func (h *HTTP) untrack(c *conn1) {
	h.mu.Lock()
	delete(h.conns, c)
	h.mu.Unlock()
}

// stop marks the proxy closed, closes its listeners and returns its
// generations.
func (h *HTTP) stop() []*generation {
	h.mu.Lock()
	h.closed = true
	h.stopping.Store(true)
	gens, lns := h.gens, h.listeners
	h.mu.Unlock()
	for _, l := range lns {
		l.Close()
	}
	for _, g := range gens {
		g.ln.Close()
	}
	return gens
}

// newConnGrace is how long Shutdown lets a new connection send its first
// request (net/http's Server.Shutdown waits as long for one).
const newConnGrace = 5 * time.Second

// closeEngineConns closes the engine's connections: all of them, or the
// idle ones only (kept alive between requests, or new and silent for
// newConnGrace).
func (h *HTTP) closeEngineConns(idleOnly bool) {
	h.mu.Lock()
	var cs []*conn1
	now := time.Now()
	for c := range h.conns {
		switch st := c.state.Load(); {
		case !idleOnly, st == connIdle,
			st == connNew && now.Sub(c.born) > newConnGrace:
			cs = append(cs, c)
		}
	}
	h.mu.Unlock()
	for _, c := range cs {
		c.lost.Store(true)
		c.nc.Close()
	}
	if ls := h.runningLoops(); ls != nil {
		ls.closeConns(idleOnly)
	}
}

// testEventLoop turns HTTP.EventLoop on for every proxy: the package's
// tests run once with it (LBKIT_TEST_EVENTLOOP=1, see TestMain).
var testEventLoop bool

// eventLoops returns the proxy's event loops (HTTP.EventLoop), started on
// first use; nil when it serves with goroutines only.
func (h *HTTP) eventLoops() *evloops {
	if !h.EventLoop && !testEventLoop {
		return nil
	}
	h.loopsOnce.Do(func() {
		ls, err := startLoops(h, runtime.GOMAXPROCS(0))
		if err != nil {
			if runtime.GOOS == "linux" && h.ErrorLog != nil {
				h.ErrorLog.Error("proxy: event loops did not start; serving with goroutines", "err", err)
			}
			return
		}
		h.mu.Lock()
		h.loops = ls
		h.mu.Unlock()
	})
	return h.runningLoops()
}

// runningLoops returns the event loops if they were started.
func (h *HTTP) runningLoops() *evloops {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.loops
}

// Shutdown stops the proxy gracefully, as http.Server.Shutdown does: the
// listeners close at once, idle keep-alive connections close, requests in
// flight finish and their connections then close. A connection accepted
// but still without a request has 5 seconds to send one, which is then
// served (its client connected just before the close). Upgraded connections
// (WebSocket) last until ctx is done. When ctx is done first, everything is
// closed at once and ctx's error returned. Serve then returns
// http.ErrServerClosed.
//
// To retire a proxy without closing its clients' keep-alive connections
// under them (a listener replaced on the same socket), close the listener
// given to Serve, wait for Stats().ActiveConnections to reach zero as the
// connections idle out, then Close; the lb package does so.
func (h *HTTP) Shutdown(ctx context.Context) error {
	_ = h.setup()
	gens := h.stop()
	var err error
	for _, g := range gens {
		if err == nil {
			err = g.srv.Shutdown(ctx)
		}
		if err != nil {
			g.srv.Close()
		}
	}
	done := make(chan struct{})
	go func() {
		h.engines.Wait()
		close(done)
	}()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
wait:
	for {
		// Connections that go idle after finishing a request close by
		// themselves; this catches those idle all along.
		h.closeEngineConns(true)
		select {
		case <-done:
			break wait
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
			h.cancel()
			h.closeEngineConns(false)
			<-done
			break wait
		case <-t.C:
		}
	}
	hdone := h.handlers.idle()
	select {
	case <-hdone:
	case <-ctx.Done():
		if err == nil {
			err = ctx.Err()
		}
		h.cancel()
		<-hdone
	}
	h.finish()
	return err
}

// Close stops the proxy at once: listeners and connections close, requests
// in flight and upgraded connections are cut. It waits for their handlers
// to return.
func (h *HTTP) Close() error {
	_ = h.setup()
	gens := h.stop()
	h.cancel()
	var err error
	for _, g := range gens {
		if e := g.srv.Close(); e != nil && err == nil {
			err = e
		}
	}
	h.closeEngineConns(false)
	h.engines.Wait()
	<-h.handlers.idle()
	// net/http's HTTP/2 connections end by themselves once closed (one
	// that was sending GOAWAY within its second): wait, so that nothing
	// outlives Close.
	h.h2conns.Wait()
	h.finish()
	return err
}

// finish releases what outlives the connections.
func (h *HTTP) finish() {
	h.cancel()
	h.serving.Wait()
	h.drainWG.Wait()
	h.closePools()
	if ls := h.runningLoops(); ls != nil {
		ls.stop()
	}
}
