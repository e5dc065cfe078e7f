package sticky

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func mustCookie(t testing.TB, opts ...CookieOption) *Cookie {
	t.Helper()
	p, err := NewCookie(opts...)
	require.NoError(t, err)
	return p
}

// issued runs Remember for id on a request without cookies and returns the
// Set-Cookie it added, parsed.
func issued(t testing.TB, p *Cookie, id string) *http.Cookie {
	t.Helper()
	h := http.Header{}
	p.Remember(HTTPRequest(netip.Addr{}, httpReq(t)), id, Header(h))
	require.Len(t, h["Set-Cookie"], 1)
	c, err := http.ParseSetCookie(h["Set-Cookie"][0])
	require.NoError(t, err)
	return c
}

// with returns a request carrying one cookie of p's name.
func with(t testing.TB, p *Cookie, value string) Request {
	return HTTPRequest(netip.Addr{}, httpReq(t, p.Name()+"="+value))
}

// rawOf decodes a cookie value.
func rawOf(t testing.TB, v string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(v)
	require.NoError(t, err)
	return b
}

func valueOf(raw []byte) string { return base64.RawURLEncoding.EncodeToString(raw) }

func TestCookieRoundTripAndDefaults(t *testing.T) {
	clk := newFakeClock()
	p := mustCookie(t, WithClock(clk.Now))
	c := issued(t, p, "t1")
	assert.Equal(t, DefaultCookieName, c.Name)
	assert.Equal(t, "/", c.Path)
	assert.Empty(t, c.Domain)
	assert.Equal(t, int(DefaultDuration/time.Second), c.MaxAge)
	assert.Equal(t, clk.Now().Add(DefaultDuration), c.Expires)
	assert.True(t, c.HttpOnly)
	assert.False(t, c.Secure, "plain HTTP request")
	assert.Equal(t, http.SameSiteLaxMode, c.SameSite)
	requireHit(t, p, with(t, p, c.Value), "t1")

	r := HTTPRequest(netip.Addr{}, httpReq(t))
	r.TLS = true
	h := http.Header{}
	p.Remember(r, "t1", Header(h))
	assert.Contains(t, h.Get("Set-Cookie"), "; Secure", "request over TLS")
	assert.Equal(t, Stats{Hits: 1, Remembered: 2}, p.Stats())
}

func TestCookieAttributes(t *testing.T) {
	cases := []struct {
		opts []CookieOption
		line string // everything after the value
	}{
		{nil, "; Path=/; Expires=Wed, 02 Jan 2030 03:24:05 GMT; Max-Age=1200; HttpOnly; SameSite=Lax"},
		{
			[]CookieOption{WithCookieName("s"), WithPath("/app"), WithDomain("example.com"), WithDuration(90 * time.Second), WithSecure(true), WithHTTPOnly(false), WithSameSite(http.SameSiteStrictMode)},
			"; Path=/app; Domain=example.com; Expires=Wed, 02 Jan 2030 03:05:35 GMT; Max-Age=90; Secure; SameSite=Strict",
		},
		{[]CookieOption{WithSameSite(http.SameSiteNoneMode)}, "; Path=/; Expires=Wed, 02 Jan 2030 03:24:05 GMT; Max-Age=1200; HttpOnly; Secure; SameSite=None"},
		{[]CookieOption{WithSameSite(http.SameSiteDefaultMode)}, "; Path=/; Expires=Wed, 02 Jan 2030 03:24:05 GMT; Max-Age=1200; HttpOnly"},
		{[]CookieOption{WithDuration(1500 * time.Millisecond)}, "; Path=/; Expires=Wed, 02 Jan 2030 03:04:07 GMT; Max-Age=2; HttpOnly; SameSite=Lax"}, // whole seconds, rounded up
	}
	for i, tc := range cases {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			clk := newFakeClock()
			p := mustCookie(t, append(tc.opts, WithClock(clk.Now))...)
			h := http.Header{}
			p.Remember(HTTPRequest(netip.Addr{}, httpReq(t)), "t1", Header(h))
			line := h.Get("Set-Cookie")
			name, rest, _ := strings.Cut(line, "=")
			assert.Equal(t, p.Name(), name)
			_, attrs, _ := strings.Cut(rest, ";")
			assert.Equal(t, tc.line, ";"+attrs)
			_, err := http.ParseSetCookie(line)
			require.NoError(t, err)
		})
	}
}

