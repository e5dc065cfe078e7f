package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/lbkit/lbkit/balancer"
)

// transport is the connection pools to one Upstream's targets, built for
// one set of timeouts: the direct client for the common requests, and
// http.Transport for the rest (upgrades, large or chunked bodies,
// 100-continue).
type transport struct {
	t    *http.Transport
	fast *h1Client
	tmo  *Timeouts
}

// closeIdle closes both pools' idle connections.
func (t *transport) closeIdle() {
	t.t.CloseIdleConnections()
	t.fast.closeIdle()
}

// transportFor returns up's pool, rebuilding it when SetTimeouts changed
// the timeouts since it was made (the old pool's idle connections are
// closed; its busy ones finish).
func (h *HTTP) transportFor(up *Upstream) *transport {
	tmo := h.tmo.Load()
	v, ok := h.transports.Load(up)
	if ok && v.(*transport).tmo == tmo {
		return v.(*transport)
	}
	maxIdle := h.MaxIdleConnsPerTarget
	if maxIdle == 0 {
		maxIdle = DefaultMaxIdleConnsPerTarget
	}
	t := &transport{tmo: tmo, t: &http.Transport{
		DialContext:           h.dialer(tmo.Connect),
		MaxIdleConnsPerHost:   maxIdle,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: tmo.Response,
		ExpectContinueTimeout: time.Second,
		TLSHandshakeTimeout:   tmo.Connect,
		DisableCompression:    true, // pass the client's Accept-Encoding through untouched
	}}
	if up.TLS != nil {
		t.t.TLSClientConfig = up.TLS.Clone() // an empty ServerName becomes each target's host
	}
	t.fast = newH1Client(tmo, up.TLS, maxIdle)
	if ok {
		if h.transports.CompareAndSwap(up, v, t) {
			v.(*transport).closeIdle()
			return t
		}
	} else if v, loaded := h.transports.LoadOrStore(up, t); loaded {
		return v.(*transport)
	}
	return t
}

// dialError marks a failure to connect: the request never reached the
// target, so it may always be retried.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// dialer returns the DialContext of a pool: TCP with the connect timeout,
// recording the connect time in the attempt that asked for it.
func (h *HTTP) dialer(timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		start := time.Now()
		var gen uint64
		rs, _ := ctx.Value(reqKey{}).(*reqState)
		if rs != nil {
			gen = rs.dial.gen.Load()
		}
		c, err := d.DialContext(ctx, network, addr)
		// The transport dials in its own goroutine, which may outlive the
		// attempt (another connection freed up first): the generation
		// keeps a late dial from writing into a recycled request.
		if rs != nil && rs.dial.gen.Load() == gen {
			rs.dial.nanos.Store(int64(time.Since(start)))
		}
		if err != nil {
			return nil, &dialError{err}
		}
		return c, nil
	}
}

// roundTripper is ReverseProxy's Transport: it chooses a target for each
// attempt and retries on another when that is safe (see Retry).
type roundTripper struct{ h *HTTP }

func (rt roundTripper) RoundTrip(out *http.Request) (*http.Response, error) {
	return rt.h.try(out.Context().Value(reqKey{}).(*reqState), out)
}

// try sends rs's request to a target chosen for each attempt, retrying on
// another when that is safe (see Retry): out through http.Transport, or,
// when out is nil, the client's request itself by the fast path.
func (h *HTTP) try(rs *reqState, out *http.Request) (*http.Response, error) {
	up := rs.up
	tr := h.transportFor(up)
	retries := h.retry.Attempts > 1 && up.Sticky() == nil
	ctx, method := rs.in.Context(), rs.in.Method
	var body io.Reader // the client's, nil without one
	if out != nil {
		if out.Body != nil && out.Body != http.NoBody {
			body = out.Body
		}
	} else if rs.body != nil {
		body = rs.body
	}
	hasBody := body != nil
	var sendBody io.Reader
	if hasBody {
		// Even without retries the body goes through a replay: the
		// handler detaches it before it returns, as the transport may
		// still be reading it in another goroutine.
		limit := int64(0)
		if retries {
			limit = max(h.retry.BodyLimit, 0)
		}
		rs.reply = &replay{src: body, limit: limit}
		b, _ := rs.reply.next()
		sendBody = b
		if out != nil {
			out.Body = b
		}
	}
	first := time.Now()
	req := out
	var lastErr error
	for n := 0; ; n++ {
		c, err := up.Choose(balancer.PickInfo{Source: rs.client, Exclude: rs.tried}, &rs.sreq)
		if err != nil {
			if lastErr != nil {
				return nil, lastErr
			}
			return nil, err
		}
		if n > 0 {
			var b *attemptBody
			if hasBody {
				var ok bool
				if b, ok = rs.reply.next(); !ok {
					c.Done()
					return nil, lastErr
				}
				sendBody = b
			}
			if out != nil {
				// A fresh request: the failed attempt's transport may
				// still be reading the old one in another goroutine.
				req = out.Clone(ctx)
				if hasBody {
					req.Body = b
				}
			}
		}
		rs.tried = append(rs.tried, c.Target.ID)
		rs.choice, rs.chosen = c, true
		c.st.requests.Add(1)
		c.st.activeRequests.Add(1)
		rs.attempts = append(rs.attempts, attempt{addr: c.Target.Addr, connect: -1, header: -1, response: -1})
		at := time.Now()
		rs.resp.at = at
		var resp *http.Response
		a := &rs.attempts[len(rs.attempts)-1]
		if out == nil {
			resp, a.connect, err = tr.fast.roundTrip(rs, c.Target.Addr, sendBody)
		} else {
			req.URL.Host = c.Target.Addr
			rs.dial.nanos.Store(-1)
			resp, err = tr.t.RoundTrip(req)
			a.connect = time.Duration(rs.dial.nanos.Load())
		}
		if err == nil {
			a.header = time.Since(at)
			a.status = resp.StatusCode
			c.st.observeStatus(resp.StatusCode, a.header)
			h.stats.observeUpstream(resp.StatusCode)
			switch resp.StatusCode {
			case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
				up.report(c.Target.ID, fmt.Errorf("status %d from target", resp.StatusCode))
			default:
				up.report(c.Target.ID, nil)
			}
			return resp, nil
		}
		rs.release()
		var de *dialError
		dial := errors.As(err, &de)
		if dial {
			c.st.connectErrors.Add(1)
			a.noTarget = true
		}
		if rs.canceled() || rs.bodyErr() != nil {
			return nil, err // the client's doing, not the target's
		}
		up.report(c.Target.ID, err)
		lastErr = err
		switch {
		case !retries, n+1 >= h.retry.Attempts, time.Since(first) >= h.retry.Timeout:
			return nil, err
		case !dial && !idempotent(method):
			return nil, err
		case hasBody && !rs.reply.replayable():
			return nil, err
		}
		if !h.budget.withdraw(time.Now()) {
			h.stats.retriesRefused.Add(1)
			return nil, err
		}
		h.stats.retries.Add(1)
	}
}
