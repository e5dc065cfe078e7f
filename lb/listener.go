package lb

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/lbkit/lbkit/flowtable"
	"github.com/lbkit/lbkit/proxy"
)

// listener is a running listener: its socket and the proxy serving it.
type listener struct {
	cfg   *listenerConfig
	addr  net.Addr
	sock  *socket        // TCP, TLS, HTTP, HTTPS
	pc    net.PacketConn // UDP
	certs *proxy.Certificates

	// Exactly one of these serves at a time; replaced (TCP kinds) when a
	// setting the proxy fixes at Serve changes.
	tcp  *proxy.TCP
	udp  *proxy.UDP
	http *proxy.HTTP
	view *view

	// failed holds why the listener stopped serving, if it did: its socket
	// is then closed, so clients are refused rather than left waiting.
	failed atomic.Pointer[error]

	// flowLog is the flow log of an L4 listener (FlowLog), nil for none;
	// set from cfg by configureListener.
	flowLog atomic.Pointer[flowLogger]
}

// server is what the three proxies have in common.
type server interface {
	Shutdown(ctx context.Context) error
	Close() error
}

func (li *listener) server() server {
	switch {
	case li.tcp != nil:
		return li.tcp
	case li.udp != nil:
		return li.udp
	case li.http != nil:
		return li.http
	}
	return nil
}

// newProxy makes the proxy of a listener with its start-up configuration
// taken from cfg (the fields that fixedAtServe lists); the caller adds what
// the running load balancer shares, and configureListener the live
// settings. Exactly one of the results is set.
func newProxy(cfg *listenerConfig, certs *proxy.Certificates) (*proxy.TCP, *proxy.UDP, *proxy.HTTP) {
	switch cfg.proto {
	case TCP, TLS:
		return &proxy.TCP{ConnectAttempts: cfg.connectAttempts}, nil, nil
	case UDP:
		return nil, &proxy.UDP{}, nil
	}
	h := &proxy.HTTP{
		Forwarded:      cfg.forwarded,
		MaxHeaderBytes: cfg.maxHeaderBytes,
		MaxBodyBytes:   cfg.maxBodyBytes,
		MaxURILength:   cfg.maxURILength,
		Retry:          cfg.retry,
		AccessLog:      cfg.accessLog,
		RequestID:      cfg.requestID,
		Observer:       cfg.observer,
		EventLoop:      cfg.eventLoop,
	}
	if cfg.proto == HTTPS {
		h.TLS = &proxy.TLS{
			Certificates:    certs,
			MinVersion:      cfg.minTLS,
			CipherSuites:    cfg.ciphers,
			ClientAuth:      cfg.clientAuth,
			ClientCAs:       cfg.clientCAs,
			ClientAuthHosts: cfg.clientHosts,
			DisableHTTP2:    cfg.disableHTTP2,
		}
	}
	return nil, nil, h
}

// proxyProblems returns the problems the Validate of cfg's proxy reports,
// each wrapping proxy.ErrInvalid: the last guard behind lb's own checks,
// run by validate so that New and Reconfigure refuse what the proxy would
// refuse, before anything changes.
func (cfg *listenerConfig) proxyProblems() []error {
	tcp, udp, h := newProxy(cfg, new(proxy.Certificates))
	var err error
	switch {
	case tcp != nil:
		err = tcp.Validate()
	case udp != nil:
		err = udp.Validate()
	default:
		err = h.Validate()
	}
	if _, one := err.(*proxy.ConfigError); !one {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			return j.Unwrap() // errors.Join's
		}
	}
	if err != nil {
		return []error{err}
	}
	return nil
}

// validate returns the Validate error of li's proxy, or nil.
func (li *listener) validate() error {
	var err error
	switch {
	case li.tcp != nil:
		err = li.tcp.Validate()
	case li.udp != nil:
		err = li.udp.Validate()
	case li.http != nil:
		err = li.http.Validate()
	}
	if err != nil {
		return &FieldError{Object: Object{Kind: KindListener, Name: li.cfg.name, Index: -1}, Err: invalidBy(err)}
	}
	return nil
}