// TestCookieIsOpaque checks that a cookie shows nothing of its target:
// neither the ID (here an address) nor, within a 31-byte bucket, its length.
func TestCookieIsOpaque(t *testing.T) {
	p := mustCookie(t, WithKeys(testKey(3)), WithClock(newFakeClock().Now)) // deterministic
	var lens []int
	for _, id := range []string{"127.0.0.1:8080", "[::1]:8080", "a", strings.Repeat("x", 31)} {
		v := issued(t, p, id).Value
		raw := rawOf(t, v)
		for i := 0; i+4 <= len(id); i++ { // shorter pieces turn up by chance
			assert.NotContains(t, v, id[i:i+4])
			assert.False(t, bytes.Contains(raw, []byte(id[i:i+4])), "part of id %q in clear", id)
		}
		lens = append(lens, len(v))
		requireHit(t, p, with(t, p, v), id)
	}
	assert.Equal(t, []int{lens[0], lens[0], lens[0], lens[0]}, lens, "IDs up to 31 bytes give values of one length")
	assert.Greater(t, len(issued(t, p, strings.Repeat("x", 32)).Value), lens[0])
}

func TestCookieBadShapes(t *testing.T) {
	clk := newFakeClock()
	other := mustCookie(t, WithClock(clk.Now))
	good := func(p *Cookie) string { return issued(t, p, "t1").Value }
	edit := func(v string, f func(raw []byte) []byte) string { return valueOf(f(rawOf(t, v))) }
	flip := func(i int) func(*Cookie) string {
		return func(p *Cookie) string {
			return edit(good(p), func(b []byte) []byte { b[(i+len(b))%len(b)] ^= 0x40; return b })
		}
	}
	cases := []struct {
		name  string
		value func(p *Cookie) string
		want  BadCookies
	}{
		{"tampered expiry", flip(8), BadCookies{Tampered: 1}},
		{"tampered body", flip(headerLen + 3), BadCookies{Tampered: 1}},
		{"tampered tag", flip(-1), BadCookies{Tampered: 1}},
		{"spliced", func(p *Cookie) string { // header of one cookie, body and tag of another
			a, b := rawOf(t, good(p)), rawOf(t, issued(t, p, "t2").Value)
			copy(b[:headerLen], a[:headerLen])
			b[8] ^= 1
			return valueOf(b)
		}, BadCookies{Tampered: 1}},
		{"truncated by 8 characters", func(p *Cookie) string { v := good(p); return v[:len(v)-8] }, BadCookies{Truncated: 1}},
		{"truncated to the header", func(p *Cookie) string { return good(p)[:12] }, BadCookies{Truncated: 1}},
		{"empty", func(*Cookie) string { return "" }, BadCookies{Truncated: 1}},
		{"oversized", func(*Cookie) string { return strings.Repeat("A", maxValueLen+1) }, BadCookies{Oversized: 1}},
		{"huge", func(*Cookie) string { return strings.Repeat("A", 60<<10) }, BadCookies{Oversized: 1}},
		{"expired", func(p *Cookie) string {
			v := good(p)
			clk.Advance(DefaultDuration)
			return v
		}, BadCookies{Expired: 1}},
		{"wrong key", func(*Cookie) string { return good(other) }, BadCookies{WrongKey: 1}},
		{"not base64", func(*Cookie) string { return "hello world" }, BadCookies{Garbage: 1}},
		{"padded base64", func(p *Cookie) string { return good(p) + "==" }, BadCookies{Garbage: 1}},
		{"version 2", func(p *Cookie) string { return edit(good(p), func(b []byte) []byte { b[0] = 2; return b }) }, BadCookies{Garbage: 1}},
		{"zero blocks", func(p *Cookie) string {
			return edit(good(p), func(b []byte) []byte { b[headerLen-1] = 0; return b })
		}, BadCookies{Garbage: 1}},
		{"too many blocks", func(p *Cookie) string {
			return edit(good(p), func(b []byte) []byte { b[headerLen-1] = maxBlocks + 1; return b })
		}, BadCookies{Garbage: 1}},
		{"claims more blocks", func(p *Cookie) string {
			return edit(good(p), func(b []byte) []byte { b[headerLen-1]++; return b })
		}, BadCookies{Truncated: 1}},
		{"trailing bytes", func(p *Cookie) string { return edit(good(p), func(b []byte) []byte { return append(b, 0) }) }, BadCookies{Garbage: 1}},
		{"another fingerprint", func(p *Cookie) string { return edit(good(p), func(b []byte) []byte { b[2] ^= 1; return b }) }, BadCookies{WrongKey: 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := mustCookie(t, WithClock(clk.Now))
			v := tc.value(p)
			before := p.Stats()
			r := with(t, p, v)
			requireMiss(t, p, r)
			st := p.Stats()
			assert.Equal(t, tc.want, st.BadCookies)
			assert.Equal(t, before.Misses+1, st.Misses)

			h := http.Header{} // the caller picks and remembers: a new, good cookie
			p.Remember(r, "t3", Header(h))
			c, err := http.ParseSetCookie(h.Get("Set-Cookie"))
			require.NoError(t, err)
			requireHit(t, p, with(t, p, c.Value), "t3")
		})
	}
}

