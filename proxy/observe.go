package proxy

import (
	"crypto/tls"
	"net/netip"
	"time"

	"github.com/lbkit/lbkit/proxy/internal/h1"
)

// Observer watches the requests an HTTP proxy forwards and their attempts
// to targets: the hook a tracing integration implements (the module
// github.com/lbkit/lbkit/tracing makes OpenTelemetry spans of it), so that
// the proxy itself depends on no tracing library. HTTP.Observer nil, the
// default, costs one nil check per request and per attempt.
//
// The methods are called on the request's goroutine, in order:
// StartRequest once, then for each attempt StartAttempt and EndAttempt,
// then EndRequest once. They must not block: the request waits for them.
type Observer interface {
	// StartRequest is called for a request that was routed: it passed the
	// ACL and the limits and matched a rule (or the default action), which
	// forwards it to a target group, redirects it or answers it with a
	// fixed response. Requests refused before routing (400, 403, 408, 414,
	// 421, 431, 501, 505) are counted and logged but not observed. It
	// returns what watches the rest of the request, or nil to watch
	// nothing more of it.
	StartRequest(r *ObservedRequest) RequestObserver
}

// RequestObserver watches one request, from StartRequest to EndRequest.
type RequestObserver interface {
	// StartAttempt is called when a target was chosen for an attempt,
	// before the proxy connects to it; a.SetHeader adds fields to the
	// request as sent to that target (trace context).
	StartAttempt(a *ObservedAttempt)
	// EndAttempt is called when the attempt ended: its response was read
	// to its end or cut, or it failed (a.Err) and the request is retried
	// on another target or answered by the proxy.
	EndAttempt(a *ObservedAttempt)
	// EndRequest is called once the response was sent (or the client went
	// away), with r's outcome fields set.
	EndRequest(r *ObservedRequest)
}

// ObservedRequest is a request as an Observer sees it. Its strings may
// alias the proxy's buffers: they are valid during the call only; copy
// them (strings.Clone) to keep them.
type ObservedRequest struct {
	// Start is when the request head was read.
	Start time.Time
	// Peer is the connection's peer; Client the client address as trusted
	// (X-Forwarded-For from a trusted proxy); TrustedPeer reports that the
	// peer is one of the proxy's trusted proxies (SetTrustedProxies).
	Peer        netip.AddrPort
	Client      netip.Addr
	TrustedPeer bool
	// TLS is the connection's TLS state on HTTPS, nil on HTTP.
	TLS *tls.ConnectionState
	// Scheme is "http" or "https"; Proto "HTTP/1.1" or "HTTP/2.0"; Port
	// the listener's port ("" when unknown).
	Scheme, Proto, Port string
	// Method, Host, Path (without the query) and Query as received.
	Method, Host, Path, Query string
	// Rule is the name of the rule that matched, "default" for the default
	// action.
	Rule string
	// Group is the target group the request is forwarded to, "" when the
	// rule redirects or answers itself.
	Group string

	// The outcome, set for EndRequest.

	// Status is the status sent to the client (StatusClientClosed when it
	// went away first); UpstreamStatus the last target's, 0 if none
	// answered.
	Status, UpstreamStatus int
	// Attempts is the number of attempts to targets (a retry makes two).
	Attempts int
	// BytesSent is the response body bytes sent to the client.
	BytesSent int64
	// Error says why the proxy answered itself or the response was cut,
	// "" otherwise.
	Error string

	ex *exchange
}

// Header returns the values of the request's header field name (case
// insensitive), in order; nil when it has none.
func (r *ObservedRequest) Header(name string) []string {
	var vs []string
	for i := range r.ex.fields {
		if f := &r.ex.fields[i]; h1.EqualFold(f.Name, s2b(name)) {
			vs = append(vs, b2s(f.Value))
		}
	}
	return vs
}