// serveListener makes a proxy for cfg and starts it on li's socket, then
// retires the proxy that served before, if any (it finishes what it has).
// A proxy whose Validate fails is not served: the error is returned.
func (l *LoadBalancer) serveListener(li *listener, cfg *listenerConfig) error {
	tcp, udp, h := newProxy(cfg, li.certs)
	switch {
	case tcp != nil:
		tcp.Flows, tcp.Descriptors, tcp.OnRefuse = l.flows, l.fds, l.refused(li, cfg.name)
		tcp.OnFlowEnd = l.flowEnded(li, cfg.name)
	case udp != nil:
		udp.Flows, udp.Descriptors, udp.OnRefuse = l.flows, l.fds, l.refused(li, cfg.name)
		udp.OnFlowEnd = l.flowEnded(li, cfg.name)
	case h != nil:
		h.Descriptors, h.OnRefuse = l.fds, l.refused(li, cfg.name)
		h.ErrorLog = l.log().With("listener", cfg.name)
	}
	old := li.server() // nil when starting
	oldCfg := li.cfg
	li.tcp, li.udp, li.http = tcp, udp, h
	li.cfg = cfg
	err := li.validate()
	if err == nil {
		err = l.configureListener(li)
	}
	if err != nil {
		// The proxy that served, if any, goes on serving.
		li.tcp, li.udp, li.http = nil, nil, nil
		switch s := old.(type) {
		case *proxy.TCP:
			li.tcp = s
		case *proxy.UDP:
			li.udp = s
		case *proxy.HTTP:
			li.http = s
		}
		li.cfg = oldCfg
		return err
	}
	name := cfg.name
	if li.udp != nil { // UDP fixes nothing at Serve: it is served once
		p, pc := li.udp, li.pc
		l.eg.Go(func() error { return l.served(li, name, p.Serve(pc)) })
		return nil
	}
	v := li.sock.view()
	switch {
	case li.tcp != nil:
		p := li.tcp
		l.eg.Go(func() error { return l.served(li, name, p.Serve(v)) })
	case li.http != nil:
		p := li.http
		l.eg.Go(func() error { return l.served(li, name, p.Serve(v)) })
	}
	oldView := li.view
	li.view = v
	if old != nil {
		oldView.Close()
		l.retire(old)
	}
	return nil
}

