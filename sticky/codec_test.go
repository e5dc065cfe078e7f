package sticky

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// specOpen reads a version 1 cookie value following the layout documented in
// codec.go, with the standard library's primitives and none of the
// package's code: it checks that the documentation and the code agree.
func specOpen(t *testing.T, secret []byte, name, value string) (id string, exp int64) {
	t.Helper()
	raw, err := base64.RawURLEncoding.Strict().DecodeString(value)
	require.NoError(t, err)
	derive := func(label string, n int) []byte {
		k, err := hkdf.Key(sha256.New, secret, nil, label, n)
		require.NoError(t, err)
		return k
	}
	require.Equal(t, byte(1), raw[0], "version")
	require.Equal(t, derive("lbkit sticky cookie v1: key fingerprint", 4), raw[1:5], "fingerprint")
	exp = int64(binary.BigEndian.Uint64(raw[5:13]))
	blocks := int(raw[13])
	require.Len(t, raw, 14+32*blocks+16)
	tag := raw[14+32*blocks:]
	body := make([]byte, 32*blocks)
	for i := range blocks {
		m := hmac.New(sha256.New, derive("lbkit sticky cookie v1: body keystream", 32))
		m.Write(tag)
		m.Write([]byte{byte(i)})
		ks := m.Sum(nil)
		for j := range 32 {
			body[32*i+j] = raw[14+32*i+j] ^ ks[j]
		}
	}
	m := hmac.New(sha256.New, derive("lbkit sticky cookie v1: tag", 32))
	m.Write([]byte(name))
	m.Write([]byte{0})
	m.Write(raw[:14])
	m.Write(body)
	require.Equal(t, m.Sum(nil)[:16], tag, "tag")
	n := int(body[0])
	for _, b := range body[1+n:] {
		require.Zero(t, b, "padding")
	}
	return string(body[1 : 1+n]), exp
}

func TestCookieFormatBySpec(t *testing.T) {
	clk := newFakeClock()
	for _, id := range []string{"web-1", "127.0.0.1:8080", strings.Repeat("z", 31), strings.Repeat("y", 32), strings.Repeat("x", MaxIDLen)} {
		p := mustCookie(t, WithKeys(testKey(7)), WithClock(clk.Now), WithCookieName("g"))
		got, exp := specOpen(t, testKey(7), "g", issued(t, p, id).Value)
		assert.Equal(t, id, got)
		assert.Equal(t, clk.Now().Add(DefaultDuration).Unix(), exp)
	}
}

// TestCookieGolden freezes the version 1 format: the same key, name, time
// and ID must give exactly this value in every release, or nodes of
// different releases would refuse each other's cookies. (The value's
// meaning is checked independently by TestCookieFormatBySpec.)
func TestCookieGolden(t *testing.T) {
	clk := newFakeClock()
	p := mustCookie(t, WithKeys(testKey(7)), WithClock(clk.Now), WithCookieName("g"))
	const golden = "ARdiWooAAAAAcN1Z1QEvCizBkhRTwohdzJhmzm-Ti5R2s7ti_RBGnty0b5ekKsbCBQooA6W7AtjAq5NNgkU"
	assert.Equal(t, golden, issued(t, p, "web-1").Value, "the cookie format changed: bump cookieVersion and keep reading version 1")
	id, exp := specOpen(t, testKey(7), "g", golden)
	assert.Equal(t, "web-1", id)
	assert.Equal(t, clk.Now().Add(DefaultDuration).Unix(), exp)
	requireHit(t, p, with(t, p, golden), "web-1")
}