func TestCookieKeyRotation(t *testing.T) {
	clk := newFakeClock()
	a, b := testKey(1), testKey(2)
	p := mustCookie(t, WithKeys(a), WithClock(clk.Now), WithDuration(time.Hour), WithKeyGrace(5*time.Minute))
	old := issued(t, p, "t1").Value

	require.NoError(t, p.RotateKey(b))
	requireHit(t, p, with(t, p, old), "t1") // within the grace period
	h := http.Header{}
	p.Remember(with(t, p, old), "t1", Header(h)) // re-issued under the new key
	renewed, err := http.ParseSetCookie(h.Get("Set-Cookie"))
	require.NoError(t, err)
	assert.NotEqual(t, old, renewed.Value)

	clk.Advance(5 * time.Minute) // grace over: the old key is gone
	requireMiss(t, p, with(t, p, old))
	assert.Equal(t, uint64(1), p.Stats().BadCookies.WrongKey)
	requireHit(t, p, with(t, p, renewed.Value), "t1")

	require.ErrorIs(t, p.RotateKey(make([]byte, 8)), ErrInvalidKey)
	require.ErrorIs(t, p.AcceptKey(nil), ErrInvalidKey)
	require.NoError(t, p.RotateKey(b), "rotating to the key in use changes nothing")
	requireHit(t, p, with(t, p, renewed.Value), "t1")
}

