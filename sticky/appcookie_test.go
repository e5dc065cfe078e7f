package sticky

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func mustAppCookie(t testing.TB, opts ...AppCookieOption) *AppCookie {
	t.Helper()
	p, err := NewAppCookie("JSESSIONID", opts...)
	require.NoError(t, err)
	return p
}

// sess returns a request carrying the given Cookie header lines.
func sess(t testing.TB, lines ...string) Request {
	return HTTPRequest(netip.Addr{}, httpReq(t, lines...))
}

// answer runs Remember for a response from target id with the given
// Set-Cookie lines.
func answer(p *AppCookie, r Request, id string, setCookies ...string) {
	h := http.Header{"Content-Type": {"text/plain"}}
	for _, c := range setCookies {
		h.Add("Set-Cookie", c)
	}
	p.Remember(r, id, Header(h))
}

func TestAppCookieLearnsAndFollows(t *testing.T) {
	p := mustAppCookie(t)
	answer(p, sess(t), "t1", "theme=dark", "JSESSIONID=abc123; Path=/; HttpOnly")
	requireHit(t, p, sess(t, "JSESSIONID=abc123"), "t1")
	requireHit(t, p, sess(t, `a=1; JSESSIONID="abc123"; b=2`), "t1")
	requireMiss(t, p, sess(t, "JSESSIONID=abc124"))
	requireMiss(t, p, sess(t, "jsessionid=abc123")) // names are case-sensitive
	requireMiss(t, p, sess(t, "theme=dark"))
	requireMiss(t, p, sess(t))
	requireMiss(t, p, src("192.0.2.1"))

	answer(p, sess(t), "t2", `JSESSIONID="q1"`) // quoted: the value is q1
	requireHit(t, p, sess(t, "JSESSIONID=q1"), "t2")
	st := p.Stats()
	assert.Equal(t, Stats{Hits: 3, Misses: 5, Remembered: 2, Entries: 2}, st)
}

func TestAppCookieExpiry(t *testing.T) {
	clk := newFakeClock()
	p := mustAppCookie(t, WithClock(clk.Now), WithDuration(time.Minute))
	answer(p, sess(t), "t1", "JSESSIONID=v")
	r := sess(t, "JSESSIONID=v")
	clk.Advance(59 * time.Second)
	requireHit(t, p, r, "t1") // refreshed
	clk.Advance(59 * time.Second)
	answer(p, r, "t1") // a response without Set-Cookie refreshes too
	clk.Advance(59 * time.Second)
	requireHit(t, p, r, "t1")
	clk.Advance(time.Minute)
	requireMiss(t, p, r)
	assert.Equal(t, uint64(1), p.Stats().Expired)
}

func TestAppCookieCapacity(t *testing.T) {
	clk := newFakeClock()
	p := mustAppCookie(t, WithClock(clk.Now), WithDuration(time.Minute), WithCapacity(2))
	answer(p, sess(t), "t1", "JSESSIONID=a")
	answer(p, sess(t), "t1", "JSESSIONID=b")
	answer(p, sess(t), "t2", "JSESSIONID=c") // refused
	requireMiss(t, p, sess(t, "JSESSIONID=c"))
	requireHit(t, p, sess(t, "JSESSIONID=a"), "t1")
	requireHit(t, p, sess(t, "JSESSIONID=b"), "t1")
	assert.Equal(t, uint64(1), p.Stats().Refused)
	clk.Advance(time.Minute)
	answer(p, sess(t), "t2", "JSESSIONID=c")
	requireHit(t, p, sess(t, "JSESSIONID=c"), "t2")
	st := p.Stats()
	assert.Equal(t, 1, st.Entries)
	assert.Equal(t, uint64(2), st.Expired)
}

