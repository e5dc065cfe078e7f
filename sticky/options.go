package sticky

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

const (
	// DefaultDuration is how long a session lasts without use, for every
	// kind: the reference load balancers' 20 minutes.
	DefaultDuration = 20 * time.Minute

	// MaxDuration is the longest duration any kind accepts.
	MaxDuration = 365 * 24 * time.Hour

	// DefaultCapacity is the number of sessions a SourceIP or AppCookie
	// table holds by default. An entry costs about 100 bytes, so a full
	// default table takes some 25 MiB.
	DefaultCapacity = 1 << 18

	// DefaultCookieName is the name of the load-balancer cookie.
	DefaultCookieName = "LBKIT"

	// DefaultRefresh is how old a valid load-balancer cookie gets before a
	// response re-issues it with a new expiry (see WithRefresh).
	DefaultRefresh = time.Minute

	// DefaultMaxValueLen is the longest application cookie value AppCookie
	// follows: the 4096 bytes browsers allow a whole cookie.
	DefaultMaxValueLen = 4096

	// MinKeyLen is the shortest load-balancer cookie key accepted: 256
	// bits, as for any HMAC-SHA256 key.
	MinKeyLen = 32
)

// Option configures every kind of policy: NewSourceIP, NewCookie and
// NewAppCookie all take it.
type Option func(*config)

// TableOption configures the kinds that keep a table of sessions:
// NewSourceIP and NewAppCookie take it, NewCookie does not compile with it.
type TableOption func(*config)

// SourceIPOption is what NewSourceIP takes: an Option, a TableOption or
// WithPrefix. Each kind of policy has its own option interface, so that an
// option that does not apply to a kind (WithKeys to NewSourceIP) is a
// compile error rather than a run-time one.
type SourceIPOption interface{ applySourceIP(*config) }

// CookieOption is what NewCookie takes: an Option or one of the cookie's
// own options (WithCookieName, WithKeys, WithKeyGrace, WithRefresh,
// WithPath, WithDomain, WithSecure, WithHTTPOnly, WithSameSite).
type CookieOption interface{ applyCookie(*config) }

// AppCookieOption is what NewAppCookie takes: an Option, a TableOption or
// WithMaxValueLen.
type AppCookieOption interface{ applyAppCookie(*config) }

func (o Option) applySourceIP(c *config)       { c.apply(o) }
func (o Option) applyCookie(c *config)         { c.apply(o) }
func (o Option) applyAppCookie(c *config)      { c.apply(o) }
func (o TableOption) applySourceIP(c *config)  { c.apply(o) }
func (o TableOption) applyAppCookie(c *config) { c.apply(o) }

// The options of one kind only.
type (
	sourceIPOption  func(*config)
	cookieOption    func(*config)
	appCookieOption func(*config)
)

func (o sourceIPOption) applySourceIP(c *config)   { c.apply(o) }
func (o cookieOption) applyCookie(c *config)       { c.apply(o) }
func (o appCookieOption) applyAppCookie(c *config) { c.apply(o) }

// apply runs one option, noting a nil one.
func (c *config) apply(f func(*config)) {
	if f == nil {
		c.nilOption = true
		return
	}
	f(c)
}

// kind is a bit set of policy kinds.
type kind uint8

const (
	kindSourceIP kind = 1 << iota
	kindCookie
	kindAppCookie
	kindTables = kindSourceIP | kindAppCookie
)

// config holds what a constructor was given. It is fixed for the policy's
// life; only the Cookie key set changes, and that lives outside.
type config struct {
	nilOption bool // a nil option was given

	state       func(id string) TargetState
	duration    time.Duration
	clock       func() time.Time // nil: the runtime's clock
	clockSet    bool
	stopOnDrain bool

	capacity int
	v4Bits   int
	v6Bits   int

	maxValueLen int

	store        Store
	storeSet     bool
	storeTimeout time.Duration

	cookieName   string
	signKey      []byte
	acceptKeys   [][]byte
	keyGrace     time.Duration
	keyGraceSet  bool
	refresh      time.Duration
	refreshSet   bool
	path         string
	domain       string
	secureAlways bool
	httpOnly     bool
	sameSite     http.SameSite
}

