package sticky

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// maxInterned bounds the target IDs a Cookie keeps to return from lookups
// without allocating. IDs come from the caller's picks or from cookies this
// policy's keys made, never from a client, so in practice they are the
// target group's IDs; above the bound, lookups allocate the ID instead.
const maxInterned = 1024

// Cookie is session persistence by a cookie the load balancer sets (L7).
//
// On a response, Remember adds a Set-Cookie whose value names the chosen
// target; the browser sends it back and Lookup reads the target from it.
// Nothing is stored on the balancer, so any number of sessions cost no
// memory, and several nodes that share keys (WithKeys) read each other's
// cookies.
//
// The value is opaque: the target's ID is encrypted, and the whole value is
// authenticated with HMAC-SHA256 under the policy's keys (the format,
// frozen as version 1, is documented in codec.go), so it shows nothing of
// the target but its ID's length rounded up to a 32-byte block, and a
// client can neither forge one nor steer itself to a target of its
// choosing. A value that is tampered with, truncated, oversized, expired,
// made with an unknown key or plain garbage counts as no cookie at all: the
// request gets a fresh pick and a new cookie, and Stats.BadCookies counts
// the reason.
//
// Keys rotate without breaking sessions: RotateKey makes a new key sign
// while the old one still verifies for a grace period, and AcceptKey
// prepares every node to read a key before any node signs with it.
//
// Make one with NewCookie; the zero Cookie is not usable. All methods are
// safe for concurrent use. Lookup allocates nothing when the cookie is
// valid (see maxInterned).
type Cookie struct {
	name        string
	ctx         []byte // name and a 0 byte: what the tag binds the value to
	state       func(id string) TargetState
	stopOnDrain bool
	clock       clock
	durSec      int64 // the duration in whole seconds (rounded up)
	freshSec    int64 // a cookie with more than this many seconds left is not re-issued
	grace       time.Duration
	// Attribute text around the value, built once: pre is "; Path=...",
	// plus "; Domain=..."; post is "; Max-Age=...", plus "; HttpOnly".
	pre, post    string
	secureAlways bool
	sameSite     string // "; SameSite=..." or ""

	keys atomic.Pointer[keySet]
	ids  atomic.Pointer[map[string]string] // interned target IDs; copy on write

	mu sync.Mutex // serialises key changes and additions to ids

	hits, misses, repicks, remembered, refused atomic.Uint64
	bad                                        [numVerdicts]atomic.Uint64
}

// keySet is the immutable set of keys in force, replaced as a whole.
type keySet struct {
	keys []keyEntry // keys[0] signs; every live key verifies
}

type keyEntry struct {
	k     *key
	until time.Time // the key stops verifying at this time; zero: never
}

func (e keyEntry) live(now time.Time) bool { return e.until.IsZero() || now.Before(e.until) }

// verdict is the outcome of reading one cookie value.
type verdict uint8

const (
	valid verdict = iota
	tampered
	truncated
	oversized
	expired
	wrongKey
	garbage
	numVerdicts
)

// NewCookie returns a load-balancer cookie policy, or an error listing
// every invalid option. Options: WithTargetState, WithDuration, WithClock,
// WithStopOnDrain, WithCookieName, WithKeys, WithKeyGrace, WithRefresh,
// WithPath, WithDomain, WithSecure, WithHTTPOnly, WithSameSite.
//
// Without WithKeys it makes a random key, which suits one node only.
func NewCookie(opts ...CookieOption) (*Cookie, error) {
	c, err := newConfig(kindCookie, func(c *config) {
		for _, o := range opts {
			if o == nil {
				c.nilOption = true
				continue
			}
			o.applyCookie(c)
		}
	})
	if err != nil {
		return nil, err
	}
	sign, accept := c.signKey, c.acceptKeys
	if sign == nil {
		sign = make([]byte, MinKeyLen)
		rand.Read(sign) // never fails: it crashes the program rather than return an error
	}
	ks := &keySet{}
	for _, secret := range append([][]byte{sign}, accept...) {
		k, err := newKey(secret)
		if err != nil {
			return nil, fmt.Errorf("sticky: %w: %w", ErrInvalidKey, err)
		}
		if ks.index(k) < 0 {
			ks.keys = append(ks.keys, keyEntry{k: k})
		}
	}
	p := &Cookie{
		name:         c.cookieName,
		ctx:          append([]byte(c.cookieName), 0),
		state:        c.state,
		stopOnDrain:  c.stopOnDrain,
		clock:        newClock(c.clock),
		durSec:       int64((c.duration + time.Second - 1) / time.Second),
		grace:        c.keyGrace,
		secureAlways: c.secureAlways || c.sameSite == http.SameSiteNoneMode,
	}
	p.freshSec = p.durSec - int64(c.refresh/time.Second)
	p.pre = "; Path=" + c.path
	if c.domain != "" {
		p.pre += "; Domain=" + c.domain
	}
	p.post = "; Max-Age=" + strconv.FormatInt(p.durSec, 10)
	if c.httpOnly {
		p.post += "; HttpOnly"
	}
	switch c.sameSite {
	case http.SameSiteLaxMode:
		p.sameSite = "; SameSite=Lax"
	case http.SameSiteStrictMode:
		p.sameSite = "; SameSite=Strict"
	case http.SameSiteNoneMode:
		p.sameSite = "; SameSite=None"
	}
	p.keys.Store(ks)
	return p, nil
}

