package healthcheck

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Limits on what an HTTP check reads, so a misbehaving target cannot make a
// check expensive.
const (
	// bodyMatchLimit is how much of the body WithBody's expression sees.
	bodyMatchLimit = 64 << 10
	// drainLimit is how much of the rest is read before closing, so a
	// kept-alive connection can be reused; beyond it the connection is
	// closed instead.
	drainLimit = 256 << 10
	// headerLimit bounds the response header, like the proxy's request
	// header limit.
	headerLimit = 64 << 10
)

// HTTPConfig configures an HTTP or HTTPS checker built by NewHTTP. The zero
// HTTPConfig is valid: GET / on the traffic port over plain HTTP, 200
// expected, a new connection per check.
//
// A configuration struct rather than functional options, because the
// package holds three checkers and a Monitor: options would need four name
// spaces (a Port for HTTP and UDP, timeouts for the Monitor) and would read
// worse than fields, as tls.Config and http.Server show.
type HTTPConfig struct {
	// Port is the port to probe; 0 means the target's traffic port.
	Port int

	// Method is the request method. Default "GET".
	Method string

	// Path is the absolute path, with an optional query, e.g.
	// "/chat/index.html" or "/healthz?full=1". Default "/".
	Path string

	// Host is the domain sent as the Host header, for servers that check
	// it. For HTTPS it is also the default TLS server name. Default: the
	// target's address.
	Host string

	// Header holds extra request headers. A "User-Agent" here replaces the
	// default "lbkit-healthcheck"; "Host" is not allowed (use Host).
	Header http.Header

	// Status lists the expected status codes and ranges, as parsed by
	// ParseStatusCodes: "200,202,401", "200-399". Default "200". Redirects
	// are not followed: a 301 is judged like any other status.
	Status string

	// Body, if not empty, is a regular expression (RE2 syntax) that the
	// first 64 KiB of the response body must match. Default: any body.
	Body string

	// TLS, if not nil, makes the checker speak HTTPS with this
	// configuration (cloned by NewHTTP). Its ServerName is the name sent as
	// SNI and verified in the certificate; if empty, Host is used, else the
	// target's host. RootCAs is the CA pool (nil: the system's).
	// Verification can only be skipped by setting InsecureSkipVerify, an
	// explicit choice. Default nil: plain HTTP.
	TLS *tls.Config

	// KeepAlive reuses a connection per target between checks. Default
	// false: every check opens a new connection, so a check proves that a
	// new client can connect, as the traffic it vouches for will. With
	// KeepAlive, call Close when done to close idle connections.
	KeepAlive bool
}

// HTTP checks a target by sending an HTTP or HTTPS request and judging the
// response status and, optionally, body. Build it with NewHTTP; it is safe
// for concurrent use.
type HTTP struct {
	method, path, host string
	header             http.Header
	codes              StatusCodes
	body               *regexp.Regexp
	port               int
	scheme             string
	tls                *tls.Config // nil for plain HTTP; ServerName "" means each target's host
	dialer             net.Dialer
	transport          *http.Transport
	client             *http.Client
}

// NewHTTP returns an HTTP checker for cfg, or an error listing every invalid
// field.
func NewHTTP(cfg HTTPConfig) (*HTTP, error) {
	h := &HTTP{
		method: cfg.Method,
		path:   cfg.Path,
		host:   cfg.Host,
		port:   cfg.Port,
		scheme: "http",
	}
	if h.method == "" {
		h.method = http.MethodGet
	}
	if h.path == "" {
		h.path = "/"
	}
	spec := cfg.Status
	if spec == "" {
		spec = "200"
	}
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("healthcheck: HTTPConfig: %w: "+format, append([]any{ErrInvalidOption}, args...)...))
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		bad("Port %d is out of range 0..65535", cfg.Port)
	}
	if !isToken(h.method) { // a method is a token, like a field name
		bad("Method %q is not a valid HTTP method", cfg.Method)
	}
	if u, err := url.ParseRequestURI(h.path); err != nil || !strings.HasPrefix(h.path, "/") || u.Host != "" || hasSpaceOrControl(h.path) {
		bad("Path %q is not an absolute path such as /healthz", cfg.Path)
	}
	if !validHost(h.host) {
		bad("Host %q is not a valid host", cfg.Host)
	}
	h.header = make(http.Header, len(cfg.Header)+1)
	for k, vs := range cfg.Header {
		switch {
		case !isToken(k):
			bad("Header name %q is not valid", k)
		case http.CanonicalHeaderKey(k) == "Host":
			bad("Header %q: set the Host field instead", k)
		}
		for _, v := range vs {
			if !validFieldValue(v) {
				bad("Header %q value %q is not valid", k, v)
			}
		}
		h.header[http.CanonicalHeaderKey(k)] = append([]string(nil), vs...)
	}
	if h.header.Get("User-Agent") == "" {
		h.header.Set("User-Agent", "lbkit-healthcheck")
	}
	codes, err := ParseStatusCodes(spec)
	if err != nil {
		errs = append(errs, fmt.Errorf("healthcheck: HTTPConfig: Status: %w", err))
	}
	h.codes = codes
	if cfg.Body != "" {
		re, err := regexp.Compile(cfg.Body)
		if err != nil {
			bad("Body %q is not a valid regular expression: %v", cfg.Body, err)
		}
		h.body = re
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	h.transport = &http.Transport{
		Proxy:                  nil, // a check goes to the target, never through HTTP_PROXY
		DialContext:            h.dialer.DialContext,
		DisableKeepAlives:      !cfg.KeepAlive,
		MaxIdleConns:           0, // no global cap: one idle connection per target
		MaxIdleConnsPerHost:    1,
		IdleConnTimeout:        90 * time.Second,
		DisableCompression:     true,
		MaxResponseHeaderBytes: headerLimit,
	}
	if cfg.TLS != nil {
		h.scheme = "https"
		h.tls = cfg.TLS.Clone()
		if h.tls.ServerName == "" && h.host != "" {
			h.tls.ServerName = hostOnly(h.host)
		}
		// Dial TLS ourselves: the server name may differ per target, and
		// handshake errors then reach Reason unwrapped by the transport.
		h.transport.DialTLSContext = h.dialTLS
	}
	h.client = &http.Client{
		Transport:     h.transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return h, nil
}

// hostOnly strips an optional port from a Host value.
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.Trim(hostport, "[]")
}