// configureListener applies the settings every proxy changes live: target
// group or router, ACL, trusted proxies, timeouts, certificates.
func (l *LoadBalancer) configureListener(li *listener) error {
	cfg := li.cfg
	if cfg.flowLog != nil {
		li.flowLog.Store(&flowLogger{log: cfg.flowLog, listener: cfg.name})
	} else {
		li.flowLog.Store(nil)
	}
	acl, _ := proxy.ParseACL(cfg.allow, cfg.deny) // validated
	if len(cfg.allow) == 0 && len(cfg.deny) == 0 {
		acl = nil
	}
	if li.certs != nil {
		certs := make([]*tls.Certificate, len(cfg.certs))
		for i := range cfg.certs {
			certs[i] = &cfg.certs[i]
		}
		var def *tls.Certificate // none with a source only
		if len(certs) > 0 {
			def = certs[0]
		}
		if err := li.certs.Set(cfg.wildcard, def, certs...); err != nil {
			return &FieldError{Object: Object{Kind: KindListener, Name: cfg.name, Index: -1}, Field: "Certificates", Err: invalidBy(err)}
		}
		li.certs.SetSource(sourceOf(cfg))
	}
	var trusted *proxy.ACL
	if len(cfg.trusted) > 0 {
		trusted, _ = proxy.ParseACL(cfg.trusted, nil) // validated
	}
	// lb's validation keeps out every value the setters refuse; should one
	// still refuse, the error is returned, not ignored.
	var err error
	switch {
	case li.tcp != nil:
		p := li.tcp
		var tlsCfg *tls.Config
		if cfg.proto == TLS {
			tlsCfg = &tls.Config{GetCertificate: li.certs.GetCertificate, MinVersion: max(cfg.minTLS, tls.VersionTLS12), CipherSuites: cfg.ciphers,
				GetConfigForClient: li.certs.ChallengeConfig}
		}
		// lb's WithHeaderTimeout takes any value, ≤ 0 meaning the default.
		tmo := proxy.Timeouts{Idle: cfg.idle, Connect: cfg.connectTimeout, Header: max(cfg.headerTimeout, 0)}
		if err = errors.Join(p.SetUpstream(l.groups[cfg.group].up()), p.SetTimeouts(tmo), p.SetTLSConfig(tlsCfg)); err == nil {
			p.SetACL(acl)
			p.SetTrustedProxies(trusted)
		}
	case li.udp != nil:
		p := li.udp
		if err = errors.Join(p.SetUpstream(l.groups[cfg.group].up()), p.SetTimeouts(proxy.Timeouts{Idle: cfg.idle})); err == nil {
			p.SetACL(acl)
		}
	case li.http != nil:
		h := li.http
		var r *proxy.Router
		if r, err = l.router(cfg, func(name string) *proxy.Upstream { return l.groups[name].up() }); err != nil {
			return err
		}
		tmo := proxy.Timeouts{Idle: cfg.idle, Request: cfg.requestTimeout, Connect: cfg.connectTimeout, Response: cfg.responseTimeout}
		if err = errors.Join(h.SetRouter(r), h.SetTimeouts(tmo)); err == nil {
			h.SetACL(acl)
			h.SetTrustedProxies(trusted)
		}
	}
	if err != nil {
		return &FieldError{Object: Object{Kind: KindListener, Name: cfg.name, Index: -1}, Err: invalidBy(err)}
	}
	return nil
}

// router builds an HTTP listener's router, resolving group names with up.
func (l *LoadBalancer) router(cfg *listenerConfig, up func(string) *proxy.Upstream) (*proxy.Router, error) {
	var def proxy.Action
	switch {
	case cfg.defRedirect != nil:
		def.Redirect = cfg.defRedirect
	case cfg.defFixed != nil:
		def.Fixed = cfg.defFixed
	case cfg.group != "":
		def.Forward = up(cfg.group)
	}
	rules := make([]proxy.Rule, len(cfg.rules))
	for i, r := range cfg.rules {
		a := proxy.Action{Redirect: r.Redirect, Fixed: r.Fixed}
		if r.Forward != "" {
			a.Forward = up(r.Forward)
		}
		for _, s := range r.Split {
			a.Split = append(a.Split, proxy.Split{Upstream: up(s.Group), Weight: s.Weight})
		}
		rules[i] = proxy.Rule{Name: r.Name, Priority: r.Priority, Host: r.Host, Path: r.Path, Action: a}
	}
	return proxy.NewRouter(def, rules...) // its errors, wrapping proxy.ErrInvalidRule, as they are
}

// fixedAtServe returns the settings of cfg that its proxy fixes when it
// starts serving; when they change, the listener gets a new proxy.
func fixedAtServe(cfg *listenerConfig) any {
	switch cfg.proto {
	case TCP, TLS:
		return []any{cfg.connectAttempts}
	case HTTP, HTTPS:
		return []any{cfg.forwarded, cfg.maxHeaderBytes, cfg.maxBodyBytes,
			cfg.maxURILength, cfg.retry, cfg.accessLog, cfg.requestID, cfg.minTLS, cfg.ciphers, cfg.clientAuth,
			cfg.clientCAs, cfg.clientHosts, cfg.disableHTTP2, cfg.observer, cfg.eventLoop}
	}
	return nil
}

// update applies a changed configuration of the same name, protocol and
// address to a running listener: live where the proxy allows it, else with a
// new proxy on the same socket.
func (l *LoadBalancer) updateListener(li *listener, cfg *listenerConfig) error {
	if reflect.DeepEqual(fixedAtServe(li.cfg), fixedAtServe(cfg)) {
		li.cfg = cfg
		return l.configureListener(li)
	}
	return l.serveListener(li, cfg)
}