// TestCookieRotationAcrossNodes follows the two-step rotation: every node
// accepts the new key, then each rotates to it in turn; at no point does a
// node meet a cookie it cannot read.
func TestCookieRotationAcrossNodes(t *testing.T) {
	clk := newFakeClock()
	a, b := testKey(1), testKey(2)
	n1 := mustCookie(t, WithKeys(a), WithClock(clk.Now))
	n2 := mustCookie(t, WithKeys(a), WithClock(clk.Now))
	requireHit(t, n2, with(t, n2, issued(t, n1, "t1").Value), "t1") // shared keys

	require.NoError(t, n1.AcceptKey(b))
	require.NoError(t, n2.AcceptKey(b))
	require.NoError(t, n1.AcceptKey(b), "accepting twice changes nothing")
	require.NoError(t, n1.RotateKey(b))
	requireHit(t, n2, with(t, n2, issued(t, n1, "t1").Value), "t1") // n2 accepts b
	requireHit(t, n1, with(t, n1, issued(t, n2, "t2").Value), "t2") // n1 still verifies a
	require.NoError(t, n2.RotateKey(b))
	requireHit(t, n1, with(t, n1, issued(t, n2, "t3").Value), "t3")

	// A key accepted at construction verifies too.
	n3 := mustCookie(t, WithKeys(testKey(3), b), WithClock(clk.Now))
	requireHit(t, n3, with(t, n3, issued(t, n1, "t4").Value), "t4")
	for _, n := range []*Cookie{n1, n2, n3} {
		assert.Zero(t, n.Stats().BadCookies.Total())
	}

	// Without WithKeys each policy has its own random key.
	r1, r2 := mustCookie(t), mustCookie(t)
	requireMiss(t, r2, with(t, r2, issued(t, r1, "t1").Value))
	assert.Equal(t, uint64(1), r2.Stats().BadCookies.WrongKey)
}

// TestCookieRetiringKeyAccepted checks that accepting a key in its grace
// period keeps it for good.
func TestCookieRetiringKeyAccepted(t *testing.T) {
	clk := newFakeClock()
	p := mustCookie(t, WithKeys(testKey(1)), WithClock(clk.Now), WithKeyGrace(time.Minute))
	old := issued(t, p, "t1").Value
	require.NoError(t, p.RotateKey(testKey(2)))
	require.NoError(t, p.AcceptKey(testKey(1)))
	clk.Advance(2 * time.Minute)
	requireHit(t, p, with(t, p, old), "t1")
}

func TestCookieRefresh(t *testing.T) {
	setCookie := func(p *Cookie, v, id string) bool {
		h := http.Header{}
		p.Remember(with(t, p, v), id, Header(h))
		return len(h["Set-Cookie"]) > 0
	}
	clk := newFakeClock()
	p := mustCookie(t, WithClock(clk.Now)) // refresh after a minute
	v := issued(t, p, "t1").Value
	assert.False(t, setCookie(p, v, "t1"), "fresh cookie for the same target: nothing to set")
	assert.True(t, setCookie(p, v, "t2"), "another target: a new cookie")
	clk.Advance(time.Minute)
	assert.True(t, setCookie(p, v, "t1"), "a minute old: re-issued with a new expiry")
	assert.True(t, setCookie(p, "garbage", "t1"), "bad cookie: replaced")

	every := mustCookie(t, WithClock(clk.Now), WithRefresh(0))
	v = issued(t, every, "t1").Value
	assert.True(t, setCookie(every, v, "t1"), "WithRefresh(0): every response")

	short := mustCookie(t, WithClock(clk.Now), WithDuration(10*time.Second)) // refresh capped at 5s
	v = issued(t, short, "t1").Value
	clk.Advance(4 * time.Second)
	assert.False(t, setCookie(short, v, "t1"))
	clk.Advance(time.Second)
	assert.True(t, setCookie(short, v, "t1"))
}

func TestCookieNameIsBound(t *testing.T) {
	a := mustCookie(t, WithKeys(testKey(1)), WithCookieName("A"))
	b := mustCookie(t, WithKeys(testKey(1)), WithCookieName("B"))
	v := issued(t, a, "t1").Value
	requireMiss(t, b, with(t, b, v))
	assert.Equal(t, uint64(1), b.Stats().BadCookies.Tampered)
}

func TestCookieTargetDownAndBack(t *testing.T) {
	st := newStates()
	p := mustCookie(t, WithTargetState(st.get))
	r := with(t, p, issued(t, p, "a").Value)
	requireHit(t, p, r, "a")
	st.set("a", Unusable)
	requireMiss(t, p, r)
	h := http.Header{}
	p.Remember(r, "b", Header(h)) // the caller's new pick: a new cookie
	c, err := http.ParseSetCookie(h.Get("Set-Cookie"))
	require.NoError(t, err)
	r2 := with(t, p, c.Value)
	requireHit(t, p, r2, "b")
	st.set("a", Usable)
	requireHit(t, p, r2, "b") // re-stuck
	requireHit(t, p, r, "a")  // a client that never took the new cookie goes home
	s := p.Stats()
	assert.Equal(t, uint64(1), s.Repicks)
	assert.Zero(t, s.BadCookies.Total())
}

