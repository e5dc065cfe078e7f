package proxy

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// attempt is one try of a request on one target.
type attempt struct {
	addr     string
	start    time.Time     // when the attempt started
	status   int           // target's status; 0 if it gave none
	connect  time.Duration // -1: reused connection (nginx logs 0)
	noTarget bool          // the connection to the target failed: connect logs "-"
	header   time.Duration // to the response header; -1 if none
	response time.Duration // to the end of the body; -1 if not ended
}

// The access log's record has these attributes, nginx's names where nginx
// has one:
//
//	client                 the client's address (the peer, host:port)
//	client_ip              the client IP the proxy trusts (X-Forwarded-For
//	                       from a trusted peer, else the peer)
//	method, host, path     from the request line and Host
//	proto                  HTTP/1.1, HTTP/2.0
//	rule                   the rule that routed it ("default" for the
//	                       default action)
//	group                  the target group's name, or "-"
//	status                 what the proxy answered (499: the client went
//	                       away first)
//	upstream_status        what each target answered, "-" for none
//	upstream_addr          each target tried
//	bytes_in               request body bytes read from the client
//	bytes_out              response body bytes sent to the client
//	request_time           seconds from the request's arrival to its end
//	upstream_connect_time  seconds to connect to each target (0 on a reused
//	                       connection), "-" when none was reached
//	upstream_header_time   seconds from each attempt's start to the target's
//	                       response header
//	upstream_response_time seconds from each attempt's start to the end of
//	                       its response
//	query                  the query string, without "?"; "" for none
//	user_agent, referer    the request's first User-Agent and Referer
//	request_id             the request's ID (HTTP.RequestID), else the
//	                       client's X-Request-Id, else "-"
//	tls_version,           on HTTPS: "TLS 1.3", the cipher suite's name,
//	tls_cipher, sni        the server name asked for
//	error                  why the proxy answered itself, when it did
//
// Several values (one per attempt, when retried) are joined by ", ", the
// way nginx joins them. Strings that alias the engine's buffers are copied.
func (h *HTTP) logExchange(ex *exchange, status int) {
	l := h.AccessLog
	ctx := ex.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	if l == nil || !l.Enabled(ctx, slog.LevelInfo) {
		return
	}
	group := "-"
	if ex.up != nil && ex.up.Name != "" {
		group = ex.up.Name
	}
	rid := ex.xrid
	if ex.h.RequestID {
		rid = ex.requestID()
	}
	if rid == "" {
		rid = "-"
	}
	attrs := make([]slog.Attr, 0, 28)
	attrs = append(attrs,
		slog.String("client", ex.peer.String()),
		slog.String("client_ip", addrString(ex.client)),
		slog.String("method", strings.Clone(ex.method)),
		slog.String("host", strings.Clone(ex.host)),
		slog.String("path", strings.Clone(ex.path)),
		slog.String("proto", ex.proto),
		slog.String("rule", ex.rule),
		slog.String("group", group),
		slog.Int("status", status),
		slog.String("upstream_status", joinAttempts(ex.attempts, func(a *attempt) string {
			if a.status == 0 {
				return "-"
			}
			return strconv.Itoa(a.status)
		})),
		slog.String("upstream_addr", joinAttempts(ex.attempts, func(a *attempt) string { return a.addr })),
		slog.Int64("bytes_in", ex.received()),
		slog.Int64("bytes_out", ex.sent),
		slog.String("request_time", seconds(time.Since(ex.start))),
		slog.String("upstream_connect_time", joinAttempts(ex.attempts, connectTime)),
		slog.String("upstream_header_time", joinAttempts(ex.attempts, func(a *attempt) string { return seconds(a.header) })),
		slog.String("upstream_response_time", joinAttempts(ex.attempts, func(a *attempt) string { return seconds(a.response) })),
		slog.String("query", strings.Clone(ex.query)),
		slog.String("user_agent", strings.Clone(ex.ua)),
		slog.String("referer", strings.Clone(ex.referer)),
		slog.String("request_id", strings.Clone(rid)),
	)
	if ex.tls != nil {
		attrs = append(attrs, tlsAttrs(ex.tls)...)
	}
	if ex.errText != "" {
		attrs = append(attrs, slog.String("error", ex.errText))
	}
	l.LogAttrs(ctx, slog.LevelInfo, "http", attrs...)
}

// connectTime is an attempt's upstream_connect_time: "-" when the target
// was not reached, 0 on a reused connection.
func connectTime(a *attempt) string {
	if a.noTarget {
		return "-"
	}
	return seconds(max(a.connect, 0))
}

// logRefused logs a request the proxy refused before it could route it
// (400, 408, 414, 431, 501, 505), on HTTP and HTTPS alike; cs is the TLS
// connection's state, nil for plain HTTP or when the handshake did not
// complete.
func (h *HTTP) logRefused(peer netip.AddrPort, status int, why string, cs *tls.ConnectionState) {
	l := h.AccessLog
	if l == nil {
		return
	}
	attrs := []slog.Attr{
		slog.String("client", peer.String()),
		slog.String("client_ip", addrString(peer.Addr())),
		slog.Int("status", status),
		slog.String("upstream_status", "-"),
		slog.String("upstream_addr", "-"),
		slog.String("upstream_connect_time", "-"),
		slog.String("upstream_header_time", "-"),
		slog.String("upstream_response_time", "-"),
	}
	if cs != nil {
		attrs = append(attrs, tlsAttrs(cs)...)
	}
	attrs = append(attrs, slog.String("error", "request refused before routing: "+why))
	l.LogAttrs(context.Background(), slog.LevelInfo, "http", attrs...)
}

// tlsAttrs are the access log's attributes of a TLS connection.
func tlsAttrs(cs *tls.ConnectionState) []slog.Attr {
	return []slog.Attr{
		slog.String("tls_version", tls.VersionName(cs.Version)),
		slog.String("tls_cipher", tls.CipherSuiteName(cs.CipherSuite)),
		slog.String("sni", cs.ServerName),
	}
}

// received returns the request body bytes read from the client so far.
func (ex *exchange) received() int64 {
	switch {
	case ex.c != nil:
		return ex.c.body.total
	case ex.stdb != nil:
		ex.stdb.mu.Lock()
		defer ex.stdb.mu.Unlock()
		return ex.stdb.n
	}
	return 0
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return "-"
	}
	return a.String()
}

// seconds formats d as nginx does, in seconds with millisecond resolution;
// a negative d (no such time) is "-".
func seconds(d time.Duration) string {
	if d < 0 {
		return "-"
	}
	ms := d.Milliseconds()
	return strconv.FormatInt(ms/1000, 10) + "." + strconv.FormatInt(1000+ms%1000, 10)[1:]
}

// joinAttempts joins one value per attempt, "-" when there was none.
func joinAttempts(as []attempt, f func(*attempt) string) string {
	switch len(as) {
	case 0:
		return "-"
	case 1:
		return f(&as[0])
	}
	var b strings.Builder
	for i := range as {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(f(&as[i]))
	}
	return b.String()
}