// FuzzCookieValue feeds arbitrary values to the cookie reader and to a whole
// Lookup: they must never panic, and a value must never verify unless it is
// the one cookie the policy issued (or that cookie with leftover bits of its
// last character changed, which decodes to the same bytes).
func FuzzCookieValue(f *testing.F) {
	clk := newFakeClock()
	p := mustCookie(f, WithKeys(testKey(5)), WithClock(clk.Now))
	good := issued(f, p, "t1").Value
	long := issued(f, p, strings.Repeat("L", MaxIDLen)).Value
	goodRaw := rawOf(f, good)
	f.Add(good)
	f.Add(long)
	f.Add(good[:len(good)-1])
	f.Add(good[:20])
	f.Add("")
	f.Add("AQ")
	f.Add("=")
	f.Add(`"` + good + `"`)
	f.Add(good + ";" + good)
	f.Add(strings.Repeat("_", maxValueLen))
	f.Add("AQAAAAAAAAAAAAAAAAH" + strings.Repeat("A", 80))
	f.Add(valueOf(append([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, maxBlocks}, make([]byte, maxBlocks*blockLen+tagLen)...)))
	ks := p.keys.Load()
	f.Fuzz(func(t *testing.T, v string) {
		id, _, _, vd := p.read(ks, v, clk.Now())
		if vd == valid {
			var raw [maxRawLen]byte
			n, _ := decodeBase64URL(raw[:], v)
			if string(raw[:n]) != string(goodRaw) && v != long {
				t.Fatalf("forged value %q verified as %q", v, id)
			}
		} else if id != "" {
			t.Fatalf("verdict %d with id %q", vd, id)
		}
		r := HTTPRequest(netip.Addr{}, &http.Request{Header: http.Header{"Cookie": {p.Name() + "=" + v}}})
		p.Lookup(r)
		p.Remember(r, "t2", Header(http.Header{}))
	})
}

// FuzzSealOpen checks, for arbitrary IDs, expiries and keys, that a sealed
// cookie opens to the same ID, and that changing any one bit of it makes it
// fail.
func FuzzSealOpen(f *testing.F) {
	f.Add("t1", int64(1), byte(0), uint16(0))
	f.Add(strings.Repeat("x", MaxIDLen), int64(-1), byte(7), uint16(500))
	f.Add("127.0.0.1:80", int64(1<<40), byte(255), uint16(63))
	clk := newFakeClock()
	f.Fuzz(func(t *testing.T, id string, exp int64, keyByte byte, bit uint16) {
		if id == "" || len(id) > MaxIDLen {
			return
		}
		k, err := newKey(testKey(keyByte))
		require.NoError(t, err)
		st := k.get()
		ctx := []byte("n\x00")
		raw := append([]byte(nil), k.seal(st, ctx, id, exp)...)

		copy(st.raw[:], raw)
		got, ok := k.open(st, ctx, len(raw))
		require.True(t, ok)
		require.Equal(t, id, string(got))

		i := int(bit) % (len(raw) * 8)
		copy(st.raw[:], raw)
		st.raw[i/8] ^= 1 << (i % 8)
		_, ok = k.open(st, ctx, len(raw))
		require.False(t, ok, "bit %d flipped and the cookie still opens", i)

		p := &Cookie{ctx: ctx, clock: newClock(clk.Now)}
		p.keys.Store(&keySet{keys: []keyEntry{{k: k}}})
		v := valueOf(raw)
		gotID, gotExp, signer, vd := p.read(p.keys.Load(), v, time.Unix(exp-1, 0))
		if exp > -1<<62 { // exp-1 must not wrap
			require.Equal(t, valid, vd)
			require.Equal(t, id, gotID)
			require.Equal(t, exp, gotExp)
			require.True(t, signer)
		}
	})
}

// FuzzBase64URL compares the allocation-free decoder with the standard
// library's: the same bytes for every value the standard library reads
// (after dropping a dangling last character it refuses), and no success on
// characters outside the alphabet.
func FuzzBase64URL(f *testing.F) {
	for _, s := range []string{"", "A", "AA", "AAA", "AAAA", "AB", "AQ", "_-_-", "a b", "YWJj\n", "YQ==", "+/+/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var dst [512]byte
		n, ok := decodeBase64URL(dst[:], s)
		if len(s)*6/8 > len(dst) {
			require.False(t, ok)
			return
		}
		whole := s
		if len(s)%4 == 1 {
			whole = s[:len(s)-1]
		}
		want, err := base64.RawURLEncoding.DecodeString(whole)
		if strings.ContainsAny(s, "\r\n") { // the standard library skips them
			require.False(t, ok)
			return
		}
		if err != nil {
			require.False(t, ok, "stdlib refuses %q: %v", s, err)
			return
		}
		// A dangling character must itself be in the alphabet.
		if len(s)%4 == 1 && b64(s[len(s)-1]) > 63 {
			require.False(t, ok)
			return
		}
		require.True(t, ok, "%q", s)
		require.Equal(t, want, dst[:n])
	})
}
