package proxy

import (
	"sync/atomic"
	"time"

	"github.com/lbkit/lbkit/internal/acceptloop"
)

// HTTPStats is a snapshot of an HTTP proxy's counters, across all its
// listeners. Per-target counters (requests, active requests, status classes,
// average response time) are in each Upstream's Stats.
type HTTPStats struct {
	// Connections counts client connections accepted (after the ACL).
	Connections uint64
	// ActiveConnections is the number of client connections open now.
	ActiveConnections int64
	// RefusedConnections counts connections the ACL refused at accept.
	RefusedConnections uint64
	// RejectedDescriptors counts connections closed at accept because the
	// descriptor budget was spent (see HTTP.Descriptors).
	RejectedDescriptors uint64
	// RefusedRequests counts requests the ACL refused (403), on
	// connections accepted before an ACL change.
	RefusedRequests uint64

	// Requests counts requests that reached the proxy's handler.
	Requests uint64
	// ActiveRequests is the number of requests in flight, upgraded
	// (WebSocket) ones included.
	ActiveRequests int64

	// Status counts what the proxy answered clients, by class: Status[0]
	// is 1xx ... Status[4] is 5xx. 499 (client went away) is counted in
	// ClientClosed only.
	Status [5]uint64
	// UpstreamStatus counts what targets answered the proxy, by class.
	// The two differ when the proxy answers itself (403, 408, 413, 502,
	// 503, 504, ...).
	UpstreamStatus [5]uint64

	// Malformed counts requests net/http refused before routing (400,
	// 431, 501, 505) on plain HTTP connections (under TLS they are
	// encrypted before the proxy can see them).
	Malformed uint64
	// RequestTimeouts counts 408 answers.
	RequestTimeouts uint64
	// ClientClosed counts requests whose client went away before the
	// response (logged as 499).
	ClientClosed uint64
	// NoTarget counts 503 answers for want of a healthy target.
	NoTarget uint64
	// Misdirected counts 421 answers (Host and SNI differ where that would
	// bypass mutual TLS).
	Misdirected uint64
	// Retries counts attempts on another target.
	Retries uint64
	// RetriesRefused counts retries the retry budget refused.
	RetriesRefused uint64
	// TLSHandshakeErrors counts failed TLS handshakes.
	TLSHandshakeErrors uint64

	// AcceptErrors counts failed accepts (out of descriptors and the
	// like), each retried after a back-off; AcceptFailingSince is when the
	// current run of them began, zero while accepting works.
	AcceptErrors       uint64
	AcceptFailingSince time.Time
}

// httpCounters are the live counters behind HTTPStats.
type httpCounters struct {
	conns, refusedConns, refusedRequests atomic.Uint64
	activeConns, activeRequests          atomic.Int64
	requests                             atomic.Uint64
	status, upstream                     [5]atomic.Uint64
	malformed, requestTimeouts           atomic.Uint64
	clientClosed, noTarget, misdirected  atomic.Uint64
	retries, retriesRefused, tlsErrors   atomic.Uint64
	rejectedDescriptors                  atomic.Uint64
	accepts                              acceptloop.Counters
}

// observe counts a status the proxy answered a client.
func (c *httpCounters) observe(code int) {
	if i := code/100 - 1; i >= 0 && i < len(c.status) && code != StatusClientClosed {
		c.status[i].Add(1)
	}
}

// observeUpstream counts a status a target answered.
func (c *httpCounters) observeUpstream(code int) {
	if i := code/100 - 1; i >= 0 && i < len(c.upstream) {
		c.upstream[i].Add(1)
	}
}

// Stats returns a snapshot of the proxy's counters. It takes no lock.
func (h *HTTP) Stats() HTTPStats {
	c := &h.stats
	s := HTTPStats{
		Connections:         c.conns.Load(),
		ActiveConnections:   c.activeConns.Load(),
		RefusedConnections:  c.refusedConns.Load(),
		RejectedDescriptors: c.rejectedDescriptors.Load(),
		RefusedRequests:     c.refusedRequests.Load(),
		Requests:            c.requests.Load(),
		ActiveRequests:      c.activeRequests.Load(),
		Malformed:           c.malformed.Load(),
		RequestTimeouts:     c.requestTimeouts.Load(),
		ClientClosed:        c.clientClosed.Load(),
		NoTarget:            c.noTarget.Load(),
		Misdirected:         c.misdirected.Load(),
		Retries:             c.retries.Load(),
		RetriesRefused:      c.retriesRefused.Load(),
		TLSHandshakeErrors:  c.tlsErrors.Load(),
	}
	as := c.accepts.Stats()
	s.AcceptErrors, s.AcceptFailingSince = as.Errors, as.FailingSince
	for i := range s.Status {
		s.Status[i] = c.status[i].Load()
		s.UpstreamStatus[i] = c.upstream[i].Load()
	}
	return s
}
