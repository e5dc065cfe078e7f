package proxy

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lbkit/lbkit/internal/acceptloop"
)

// generation is an http.Server with one set of connection timeouts (idle,
// request headers), serving the connections accepted while those were
// current. net/http reads a server's timeouts for every connection and does
// not let them change, so SetTimeouts changing either starts a new
// generation for new connections while older ones keep serving theirs: a
// changed timeout applies to new connections only, as the reference load
// balancers do.
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

// generation returns the generation for a new connection, starting one
// when the timeouts changed; h.mu must not be held.
func (h *HTTP) generation() (*generation, error) {
	t := h.tmo.Load()
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
			g.failed.Store(&err)
			g.ln.Close()
		}
	}()
	return g, nil
}

// newGeneration builds a generation's server.
func (h *HTTP) newGeneration(t *Timeouts) *generation {
	maxHdr := h.MaxHeaderBytes
	if maxHdr == 0 {
		maxHdr = DefaultMaxHeaderBytes
	}
	g := &generation{idle: t.Idle, header: t.Request,
		ln: &chanListener{ch: make(chan net.Conn), done: make(chan struct{})}}
	g.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: t.Request,
		IdleTimeout:       t.Idle,
		// net/http reads up to MaxHeaderBytes plus 4096 bytes of slack.
		MaxHeaderBytes: max(maxHdr-4096, 1),
		ErrorLog:       log.New(&serverLog{h: h}, "", 0),
		ConnState: func(c net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				g.conns.Add(1)
			case http.StateClosed, http.StateHijacked:
				g.conns.Add(-1)
			}
			h.connState(c, s)
		},
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
		BaseContext: func(net.Listener) context.Context { return h.baseCtx },
	}
	if h.tls != nil {
		// The listener wraps connections in TLS; net/http sees *tls.Conn
		// and offers HTTP/2 because NextProtos does.
		g.srv.TLSConfig = h.tls.cfg
	}
	return g
}

// Serve accepts connections on ln and serves them, over TLS when h.TLS is
// set, until Shutdown or Close; it then returns http.ErrServerClosed. It may
// be called for several listeners. It returns at once with an error when the
// configuration is invalid. An accept error never ends it: out of
// descriptors (EMFILE, ENFILE), buffers or memory, a connection aborted in
// the backlog, or any other error is retried after a back-off (5 ms doubling
// to 1 s, as net/http), counted in Stats (AcceptErrors, AcceptFailingSince)
// and logged to ErrorLog (slog.Default() if nil) once when it starts and
// once when accepting resumes. Only ln being closed by someone else ends
// Serve otherwise.
func (h *HTTP) Serve(ln net.Listener) error {
	if err := h.setup(); err != nil {
		ln.Close()
		return err
	}
	l := &listener{Listener: acceptloop.New(ln, acceptloop.Config{Log: h.errorLog, Counters: &h.stats.accepts}), h: h}
	if h.tls != nil {
		l.tls = h.tls.cfg
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	h.listeners = append(h.listeners, l)
	h.mu.Unlock()

	for {
		c, err := l.Accept()
		if err != nil {
			// Closed: acceptloop retries every other error.
			if h.isClosed() {
				return http.ErrServerClosed
			}
			return err
		}
		if err := h.dispatch(c); err != nil {
			return err
		}
	}
}

// dispatch hands c to the current generation's server. When the proxy is
// closed, or the generation's server failed, it closes c and returns
// http.ErrServerClosed or the failure.
func (h *HTTP) dispatch(c net.Conn) error {
	for {
		g, err := h.generation()
		if err != nil {
			c.Close()
			return err
		}
		select {
		case g.ln.ch <- c:
			return nil
		case <-g.ln.done: // superseded meanwhile: take the next one
			if e := g.failed.Load(); e != nil {
				c.Close()
				return fmt.Errorf("proxy: HTTP server stopped: %w", *e)
			}
		}
	}
}

// errorLog is where accept-error episodes go: ErrorLog, or slog.Default().
func (h *HTTP) errorLog() *slog.Logger { return h.ErrorLog }

func (h *HTTP) isClosed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closed
}

// stop marks the proxy closed, closes its listeners and returns its
// generations.
func (h *HTTP) stop() []*generation {
	h.mu.Lock()
	h.closed = true
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

// Shutdown stops the proxy gracefully, as http.Server.Shutdown does: the
// listeners close at once, idle keep-alive connections close, requests in
// flight finish and their connections then close. Upgraded connections
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
	done := h.handlers.idle()
	select {
	case <-done:
	case <-ctx.Done():
		if err == nil {
			err = ctx.Err()
		}
		h.cancel()
		<-done
	}
	h.cancel()
	h.serving.Wait()
	h.closeTransports()
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
	<-h.handlers.idle()
	h.serving.Wait()
	h.closeTransports()
	return err
}