// Name returns the cookie's name.
func (p *Cookie) Name() string { return p.name }

// Lookup returns the target named by the request's cookie when the cookie
// is valid and the target's state allows it. A bad cookie is a miss,
// counted by reason in Stats.BadCookies. When the request carries several
// cookies of the name, the first valid one of the first few counts.
func (p *Cookie) Lookup(r Request) (string, bool) {
	if len(r.Cookies) == 0 {
		p.misses.Add(1)
		return "", false
	}
	ks := p.keys.Load()
	now := p.clock.Now()
	sc := scanCookies(r.Cookies, p.name)
	firstBad := valid
	for range maxCandidates {
		v, ok := sc.next()
		if !ok {
			break
		}
		id, _, _, vd := p.read(ks, v, now)
		if vd != valid {
			if firstBad == valid {
				firstBad = vd
			}
			continue
		}
		if !usable(p.state, p.stopOnDrain, id) {
			p.repicks.Add(1)
			p.misses.Add(1)
			return "", false
		}
		p.hits.Add(1)
		return id, true
	}
	if firstBad != valid {
		p.bad[firstBad].Add(1)
	}
	p.misses.Add(1)
	return "", false
}

// Remember sets the cookie for target id on the response, unless the
// request already carries a valid cookie for id made by the signing key
// that is younger than the refresh age (see WithRefresh). The cookie is
// Secure when the request arrived over TLS or WithSecure(true). A nil
// request or header, or an empty id, is ignored; an id longer than MaxIDLen
// sets nothing and counts in Stats.Refused.
func (p *Cookie) Remember(r Request, id string, resp Response) {
	if resp == nil || id == "" {
		return
	}
	if len(id) > MaxIDLen {
		p.refused.Add(1)
		return
	}
	ks := p.keys.Load()
	now := p.clock.Now()
	sc := scanCookies(r.Cookies, p.name)
	for range maxCandidates {
		v, ok := sc.next()
		if !ok {
			break
		}
		got, exp, signer, vd := p.read(ks, v, now)
		if vd == valid && signer && got == id && exp-now.Unix() > p.freshSec {
			return
		}
	}
	resp.AddSetCookie(p.issue(ks, id, now, r.TLS))
	p.remembered.Add(1)
	if m := p.ids.Load(); m == nil || (*m)[id] == "" {
		p.intern(id)
	}
}

// issue returns a Set-Cookie line for id made by the signing key.
func (p *Cookie) issue(ks *keySet, id string, now time.Time, tls bool) string {
	k := ks.keys[0].k
	st := k.get()
	defer k.put(st)
	exp := now.Unix() + p.durSec
	raw := k.seal(st, p.ctx, id, exp)
	b := append(st.line[:0], p.name...)
	b = append(b, '=')
	b = base64.RawURLEncoding.AppendEncode(b, raw)
	b = append(b, p.pre...)
	b = append(b, "; Expires="...)
	b = time.Unix(exp, 0).UTC().AppendFormat(b, http.TimeFormat)
	b = append(b, p.post...)
	if tls || p.secureAlways {
		b = append(b, "; Secure"...)
	}
	b = append(b, p.sameSite...)
	st.line = b
	return string(b)
}

// read checks one cookie value: on valid it returns the target ID, the
// expiry (Unix seconds) and whether the signing key made it.
func (p *Cookie) read(ks *keySet, v string, now time.Time) (id string, exp int64, signer bool, vd verdict) {
	if len(v) > maxValueLen {
		return "", 0, false, oversized
	}
	var raw [maxRawLen]byte
	size, ok := decodeBase64URL(raw[:], v)
	switch {
	case !ok:
		return "", 0, false, garbage
	case size == 0:
		return "", 0, false, truncated
	case raw[0] != cookieVersion:
		return "", 0, false, garbage
	case size < headerLen:
		return "", 0, false, truncated
	}
	blocks := int(raw[headerLen-1])
	want := headerLen + blocks*blockLen + tagLen
	switch {
	case blocks == 0 || blocks > maxBlocks:
		return "", 0, false, garbage
	case size < want:
		return "", 0, false, truncated
	case size > want:
		return "", 0, false, garbage
	}
	vd = wrongKey
	for i, e := range ks.keys {
		if [fpLen]byte(raw[1:1+fpLen]) != e.k.fp || !e.live(now) {
			continue
		}
		st := e.k.get()
		copy(st.raw[:], raw[:size])
		b, ok := e.k.open(st, p.ctx, size)
		if !ok {
			e.k.put(st)
			vd = tampered // unless another key of this fingerprint opens it
			continue
		}
		id = p.idFrom(b)
		e.k.put(st)
		exp = int64(binary.BigEndian.Uint64(raw[1+fpLen:]))
		if exp <= now.Unix() {
			return "", 0, false, expired
		}
		return id, exp, i == 0, valid
	}
	return "", 0, false, vd
}

