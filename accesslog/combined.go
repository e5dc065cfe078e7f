package accesslog

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"
)

// NewCombinedHandler returns a slog.Handler that writes lbkit's HTTP access
// records (message "http") to w in the combined log format of Apache and
// nginx, one line each:
//
//	127.0.0.1 - - [03/Dec/2026:10:42:01 +0000] "GET /search?q=go HTTP/1.1" 200 5120 "https://example.com/" "curl/8.5.0"
//
// that is: the client's address (client_ip, as trusted), two dashes (no
// identity, no user), the time, the request line (method, path, query and
// protocol), the status, the bytes of the response body ("-" for none),
// the Referer and the User-Agent ("-" when absent). Quotes, backslashes and
// control characters inside the quoted fields are escaped as Apache does
// (\", \\, \xhh). Records with another message are not written, nor
// records below Info.
func NewCombinedHandler(w io.Writer) slog.Handler {
	return &combined{w: w, mu: new(sync.Mutex)}
}

type combined struct {
	w     io.Writer
	mu    *sync.Mutex // shared by the handlers derived with WithAttrs
	attrs []slog.Attr // from WithAttrs, without groups
}

func (h *combined) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h *combined) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &c
}

// WithGroup returns h: the combined format has no groups, and the fields it
// writes are top-level attributes.
func (h *combined) WithGroup(string) slog.Handler { return h }

// fields are the attributes a combined line is made of.
type fields struct {
	clientIP, client, method, path, query, proto, referer, ua string
	status, bytes                                             int64
}

func (f *fields) set(a slog.Attr) {
	v := a.Value.Resolve()
	switch a.Key {
	case "client_ip":
		f.clientIP = v.String()
	case "client":
		f.client = v.String()
	case "method":
		f.method = v.String()
	case "path":
		f.path = v.String()
	case "query":
		f.query = v.String()
	case "proto":
		f.proto = v.String()
	case "referer":
		f.referer = v.String()
	case "user_agent":
		f.ua = v.String()
	case "status":
		f.status = intValue(v)
	case "bytes_out", "bytes":
		f.bytes = intValue(v)
	}
}

func intValue(v slog.Value) int64 {
	switch v.Kind() {
	case slog.KindInt64:
		return v.Int64()
	case slog.KindUint64:
		return int64(v.Uint64())
	case slog.KindString:
		n, _ := strconv.ParseInt(v.String(), 10, 64)
		return n
	}
	return 0
}

func (h *combined) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "http" {
		return nil
	}
	var f fields
	for _, a := range h.attrs {
		f.set(a)
	}
	r.Attrs(func(a slog.Attr) bool {
		f.set(a)
		return true
	})
	b := make([]byte, 0, 256)
	b = append(b, orDash(f.host())...)
	b = append(b, " - - ["...)
	t := r.Time
	if t.IsZero() {
		t = time.Now()
	}
	b = t.AppendFormat(b, "02/Jan/2006:15:04:05 -0700")
	b = append(b, "] \""...)
	b = appendEscaped(b, f.method)
	b = append(b, ' ')
	b = appendEscaped(b, f.path)
	if f.query != "" {
		b = append(b, '?')
		b = appendEscaped(b, f.query)
	}
	b = append(b, ' ')
	b = appendEscaped(b, f.proto)
	b = append(b, "\" "...)
	b = strconv.AppendInt(b, f.status, 10)
	b = append(b, ' ')
	if f.bytes > 0 {
		b = strconv.AppendInt(b, f.bytes, 10)
	} else {
		b = append(b, '-')
	}
	b = append(b, " \""...)
	b = appendEscaped(b, orDash(f.referer))
	b = append(b, "\" \""...)
	b = appendEscaped(b, orDash(f.ua))
	b = append(b, "\"\n"...)
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := h.w.Write(b)
	return err
}

// host is the client's address: as trusted, else the peer's host.
func (f *fields) host() string {
	if f.clientIP != "" {
		return f.clientIP
	}
	if host, _, ok := cutPort(f.client); ok {
		return host
	}
	return f.client
}

// cutPort splits "host:port" and "[v6]:port".
func cutPort(s string) (host, port string, ok bool) {
	i := len(s) - 1
	for i >= 0 && s[i] != ':' {
		i--
	}
	if i < 0 {
		return s, "", false
	}
	host = s[:i]
	if len(host) >= 2 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	return host, s[i+1:], true
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// appendEscaped appends s with quotes, backslashes and bytes outside
// printable ASCII escaped, as Apache's log does.
func appendEscaped(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c >= 0x7f:
			b = append(b, '\\', 'x', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return b
}