func TestAppCookieSessionEnds(t *testing.T) {
	clk := newFakeClock()
	for _, del := range []string{
		"JSESSIONID=; Max-Age=0",
		"JSESSIONID=deleted; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
		"JSESSIONID=x; Max-Age=-1",
	} {
		t.Run(del, func(t *testing.T) {
			p := mustAppCookie(t, WithClock(clk.Now))
			answer(p, sess(t), "t1", "JSESSIONID=s1")
			answer(p, sess(t), "t1", "JSESSIONID=s2")
			r := sess(t, "JSESSIONID=s1")
			answer(p, r, "t1", del) // logout
			requireMiss(t, p, r)
			requireHit(t, p, sess(t, "JSESSIONID=s2"), "t1")
			assert.Equal(t, 1, p.Stats().Entries)
		})
	}
}

// TestAppCookieTargetDownAndBack: the session's target turns Unusable; the
// caller picks another; the application there either keeps the session
// (shared session store: no Set-Cookie, the value is re-pointed) or starts
// a new one (a new value is learned). When the old target returns, the
// session stays where it moved.
func TestAppCookieTargetDownAndBack(t *testing.T) {
	st := newStates()
	p := mustAppCookie(t, WithTargetState(st.get))
	answer(p, sess(t), "a", "JSESSIONID=kept")
	answer(p, sess(t), "a", "JSESSIONID=renewed")
	kept, renewed := sess(t, "JSESSIONID=kept"), sess(t, "JSESSIONID=renewed")
	st.set("a", Unusable)
	requireMiss(t, p, kept)
	requireMiss(t, p, renewed)
	answer(p, kept, "b")                        // the new target keeps the session
	answer(p, renewed, "c", "JSESSIONID=fresh") // the new target starts another
	requireHit(t, p, kept, "b")
	requireHit(t, p, sess(t, "JSESSIONID=fresh"), "c")
	st.set("a", Usable)
	requireHit(t, p, kept, "b")
	requireHit(t, p, renewed, "a") // its client has moved on to "fresh"; it expires
	s := p.Stats()
	assert.Equal(t, uint64(2), s.Repicks)
	assert.Equal(t, uint64(4), s.Remembered) // kept, renewed, kept→b, fresh
}

// TestAppCookieIgnoresClientValues: a value only a client has shown is never
// learned, so clients cannot fill the table.
func TestAppCookieIgnoresClientValues(t *testing.T) {
	p := mustAppCookie(t, WithCapacity(10))
	for i := range 100 {
		r := sess(t, fmt.Sprintf("JSESSIONID=made-up-%d", i))
		requireMiss(t, p, r)
		answer(p, r, "t1") // the application set nothing
	}
	st := p.Stats()
	assert.Zero(t, st.Entries)
	assert.Zero(t, st.Refused)
	assert.Zero(t, st.Remembered)
}

func TestAppCookieBadValues(t *testing.T) {
	p := mustAppCookie(t, WithMaxValueLen(16))
	long := strings.Repeat("v", 17)
	answer(p, sess(t), "t1", "JSESSIONID="+long)       // too long to follow
	answer(p, sess(t), "t1", `JSESSIONID=a"b; Path=/`) // not a cookie value
	answer(p, sess(t), "t1", "JSESSIONID=; Path=/")    // empty: nothing to follow
	requireMiss(t, p, sess(t, "JSESSIONID="+long))
	st := p.Stats()
	assert.Equal(t, BadCookies{Oversized: 2, Garbage: 1}, st.BadCookies)
	assert.Zero(t, st.Entries)
	answer(p, sess(t), "t1", "JSESSIONID="+long[:16])
	requireHit(t, p, sess(t, "JSESSIONID="+long[:16]), "t1")
}

func TestAppCookieIgnoresEmptyID(t *testing.T) {
	p := mustAppCookie(t)
	answer(p, sess(t), "", "JSESSIONID=v")
	p.Remember(sess(t), "t1", nil)
	assert.Zero(t, p.Stats().Entries)
}

func TestAppCookieLookupAllocatesNothing(t *testing.T) {
	p := mustAppCookie(t)
	answer(p, sess(t), "t1", "JSESSIONID=0123456789abcdef0123456789abcdef")
	for _, r := range []Request{
		sess(t, "a=b; JSESSIONID=0123456789abcdef0123456789abcdef"),
		sess(t, "JSESSIONID=unknown"),
		sess(t),
	} {
		assert.Zero(t, testing.AllocsPerRun(1000, func() { p.Lookup(r) }))
	}
}