// ObservedAttempt is one attempt to send a request to a target. Its
// strings are valid during the call only.
type ObservedAttempt struct {
	// Retry is the number of attempts before this one: 0 for the first.
	Retry int
	// Target is the target's ID and Addr its host:port; Sticky reports
	// that stickiness chose it.
	Target, Addr string
	Sticky       bool
	// Start is when the target was chosen.
	Start time.Time

	// The outcome, set for EndAttempt.

	// Status is the target's response status, 0 if it gave none.
	Status int
	// Err is why the attempt failed (no connection, no response in time,
	// a malformed response); nil when a response arrived.
	Err error

	fields []string // name, value pairs SetHeader added
}

// SetHeader adds the header field name: value to the request as sent to
// this attempt's target, in place of the client's fields of that name. It
// is meant for trace context (traceparent, tracestate). An invalid name or
// value makes the attempt fail as an invalid request (502).
func (a *ObservedAttempt) SetHeader(name, value string) {
	for i := 0; i < len(a.fields); i += 2 {
		if h1.EqualFold(s2b(a.fields[i]), s2b(name)) {
			a.fields[i+1] = value
			return
		}
	}
	a.fields = append(a.fields, name, value)
}

// replaced reports whether SetHeader set the field name, whose client
// value is then not sent.
func (a *ObservedAttempt) replaced(name []byte) bool {
	for i := 0; i < len(a.fields); i += 2 {
		if h1.EqualFold(s2b(a.fields[i]), name) {
			return true
		}
	}
	return false
}

// observation is an exchange's state for HTTP.Observer: nil obs when the
// proxy has no observer or it watches nothing of this request.
type observation struct {
	obs     RequestObserver
	req     ObservedRequest
	att     ObservedAttempt
	attOpen bool // StartAttempt was called, EndAttempt not yet
}

// observeStart starts observing a routed request.
func (ex *exchange) observeStart(o Observer) {
	h := ex.h
	if ex.obs == nil {
		ex.obs = new(observation)
	}
	group := ""
	if ex.up != nil {
		group = ex.up.Name
	}
	trusted := h.trusted.Load()
	r := &ex.obs.req
	*r = ObservedRequest{
		Start: ex.start, Peer: ex.peer, Client: clientAddr(ex.xff, ex.peer.Addr(), trusted),
		TrustedPeer: trusted != nil && trusted.Allows(ex.peer.Addr()),
		TLS:         ex.tls, Scheme: ex.scheme, Proto: ex.proto, Port: ex.port,
		Method: ex.method, Host: ex.host, Path: ex.path, Query: ex.query,
		Rule: ex.rule, Group: group, ex: ex,
	}
	ex.obs.obs = o.StartRequest(r)
}

// observeAttempt starts observing an attempt to c's target.
func (ex *exchange) observeAttempt(c Choice, retry int, start time.Time) {
	a := &ex.obs.att
	*a = ObservedAttempt{Retry: retry, Target: c.Target.ID, Addr: c.Target.Addr, Sticky: c.Sticky, Start: start, fields: a.fields[:0]}
	ex.obs.attOpen = true
	ex.obs.obs.StartAttempt(a)
}

// observeAttemptEnd ends the open attempt, if any.
func (ex *exchange) observeAttemptEnd(status int, err error) {
	if !ex.obs.attOpen {
		return
	}
	ex.obs.attOpen = false
	a := &ex.obs.att
	a.Status, a.Err = status, err
	ex.obs.obs.EndAttempt(a)
}

// observeEnd ends observing the request.
func (ex *exchange) observeEnd(status int) {
	ex.observeAttemptEnd(ex.upStatus, nil)
	r := &ex.obs.req
	r.Status, r.UpstreamStatus, r.Attempts, r.BytesSent, r.Error = status, ex.upStatus, len(ex.attempts), ex.sent, ex.errText
	o := ex.obs.obs
	ex.obs.obs = nil
	o.EndRequest(r)
}
