package sticky

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestValidationListsEveryProblem(t *testing.T) {
	_, err := NewSourceIP(
		WithDuration(0), WithCapacity(0), WithPrefix(0, 129),
		WithTargetState(nil), WithClock(nil),
	)
	require.Error(t, err)
	require.ErrorIs(t, err, ErrInvalidOption)
	for _, want := range []string{
		"duration 0s is out of range 1s..8760h0m0s",
		"capacity 0 is out of range 1..1073741824",
		"IPv4 prefix length 0 is out of range 1..32",
		"IPv6 prefix length 129 is out of range 1..128",
		"target state function is nil",
		"clock is nil",
	} {
		assert.Contains(t, err.Error(), want)
	}

	_, err = NewCookie(
		WithCookieName("bad name"), WithKeys(make([]byte, 16), make([]byte, 31)),
		WithKeyGrace(-time.Second), WithRefresh(time.Hour), WithPath("nope"),
		WithDomain("a;b"), WithSameSite(9),
	)
	require.Error(t, err)
	require.ErrorIs(t, err, ErrInvalidOption)
	require.ErrorIs(t, err, ErrInvalidKey)
	for _, want := range []string{
		`cookie name "bad name" is not an HTTP token`,
		"signing key is 16 bytes, want at least 32",
		"accepted key 0 is 31 bytes, want at least 32",
		"key grace -1s is negative",
		"refresh 1h0m0s is out of range 0..20m0s",
		`path "nope" does not start with /`,
		`domain "a;b" is not a host name`,
		"SameSite 9 is unknown",
	} {
		assert.Contains(t, err.Error(), want)
	}
	assert.NotContains(t, err.Error(), "\x00", "keys are never printed")

	_, err = NewAppCookie("", WithMaxValueLen(0), WithDuration(MaxDuration+1))
	require.Error(t, err)
	for _, want := range []string{
		`cookie name "" is not an HTTP token`,
		"max value length 0 is out of range 1..65536",
		"duration 8760h0m0.000000001s is out of range",
	} {
		assert.Contains(t, err.Error(), want)
	}
	_, err = NewSourceIP(nil)
	require.ErrorIs(t, err, ErrInvalidOption)
	_, err = NewCookie(Option(nil))
	require.ErrorIs(t, err, ErrInvalidOption, "a typed nil option too")
	assert.Equal(t, 6, strings.Count(func() string {
		_, err := NewSourceIP(WithDuration(0), WithCapacity(0), WithPrefix(0, 129), WithTargetState(nil), WithClock(nil))
		return err.Error()
	}(), "\n")+1, "one line per problem")
}

// Which options each constructor takes is checked by the compiler: these
// assignments are the table (an option missing here, or one that does not
// apply to a kind, fails to compile where it is misused).
var (
	_ SourceIPOption  = WithDuration(time.Second)
	_ SourceIPOption  = WithCapacity(1)
	_ SourceIPOption  = WithStore(nil)
	_ SourceIPOption  = WithPrefix(24, 64)
	_ CookieOption    = WithDuration(time.Second)
	_ CookieOption    = WithKeys(nil)
	_ CookieOption    = WithCookieName("x")
	_ AppCookieOption = WithDuration(time.Second)
	_ AppCookieOption = WithCapacity(1)
	_ AppCookieOption = WithMaxValueLen(1)
)

func TestTargetStateString(t *testing.T) {
	assert.Equal(t, "usable", Usable.String())
	assert.Equal(t, "draining", Draining.String())
	assert.Equal(t, "unusable", Unusable.String())
	assert.Equal(t, "state(9)", TargetState(9).String())
}

func TestCookieOptionSyntax(t *testing.T) {
	for _, d := range []string{"example.com", ".example.com", "a-b.example", "localhost", "x1"} {
		assert.True(t, validDomain(d), d)
	}
	for _, d := range []string{".", "a..b", "-a.com", "a-.com", "a_b.com", "exa mple.com", strings.Repeat("a", 64) + ".com", strings.Repeat("a.", 127) + "com"} {
		assert.False(t, validDomain(d), d)
	}
	for _, p := range []string{"/", "/a/b", "/~x%20"} {
		assert.True(t, validPath(p), p)
	}
	for _, p := range []string{"", "a", "/a b", "/a;b", "/\x7f", "/\x00"} {
		assert.False(t, validPath(p), p)
	}
	for _, n := range []string{"LBKIT", "a!#$%&'*+-.^_`|~9"} {
		assert.True(t, isToken(n), n)
	}
	for _, n := range []string{"", "a b", "a=b", "a;b", "é", "a\"b", "(a)"} {
		assert.False(t, isToken(n), n)
	}
	a, err := NewAppCookie("PHPSESSID")
	require.NoError(t, err)
	assert.Equal(t, "PHPSESSID", a.Name())

	p := mustCookie(t, WithKeys(testKey(1), testKey(1), testKey(2)))
	assert.Len(t, p.keys.Load().keys, 2, "a key given twice is held once")
}