// idFrom returns b as a string, interned when possible so that a valid
// lookup allocates nothing.
func (p *Cookie) idFrom(b []byte) string {
	if m := p.ids.Load(); m != nil {
		if s, ok := (*m)[string(b)]; ok {
			return s
		}
	}
	return p.intern(string(b))
}

// intern adds id to the interned IDs unless they are at their bound, and
// returns it.
func (p *Cookie) intern(id string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.ids.Load()
	if old != nil {
		if s, ok := (*old)[id]; ok {
			return s
		}
		if len(*old) >= maxInterned {
			return id
		}
	}
	m := make(map[string]string, 1+lenOf(old))
	if old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	m[id] = id
	p.ids.Store(&m)
	return id
}

func lenOf(m *map[string]string) int {
	if m == nil {
		return 0
	}
	return len(*m)
}

// RotateKey makes secret the signing key. The previous signing key keeps
// verifying for the key grace (WithKeyGrace), so no valid cookie is
// refused; cookies it made are re-issued under the new key on their next
// response. If secret is already an accepted key it is promoted. Keys whose
// grace has passed are dropped.
//
// With several nodes, first AcceptKey(secret) on every node, then
// RotateKey(secret) on each: no node ever meets a cookie it cannot read.
func (p *Cookie) RotateKey(secret []byte) error {
	k, err := checkedKey(secret)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.clock.Now()
	old := p.keys.Load()
	next := &keySet{keys: []keyEntry{{k: k}}}
	for i, e := range old.keys {
		switch {
		case e.k.same(k):
			next.keys[0].k = e.k // keep its warm pool
		case i == 0:
			next.keys = append(next.keys, keyEntry{k: e.k, until: now.Add(p.grace)})
		case e.live(now):
			next.keys = append(next.keys, e)
		}
	}
	p.keys.Store(next)
	return nil
}

// AcceptKey makes secret verify cookies, without signing any, until it is
// promoted by RotateKey (and then, after a later rotation, retired). It is
// the first step of a rotation across several nodes. Accepting a key
// already held changes nothing, except that a retiring key stops retiring.
func (p *Cookie) AcceptKey(secret []byte) error {
	k, err := checkedKey(secret)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.keys.Load()
	next := &keySet{keys: make([]keyEntry, 0, len(old.keys)+1)}
	found := false
	for _, e := range old.keys {
		if e.k.same(k) {
			e.until, found = time.Time{}, true
		}
		next.keys = append(next.keys, e)
	}
	if !found {
		next.keys = append(next.keys, keyEntry{k: k})
	}
	p.keys.Store(next)
	return nil
}

func checkedKey(secret []byte) (*key, error) {
	if len(secret) < MinKeyLen {
		return nil, fmt.Errorf("sticky: %w: key is %d bytes, want at least %d", ErrInvalidKey, len(secret), MinKeyLen)
	}
	k, err := newKey(secret)
	if err != nil {
		return nil, fmt.Errorf("sticky: %w: %w", ErrInvalidKey, err)
	}
	return k, nil
}

// index returns the position of a key derived from the same secret as k,
// or -1.
func (ks *keySet) index(k *key) int {
	for i, e := range ks.keys {
		if e.k.same(k) {
			return i
		}
	}
	return -1
}

// Stats returns the policy's counters. Entries, Expired stay zero: a Cookie
// stores nothing.
func (p *Cookie) Stats() Stats {
	return Stats{
		Hits:       p.hits.Load(),
		Misses:     p.misses.Load(),
		Repicks:    p.repicks.Load(),
		Remembered: p.remembered.Load(),
		Refused:    p.refused.Load(),
		BadCookies: p.badCookies(),
	}
}

func (p *Cookie) badCookies() BadCookies {
	return BadCookies{
		Tampered:  p.bad[tampered].Load(),
		Truncated: p.bad[truncated].Load(),
		Oversized: p.bad[oversized].Load(),
		Expired:   p.bad[expired].Load(),
		WrongKey:  p.bad[wrongKey].Load(),
		Garbage:   p.bad[garbage].Load(),
	}
}