// WithTargetState sets the function a lookup asks about the target it
// remembers. It is called concurrently, once per lookup that finds a live
// session, with no lock of the policy held; keep it fast (a read of the
// balancer's current snapshot, say). Default: every target is Usable,
// which means a policy cannot tell a dead target from a live one, so give
// it one whenever targets can fail or leave.
func WithTargetState(f func(id string) TargetState) Option {
	return func(c *config) { c.state = f }
}

// WithDuration sets how long a session lasts without use: each hit
// refreshes it (SourceIP, AppCookie; hits less than 1/1024 of the duration
// apart refresh once, so a session may end that much early: 1.2 s of 20
// minutes); a Cookie carries its expiry and Max-Age, and a response
// re-issues it (see WithRefresh). Between 1 s and MaxDuration; the Cookie
// kind counts in whole seconds. Default: DefaultDuration (20 minutes).
func WithDuration(d time.Duration) Option { return func(c *config) { c.duration = d } }

// WithClock sets the source of the current time, so that tests can move
// time by hand and check expiry exactly. Default: time.Now. Tables measure
// durations from the clock's first reading, so with time.Now they follow
// the monotonic clock and ignore wall-clock steps.
func WithClock(now func() time.Time) Option {
	return func(c *config) { c.clock, c.clockSet = now, true }
}

// WithStopOnDrain sets what happens to the sessions of a Draining target:
// false lets them continue until the drain ends (the state function says
// Unusable); true moves them at once, like Unusable. Default: false.
func WithStopOnDrain(stop bool) Option { return func(c *config) { c.stopOnDrain = stop } }

// WithCapacity bounds the sessions a SourceIP or AppCookie table holds.
// When it is full of live sessions, Remember of a new client is refused and
// counted (Stats.Refused): established sessions are never evicted to make
// room. 1..MaxCapacity. Default: DefaultCapacity.
func WithCapacity(n int) TableOption {
	return func(c *config) { c.capacity = n }
}

// WithPrefix makes SourceIP key IPv4 clients by their first v4Bits bits and
// IPv6 clients by their first v6Bits bits, so that clients behind a NAT
// that rotates addresses within a range (a /24, a /64) keep their session.
// IPv4-mapped IPv6 addresses count as IPv4; zones are ignored. v4Bits in
// 1..32, v6Bits in 1..128. Default: 32 and 128 (each address alone).
func WithPrefix(v4Bits, v6Bits int) SourceIPOption {
	return sourceIPOption(func(c *config) { c.v4Bits, c.v6Bits = v4Bits, v6Bits })
}

// WithMaxValueLen sets the longest application cookie value AppCookie
// follows, in bytes; longer values are treated as absent and counted in
// BadCookies.Oversized. Values are stored as 64-bit hashes, so the cap
// bounds hashing work, not memory. 1..65536. Default: DefaultMaxValueLen.
func WithMaxValueLen(n int) AppCookieOption {
	return appCookieOption(func(c *config) { c.maxValueLen = n })
}

// WithCookieName sets the load-balancer cookie's name, an HTTP token.
// Default: DefaultCookieName. The name is bound into the cookie's
// authentication tag, so a value issued under one name is refused under
// another.
func WithCookieName(name string) CookieOption {
	return cookieOption(func(c *config) { c.cookieName = name })
}

// WithKeys sets the load-balancer cookie keys: sign makes every new cookie
// and verifies; each of accept verifies only, for cookies made by another
// node or by a key about to be rotated in. Each key is at least MinKeyLen
// bytes of secret randomness; the policy derives its keys from them at
// once and keeps no reference. Default: one random key made at construction
// (crypto/rand), which suits a single node: several nodes behind one name
// must share their keys, or each refuses the others' cookies.
func WithKeys(sign []byte, accept ...[]byte) CookieOption {
	return cookieOption(func(c *config) {
		c.signKey = sign
		c.acceptKeys = accept
	})
}

