package proxy

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/lbkit/lbkit/internal/acceptloop"
)

// HTTPStats is a snapshot of an HTTP proxy's counters, across all its
// listeners. Per-target counters (requests, active requests, status classes,
// average response time) are in each Upstream's Stats.
type HTTPStats struct {
	// Connections counts client connections accepted (after the ACL).
	Connections uint64 `json:"connections"`
	// ActiveConnections is the number of client connections open now.
	ActiveConnections int64 `json:"active_connections"`
	// RefusedConnections counts connections the ACL refused at accept.
	RefusedConnections uint64 `json:"refused_connections"`
	// RejectedDescriptors counts connections closed at accept because the
	// descriptor budget was spent (see HTTP.Descriptors).
	RejectedDescriptors uint64 `json:"rejected_descriptors"`
	// RefusedRequests counts requests the ACL refused (403), on
	// connections accepted before an ACL change.
	RefusedRequests uint64 `json:"refused_requests"`

	// Requests counts requests that reached the proxy's handler.
	Requests uint64 `json:"requests"`
	// ActiveRequests is the number of requests in flight, upgraded
	// (WebSocket) ones included.
	ActiveRequests int64 `json:"active_requests"`

	// Status counts what the proxy answered clients, by class: Status[0]
	// is 1xx ... Status[4] is 5xx. 499 (client went away) is counted in
	// ClientClosed only. A request is counted when its exchange ends, just
	// after the last byte of the answer was written, so a client that has
	// read its answer may find it not counted yet for a moment.
	Status StatusClasses `json:"status"`
	// UpstreamStatus counts what targets answered the proxy, by class.
	// The two differ when the proxy answers itself (403, 408, 413, 502,
	// 503, 504, ...).
	UpstreamStatus StatusClasses `json:"upstream_status"`

	// Malformed counts requests refused before routing (400, 414, 417,
	// 431, 501, 505), on HTTP and HTTPS.
	Malformed uint64 `json:"malformed"`
	// MalformedBodies counts requests whose body turned out malformed
	// (a bad chunk, a body shorter than its framing): answered 400, or
	// their HTTP/2 stream reset, never forwarded whole.
	MalformedBodies uint64 `json:"malformed_bodies"`
	// Drained counts target connections kept for reuse by reading, in the
	// background, the answer to a request whose client went away (an
	// HTTP/2 stream reset, say).
	Drained uint64 `json:"drained"`
	// RequestTimeouts counts 408 answers.
	RequestTimeouts uint64 `json:"request_timeouts"`
	// ClientClosed counts requests whose client went away before the
	// response (logged as 499).
	ClientClosed uint64 `json:"client_closed"`
	// NoTarget counts 503 answers for want of a healthy target.
	NoTarget uint64 `json:"no_target"`
	// Misdirected counts 421 answers (Host and SNI differ where that would
	// bypass mutual TLS).
	Misdirected uint64 `json:"misdirected"`
	// Retries counts attempts on another target.
	Retries uint64 `json:"retries"`
	// RetriesRefused counts retries the retry budget refused.
	RetriesRefused uint64 `json:"retries_refused"`
	// TLSHandshakeErrors counts failed TLS handshakes.
	TLSHandshakeErrors uint64 `json:"tls_handshake_errors"`

	// AcceptErrors counts failed accepts (out of descriptors and the
	// like), each retried after a back-off; AcceptFailingSince is when the
	// current run of them began, zero while accepting works.
	AcceptErrors       uint64    `json:"accept_errors"`
	AcceptFailingSince time.Time `json:"accept_failing_since,omitzero"`
}

// httpCounters are the live counters behind HTTPStats: those every
// request writes are striped (see stripe.go), the rest plain atomics.
type httpCounters struct {
	hot                                  []httpStripe // set by setup
	conns, refusedConns, refusedRequests atomic.Uint64
	activeConns                          atomic.Int64
	malformed, requestTimeouts           atomic.Uint64
	clientClosed, noTarget, misdirected  atomic.Uint64
	retries, retriesRefused, tlsErrors   atomic.Uint64
	drained, malformedBodies             atomic.Uint64
	rejectedDescriptors                  atomic.Uint64
	accepts                              acceptloop.Counters
}

// stripe returns a stripe for a new connection or request.
func (c *httpCounters) stripe() *httpStripe { return &c.hot[pickStripe(len(c.hot))] }

// observe counts a status the proxy answered a client.
func (s *httpStripe) observe(code int) {
	if i := statusIndex(code); i >= 0 && code != StatusClientClosed {
		s.status[i].Add(1)
	}
}

// observeUpstream counts a status a target answered.
func (s *httpStripe) observeUpstream(code int) {
	if i := statusIndex(code); i >= 0 {
		s.upstream[i].Add(1)
	}
}

// Stats returns a snapshot of the proxy's counters. It takes no lock.
func (h *HTTP) Stats() HTTPStats {
	_ = h.setup()
	c := &h.stats
	s := HTTPStats{
		Connections:        c.conns.Load(),
		ActiveConnections:  c.activeConns.Load(),
		RefusedConnections: c.refusedConns.Load(),
		RefusedRequests:    c.refusedRequests.Load(),
		Malformed:          c.malformed.Load(),
		MalformedBodies:    c.malformedBodies.Load(),
		Drained:            c.drained.Load(),
		RequestTimeouts:    c.requestTimeouts.Load(),
		ClientClosed:       c.clientClosed.Load(),
		NoTarget:           c.noTarget.Load(),
		Misdirected:        c.misdirected.Load(),
		Retries:            c.retries.Load(),
		RetriesRefused:     c.retriesRefused.Load(),
		TLSHandshakeErrors: c.tlsErrors.Load(),
	}
	s.RejectedDescriptors = c.rejectedDescriptors.Load()
	as := c.accepts.Stats()
	s.AcceptErrors, s.AcceptFailingSince = as.Errors, as.FailingSince
	for i := range c.hot {
		st := &c.hot[i]
		s.Requests += st.requests.Load()
		s.ActiveRequests += st.active.Load()
		for k := range s.Status {
			s.Status[k] += st.status[k].Load()
			s.UpstreamStatus[k] += st.upstream[k].Load()
		}
	}
	return s
}

// StatusClasses counts HTTP statuses by class: [0] is 1xx … [4] is 5xx. In
// JSON it is an object with the classes as keys: {"1xx": 0, "2xx": 12, …}.
type StatusClasses [5]uint64

// statusClassNames are the JSON keys of StatusClasses.
var statusClassNames = [5]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// MarshalJSON implements json.Marshaler.
func (s StatusClasses) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for i, n := range s {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, statusClassNames[i]...)
		b = append(b, '"', ':')
		b = strconv.AppendUint(b, n, 10)
	}
	return append(b, '}'), nil
}

// UnmarshalJSON implements json.Unmarshaler; classes left out are 0.
func (s *StatusClasses) UnmarshalJSON(b []byte) error {
	var m map[string]uint64
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*s = StatusClasses{}
	for k, n := range m {
		i := slices.Index(statusClassNames[:], k)
		if i < 0 {
			return fmt.Errorf("proxy: status class %q is not one of 1xx..5xx", k)
		}
		s[i] = n
	}
	return nil
}
