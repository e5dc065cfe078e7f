package proxy

import (
	"errors"
	"fmt"
	"time"
)

// ErrInvalid is wrapped by every error about a proxy's configuration: those
// of Validate, of Serve when the configuration is invalid, and of the
// setters that refuse a value. Test with errors.Is(err, proxy.ErrInvalid);
// a *ConfigError (errors.As) says which proxy and setting.
var ErrInvalid = errors.New("invalid configuration")

// ConfigError is one problem with a proxy's configuration: a field that
// Validate checks, or a value a setter refused. Validate joins several with
// errors.Join. It wraps ErrInvalid and, when there is one, the cause.
type ConfigError struct {
	// Proxy is "TCP", "UDP" or "HTTP".
	Proxy string
	// Field is the field or setting, as a Go selector below the proxy:
	// "MaxHeaderBytes", "Retry.Ratio", "Timeouts.Idle", "SetRouter",
	// "TLS".
	Field string
	// Problem says what is wrong, in words.
	Problem string
	// Err is the underlying error, if any (a TLS configuration's).
	Err error
}

func (e *ConfigError) Error() string {
	s := "proxy: " + e.Proxy + "." + e.Field
	if e.Problem != "" {
		s += ": " + e.Problem
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns ErrInvalid and the cause, for errors.Is and errors.As.
func (e *ConfigError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrInvalid, e.Err}
	}
	return []error{ErrInvalid}
}

func invalid(proxy, field, format string, a ...any) error {
	return &ConfigError{Proxy: proxy, Field: field, Problem: fmt.Sprintf(format, a...)}
}

// Timeouts are the timeouts a proxy's SetTimeouts sets, one type for the
// three proxies. Each field says which proxies use it; the others ignore
// it. A zero field takes its default; a negative one is refused.
type Timeouts struct {
	// Connect bounds one connection attempt to a target (with the TLS
	// handshake and PROXY header to it); then the next target is tried,
	// else the TCP connection is closed or the HTTP request gets 504.
	// TCP, HTTP. Default: DefaultConnectTimeout.
	Connect time.Duration

	// Idle is the idle timeout of connections or flows accepted after
	// the change (established ones keep theirs). TCP: the connection is
	// reset both ways when idle this long; default: the flow table's TCP
	// idle timeout. UDP: the flow is dropped; default: the flow table's
	// UDP idle timeout. HTTP: how long a keep-alive connection waits for
	// its next request, never less and at most 1/64 of it (250 ms at
	// most) more, as the wait's deadline is moved lazily on busy
	// connections; default: DefaultIdleTimeout.
	Idle time.Duration

	// Request bounds how long a client has to send a request's headers,
	// from when the proxy starts reading them (connections accepted after
	// the change), and then again its body, from when the headers have
	// arrived (the next request on): a client that takes longer gets 408
	// and the connection is closed. A whole request may so take up to
	// twice the timeout. Over HTTP/2 it bounds the body only (the stream
	// gets 408; HTTP/2 has its own framing timeouts). HTTP. Default:
	// DefaultRequestTimeout.
	Request time.Duration

	// Response bounds the wait for a target's response header after the
	// request was sent; then the request is retried when safe, else 504.
	// HTTP. Default: DefaultResponseTimeout.
	Response time.Duration

	// Header bounds how long a client may take to send its PROXY
	// protocol header and to complete its TLS handshake. TCP. Default:
	// DefaultHeaderTimeout.
	Header time.Duration
}

// check returns the problems of t for proxy kind p, as ConfigErrors.
func (t Timeouts) check(p string) error {
	var errs []error
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"Connect", t.Connect}, {"Idle", t.Idle}, {"Request", t.Request}, {"Response", t.Response}, {"Header", t.Header}} {
		if f.d < 0 {
			errs = append(errs, invalid(p, "Timeouts."+f.name, "%s is negative", f.d))
		}
	}
	return errors.Join(errs...)
}

// upstreamProblem returns the problem of u as proxy p's target group, if
// any.
func upstreamProblem(p string, u *Upstream) error {
	switch {
	case u == nil:
		return invalid(p, "SetUpstream", "the Upstream is nil")
	case u.Balancer == nil:
		return invalid(p, "SetUpstream", "Upstream %q has no Balancer", u.Name)
	case u.ProxyProtocol < 0 || u.ProxyProtocol > 2:
		return invalid(p, "SetUpstream", "Upstream %q: ProxyProtocol %d is not 0, 1 or 2", u.Name, u.ProxyProtocol)
	}
	return nil
}