// WithKeyGrace sets how long a signing key replaced by Cookie.RotateKey
// still verifies. At least 0. Default: the duration, so that no cookie
// made before a rotation is refused while it is still valid (and each
// such cookie is re-issued under the new key on its next response).
func WithKeyGrace(d time.Duration) CookieOption {
	return cookieOption(func(c *config) { c.keyGrace, c.keyGraceSet = d, true })
}

// WithRefresh sets how old a valid load-balancer cookie for the chosen
// target gets before a response re-issues it with a fresh expiry. 0
// re-issues on every response (as the reference balancers do); a little
// more spares a busy session an HMAC and a Set-Cookie per response (which
// also keeps responses cacheable) at the price of expiring an idle session
// up to that much early. A cookie made by an older key, or for another
// target, is always re-issued. 0..duration. Default: DefaultRefresh,
// capped at half the duration.
func WithRefresh(d time.Duration) CookieOption {
	return cookieOption(func(c *config) { c.refresh, c.refreshSet = d, true })
}

// WithPath sets the load-balancer cookie's Path attribute; it starts with
// "/". Default: "/".
func WithPath(p string) CookieOption {
	return cookieOption(func(c *config) { c.path = p })
}

// WithDomain sets the load-balancer cookie's Domain attribute. Default:
// none, so the cookie goes back to the host that set it only.
func WithDomain(d string) CookieOption {
	return cookieOption(func(c *config) { c.domain = d })
}

// WithSecure with always set marks every load-balancer cookie Secure, for
// listeners behind a TLS terminator. Default: false, which marks it Secure
// when the request arrived over TLS (Request.HTTP.TLS set) or SameSite is
// None.
func WithSecure(always bool) CookieOption {
	return cookieOption(func(c *config) { c.secureAlways = always })
}

// WithHTTPOnly sets whether the load-balancer cookie is HttpOnly, hidden
// from scripts. Default: true.
func WithHTTPOnly(on bool) CookieOption {
	return cookieOption(func(c *config) { c.httpOnly = on })
}

// WithSameSite sets the load-balancer cookie's SameSite attribute:
// http.SameSiteLaxMode, StrictMode, NoneMode (which also sets Secure, as
// browsers require), or DefaultMode to leave the attribute out. Default:
// http.SameSiteLaxMode.
func WithSameSite(s http.SameSite) CookieOption {
	return cookieOption(func(c *config) { c.sameSite = s })
}

// newConfig applies the options (apply runs them) over the defaults for
// kind k and validates the result, every problem at once.
func newConfig(k kind, apply func(*config)) (*config, error) {
	c := &config{
		duration:     DefaultDuration,
		capacity:     DefaultCapacity,
		v4Bits:       32,
		v6Bits:       128,
		maxValueLen:  DefaultMaxValueLen,
		storeTimeout: DefaultStoreTimeout,
		cookieName:   DefaultCookieName,
		path:         "/",
		httpOnly:     true,
		sameSite:     http.SameSiteLaxMode,
		state:        func(string) TargetState { return Usable },
	}
	apply(c)
	if c.nilOption {
		return nil, fmt.Errorf("sticky: %w: nil option", ErrInvalidOption)
	}
	if err := c.validate(k); err != nil {
		return nil, err
	}
	if !c.keyGraceSet {
		c.keyGrace = c.duration
	}
	if !c.refreshSet {
		c.refresh = min(DefaultRefresh, c.duration/2)
	}
	return c, nil
}