func (h *HTTP) dialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	raw, err := h.dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	cfg := h.tls
	if cfg.ServerName == "" { // neither TLS.ServerName nor Host: the target's own host
		cfg = cfg.Clone()
		cfg.ServerName = hostOnly(addr)
	}
	conn := tls.Client(raw, cfg)
	if err := conn.HandshakeContext(ctx); err != nil {
		_ = raw.Close()
		return nil, err
	}
	return conn, nil
}

// Check sends one request to the target (or Port) and judges the answer.
// The timeout is ctx's (DefaultTimeout if ctx has no deadline) and covers
// connecting, the TLS handshake, the response header and, with Body set,
// reading the body. Failures read like "status 404, want 200", "timeout
// after 3s", "TLS: certificate signed by unknown authority" or
// `body does not match "ok"`.
func (h *HTTP) Check(ctx context.Context, t Target) error {
	_, addr, err := checkAddr(t, h.port)
	if err != nil {
		return err
	}
	ctx, cancel, b := budget(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, h.method, h.scheme+"://"+addr+h.path, nil)
	if err != nil {
		return &CheckError{Reason: "invalid request: " + err.Error(), Err: err}
	}
	req.Header = h.header // read-only: neither Client nor Transport writes it
	if h.host != "" {
		req.Host = h.host
	}
	resp, err := h.client.Do(req)
	if err != nil {
		if errors.Is(err, http.ErrSchemeMismatch) { // the client's rewording of a TLS record error
			return &CheckError{Reason: "TLS: target answered with plain HTTP", Err: err}
		}
		return fail(err, b)
	}
	defer func() {
		// Drain a bounded amount so a kept-alive connection can be reused,
		// then close; with keep-alive off, Close closes the connection.
		_, _ = io.CopyN(io.Discard, resp.Body, drainLimit)
		_ = resp.Body.Close()
	}()
	if !h.codes.Contains(resp.StatusCode) {
		return &CheckError{Reason: fmt.Sprintf("status %d, want %s", resp.StatusCode, h.codes), Err: ErrUnexpectedStatus}
	}
	if h.body != nil {
		data, err := io.ReadAll(io.LimitReader(resp.Body, bodyMatchLimit))
		if err != nil {
			return fail(err, b)
		}
		if !h.body.Match(data) {
			return &CheckError{Reason: fmt.Sprintf("body does not match %q", h.body), Err: ErrBodyMismatch}
		}
	}
	return nil
}

// Close closes idle connections kept by KeepAlive. Checks may still run
// afterwards; they open new connections. It always returns nil.
func (h *HTTP) Close() error {
	h.transport.CloseIdleConnections()
	return nil
}

// isToken reports whether s is an HTTP token (RFC 9110 section 5.6.2), the
// syntax of methods and header names.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validFieldValue reports whether s may be sent as a header value: no
// control characters but tab.
func validFieldValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// hasSpaceOrControl reports whether s holds a byte that cannot appear
// unescaped in a request line.
func hasSpaceOrControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return true
		}
	}
	return false
}

// validHost reports whether s may be sent as a Host header: empty (the
// target's address is sent), or a host with an optional port and nothing
// that would change the request's meaning.
func validHost(s string) bool {
	if hasSpaceOrControl(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; strings.IndexByte("/?#@\\", c) >= 0 {
			return false
		}
	}
	return true
}