// retire lets a replaced or removed proxy finish in the background; its
// listener view is already closed, so it accepts nothing new. A TCP proxy
// finishes its connections (Shutdown waits for them). An HTTP proxy keeps
// serving its keep-alive connections until they go idle for their idle
// timeout, as the reference does when an L7 listener is deleted; closing
// them at once (Shutdown) would race clients sending their next request on
// them. Whatever is left when the load balancer closes is closed.
func (l *LoadBalancer) retire(s server) {
	l.retiring.Add(1)
	l.eg.Go(func() error {
		defer l.retiring.Add(-1)
		if h, ok := s.(*proxy.HTTP); ok {
			t := time.NewTicker(retirePoll)
			defer t.Stop()
			for h.Stats().ActiveConnections > 0 {
				select {
				case <-l.closing:
					return h.Close()
				case <-t.C:
				}
			}
			return h.Close()
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-l.closing:
				cancel()
			case <-ctx.Done():
			}
		}()
		if err := s.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		return nil
	})
}

// retirePoll is how often a retiring HTTP proxy is checked for connections
// left.
const retirePoll = 250 * time.Millisecond

// stop stops a removed listener: an L4 listener at once (connections
// closed), an L7 one gracefully (keep-alive connections finish).
func (l *LoadBalancer) stopListener(li *listener) {
	if li.view != nil {
		li.view.Close()
	}
	s := li.server()
	if li.cfg.proto.l7() {
		l.retire(s)
	} else {
		s.Close()
	}
	li.closeSocket()
}

func (li *listener) closeSocket() {
	if li.sock != nil {
		li.sock.close()
	}
	if li.pc != nil {
		li.pc.Close()
	}
}

// served handles the end of a proxy's Serve. A normal stop is nothing; a
// failure (a setting the proxy refuses when it starts) is logged, kept for
// Diagnose, and closes the listener's socket, so that clients are refused at
// once instead of waiting on a socket nobody serves; the next change or
// reload binds it again (reconcile). Validation keeps such settings out, so
// this is a last guard; accept errors never end a Serve.
func (l *LoadBalancer) served(li *listener, name string, err error) error {
	if err = serveErr(err); err != nil {
		// The socket closes before the failure is published, so that a
		// reconciliation that sees it can bind the address again.
		li.closeSocket()
		li.failed.Store(&err)
		l.log().Error("listener stopped serving; its socket is closed until the next reload or change", "listener", name, "err", err)
	}
	return nil
}

// serveErr drops the errors a proxy's Serve returns on a normal stop.
func serveErr(err error) error {
	if err == nil || errors.Is(err, net.ErrClosed) || errors.Is(err, proxy.ErrProxyClosed) || errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// refused returns a proxy's OnRefuse hook for a listener: the
// FlowRejected hook, and the flow log if the listener has one.
func (l *LoadBalancer) refused(li *listener, name string) func(proxy.Refusal) {
	return func(r proxy.Refusal) {
		if f := l.hooks().FlowRejected; f != nil {
			f(FlowRejectedEvent{Listener: name, Proto: protoOf(r.Proto), Client: r.Client, Reason: r.Reason.String(), Err: r.Err})
		}
		if fl := li.flowLog.Load(); fl != nil {
			fl.refused(r)
		}
	}
}

// flowEnded returns an L4 proxy's OnFlowEnd hook: the listener's flow log,
// if it has one (a reload may turn it on or off while the proxy serves),
// and the load balancer's flow observer, if any.
func (l *LoadBalancer) flowEnded(li *listener, name string) func(proxy.FlowEnd) {
	return func(e proxy.FlowEnd) {
		if fl := li.flowLog.Load(); fl != nil {
			fl.end(e)
		}
		if o := l.flowObs.Load(); o != nil && o.o != nil {
			o.o.FlowEnded(FlowEndedEvent{Listener: name, FlowEnd: e})
		}
	}
}

func protoOf(p flowtable.Proto) Protocol {
	if p == flowtable.UDP {
		return UDP
	}
	return TCP
}