func TestCookieSeveralOfOneName(t *testing.T) {
	p := mustCookie(t)
	v := issued(t, p, "t1").Value
	cases := [][]string{
		{"LBKIT=junk; LBKIT=" + v},
		{"other=1; LBKIT=\"" + v + "\""},
		{"LBKIT=junk", "a=b; LBKIT=" + v},
		{"LBKIT=" + v + "; LBKIT=junk"},
	}
	for _, lines := range cases {
		requireHit(t, p, HTTPRequest(netip.Addr{}, httpReq(t, lines...)), "t1")
	}
	assert.Zero(t, p.Stats().BadCookies.Total(), "a valid cookie among bad ones counts no bad one")
	// Only the first maxCandidates of the name are tried.
	lines := strings.Repeat("LBKIT=junk; ", maxCandidates) + "LBKIT=" + v
	requireMiss(t, p, HTTPRequest(netip.Addr{}, httpReq(t, lines)))
	assert.Equal(t, uint64(1), p.Stats().BadCookies.Garbage)
}

func TestCookieIDLengths(t *testing.T) {
	p := mustCookie(t)
	for n := 1; n <= MaxIDLen; n++ {
		id := strings.Repeat(string(rune('a'+n%26)), n)
		requireHit(t, p, with(t, p, issued(t, p, id).Value), id)
	}
	h := http.Header{}
	p.Remember(HTTPRequest(netip.Addr{}, httpReq(t)), strings.Repeat("x", MaxIDLen+1), Header(h))
	assert.Empty(t, h)
	assert.Equal(t, uint64(1), p.Stats().Refused)
}

func TestCookieManyTargets(t *testing.T) {
	p := mustCookie(t)
	q := mustCookie(t, WithKeys(testKey(9)))
	r := mustCookie(t, WithKeys(testKey(9))) // reads q's cookies, never issued one
	for i := range maxInterned + 100 {
		id := fmt.Sprint("target-", i)
		requireHit(t, p, with(t, p, issued(t, p, id).Value), id)
		requireHit(t, r, with(t, r, issued(t, q, id).Value), id)
	}
	assert.Len(t, *p.ids.Load(), maxInterned)
	assert.Len(t, *r.ids.Load(), maxInterned)
}

func TestCookieWithoutHTTP(t *testing.T) {
	p := mustCookie(t)
	requireMiss(t, p, src("192.0.2.1"))
	h := http.Header{}
	p.Remember(HTTPRequest(netip.Addr{}, httpReq(t)), "t1", nil)
	p.Remember(HTTPRequest(netip.Addr{}, httpReq(t)), "", Header(h))
	assert.Empty(t, h)
	assert.Equal(t, Stats{Misses: 1}, p.Stats())
}

func TestCookieAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items: allocation counts are meaningless")
	}
	p := mustCookie(t)
	v := issued(t, p, "t1").Value
	r := with(t, p, v)
	assert.Zero(t, testing.AllocsPerRun(1000, func() { p.Lookup(r) }), "valid cookie")
	bad := with(t, p, v[:len(v)-4]+"AAAA")
	assert.Zero(t, testing.AllocsPerRun(1000, func() { p.Lookup(bad) }), "tampered cookie")
	fresh := HTTPRequest(netip.Addr{}, httpReq(t))
	h := http.Header{"Set-Cookie": make([]string, 0, 1)}
	allocs := testing.AllocsPerRun(1000, func() {
		h["Set-Cookie"] = h["Set-Cookie"][:0]
		p.Remember(fresh, "t1", Header(h))
	})
	assert.Equal(t, 1.0, allocs, "issuing a cookie allocates its Set-Cookie line only")
}