// validate checks the configuration for kind k, every problem at once.
func (c *config) validate(k kind) error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("sticky: %w: "+format, append([]any{ErrInvalidOption}, args...)...))
	}
	if c.state == nil {
		bad("target state function is nil")
	}
	if c.clockSet && c.clock == nil {
		bad("clock is nil")
	}
	if c.duration < time.Second || c.duration > MaxDuration {
		bad("duration %v is out of range 1s..%v", c.duration, MaxDuration)
	}
	if k&kindTables != 0 && (c.capacity < 1 || c.capacity > MaxCapacity) {
		bad("capacity %d is out of range 1..%d", c.capacity, MaxCapacity)
	}
	if k == kindSourceIP {
		if c.v4Bits < 1 || c.v4Bits > 32 {
			bad("IPv4 prefix length %d is out of range 1..32", c.v4Bits)
		}
		if c.v6Bits < 1 || c.v6Bits > 128 {
			bad("IPv6 prefix length %d is out of range 1..128", c.v6Bits)
		}
	}
	if c.storeSet && c.store == nil {
		bad("store is nil")
	}
	if k&kindTables != 0 && (c.storeTimeout < time.Millisecond || c.storeTimeout > 10*time.Second) {
		bad("store timeout %v is out of range 1ms..10s", c.storeTimeout)
	}
	if k == kindAppCookie && (c.maxValueLen < 1 || c.maxValueLen > 65536) {
		bad("max value length %d is out of range 1..65536", c.maxValueLen)
	}
	if k == kindCookie {
		errs = append(errs, c.validateCookie()...)
	}
	return errors.Join(errs...)
}

// validateCookie checks the load-balancer cookie's options.
func (c *config) validateCookie() []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("sticky: %w: "+format, append([]any{ErrInvalidOption}, args...)...))
	}
	if !isToken(c.cookieName) {
		bad("cookie name %q is not an HTTP token", c.cookieName)
	}
	if c.signKey != nil || c.acceptKeys != nil {
		if len(c.signKey) < MinKeyLen {
			errs = append(errs, fmt.Errorf("sticky: %w: signing key is %d bytes, want at least %d", ErrInvalidKey, len(c.signKey), MinKeyLen))
		}
		for i, k := range c.acceptKeys {
			if len(k) < MinKeyLen {
				errs = append(errs, fmt.Errorf("sticky: %w: accepted key %d is %d bytes, want at least %d", ErrInvalidKey, i, len(k), MinKeyLen))
			}
		}
	}
	if c.keyGrace < 0 {
		bad("key grace %v is negative", c.keyGrace)
	}
	if c.refresh < 0 || c.refresh > c.duration {
		bad("refresh %v is out of range 0..%v (the duration)", c.refresh, c.duration)
	}
	if !validPath(c.path) {
		bad("path %q does not start with / or holds ; or a control character", c.path)
	}
	if c.domain != "" && !validDomain(c.domain) {
		bad("domain %q is not a host name", c.domain)
	}
	switch c.sameSite {
	case http.SameSiteDefaultMode, http.SameSiteLaxMode, http.SameSiteStrictMode, http.SameSiteNoneMode:
	default:
		bad("SameSite %d is unknown", c.sameSite)
	}
	return errs
}

// isToken reports whether s is an HTTP token (RFC 9110 section 5.6.2), the
// syntax of a cookie name.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		b := s[i]
		switch {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0:
		default:
			return false
		}
	}
	return true
}

// validPath reports whether p is a cookie path we set: absolute, printable
// ASCII, no ';'.
func validPath(p string) bool {
	if !strings.HasPrefix(p, "/") {
		return false
	}
	for i := range len(p) {
		if p[i] < 0x21 || p[i] >= 0x7f || p[i] == ';' {
			return false
		}
	}
	return true
}

// validDomain reports whether d is a plain host name: dot-separated labels
// of letters, digits and '-', an optional leading dot.
func validDomain(d string) bool {
	d = strings.TrimPrefix(d, ".")
	if d == "" || len(d) > 253 {
		return false
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := range len(label) {
			b := label[i]
			if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '-') {
				return false
			}
		}
	}
	return true
}
